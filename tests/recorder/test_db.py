"""The recorder on PostgreSQL: append-only log tables, rewrite detection, retention, holds, store audit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import asyncpg
import av
import pytest

from core.db import Database
from recorder.holds import HoldError
from recorder.index import NoRecording
from recorder.ingest import CommittedSegment, sha256_file
from recorder.leaves import AccessLeaf, RetentionLeaf, decode_leaf
from recorder.merkle import verify_consistency
from recorder.pg_storage import PgLogStorage
from recorder.retention import RetentionConfig, RetentionPolicy
from recorder.service import AccessError, RecorderService
from recorder.signing import load_public_key
from recorder.store import segment_key
from recorder.transparency_log import LogIntegrityError, TransparencyLog
from recorder.tree_head import SignedTreeHead, verify_tree_head
from recorder.verify import verify_export, verify_export_cli
from tests.recorder.helpers import recorder_config
from tests.recorder.recorder_media import write_h264_mp4

T0 = 1_795_000_000_000


async def add_segments(svc: RecorderService, camera: str, count: int, start: int = T0) -> list[CommittedSegment]:
    """Commit `count` real 1 s segments for `camera` through the service's normal path."""
    out = []
    for i in range(count):
        s, e = start + i * 1000, start + (i + 1) * 1000
        key = segment_key(camera, s, e)
        staging = svc.store.staging_path(camera, f"t{i}.part")
        write_h264_mp4(staging, seconds=0.5, seed=i)
        seg = CommittedSegment(camera, key, s, e, staging.stat().st_size, sha256_file(staging), "avc1.64000c",
                               160, 96, False, 5)
        svc.store.commit(staging, key)
        await svc._record_segment(seg)
        out.append(seg)
    return out


@pytest.fixture
async def started(service: RecorderService) -> RecorderService:
    await service.start()
    return service


async def test_log_tables_refuse_updates_and_deletes(started: RecorderService, recorder_db: Database) -> None:
    await add_segments(started, "cam1", 2)
    for sql in ("UPDATE recorder_log_leaves SET kind = 'x'", "DELETE FROM recorder_log_leaves",
                "DELETE FROM recorder_tree_heads", "TRUNCATE recorder_log_leaves"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await recorder_db.execute(sql)


async def test_rewritten_entry_in_database_fails_consistency(started: RecorderService, recorder_db: Database) -> None:
    await add_segments(started, "cam1", 6)
    kept = await started.log.sign_head()  # an inspector keeps this head
    await add_segments(started, "cam1", 2, start=T0 + 10_000)
    await started.log.sign_head()
    # An attacker with database superuser rights disables the guard and rewrites leaf 3's hash.
    original = await started.log.leaf_bytes(3)
    body = json.loads(original)
    body["sha256"] = "0" * 64
    forged = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    await recorder_db.execute("ALTER TABLE recorder_log_leaves DISABLE TRIGGER recorder_log_leaves_append_only")
    await recorder_db.execute("UPDATE recorder_log_leaves SET data = $1 WHERE idx = 3", forged)
    reopened = TransparencyLog(started.log.storage, started.keys, started.log.log_id)
    with pytest.raises(LogIntegrityError, match="rewritten|inconsistent"):
        await reopened.open()
    # Deleting the stored heads too does not help: the head the inspector kept catches it.
    await recorder_db.execute("ALTER TABLE recorder_tree_heads DISABLE TRIGGER recorder_tree_heads_append_only")
    await recorder_db.execute("DELETE FROM recorder_tree_heads")
    await reopened.open()
    with pytest.raises(LogIntegrityError):
        reopened.check_head(kept)


async def test_retention_by_size_frees_oldest_keeps_holds_and_leaves(recorder_db: Database, tmp_path: Path) -> None:
    cfg = recorder_config(tmp_path, retention_interval_s=3600.0, retention=RetentionConfig(
        default=RetentionPolicy(max_days=None, max_bytes=None),
        per_camera={"cam1": RetentionPolicy(max_days=None, max_bytes=1)}, min_free_bytes=0))
    svc = RecorderService(recorder_db, cfg)
    await svc.start()
    try:
        segs = await add_segments(svc, "cam1", 8)
        await add_segments(svc, "cam2", 2)
        budget = sum(segs[i].size for i in (1, 2, 6, 7))
        svc.config.retention.per_camera["cam1"] = RetentionPolicy(max_days=None, max_bytes=budget)
        # Hold seconds 1..3 (segments 1 and 2) for a complaint.
        with pytest.raises(HoldError):
            await svc.holds.place("inspector1", ["cam1"], T0 + 1000, T0 + 3000, "  ")
        hold = await svc.holds.place("inspector1", ["cam1"], T0 + 1000, T0 + 3000, "投诉 2026-7 证据保全")
        size_before = svc.log.size
        deleted = await svc.run_retention()
        live = await svc.index.segments(["cam1"], 0, 2**62)
        assert [s.start_ms for s in live] == [T0 + 1000, T0 + 2000, T0 + 6000, T0 + 7000]
        assert deleted == 4  # oldest first (0, 3, 4, 5), the held ones skipped
        for seg in segs:
            assert svc.store.exists(seg.key) == (seg.start_ms in {s.start_ms for s in live})
        assert len(await svc.index.segments(["cam2"], 0, 2**62)) == 2  # other camera untouched
        # The leaves stay; one retention leaf names the deleted segment leaves.
        assert svc.log.size == size_before + 1
        retention = decode_leaf(await svc.log.leaf_bytes(svc.log.size - 1))
        deleted_rows = [s for s in await svc.index.segments(["cam1"], 0, 2**62, include_deleted=True) if s.deleted]
        assert isinstance(retention, RetentionLeaf) and set(retention.segment_leaves) == {s.leaf_index for s in deleted_rows}
        # Timeline and export explain the deleted span.
        timeline = await svc.index.timeline("cam1", 0, 2**62)
        assert [s.kind for s in timeline] == ["deleted", "recorded", "deleted", "recorded"]
        result = await svc.export("inspector1", ["cam1"], T0, T0 + 8000, "复核", tmp_path / "b")
        report = verify_export(result.path)
        assert report.ok and [e["kind"] for e in report.explained] == ["retention"]
        # Hold placement/lift are audited with who and why; lifting lets retention proceed.
        await svc.holds.lift(hold, "inspector2", "案件结案")
        with pytest.raises(HoldError):
            await svc.holds.lift(hold, "inspector2", "again")
        audit = await svc.audit.recent(action="recorder.hold")
        assert [(a.actor, a.detail["reason"]) for a in audit] == [("inspector2", "案件结案"),
                                                                  ("inspector1", "投诉 2026-7 证据保全")]
        svc.config.retention.per_camera["cam1"] = RetentionPolicy(max_days=None, max_bytes=segs[6].size + segs[7].size)
        assert await svc.run_retention() == 2
    finally:
        await svc.stop()


async def test_store_audit_names_missing_and_changed_files(started: RecorderService) -> None:
    segs = await add_segments(started, "cam1", 3)
    assert await started.audit_store() == []
    path0 = started.store.local_path(segs[0].key)
    path2 = started.store.local_path(segs[2].key)
    assert path0 is not None and path2 is not None
    path0.unlink()
    data = bytearray(path2.read_bytes())
    data[100] ^= 1
    path2.write_bytes(bytes(data))
    assert await started.audit_store() == [f"missing: {segs[0].key}", f"changed: {segs[2].key}"]


async def test_key_rotation_on_database(started: RecorderService) -> None:
    await add_segments(started, "cam1", 1)
    before = await started.log.sign_head()
    after = await started.log.rotate_key()
    assert after.key_id != before.key_id
    reopened = TransparencyLog(started.log.storage, started.keys, started.log.log_id)
    await reopened.open()
    reopened.check_head(before)


async def test_playback_logs_the_view_first_and_viewing_copy_is_captioned(started: RecorderService,
                                                                          tmp_path: Path) -> None:
    segs = await add_segments(started, "cam1", 3)
    await add_segments(started, "cam2", 2)
    size = started.log.size
    with pytest.raises(AccessError):
        await started.playback("inspector1", ["cam1"], T0, T0 + 3000, "")
    assert started.log.size == size
    plan = await started.playback("inspector1", ["cam1", "cam2"], T0 + 500, T0 + 2500, "窗口投诉核查")
    assert [p["start_ms"] for p in plan["cam1"]] == [T0, T0 + 1000, T0 + 2000]
    assert [p["start_ms"] for p in plan["cam2"]] == [T0, T0 + 1000]
    leaf = decode_leaf(await started.log.leaf_bytes(size))
    assert isinstance(leaf, AccessLeaf) and (leaf.action, leaf.user, leaf.reason) == ("view", "inspector1", "窗口投诉核查")
    with pytest.raises(NoRecording):
        await started.playback("inspector1", ["cam1"], T0 + 100_000, T0 + 200_000, "r")

    evidence = [sha256_file(started.store.local_path(s.key)) for s in segs]
    dest = tmp_path / "viewing.mp4"
    frames = await started.viewing_copy("inspector1", "cam1", T0, T0 + 3000, "复核", dest)
    assert frames == 15
    with av.open(str(dest)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    with av.open(str(started.store.local_path(segs[0].key))) as c:
        original = next(c.decode(video=0)).to_ndarray(format="rgb24")
    band = first.shape[0] - 2
    assert abs(int(first[band].mean()) - int(original[band].mean())) > 20  # caption band burned in
    assert evidence == [sha256_file(started.store.local_path(s.key)) for s in segs]


async def test_inspector_head_and_consistency_and_cli(started: RecorderService, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    await add_segments(started, "cam1", 3)
    kept = SignedTreeHead.from_dict((await started.head_for_inspector())["tree_head"])
    await add_segments(started, "cam1", 2, start=T0 + 5000)
    await started.log.sign_head()
    later = await started.head_for_inspector(kept.tree_size)
    head = SignedTreeHead.from_dict(later["tree_head"])
    verify_tree_head(head, load_public_key(later["public_key"].encode()))
    verify_consistency(kept.tree_size, head.tree_size, kept.root_hash, head.root_hash,
                       [bytes.fromhex(p) for p in later["consistency_proof"]])
    result = await started.export("inspector1", ["cam1"], T0, T0 + 8000, "复核", tmp_path / "b.zip", as_zip=True)
    key_file = tmp_path / "log.pem"
    key_file.write_text(later["public_key"])
    assert verify_export_cli(str(result.path), str(key_file)) == 0
    assert "校验通过" in capsys.readouterr().out
    assert verify_export_cli(str(tmp_path / "missing.zip")) == 1


async def test_full_disk_pauses_recording_with_an_alarm(started: RecorderService) -> None:
    segs = await add_segments(started, "cam1", 2)
    await started.holds.place("inspector1", ["cam1"], T0, T0 + 2000, "全部保全")
    no_age = RetentionPolicy(max_days=None)
    # Ask for more free space than any disk has: it cannot be freed.
    started.config = dataclasses.replace(started.config, retention=RetentionConfig(no_age, min_free_bytes=1 << 62))
    assert await started.run_retention() == 0  # held footage is never deleted, even for space
    assert started.recording_paused and "磁盘空间不足" in started.alarms[0]
    assert all(started.store.exists(s.key) for s in segs)
    started.config = dataclasses.replace(started.config, retention=RetentionConfig(no_age, min_free_bytes=0))
    await started.run_retention()
    assert not started.recording_paused


async def test_two_processes_append_to_one_log(started: RecorderService, recorder_db: Database) -> None:
    """The web role appends view leaves while the recorder appends segments: indices never clash."""
    other = TransparencyLog(PgLogStorage(recorder_db), started.keys, started.log.log_id)
    await other.open()
    await add_segments(started, "cam1", 2)
    i = await other.append(AccessLeaf("view", "inspector1", ("cam1",), T0, T0 + 2000, "核查", T0))
    j = await started.log.append(AccessLeaf("view", "inspector2", ("cam1",), T0, T0 + 2000, "核查", T0))
    assert i == 2 and j == 3  # `started` caught up with the other writer's leaf before appending
    head = await other.sign_head()
    assert head.tree_size == 4 and head.root_hash == (await started.log.sign_head()).root_hash


async def test_bookmarks_are_shared(started: RecorderService) -> None:
    await started.index.add_bookmark("cam1", T0 + 1500, "办事群众与窗口人员争执", "inspector1")
    await started.index.add_bookmark("cam2", T0 + 1500, "other camera", "inspector2")
    marks = await started.index.bookmarks(["cam1"], T0, T0 + 2000)
    assert [(m["at_ms"], m["note"], m["created_by"]) for m in marks] == [
        (T0 + 1500, "办事群众与窗口人员争执", "inspector1")]
