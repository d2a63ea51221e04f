"""The browser softphone end to end: baresip (440 Hz tone) calls 110; a headless-Chromium
call-taker (its microphone a 1000 Hz oscillator) answers; the call is an MCU audio room and the
tones cross both ways (FFT in the browser and on baresip's decoded audio). The call-taker
conferences in an agency desk (1500 Hz): all three hear each other. Then an attended transfer
hands the call to the agency desk, which hangs up with a disposition. The recording has both sides."""
from __future__ import annotations

import io
import math
import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, sign_in
from tests.conftest import RunningServer
from tests.dispatch.calltaking_samples import free_port
from tests.sip_gateway.peers import Baresip

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__TCP_PORT": str(SIP_PORT)}

TONE_JS = """(freq) => {
  navigator.mediaDevices.getUserMedia = async () => {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator(); osc.frequency.value = freq;
    const gain = ctx.createGain(); gain.gain.value = 0.3;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain); gain.connect(dest); osc.start();
    window.__tone = ctx;
    return dest.stream;
  };
}"""

# What this page hears: FFT of the remote audio (WebAudio analyser), dB per bin near each frequency.
HEAR_JS = """async (freqs) => {
  const ctx = new AudioContext();
  await ctx.resume();
  const src = ctx.createMediaStreamSource(window.deskRemoteStream);
  const an = ctx.createAnalyser(); an.fftSize = 8192; an.smoothingTimeConstant = 0.8;
  src.connect(an);
  await new Promise((r) => setTimeout(r, 1500));
  const data = new Float32Array(an.frequencyBinCount);
  an.getFloatFrequencyData(data);
  const hz = ctx.sampleRate / an.fftSize;
  const sorted = Array.from(data).filter(Number.isFinite).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const out = {};
  for (const f of freqs) {
    const i = Math.round(f / hz);
    out[f] = Math.max(...data.slice(i - 3, i + 4)) - median;
  }
  return out;
}"""


def tone_db(pcm: np.ndarray, rate: int, freq: float) -> float:
    """Power at ``freq`` relative to the spectrum's median, in dB."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm)))) + 1e-9
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = spectrum[(freqs > freq - 15) & (freqs < freq + 15)]
    return float(20 * np.log10(band.max() / np.median(spectrum)))


def read_wav(data: bytes | Path) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        if w.getnchannels() > 1:
            raw = raw.reshape(-1, w.getnchannels())[:, 0]
        return raw, w.getframerate()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def desk_page(browser: Browser, server: RunningServer, user: str, tone_hz: int) -> Page:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1600, "height": 950})
    page = context.new_page()
    page.add_init_script(f"({TONE_JS})({tone_hz})")
    page.goto(server.url + "/desk")
    sign_in(page, user, server.passwords[user])
    expect(page.locator("#conn.up")).to_have_count(1, timeout=10_000)
    return page


def hears(page: Page, freqs: list[int], within: float = 15.0) -> dict[str, float]:
    """dB above the median at each frequency, once audio flows (NaN while the remote stream is
    silent, e.g. just after a transfer renegotiated it on a loaded machine)."""
    deadline = time.monotonic() + within
    while True:
        result: dict[str, float] = page.evaluate(HEAR_JS, freqs)
        if all(math.isfinite(v) for v in result.values()) or time.monotonic() > deadline:
            return result


@pytest.fixture
def baresip_caller(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    bs = Baresip(tmp_path / "baresip", tone_hz=440)
    bs.write_config()
    snd = tmp_path / "snd"
    snd.mkdir()
    with (bs.home / "config").open("a") as f:
        f.write(f"module sndfile.so\nsnd_path {snd}\n")
    proc = subprocess.Popen(["baresip", "-f", str(bs.home), "-e", f"/dial sip:110@127.0.0.1:{SIP_PORT}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=str(bs.home))
    yield proc, snd
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_softphone_both_ways_three_way_and_attended_transfer(
        browser: Browser, server: RunningServer, baresip_caller: tuple[subprocess.Popen[bytes], Path], artifacts_dir: Path) -> None:
    caller, snd = baresip_caller
    taker = desk_page(browser, server, "calltaker", 1000)
    agency = desk_page(browser, server, "admin", 1500)  # an agency desk (admins may use the desk)
    taker.get_by_test_id("btn-available").click()
    expect(taker.get_by_test_id("ring")).to_be_visible(timeout=15_000)
    taker.get_by_test_id("btn-answer").click()
    expect(taker.get_by_test_id("media-state")).to_have_text("connected", timeout=30_000)
    time.sleep(1.0)
    heard = hears(taker, [440, 1000])
    assert heard["440"] > 25, heard  # the caller's tone reaches the call-taker
    taker.screenshot(path=str(artifacts_dir / "desk-softphone-1-answered.png"))

    # Three-way: the agency desk joins; everyone hears the other two.
    taker.get_by_test_id("agency").fill("admin")
    taker.get_by_test_id("btn-invite").click()
    expect(agency.get_by_test_id("invite")).to_be_visible(timeout=10_000)
    agency.get_by_test_id("btn-join").click()
    expect(agency.get_by_test_id("media-state")).to_have_text("connected", timeout=30_000)
    time.sleep(1.5)
    at_agency = hears(agency, [440, 1000])
    at_taker = hears(taker, [440, 1500])
    assert at_agency["440"] > 20 and at_agency["1000"] > 20, at_agency
    assert at_taker["440"] > 20 and at_taker["1500"] > 20, at_taker
    expect(taker.get_by_test_id("participants")).to_contain_text("desk-admin")
    agency.screenshot(path=str(artifacts_dir / "desk-softphone-2-three-way.png"))

    # Hold: the caller is out of the room (and hears the queue tone); resume brings it back.
    taker.get_by_test_id("btn-hold").click()
    time.sleep(1.5)
    held = hears(agency, [440, 1000])
    assert held["440"] < held["1000"] - 15, held
    taker.get_by_test_id("btn-hold").click()

    # Attended transfer to the agency desk, which then owns the call and hangs up with a disposition.
    taker.get_by_test_id("btn-transfer").click()
    expect(taker.get_by_test_id("call-panel")).to_contain_text("当前无通话", timeout=10_000)
    expect(agency.get_by_test_id("caller-number")).to_have_text("baresip", timeout=10_000)
    time.sleep(1.0)
    after = hears(agency, [440, 1000])
    assert after["440"] > 20 and after["1000"] < after["440"] - 15, after  # the call-taker has left
    agency.get_by_test_id("disposition").select_option("transferred")
    agency.get_by_test_id("btn-hangup").click()
    expect(agency.get_by_test_id("call-panel")).to_contain_text("当前无通话", timeout=10_000)

    # baresip heard the call-taker (1000 Hz) and the agency desk (1500 Hz): its decoded audio.
    caller.send_signal(signal.SIGINT)  # baresip finishes its WAV files on exit
    caller.wait(10)
    decoded = sorted(snd.glob("*dec*.wav"))
    assert decoded, list(snd.iterdir())
    pcm, rate = read_wav(decoded[0])
    assert len(pcm) > rate * 3
    assert tone_db(pcm, rate, 1000) > 20 and tone_db(pcm, rate, 1500) > 20

    api = server.login("admin")
    calls: list[dict[str, Any]] = api.get("/api/desk/callbacks", params={"include_done": True}).json()
    assert isinstance(calls, list)
    rows = api.get("/api/audit", params={"action": "call.transfer"}).json()
    assert rows and rows[0]["actor"] == "calltaker"
    call_id = rows[0]["target"]
    audio = api.get(f"/api/desk/calls/{call_id}/recording")
    assert audio.status_code == 200
    rec, rate = read_wav(audio.content)
    assert tone_db(rec, rate, 440) > 20 and tone_db(rec, rate, 1000) > 20 and tone_db(rec, rate, 1500) > 20
    api.close()
    taker.context.close()
    agency.context.close()
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.post(f"/api/desk/calls/{call_id}/media", json={"sdp": "v=0 x" * 3}).status_code == 401


def test_sip_extension_conferenced_in_then_blind_transfer(
        browser: Browser, server: RunningServer, baresip_caller: tuple[subprocess.Popen[bytes], Path],
        tmp_path: Path) -> None:
    caller, _ = baresip_caller
    ext = Baresip(tmp_path / "extension", tone_hz=700, auto_answer=True)
    ext.write_config()
    ext_snd = tmp_path / "ext-snd"
    ext_snd.mkdir()
    with (ext.home / "config").open("a") as f:
        f.write(f"module sndfile.so\nsnd_path {ext_snd}\n")
    extension = subprocess.Popen(["baresip", "-f", str(ext.home)], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ext.home))
    try:
        taker = desk_page(browser, server, "calltaker", 1000)
        taker.get_by_test_id("btn-available").click()
        expect(taker.get_by_test_id("ring")).to_be_visible(timeout=15_000)
        taker.get_by_test_id("btn-answer").click()
        expect(taker.get_by_test_id("media-state")).to_have_text("connected", timeout=30_000)
        # Conference in the fire brigade's SIP extension (baresip, auto-answer, 700 Hz).
        taker.get_by_test_id("agency").fill(f"sip:baresip@127.0.0.1:{ext.sip_port}")
        taker.get_by_test_id("btn-invite").click()
        expect(taker.get_by_test_id("participants")).to_contain_text("sip-", timeout=15_000)
        time.sleep(2.0)
        heard = hears(taker, [440, 700])
        assert heard["440"] > 20 and heard["700"] > 20, heard
        # Blind transfer to the extension: the call-taker is free at once, caller and extension talk on.
        taker.get_by_test_id("btn-blind").click()
        expect(taker.get_by_test_id("call-panel")).to_contain_text("当前无通话", timeout=10_000)
        expect(taker.get_by_test_id("position-state")).to_have_text("话后整理")
        time.sleep(1.0)
        api = server.login("admin")
        rows = api.get("/api/audit", params={"action": "call.transfer"}).json()
        assert rows[0]["detail"]["target"].startswith("sip:baresip@")
        call_id = rows[0]["target"]
        assert api.get(f"/api/desk/calls/{call_id}").status_code == 200  # still up: caller ↔ extension
        extension.send_signal(signal.SIGINT)  # the extension hangs up: the call is over, the caller gets BYE
        extension.wait(10)
        deadline = time.monotonic() + 10
        while api.get(f"/api/desk/calls/{call_id}").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert api.get(f"/api/desk/calls/{call_id}").status_code == 409
        api.close()
        decoded = sorted(ext_snd.glob("*dec*.wav"))
        assert decoded, list(ext_snd.iterdir())
        pcm, rate = read_wav(decoded[0])
        assert tone_db(pcm, rate, 440) > 20 and tone_db(pcm, rate, 1000) > 20  # heard caller and call-taker
        taker.context.close()
    finally:
        if extension.poll() is None:
            extension.kill()
            extension.wait()
