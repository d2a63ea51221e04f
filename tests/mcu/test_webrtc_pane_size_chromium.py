"""Headless Chromium sites are asked for the size they are shown at (mcu.pane_size → the leg's
``send_size`` message → the join page's ``send_size.js`` → ``RTCRtpSender.setParameters``).

Chromium's fake camera captures 1280x720. Chromium is the judge of what it sends (getStats
outbound-rtp frameWidth/frameHeight, framesEncoded, keyFramesEncoded), the MCU of what it decodes
(the site's decoded resolution and frame counters). The page signals through this test: its offer
goes to an in-process leg, and what the leg would send over the join socket goes to the page's
``ccApplySendSize`` (the very script the join page loads).
"""
from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcu.conferences import RunningConference
from mcu.legs.webrtc import WebRtcConfig, WebRtcLeg, WebRtcLegs, send_size_message
from mcu.room import RoomSettings
from tests.browser import CHROMIUM, CHROMIUM_ARGS, OFFER_WHEN_GATHERED_JS

CONFIG = WebRtcConfig(host_addresses=("127.0.0.1",))
FPS = 15
SEND_SIZE_JS = Path(__file__).resolve().parents[2] / "web_console" / "static" / "send_size.js"
# No mDNS host candidates: aioice resolves them with a per-thread lock bound to the first event loop.
ARGS = [*CHROMIUM_ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"]

OFFER_JS = """async (name) => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}, audio: true});
  const pc = new RTCPeerConnection();
  window.peers = window.peers || {};
  window.peers[name] = pc;
  stream.getTracks().forEach((t) => pc.addTrack(t, stream));
""" + OFFER_WHEN_GATHERED_JS

ANSWER_JS = """async ([name, sdp]) => { await window.peers[name].setRemoteDescription({type: 'answer', sdp}); }"""

APPLY_JS = """async ([name, message]) => {
  const pc = window.peers[name];
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === 'video');
  await window.ccApplySendSize(sender, message);
  const e = sender.getParameters().encodings[0];
  return {active: e.active, scale: e.scaleResolutionDownBy || 1, maxBitrate: e.maxBitrate || 0,
          camera: [sender.track.getSettings().width, sender.track.getSettings().height]};
}"""

STATS_JS = """async (name) => {
  const out = {frameWidth: 0, frameHeight: 0, framesEncoded: 0, keyFramesEncoded: 0};
  (await window.peers[name].getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') for (const k of Object.keys(out)) out[k] = s[k] || 0;
  });
  return out;
}"""


CONFERENCE_NAME = "分屏尺寸测试"  # the `conference` fixture (tests/mcu/conftest.py)


@pytest.fixture
def room_settings() -> RoomSettings:
    return RoomSettings(width=1280, height=720, fps=FPS)  # the rooms of the shared `conferences` fixture


async def _until(probe: Callable[[], Any], predicate: Callable[[Any], bool], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within} s, last {value}")
        await asyncio.sleep(0.1)


def test_send_size_message() -> None:
    assert send_size_message(None) == {"type": "send_size", "active": False}
    assert send_size_message((256, 144)) == {"type": "send_size", "active": True, "width": 256, "height": 144,
                                             "max_bitrate": 96_000}  # the floor of mcu.pane_size.rate_for
    assert send_size_message((1280, 720))["max_bitrate"] == 1_500_000


async def test_chromium_sends_its_pane_size_and_a_hidden_source_is_not_decoded(
        conference: RunningConference) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian package 'chromium'")
    from playwright.async_api import async_playwright

    room = conference.room
    room.set_layout("5x5")
    legs = WebRtcLegs(CONFIG)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            # A secure origin for getUserMedia without a server: the page is served by the test.
            await page.route("http://localhost/", lambda route: route.fulfill(
                status=200, content_type="text/html", body="<!doctype html><title>pane size</title>"))
            await page.goto("http://localhost/")
            await page.add_script_tag(content=SEND_SIZE_JS.read_text())
            applied: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
            tasks: set[asyncio.Task[None]] = set()
            legs_by_name: dict[str, WebRtcLeg] = {}
            for name in ("a", "b"):
                offer = await page.evaluate(OFFER_JS, name)
                leg = legs.create(conference, participant_id=f"chromium-{name}", name=f"Chromium {name}")
                answer = await leg.answer(offer, codec="h264")
                await page.evaluate(ANSWER_JS, [name, answer])

                def signal(message: dict[str, Any], name: str = name) -> None:
                    async def apply() -> None:
                        applied[name].append(await page.evaluate(APPLY_JS, [name, message]))
                    task = asyncio.get_running_loop().create_task(apply())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

                if name == "a":  # b stands for a browser that does not follow send_size (an older page)
                    leg.attach_signalling(signal)
                legs_by_name[name] = leg
            a = legs_by_name["a"]
            assert a.media is not None
            counters = a.media.counters

            async def stats() -> dict[str, int]:
                return dict(await page.evaluate(STATS_JS, "a"))

            async def decoded() -> tuple[int, int] | None:
                return counters.input_resolution

            # A 5x5 pane of a 1280x720 room is 256x144: Chromium scales its 1280x720 camera by 5.
            await _until(lambda: asyncio.sleep(0, a.send_size), lambda m: m is not None and m.get("width") == 256,
                         5, "asked for 256x144")
            await _until(lambda: asyncio.sleep(0, applied["a"]), lambda x: bool(x) and x[-1]["scale"] == 5, 5,
                         "scaleResolutionDownBy 5")
            assert applied["a"][-1]["camera"] == [1280, 720]
            assert applied["a"][-1]["maxBitrate"] == 96_000
            small = await _until(stats, lambda s: 0 < s["frameWidth"] <= 256 and s["frameHeight"] <= 144, 10,
                                 "Chromium sends at most 256x144")
            await _until(decoded, lambda r: r is not None and r[0] <= 256 and r[1] <= 144, 10,
                         "the MCU decodes at most 256x144")

            # Full screen: asked at once for 1280x720, and Chromium goes back up.
            room.set_layout("1")
            room.assign_pane(0, "static", a.participant_id)
            await _until(lambda: asyncio.sleep(0, applied["a"]), lambda x: x[-1]["scale"] == 1, 5,
                         "scaleResolutionDownBy 1")
            assert applied["a"][-1]["maxBitrate"] == 1_500_000
            # How far up is Chromium's own call (its bandwidth estimate and CPU-overuse adaptation):
            # 1280x720 on an idle machine, 480x270 seen at load average 17 on the shared 2 cores.
            big = await _until(stats, lambda s: s["frameWidth"] > 256 and s["frameHeight"] > 144, 20,
                               "Chromium sends more than 256x144")
            await _until(decoded, lambda r: r is not None and r[0] > 256, 10, "the MCU decodes more than 256 wide")
            assert big["frameWidth"] > small["frameWidth"]
            await asyncio.sleep(5.0)
            print("pane-size figures: small", small, "big", big, "after 5 s more", await stats())

            # Hidden (the only pane shows b): after the settle time a pauses and is not decoded.
            room.assign_pane(0, "static", legs_by_name["b"].participant_id)
            await _until(lambda: asyncio.sleep(0, applied["a"]), lambda x: x[-1]["active"] is False, 6,
                         "paused (active: false)")
            await _until(lambda: asyncio.sleep(0, a.decode_gate.mode), lambda m: m == "off", 2, "decode off")
            await asyncio.sleep(1.0)  # frames in flight when it paused
            before_stats, before_frames = await stats(), counters.video_frames_in
            await asyncio.sleep(2.0)
            after_stats = await stats()
            assert after_stats["framesEncoded"] - before_stats["framesEncoded"] <= 1, (before_stats, after_stats)
            assert counters.video_frames_in == before_frames  # nothing decoded while hidden
            assert a.media.statistics()["video_decode"] == "off"

            # Shown again: resumed at once, a key frame, decoded within a second of the room's decision.
            keyframes, requested = after_stats["keyFramesEncoded"], counters.keyframes_requested_from_endpoint
            room.assign_pane(0, "static", a.participant_id)
            await _until(lambda: asyncio.sleep(0, a.decode_gate.mode), lambda m: m != "off", 2, "decode on")
            shown_at = time.monotonic()
            await _until(lambda: asyncio.sleep(0, counters.video_frames_in), lambda n: n > before_frames, 3,
                         "a decoded frame after being shown")
            first_frame = time.monotonic() - shown_at
            assert first_frame < 1.0, f"first frame {first_frame:.2f} s after being shown"
            await _until(lambda: asyncio.sleep(0, applied["a"]), lambda x: x[-1]["active"] is True, 2,
                         "resumed (active: true)")  # the page's answer may come after the first frame
            assert counters.keyframes_requested_from_endpoint > requested
            resumed = await stats()
            assert resumed["keyFramesEncoded"] > keyframes, resumed
            assert a.describe()["video_decode"] in ("full", "fast")

            # b, hidden now, keeps sending (it was never told): the MCU skips its frames undecoded,
            # and when shown again asks it (PLI) for the key frame it resumes decoding from.
            b = legs_by_name["b"]
            assert b.media is not None and b.send_size is not None and b.send_size_messages == 0
            b_counters = b.media.counters
            await _until(lambda: asyncio.sleep(0, b.decode_gate.mode), lambda m: m == "off", 6, "b: decode off")
            await asyncio.sleep(0.5)
            skipped, b_frames = b.video_frames_skipped, b_counters.video_frames_in
            b_requests = b_counters.keyframes_requested_from_endpoint
            await asyncio.sleep(2.0)
            assert b_counters.video_frames_in == b_frames
            assert b_counters.keyframes_requested_from_endpoint == b_requests  # not "stalled": no PLI
            assert b.video_frames_skipped >= skipped + 10  # ~2 s of frames arrived and were not decoded
            b_stats = dict(await page.evaluate(STATS_JS, "b"))
            room.assign_pane(0, "static", b.participant_id)
            await _until(lambda: asyncio.sleep(0, b.decode_gate.mode), lambda m: m != "off", 2, "b: decode on")
            shown_at = time.monotonic()
            await _until(lambda: asyncio.sleep(0, b_counters.video_frames_in), lambda n: n > b_frames, 3,
                         "b: a decoded frame after being shown")
            b_first = time.monotonic() - shown_at
            print(f"pane-size figures: first frame after shown a {first_frame:.2f} s, b {b_first:.2f} s;"
                  f" b skipped {b.video_frames_skipped}")
            assert b_first < 1.0
            b_after = dict(await page.evaluate(STATS_JS, "b"))
            assert b_after["keyFramesEncoded"] > b_stats["keyFramesEncoded"], (b_stats, b_after)  # our PLI
        finally:
            await browser.close()
            await legs.stop()
