"""NACK repair towards a browser on a real lossy line: headless Chromium behind ``2M_2pct_30ms``.

Chromium runs inside the line's namespace (``ip netns exec``; Playwright drives it over a pipe),
so every packet between it and the MCU's aiortc legs crosses the emulated line: 2 Mbit/s, a
200 ms router queue, 30±10 ms and 2 % loss each way (NACKs and PLIs are lost too). One page
holds two viewers of the same room at the same time, on the same line: one leg answers NACKs
with RTX within its byte budget (the product), the other refuses every resend (RTX off). The
room shows a noisy picture so the composite fills ~500 kbit/s (a loss every second or so).

Judged by Chromium's getStats: both NACK; only the first receives retransmissions, and it
decodes more frames, is frozen for less time and asks for fewer key frames than the one without
repair. Measured (10 s windows, three first-attempt runs at load 13-23): with RTX 116-152 frames
decoded of 117-151 sent, 6-10 NACKs, no PLI, 0-0.46 s frozen; without, 21-40 decoded, 89-174
NACKs, 2 PLIs, 3.2-3.3 s frozen.
"""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mcu.conferences import ConferenceService
from mcu.legs.webrtc import WebRtcConfig, WebRtcLeg, WebRtcLegs
from tests.browser import CHROMIUM, CHROMIUM_ARGS, OFFER_WHEN_GATHERED_JS
from tests.linesim.conftest import OpenLine
from tests.sip_gateway.conference_helpers import DEMO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
ARGS = [*CHROMIUM_ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"]
MEASURE_S = 10.0
NOISE_FPS = 15

OFFER_JS = """async (name) => {
  const pc = new RTCPeerConnection();
  (window.pcs = window.pcs || {})[name] = pc;
  pc.addTransceiver('video', {direction: 'recvonly'});
""" + OFFER_WHEN_GATHERED_JS

STATS_JS = """async (name) => {
  const out = {framesDecoded: 0, framesReceived: 0, nackCount: 0, pliCount: 0, firCount: 0,
               retransmittedPacketsReceived: 0, packetsReceived: 0, packetsLost: 0, freezeCount: 0,
               totalFreezesDuration: 0};
  (await window.pcs[name].getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      for (const k of Object.keys(out)) if (s[k] !== undefined) out[k] = s[k];
    }
  });
  return out;
}"""


class NoResends:
    """A resend budget that refuses every NACKed packet: RTX turned off for one leg."""

    def allow(self, sequence: int, size: int, now: float, video_kbps: float) -> bool:
        return False


async def noise(participant: Any, stop: asyncio.Event) -> None:
    """A busy source for the room: random pictures at NOISE_FPS (the composite's rate stays high)."""
    rng = np.random.default_rng(16)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(8)]
    i = 0
    while not stop.is_set():
        participant.push_video(frames[i % len(frames)])
        i += 1
        await asyncio.sleep(1 / NOISE_FPS)


async def test_chromium_behind_a_lossy_line_is_repaired_by_rtx(
        conferences: ConferenceService, linesim: OpenLine, tmp_path: Path) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian package 'chromium'")
    from playwright.async_api import async_playwright

    line = linesim("2M_2pct_30ms")
    conf = conferences.running(DEMO)
    assert conf is not None
    source = await conf.join("noise", "噪声", "demo")
    stop = asyncio.Event()
    feeder = asyncio.ensure_future(noise(source, stop))
    # FEC off on both: this compares NACK repair alone (FEC's own resends of lost FEC packets would
    # reach the "off" viewer as retransmissions; tests/mcu/test_webrtc_fec_chromium.py covers FEC)
    legs = WebRtcLegs(WebRtcConfig(host_addresses=(line.mcu_address,), fec=False))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(line.wrapper(CHROMIUM, tmp_path)), args=ARGS,
                                          headless=True)
        try:
            page = await browser.new_page()
            viewers: dict[str, WebRtcLeg] = {}
            for name in ("rtx", "off"):
                leg = legs.create(conf, participant_id=f"chromium-{name}", view="broadcast")
                answer = await leg.answer(await page.evaluate(OFFER_JS, name), codec="h264")
                assert "rtx" in answer.lower()  # negotiated for both: only the leg's answers differ
                if name == "off":
                    leg.retransmits.budget = NoResends()  # type: ignore[assignment]
                await page.evaluate("async ([name, sdp]) => { await window.pcs[name].setRemoteDescription("
                                    "{type: 'answer', sdp}); }", [name, answer])
                viewers[name] = leg
            deadline = time.monotonic() + 20
            for name in viewers:
                while (await page.evaluate(STATS_JS, name))["framesDecoded"] == 0:
                    assert time.monotonic() < deadline, f"no first frame for {name} behind the line"
                    await asyncio.sleep(0.1)
            before = {name: await page.evaluate(STATS_JS, name) for name in viewers}
            sent_before = {name: leg.video_track.packets_sent for name, leg in viewers.items()}
            await asyncio.sleep(MEASURE_S)
            after = {name: await page.evaluate(STATS_JS, name) for name in viewers}
            delta = {name: {k: after[name][k] - before[name][k] for k in after[name]} for name in viewers}
            for name, leg in viewers.items():
                delta[name]["frames_sent"] = leg.video_track.packets_sent - sent_before[name]
                delta[name]["resent"] = leg.retransmits.resent
                delta[name]["refused"] = leg.retransmits.refused
            print("chromium behind 2M_2pct_30ms:", delta, "line", line.tbf_drops())
            rtx, off = delta["rtx"], delta["off"]
            # The line really lost packets on both, and both browsers asked for them again.
            assert rtx["nackCount"] > 0 and off["nackCount"] > 0, delta
            # Repair: the product leg resent within its budget and Chromium received retransmissions;
            # the other leg refused them all and nothing arrived as a retransmission.
            assert viewers["rtx"].retransmits.resent > 0 and rtx["retransmittedPacketsReceived"] > 0, delta
            assert viewers["off"].retransmits.resent == 0 and off["retransmittedPacketsReceived"] == 0, delta
            # What it buys: more frames decoded (complete, with their references), less time frozen and
            # fewer key frames asked for.
            assert rtx["framesDecoded"] > off["framesDecoded"], delta
            assert rtx["totalFreezesDuration"] < off["totalFreezesDuration"], delta
            assert rtx["pliCount"] < off["pliCount"], delta
        finally:
            stop.set()
            await feeder
            await browser.close()
            await legs.stop()
            await conf.leave("noise")
