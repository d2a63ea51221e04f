"""Send pacing on a real 768 kbit/s line: the MCU's 720p video to baresip, unpaced and then paced.

baresip sends a busy picture (so key frames are as big as a real camera's: 50-80 kB at 720p).
Unpaced, every key frame leaves in one burst and the line's 200 ms router queue drops its tail
(and the losses bring more key frames). Paced at a fixed 600 kbit/s video budget, the same call
loses (almost) nothing at the router queue (the pacer drops whole frames instead, before they
get sequence numbers), and baresip still decodes the picture. Measured on this machine: about
230 router-queue drops in 15 s unpaced, 0 paced.
"""
from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.rtp.media_description import MediaPolicy
from sip_gateway.rtp.pacing import FixedBudget
from tests.linesim.conftest import OpenLine
from tests.linesim.line import Line
from tests.linesim.peers import LineBaresip, busy_video, start_line_bridge, state_the_line
from tests.sip_gateway.conference_helpers import DEMO, joined, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240),
              pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing")]
CALL_SECONDS = 15
SIZE = (1280, 720)


async def call_through(services: CoreServices, conferences: ConferenceService, line: Line, home: Path,
                       video: Path) -> tuple[int, int, LineBaresip]:
    """One call of CALL_SECONDS from baresip behind ``line``: (router-queue drops MCU→site, frames the
    MCU sent, the peer)."""
    bridge = await start_line_bridge(services, conferences, line,
                                     MediaPolicy(h264_modes=(1,), video_codecs=("H264",)), max_video_size=f"{SIZE[0]}x{SIZE[1]}")
    conf = conferences.running(DEMO)
    assert conf is not None
    peer = LineBaresip(home, line=line, video_file=video)
    before = line.tbf_drops()["down"]
    try:
        await peer.start(f"/dial sip:{DEMO}@{line.mcu_address}:{bridge.endpoint.config.port}")
        await until(lambda: len(joined(conf)) == 1, 30, "baresip behind the line to join")
        await peer.wait_log(rf"video: receiving with resolution {SIZE[0]} x {SIZE[1]}", 30)
        await asyncio.sleep(CALL_SECONDS)
        site = next(iter(bridge.sites.values()))
        assert site.media is not None
        frames = site.media.counters.video_frames_out
        drops = line.tbf_drops()["down"] - before
        print("pacer:", site.leg.pacer.counters)
    except BaseException:
        print(peer.text[-3000:])
        raise
    finally:
        await bridge.stop()
        await peer.stop()
    return drops, frames, peer


async def test_paced_video_no_longer_overflows_a_768k_line(
        services: CoreServices, conferences: ConferenceService, linesim: OpenLine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    line = linesim("768k_20ms")
    # the plan says 2M (the line is 768k): 720p is sent, which the unpaced leg cannot fit
    state_the_line(monkeypatch, services.plan, 2048)
    video = busy_video(tmp_path / "busy.mp4")
    sizes: list[int] = []
    send = MediaLeg.send_video_access_unit

    def recording(leg: MediaLeg, access_unit: bytes, timestamp_90k: int) -> None:
        sizes.append(len(access_unit))  # what the shared encoder hands the leg, before the pacer
        send(leg, access_unit, timestamp_90k)

    monkeypatch.setattr(MediaLeg, "send_video_access_unit", recording)
    unpaced, _, _ = await call_through(services, conferences, line, tmp_path / "unpaced", video)
    print("unpaced: frames", len(sizes), "kbit/s", sum(sizes) * 8 // 1000 // CALL_SECONDS, "largest", sorted(sizes)[-3:])
    sizes.clear()
    monkeypatch.setattr(MediaLeg, "send_budget", FixedBudget(600))
    paced, frames, peer = await call_through(services, conferences, line, tmp_path / "paced", video)
    print("paced: frames", len(sizes), "kbit/s", sum(sizes) * 8 // 1000 // CALL_SECONDS, "largest", sorted(sizes)[-3:])
    print(f"router-queue drops MCU→site in {CALL_SECONDS} s: unpaced {unpaced}, paced {paced}")
    assert unpaced >= 20, unpaced  # the scenario really overflows the line without pacing
    assert paced <= 2, (paced, unpaced)
    assert frames >= CALL_SECONDS * 10  # the room kept sending video; the peer decoded it
    assert re.search(rf"video: receiving with resolution {SIZE[0]} x {SIZE[1]}", peer.text)
