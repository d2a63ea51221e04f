"""baresip video endpoints in a real MCU conference: dial-in and dial-out, H.264 mode 0 and 1.

Both directions are checked on the real thing: baresip decodes our composite (its log line
`video: receiving with resolution`), the room's broadcast view shows baresip's fakevideo (red,
green and blue thirds) in each site's pane, each site's N-1 mix carries the other's tone and
loses it when the chair mutes that site, select-view moves the site to another shared encoder,
and the console statistics and `conference.site_status` events carry codec, resolution,
bitrate, loss and jitter.
"""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.room import RoomSettings
from sip_gateway.rtp.media_description import MediaPolicy
from tests.sip_gateway.conference_helpers import DEMO, MixTap, joined, level_at, start_bridge, until
from tests.sip_gateway.peers import Baresip

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing")]


@pytest.fixture
def room_settings() -> RoomSettings:
    return RoomSettings(fps=15)  # the shared `conferences` fixture (tests/conftest.py) runs rooms at 15 fps here


def pane_colours(rgb: np.ndarray, x: int, y: int, w: int, h: int) -> list[tuple[int, int, int]]:
    """Mean colour at 1/6, 1/2 and 5/6 of the 4:3 picture letterboxed in a pane."""
    content_w = min(w, h * 4 // 3)
    x0 = x + (w - content_w) // 2
    cy = y + h // 2
    out = []
    for frac in (1 / 6, 1 / 2, 5 / 6):
        cx = x0 + int(content_w * frac)
        patch = rgb[cy - 3: cy + 4, cx - 3: cx + 4].reshape(-1, 3).mean(axis=0)
        out.append((int(patch[0]), int(patch[1]), int(patch[2])))
    return out


@pytest.mark.parametrize("mode", [0, 1])
async def test_baresip_dial_in_and_dial_out_in_a_conference(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path, mode: int) -> None:
    size = {0: (352, 288), 1: (640, 360)}[mode]
    bridge = await start_bridge(services, conferences, MediaPolicy(h264_modes=(mode,), video_codecs=("H264",)),
                                max_video_size=f"{size[0]}x{size[1]}", stats_interval_seconds=1.0)
    port = bridge.endpoint.config.port
    caller = Baresip(tmp_path / "caller", tone_hz=440)
    callee = Baresip(tmp_path / "callee", tone_hz=880, auto_answer=True)
    conf = conferences.running(DEMO)
    assert conf is not None
    statuses: list[dict[str, Any]] = []
    with services.bus.subscribe("conference.site_status") as sub:
        async def collect() -> None:
            async for event in sub:
                statuses.append(event.payload)
        collector = asyncio.ensure_future(collect())
        try:
            await caller.start(f"/dial sip:{DEMO}@127.0.0.1:{port}")
            await callee.start()
            await callee.wait_log("baresip is ready")
            await until(lambda: len(joined(conf)) == 1, 20, "baresip's dial-in to join")
            site_in = joined(conf)[0]
            await bridge.invite(DEMO, site_id="dialout-b", uri=f"sip:baresip@127.0.0.1:{callee.sip_port}",
                                name="镇会议室")
            assert conf.sites["dialout-b"].status in ("calling", "joined")
            await until(lambda: len(joined(conf)) == 2, 20, "the dial-out to join")
            # Both baresips decode our composite at the size their level/our cap allows.
            for peer in (caller, callee):
                await peer.wait_log(rf"video: receiving with resolution {size[0]} x {size[1]}", 30)
                await peer.wait_log(rf"packetization-mode={mode}", 5)
            media = {s.site_id: s.media for s in bridge.sites.values()}
            assert media[site_in] is not None and media["dialout-b"] is not None
            fmt = media[site_in].video  # type: ignore[union-attr]
            assert fmt is not None and fmt.single_nal == (mode == 0)
            taps = {sid: MixTap(m) for sid, m in media.items() if m is not None}
            await until(lambda: all(m is not None and m.counters.video_frames_in > 10 for m in media.values()),
                        20, "baresip video decoded by the room")
            await asyncio.sleep(1.0)

            # The room's broadcast view shows each baresip's fakevideo in its pane.
            rgb = conf.room.render("broadcast").frame.to_ndarray(format="rgb24").astype(int)
            panes = {p.participant_id: p for p in conf.room.view_plan("broadcast").panes if p.participant_id}
            assert set(panes) == {site_in, "dialout-b"}
            for pane in panes.values():
                assert pane.sample is not None, "a video site must not show a placeholder"
                r = pane.rect
                sx, sy = rgb.shape[1] / conf.room.settings.width, rgb.shape[0] / conf.room.settings.height
                red, green, blue = pane_colours(rgb, int(r.x * sx), int(r.y * sy), int(r.w * sx), int(r.h * sy))
                assert red[0] > 150 and red[1] < 100, (red, green, blue)
                assert green[1] > 150 and green[0] < 100, (red, green, blue)
                assert blue[2] > 150 and blue[1] < 100, (red, green, blue)

            # N-1 audio: each site hears the other's tone, not its own.
            await asyncio.sleep(1.0)
            mix_in = np.concatenate(taps[site_in].frames[-25:])
            mix_out = np.concatenate(taps["dialout-b"].frames[-25:])
            assert level_at(mix_in, 880) > 0.5 and level_at(mix_in, 440) < 0.1
            assert level_at(mix_out, 440) > 0.5 and level_at(mix_out, 880) < 0.1

            # Chair: mute the dial-out site: its tone leaves the caller's mix.
            conf.room.mute("dialout-b")
            await asyncio.sleep(0.8)
            taps[site_in].frames.clear()
            await asyncio.sleep(0.8)
            assert level_at(np.concatenate(taps[site_in].frames[-25:]), 880) < 0.1
            conf.room.mute("dialout-b", False)

            # Chair: select-view moves the caller onto the shared encoder of that view.
            sent_before = media[site_in].counters.video_frames_out  # type: ignore[union-attr]
            conf.room.select_view(site_in, "dialout-b")
            sub_key = media[site_in].subscription.key  # type: ignore[union-attr]
            assert sub_key.view_id == "select:dialout-b"
            await until(lambda: media[site_in].counters.video_frames_out > sent_before + 10,  # type: ignore[union-attr]
                        10, "select-view video")

            # Statistics for the console (and on the bus).
            await asyncio.sleep(1.2)
            rows = {row["site_id"]: row for row in conf.site_list()}
            for sid in (site_in, "dialout-b"):
                stats = rows[sid]["stats"]
                streams = {s["kind"]: s for s in stats["streams"]}
                assert streams["video"]["codec"] == "H264" and streams["video"]["resolution"] == [320, 240]
                assert streams["video"]["bitrate_kbps"] > 0 and streams["audio"]["codec"] in ("PCMU", "PCMA")
                assert "packets_lost" in streams["audio"] and "jitter_ms" in streams["audio"]
                assert stats["send_video"] == {"codec": "h264", "width": size[0], "height": size[1],
                                               "packetization_mode": mode}
            assert any(p.get("site_id") == "dialout-b" and p.get("stats", {}).get("streams") for p in statuses)

            # Hang up from the console: the site is left, the call ends on baresip.
            await bridge.hangup(DEMO, "dialout-b")
            await until(lambda: conf.sites["dialout-b"].status == "left", 10, "hang-up")
            assert conf.sites["dialout-b"].detail == "已挂断"
            assert "dialout-b" not in conf.room.participants
            await callee.wait_log(r"(?i)(call closed|session closed|terminated)", 10)
        finally:
            collector.cancel()
            await bridge.stop()
            await caller.stop()
            await callee.stop()
    assert not conf.room.participants  # the bridge's stop left nothing behind
