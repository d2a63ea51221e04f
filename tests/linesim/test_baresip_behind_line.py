"""A real SIP room system behind an emulated 768 kbit/s line: baresip in the line's namespace dials
the MCU's conference on the line's address. Both directions cross the line (rate, queue, delay)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from sip_gateway.rtp.media_description import MediaPolicy
from tests.linesim.conftest import OpenLine
from tests.linesim.peers import LineBaresip, start_line_bridge
from tests.sip_gateway.conference_helpers import DEMO, joined, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing")]


async def test_baresip_calls_the_mcu_through_a_768k_line(
        services: CoreServices, conferences: ConferenceService, linesim: OpenLine, tmp_path: Path) -> None:
    line = linesim("768k_20ms")
    bridge = await start_line_bridge(services, conferences, line,
                                     MediaPolicy(h264_modes=(0,), video_codecs=("H264",)), max_video_size="352x288")
    conf = conferences.running(DEMO)
    assert conf is not None
    peer = LineBaresip(tmp_path / "site", line=line)
    try:
        await peer.start(f"/dial sip:{DEMO}@{line.mcu_address}:{bridge.endpoint.config.port}")
        await until(lambda: len(joined(conf)) == 1, 30, "baresip behind the line to join")
        await peer.wait_log(r"video: receiving with resolution 352 x 288", 30)  # it decodes our composite
        site = next(iter(bridge.sites.values()))
        assert site.media is not None
        await until(lambda: site.media is not None and site.media.counters.video_frames_in > 10, 20,
                    "the room to decode baresip's video")
    finally:
        await bridge.stop()
        await peer.stop()
    line.close()  # the call really crossed the line: the stage saw both directions
    down, up = line.loss_counts()["down"], line.loss_counts()["up"]
    assert down[0] > 100 and up[0] > 100, line.stage_stats
