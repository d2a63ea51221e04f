"""The desk softphone across split roles: the call is on a `--role desk` node, the call-taker's browser
on a `--role web` node (`emergency.remote_desk`), which routes every desk operation to the desk node
over node RPC; the softphone's offer/answer is proxied, the audio flows browser <-> desk node.

baresip (440 Hz) calls 110 on the desk node's SIP port; headless Chromium (its microphone a 1000 Hz
oscillator) signs on at the web node, is offered the call, answers: it hears 440 Hz, and baresip's
decoded audio has 1000 Hz (the energy check at the caller). The web node runs no desk of its own
(no SIP trunk, its call pins empty): the call is pinned to the desk node.
"""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, sign_in
from tests.conftest import run_async, wait_for
from tests.noderpc.roles import desk_and_web
from tests.noderpc.test_split_recording import _rows
from tests.sip_gateway.peers import Baresip
from tests.web_console.test_desk_softphone import TONE_JS, hears, read_wav, tone_db

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def test_softphone_on_a_web_node_for_a_call_on_the_desk_node(pg_url: str, browser: Browser) -> None:
    with desk_and_web(pg_url, "splitdesk") as (desk, web, db_url, work, sip_port):
        caller: subprocess.Popen[bytes] | None = None
        try:
            passwords = desk.passwords()
            context = browser.new_context(locale="zh-CN", viewport={"width": 1600, "height": 950})
            page = context.new_page()
            page.add_init_script(f"({TONE_JS})(1000)")
            page.goto(web.url + "/desk")
            sign_in(page, "calltaker", passwords["calltaker"])
            expect(page.locator("#conn.up")).to_have_count(1, timeout=15_000)
            expect(page.get_by_test_id("softphone")).to_have_count(1)  # offered: the desk node has the call rooms
            page.get_by_test_id("btn-available").click()

            bs = Baresip(work / "baresip", tone_hz=440)
            bs.write_config()
            snd = work / "snd"
            snd.mkdir()
            with (bs.home / "config").open("a") as f:
                f.write(f"module sndfile.so\nsnd_path {snd}\n")
            caller = subprocess.Popen(["baresip", "-f", str(bs.home), "-e", f"/dial sip:110@127.0.0.1:{sip_port}"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      cwd=str(bs.home))
            expect(page.get_by_test_id("ring")).to_be_visible(timeout=20_000)
            # the call's pin is written beside the ring, not before it: wait for it
            try:
                pins = wait_for(lambda: run_async(_rows(db_url, "SELECT node_id FROM rpc_pins WHERE kind = 'call'")),
                                within=10.0)
            except TimeoutError:
                pins = []
            assert len(pins) == 1 and pins[0]["node_id"].startswith("desk-1/desk/"), pins
            page.get_by_test_id("btn-answer").click()
            expect(page.get_by_test_id("media-state")).to_have_text("connected", timeout=30_000)
            time.sleep(1.0)
            heard = hears(page, [440, 1000])
            assert heard["440"] > 25, heard  # the caller's tone reaches the browser on the web node
            time.sleep(2.0)

            caller.send_signal(signal.SIGINT)  # baresip finishes its WAV files on exit
            caller.wait(10)
            decoded = sorted(snd.glob("*dec*.wav"))
            assert decoded, list(snd.iterdir())
            pcm, rate = read_wav(decoded[0])
            assert len(pcm) > rate * 2
            assert tone_db(pcm, rate, 1000) > 20, tone_db(pcm, rate, 1000)  # the call-taker reaches the caller
            expect(page.get_by_test_id("call-panel")).to_contain_text("当前无通话", timeout=15_000)
            context.close()
        finally:
            if caller is not None and caller.poll() is None:
                caller.kill()
                caller.wait()
