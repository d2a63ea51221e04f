"""The recorder capability on a node: the demo plan's halls are recorded from synthetic cameras."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import pytest

from core.runtime import CoreServices
from recorder.capability import start
from tests.recorder.rtsp_cameras import needs_rtsp

pytestmark = [needs_rtsp, pytest.mark.slow]


async def test_demo_halls_record(services: CoreServices, tmp_path: Path) -> None:
    role = await start(services)
    assert role is not None and role.demo is not None
    try:
        demo_ids = [c.camera_id for c in role.cameras if c.rtsp_url.startswith("demo:")]
        assert len(demo_ids) >= 4
        await asyncio.sleep(12.0)
        health = role.service.health()
        assert all(health[c].state == "recording" for c in demo_ids), health
    finally:
        await role.stop()
    segs = await role.service.index.segments(demo_ids, 0, 2**62)
    assert {s.camera for s in segs} == set(demo_ids)
    path = role.service.store.local_path(segs[0].store_key)
    assert path is not None and str(path).startswith(str(services.settings.var_dir))
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.width == 320
        assert sum(1 for _ in c.decode(video=0)) > 0
    assert role.service.log.latest_head is not None and role.service.log.latest_head.tree_size == role.service.log.size
