"""NACK repair towards a browser: aiortc's sender answers Chromium's NACKs with RTX (RFC 4588).

The loss is made in process, between aiortc's packetizer and its SRTP transport: every video
packet on the media SSRC is dropped with probability 5 % (seeded), retransmissions on the RTX
SSRC never. That is the part of a lossy line NACK repair deals with (the rate and queue of a real
line are tests/linesim's business). Chromium is the judge: it NACKs (nackCount), receives the
retransmissions (retransmittedPacketsReceived) and keeps decoding without asking for key frames.
"""
from __future__ import annotations

import asyncio
import random
import shutil
import struct
import time
from typing import Any

import pytest

from mcu.conferences import RunningConference
from mcu.legs.webrtc import WebRtcConfig, WebRtcLegs
from mcu.room import RoomSettings
from tests.browser import CHROMIUM, CHROMIUM_ARGS, OFFER_WHEN_GATHERED_JS

CONFIG = WebRtcConfig(host_addresses=("127.0.0.1",), fec=False)  # the loss is made before FEC would be added
FPS = 15
LOSS = 0.05
ARGS = [*CHROMIUM_ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"]

OFFER_JS = """async () => {
  const pc = new RTCPeerConnection();
  window.viewer = pc;
  pc.addTransceiver('video', {direction: 'recvonly'});
""" + OFFER_WHEN_GATHERED_JS

STATS_JS = """async () => {
  const out = {framesDecoded: 0, nackCount: 0, pliCount: 0, firCount: 0, retransmittedPacketsReceived: 0,
               packetsReceived: 0};
  (await window.viewer.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      for (const k of Object.keys(out)) if (s[k] !== undefined) out[k] = s[k];
    }
  });
  return out;
}"""


CONFERENCE_NAME = "重传测试"  # the `conference` fixture (tests/mcu/conftest.py)


@pytest.fixture
def room_settings() -> RoomSettings:
    return RoomSettings(width=640, height=360, fps=FPS)  # the rooms of the shared `conferences` fixture


async def test_chromium_nacks_are_repaired_by_rtx(conference: RunningConference) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian package 'chromium'")
    from playwright.async_api import async_playwright

    legs = WebRtcLegs(CONFIG)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            leg = legs.create(conference, participant_id="chromium-viewer", view="broadcast")
            answer = await leg.answer(await page.evaluate(OFFER_JS), codec="h264")
            assert "rtx" in answer.lower()  # negotiated: retransmissions go on their own SSRC
            sender: Any = leg._sender
            transport = sender.transport
            send_rtp = transport._send_rtp
            rng = random.Random(16)
            dropped = 0
            losing = False

            async def lossy(data: bytes) -> None:
                nonlocal dropped
                if losing and struct.unpack("!I", data[8:12])[0] == sender._ssrc and rng.random() < LOSS:
                    dropped += 1
                    return
                await send_rtp(data)

            transport._send_rtp = lossy
            await page.evaluate("""async (sdp) => { await window.viewer.setRemoteDescription({type: 'answer', sdp}); }""",
                                answer)
            deadline = time.monotonic() + 10
            while (await page.evaluate(STATS_JS))["framesDecoded"] == 0:
                assert time.monotonic() < deadline, "no first frame"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            before, requests_before, sent_before = (await page.evaluate(STATS_JS), leg.stats.keyframe_requests,
                                                    leg.video_track.packets_sent)
            losing = True
            await asyncio.sleep(8.0)
            losing = False
            await asyncio.sleep(1.0)  # the last repairs
            after = await page.evaluate(STATS_JS)
            frames_sent = leg.video_track.packets_sent - sent_before
            print("rtx figures: dropped", dropped, "requested", leg.retransmits.requested, "resent",
                  leg.retransmits.resent, "frames sent", frames_sent, "before", before, "after", after)
            assert dropped >= 5, dropped  # the composite at 15 fps: a few hundred packets in 8 s
            assert after["nackCount"] > before["nackCount"], (before, after)
            assert leg.retransmits.resent >= 0.9 * dropped, (dropped, leg.retransmits.requested,
                                                             leg.retransmits.resent)
            assert leg.retransmits.refused == 0  # 5 % loss is well within the budget (20 % of the rate)
            assert after["retransmittedPacketsReceived"] - before["retransmittedPacketsReceived"] >= 0.9 * dropped
            # Repaired, not re-keyed: it kept decoding what we sent and asked for (almost) no key frame.
            decoded = after["framesDecoded"] - before["framesDecoded"]
            assert decoded >= 0.9 * frames_sent, (decoded, frames_sent, before, after)
            assert leg.stats.keyframe_requests - requests_before <= 1, (before, after)
            assert leg.describe()["retransmitted"] == leg.retransmits.resent
        finally:
            await browser.close()
            await legs.stop()
