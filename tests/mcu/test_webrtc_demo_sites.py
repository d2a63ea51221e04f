"""Demo sites: the demo plan's demo endpoints join the standing conference with moving, labelled video."""
from __future__ import annotations

import asyncio

import numpy as np

from config.settings import Settings
from config.site_plan import load_site_plan
from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.demo_sites import DemoSites, demo_site_ids, tone_frame
from mcu.room import RoomSettings


async def test_demo_sites_join_with_moving_video_and_quiet_tone(services: CoreServices) -> None:
    service = ConferenceService(services, RoomSettings(width=640, height=360, fps=5))
    await service.start()
    try:
        conf = service.running("80000001")
        assert conf is not None
        demo = DemoSites(conf, services.plan)
        assert len(demo.sites) == 6
        await demo.start()
        await asyncio.sleep(0.8)
        joined = [s for s in conf.site_list() if s["protocol"] == "demo"]
        assert len(joined) == 6 and all(s["status"] == "joined" for s in joined)
        assert all(p.name.endswith("（演示）") for p in conf.room.participants.values())
        site = conf.room.participants["city-main"]
        first = site.video
        assert first is not None and (first.frame.width, first.frame.height) == (320, 180)
        await asyncio.sleep(0.6)
        second = site.video
        assert second is not None and second.seq > first.seq
        a, b = first.frame.to_ndarray(format="rgb24"), second.frame.to_ndarray(format="rgb24")
        assert np.abs(a.astype(int) - b.astype(int)).sum() > 0  # it moves
        # The tone is audible but below the speaker detector's -35 dBFS: it never takes the picture.
        frame = tone_frame(demo.sites[0].frequency, 7)
        level = 20 * np.log10(float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) / 32768)
        assert -55 < level < conf.room.speaker_detector.on_dbfs - 5
        assert conf.room.active_speaker is None
        await demo.stop()
        assert all(s["status"] == "left" for s in conf.site_list() if s["protocol"] == "demo")
    finally:
        await service.stop()


def test_only_demo_endpoints_become_demo_sites() -> None:
    plan = load_site_plan(Settings().site_plan)
    ids = [sid for sid, _ in demo_site_ids(plan, ["city-main", "city-emergency", "luoding-room", "nope"])]
    assert ids == ["city-main", "luoding-room"]
