"""Recorder fixtures: a migrated database, the recorder service, synthetic RTSP cameras."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.db import Database, apply_migrations
from recorder.service import RecorderService
from tests.recorder.helpers import recorder_config
from tests.recorder.rtsp_cameras import SyntheticCamera, free_tcp_port


@pytest.fixture
def cameras() -> Iterator[list[SyntheticCamera]]:
    """cam1 (with AAC audio) and cam2 (video only), started."""
    cams = [SyntheticCamera("cam1", "窗口1", True, free_tcp_port()),
            SyntheticCamera("cam2", "窗口2", False, free_tcp_port())]
    try:
        for cam in cams:
            cam.start()
        time.sleep(0.5)
        yield cams
    finally:
        for cam in cams:
            cam.stop()


@pytest.fixture
async def recorder_db(fresh_db_url: str) -> AsyncIterator[Database]:
    """A fresh database with every migration applied (core's and the recorder's)."""
    db = Database(fresh_db_url)
    await db.connect(max_size=4)
    async with db.pool.acquire() as conn:
        await apply_migrations(conn)
    yield db
    await db.close()


@pytest.fixture
async def service(recorder_db: Database, tmp_path: Path) -> AsyncIterator[RecorderService]:
    svc = RecorderService(recorder_db, recorder_config(tmp_path, segment_seconds=4.0, head_interval_s=5.0))
    yield svc
    await svc.stop()
