"""Per-hall retention: halls → cameras from the site plan, overrides, oldest first, holds exempt, leaves kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import Settings, load_settings
from config.site_plan import load_site_plan
from core.db import Database
from recorder.cameras import planned_cameras
from recorder.capability import RecorderConfigError, recorder_config
from recorder.index import IndexedSegment
from recorder.ingest import CommittedSegment, sha256_file
from recorder.leaves import RetentionLeaf, decode_leaf
from recorder.retention import DAY_MS, HoldRange, RetentionConfig, RetentionPolicy, plan_retention
from recorder.service import RecorderService
from recorder.store import segment_key
from recorder.verify import verify_export
from tests.recorder.helpers import recorder_config as make_config
from tests.recorder.recorder_media import write_h264_mp4

T0 = 1_795_000_000_000
NOW = T0 + 200 * DAY_MS
DEMO_PLAN = Path(__file__).resolve().parents[2] / "config" / "demo" / "yunfu.toml"


def seg(i: int, camera: str, start_ms: int, size: int = 100) -> IndexedSegment:
    return IndexedSegment(i, camera, start_ms, start_ms + 1000, size, "0" * 64, "avc1", 160, 96, False,
                          segment_key(camera, start_ms, start_ms + 1000), "recorder", i, False)


HALLS = {"a1": "hall-a", "a2": "hall-a", "b1": "hall-b"}


def test_hall_days_override_the_default() -> None:
    segs = [seg(i, cam, NOW - days * DAY_MS) for i, (cam, days) in
            enumerate([("a1", 100), ("a1", 40), ("a2", 100), ("b1", 100), ("b1", 40), ("b1", 10)])]
    config = RetentionConfig(default=RetentionPolicy(max_days=30), min_free_bytes=0,
                             per_hall={"hall-a": RetentionPolicy(max_days=90)}, camera_hall=HALLS)
    plan = plan_retention(segs, [], config, NOW, free_bytes=1 << 40)
    # hall-a keeps 90 days (its 100-day-old footage goes); hall-b has the 30-day default.
    assert sorted((s.camera, s.start_ms) for s, _ in plan.delete) == sorted(
        [("a1", NOW - 100 * DAY_MS), ("a2", NOW - 100 * DAY_MS), ("b1", NOW - 100 * DAY_MS),
         ("b1", NOW - 40 * DAY_MS)])
    # A camera's own policy beats its hall's.
    config.per_camera["a1"] = RetentionPolicy(max_days=20)
    plan = plan_retention(segs, [], config, NOW, free_bytes=1 << 40)
    assert ("a1", NOW - 40 * DAY_MS) in {(s.camera, s.start_ms) for s, _ in plan.delete}


def test_hall_bytes_are_the_hall_total_oldest_first_across_cameras_holds_exempt() -> None:
    # Interleaved 1 s segments of a1/a2 (hall-a) and b1 (hall-b), 100 bytes each.
    segs = [seg(i, cam, T0 + i * 1000) for i, cam in enumerate(["a1", "a2", "b1"] * 4)]
    config = RetentionConfig(default=RetentionPolicy(max_days=None, max_bytes=150), min_free_bytes=0,
                             per_hall={"hall-a": RetentionPolicy(max_days=None, max_bytes=450)}, camera_hall=HALLS)
    held = segs[1]  # a2's oldest segment is under a legal hold
    plan = plan_retention(segs, [HoldRange(("a2",), held.start_ms, held.end_ms)], config, NOW, free_bytes=1 << 40)
    hall_a = [(s.id, why) for s, why in plan.delete if s.camera in ("a1", "a2")]
    # 8 hall-a segments (800 bytes), budget 450: delete the 4 oldest not held (ids 0, 3, 4, 6).
    assert hall_a == [(0, "hall hall-a max_bytes=450"), (3, "hall hall-a max_bytes=450"),
                      (4, "hall hall-a max_bytes=450"), (6, "hall hall-a max_bytes=450")]
    # The default per-camera byte limit no longer applies inside hall-a, but still applies to b1.
    assert [s.id for s, _ in plan.delete if s.camera == "b1"] == [2, 5, 8]
    assert held.id not in {s.id for s, _ in plan.delete}
    # The hall budget counts cameras with their own policy too.
    config.per_camera["a1"] = RetentionPolicy(max_days=None, max_bytes=None)
    plan = plan_retention(segs, [], config, NOW, free_bytes=1 << 40)
    assert sum(s.size for s in segs if s.camera in ("a1", "a2")) - sum(
        s.size for s, _ in plan.delete if s.camera in ("a1", "a2")) <= 450


def write_config(tmp_path: Path, recorder_toml: str) -> Path:
    path = tmp_path / "cc.toml"
    path.write_text(f'var_dir = "{tmp_path}"\nsite_plan = "{DEMO_PLAN}"\n[recorder]\n{recorder_toml}\n')
    return path


def test_settings_map_halls_from_the_site_plan(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, """
retention_days = 30
retention_max_bytes = 1000000
hall_retention = {"hall-city" = {days = 90, max_bytes = 2000000000000}, "hall-yunan-d" = {max_bytes = 5000}}
camera_retention = {"cam-city-w01" = {days = 180}}
"""))
    planned = planned_cameras(load_site_plan(settings.site_plan))
    config = recorder_config(settings, planned).retention
    assert config.per_hall["hall-city"] == RetentionPolicy(max_days=90, max_bytes=2_000_000_000_000)
    assert config.per_hall["hall-yunan-d"] == RetentionPolicy(max_days=30, max_bytes=5000)  # days inherited
    assert config.per_camera["cam-city-w01"] == RetentionPolicy(max_days=180, max_bytes=1_000_000)
    assert config.camera_hall["cam-city-w02"] == "hall-city"
    assert config.policy("cam-city-w02") == RetentionPolicy(max_days=90, max_bytes=None)
    assert config.hall_cameras()["hall-city"] >= {"cam-city-w01", "cam-city-w02", "cam-city-w03", "cam-city-w04"}
    other = next(c.camera_id for c in planned if c.hall not in ("hall-city", "hall-yunan-d"))
    assert config.policy(other) == config.default
    # A hall or camera the plan does not have is an error at start, not silently ignored.
    typo = Settings(var_dir=tmp_path, recorder={"hall_retention": {"hall-ctiy": {"days": 90}}})
    with pytest.raises(RecorderConfigError, match="hall-ctiy.*known: .*hall-city"):
        recorder_config(typo, planned)
    with pytest.raises(RecorderConfigError, match="cam-x"):
        recorder_config(Settings(var_dir=tmp_path, recorder={"camera_retention": {"cam-x": {"days": 1}}}), planned)


@pytest.mark.parametrize(("toml", "message"), [
    ('hall_retention = {"hall-city" = {}}', "set days and/or max_bytes"),
    ('hall_retention = {"hall-city" = {days = -1}}', "days"),
    ('hall_retention = {"hall-city" = {max_bytes = 0}}', "max_bytes"),
    ('hall_retention = {"hall-city" = {days = 9, weeks = 2}}', "weeks"),
    ('hall_retention = {"../x" = {days = 9}}', "not a hall/camera id"),
    ('s3 = {bucket = "recs"}', "endpoint_url"),
    ('s3 = {endpoint_url = "http://127.0.0.1:9000"}', "bucket"),
    ('s3 = {endpoint_url = "http://127.0.0.1:9000", bucket = "Bad_Bucket"}', "bucket"),
    ('s3 = {endpoint_url = "ftp://x", bucket = "recs"}', "endpoint_url must be http"),
    ('s3 = {endpoint_url = "http://k:secret@h", bucket = "recs"}', "must not contain credentials"),
    ('s3 = {endpoint_url = "http://h", bucket = "recs", credentials = "../../etc/passwd"}', "credentials"),
])
def test_bad_recorder_settings_are_named(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write_config(tmp_path, toml))
    assert message in str(exc.value)


async def commit(svc: RecorderService, camera: str, i: int) -> CommittedSegment:
    s, e = T0 + i * 1000, T0 + (i + 1) * 1000
    staging = svc.store.staging_path(camera, f"{camera}-{i}.part")
    write_h264_mp4(staging, seconds=0.5, seed=i)
    committed = CommittedSegment(camera, segment_key(camera, s, e), s, e, staging.stat().st_size,
                                 sha256_file(staging), "avc1.64000c", 160, 96, False, 5)
    svc.store.commit(staging, committed.key)
    await svc._record_segment(committed)
    return committed


async def test_hall_budget_on_the_recorder(recorder_db: Database, tmp_path: Path) -> None:
    """Through the service: hall-a's total is cut oldest first across its cameras; held and other halls kept."""
    retention = RetentionConfig(default=RetentionPolicy(max_days=None), min_free_bytes=0,
                                per_hall={"hall-a": RetentionPolicy(max_days=None, max_bytes=1)}, camera_hall=HALLS)
    svc = RecorderService(recorder_db, make_config(tmp_path, retention=retention, retention_interval_s=3600.0))
    await svc.start()
    try:
        segs = [await commit(svc, cam, i) for i, cam in enumerate(["a1", "a2", "b1"] * 3)]
        hall_a = [s for s in segs if s.camera != "b1"]
        budget = hall_a[-1].size + hall_a[-2].size + hall_a[1].size
        retention.per_hall["hall-a"] = RetentionPolicy(max_days=None, max_bytes=budget)
        await svc.holds.place("inspector1", ["a2"], hall_a[1].start_ms, hall_a[1].end_ms, "投诉 2026-9 证据保全")
        size_before = svc.log.size
        assert await svc.run_retention() == 3
        live = {s.store_key for s in await svc.index.segments(["a1", "a2", "b1"], 0, 2**62)}
        kept = {hall_a[1].key, hall_a[-2].key, hall_a[-1].key} | {s.key for s in segs if s.camera == "b1"}
        assert live == kept
        assert {s.key for s in segs if svc.store.exists(s.key)} == kept
        # Leaves stay; retention leaves (one per camera and reason) name the deleted segment leaves.
        leaves = [decode_leaf(await svc.log.leaf_bytes(i)) for i in range(size_before, svc.log.size)]
        assert all(isinstance(leaf, RetentionLeaf) and leaf.policy == f"hall hall-a max_bytes={budget}"
                   for leaf in leaves)
        deleted = [s for s in await svc.index.segments(["a1", "a2"], 0, 2**62, include_deleted=True) if s.deleted]
        named = {i for leaf in leaves if isinstance(leaf, RetentionLeaf) for i in leaf.segment_leaves}
        assert named == {s.leaf_index for s in deleted} and len(deleted) == 3
        result = await svc.export("inspector1", ["a1", "a2"], T0, T0 + 9000, "复核", tmp_path / "bundle")
        report = verify_export(result.path)
        assert report.ok and "retention" in {e["kind"] for e in report.explained}
    finally:
        await svc.stop()
