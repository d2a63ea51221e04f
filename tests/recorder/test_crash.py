"""Crash recovery: SIGKILL the recorder mid-segment, restart, and the index, store and log agree."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.db import Database
from recorder.ingest import CameraConfig
from recorder.service import RecorderService
from recorder.store import parse_key, segment_key
from recorder.transparency_log import TransparencyLog
from tests.recorder.helpers import recorder_config
from tests.recorder.rtsp_cameras import SyntheticCamera, needs_rtsp

pytestmark = [needs_rtsp, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


async def wait_for_segments(db: Database, count: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await db.fetchval("SELECT to_regclass('recorder_segments') IS NOT NULL") and \
                await db.fetchval("SELECT count(*) FROM recorder_segments") >= count:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"fewer than {count} segments after {within_s} s")


async def test_sigkill_mid_segment_then_restart(fresh_db_url: str, recorder_db: Database, tmp_path: Path,
                                                cameras: list[SyntheticCamera]) -> None:
    cam = cameras[0]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "recorder", "--db-url", fresh_db_url, "--var", str(tmp_path),
        "--camera", f"cam1={cam.url}", "--segment-seconds", "4", "--head-interval", "2",
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_segments(recorder_db, 2, within_s=30)
        await asyncio.sleep(2.0)  # well inside the third segment
        staging = list((tmp_path / "recordings" / ".staging").rglob("*.part"))
        assert staging, "an open segment should be in staging"
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
    killed_at_ms = int(time.time() * 1000)
    before = await recorder_db.fetchval("SELECT count(*) FROM recorder_segments")

    # A crash can also fall between the rename into place and the index insert: simulate that file.
    last_key = await recorder_db.fetchval("SELECT store_key FROM recorder_segments ORDER BY end_ms DESC LIMIT 1")
    parsed = parse_key(last_key)
    orphan_key = segment_key("cam1", parsed.end_ms, parsed.end_ms + 1000)
    (tmp_path / "recordings" / orphan_key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "recordings" / last_key, tmp_path / "recordings" / orphan_key)

    svc = RecorderService(recorder_db, recorder_config(tmp_path, segment_seconds=4.0))
    await svc.start([CameraConfig("cam1", cam.url)])
    try:
        assert svc.recovery.staging_discarded == len(staging)
        assert (svc.recovery.reindexed, svc.recovery.relogged) == (1, 1)
        await asyncio.sleep(7.0)
    finally:
        await svc.stop()

    # Store and index agree byte for byte; nothing half-written is left.
    assert await svc.audit_store() == []
    assert not list((tmp_path / "recordings" / ".staging").rglob("*.part"))
    keys = set(svc.store.keys())
    indexed = {s.store_key for s in await svc.index.segments(["cam1"], 0, 2**62)}
    assert keys == indexed and len(indexed) >= before + 2
    # The log is consistent with every head signed before and after the crash.
    reopened = TransparencyLog(svc.log.storage, svc.keys, svc.log.log_id)
    await reopened.open()
    # The downtime is an explained gap, and recording went on after it.
    gaps = await svc.index.gaps(["cam1"], 0, 2**62)
    assert gaps and gaps[-1].cause == "recorder not running"
    after = await svc.index.segments(["cam1"], killed_at_ms, 2**62)
    assert after and after[0].start_ms >= gaps[-1].end_ms
