"""`S3Store` against a real S3-compatible server on loopback (moto's server), and the recorder on it."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError
from moto.server import ThreadedMotoServer

from config.settings import RecorderSettings
from core.db import Database
from core.runtime import CoreServices
from recorder.capability import recorder_config as settings_to_config
from recorder.capability import start as start_recorder
from recorder.ingest import CameraConfig, CameraWorker, CommittedSegment, sha256_file
from recorder.s3_store import S3Config, S3Store, S3StoreError
from recorder.segmenter import CutPolicy
from recorder.service import RecorderService
from recorder.store import StoreError, segment_key
from recorder.verify import verify_export
from tests.recorder.helpers import recorder_config
from tests.recorder.recorder_media import decoded_frames, write_h264_mp4
from tests.recorder.rtsp_cameras import SyntheticCamera, free_tcp_port, needs_rtsp

T0 = 1_795_000_000_000
KEY_ID, SECRET = "recorder-test", "s3cr3t-never-logged-9f8e7d"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, stopped after the module."""
    port = free_tcp_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def raw_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    raw_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    d.mkdir()
    (d / "s3-test.json").write_text(json.dumps({"access_key_id": KEY_ID, "secret_access_key": SECRET}))
    return d


def s3_config(endpoint: str, bucket: str, keys_dir: Path, **over: Any) -> S3Config:
    return S3Config(endpoint_url=endpoint, bucket=bucket, prefix="hall-rec/",
                    credentials_file=keys_dir / "s3-test.json", **over)


def object_names(endpoint: str, bucket: str) -> list[str]:
    listing = raw_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def stage(store: S3Store, camera: str, i: int, seconds: float = 0.5) -> tuple[Path, str]:
    staging = store.staging_path(camera, f"t{i}.part")
    write_h264_mp4(staging, seconds=seconds, seed=i)
    return staging, segment_key(camera, T0 + i * 1000, T0 + (i + 1) * 1000)


def test_commit_open_keys_delete(s3_endpoint: str, bucket: str, keys_dir: Path, tmp_path: Path) -> None:
    store = S3Store(s3_config(s3_endpoint, bucket, keys_dir), tmp_path / "rec")
    committed = {}
    for camera, i in (("cam1", 0), ("cam1", 1), ("cam2", 0)):
        staging, key = stage(store, camera, i)
        committed[key] = staging.read_bytes()
        store.commit(staging, key)
        assert not staging.exists()  # like rename: the staging file is gone once committed
    assert object_names(s3_endpoint, bucket) == sorted("hall-rec/" + k for k in committed)
    assert list(store.keys()) == sorted(committed)
    assert list(store.keys("cam1/")) == sorted(k for k in committed if k.startswith("cam1/"))
    day = next(iter(committed)).split("/")[1]
    assert list(store.keys(f"cam2/{day}/")) == [k for k in sorted(committed) if k.startswith("cam2/")]
    assert sorted(store.recent_keys()) == sorted(committed)
    key = sorted(committed)[0]
    with store.open(key) as f:
        assert f.read() == committed[key]
    path = store.local_path(key)
    assert path is not None and path.read_bytes() == committed[key] and decoded_frames(path) == 5
    assert store.exists(key) and store.size(key) == len(committed[key])
    store.delete(key)
    assert not store.exists(key) and store.local_path(key) is None and not path.exists()
    with pytest.raises(FileNotFoundError):
        store.open(key)
    with pytest.raises(StoreError):
        store.open("../../etc/passwd")
    with pytest.raises(StoreError):
        list(store.keys("../"))
    assert SECRET not in repr(store)


def test_a_corrupted_or_interrupted_upload_never_appears(s3_endpoint: str, bucket: str, keys_dir: Path,
                                                          tmp_path: Path) -> None:
    """The server's copy is checked (size, ETag = MD5, SHA-256): a bad one is removed; staging stays."""
    store = S3Store(s3_config(s3_endpoint, bucket, keys_dir), tmp_path / "rec")
    staging, key = stage(store, "cam1", 0)

    def corrupt(request: Any, **_: Any) -> None:  # one byte flipped on the wire
        body = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
        request.body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]

    store.client.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(S3StoreError, match="not verified"):
        store.commit(staging, key)
    store.client.meta.events.unregister("before-send.s3.PutObject", corrupt)
    assert not store.exists(key) and object_names(s3_endpoint, bucket) == []
    assert staging.exists()

    def drop(request: Any, **_: Any) -> None:  # the connection dies mid-upload
        raise ConnectionClosedError(endpoint_url=request.url)

    store.client.meta.events.register("before-send.s3.PutObject", drop)
    with pytest.raises(S3StoreError, match="upload of"):
        store.commit(staging, key)
    store.client.meta.events.unregister("before-send.s3.PutObject", drop)
    assert object_names(s3_endpoint, bucket) == [] and staging.exists()
    # Start-up recovery removes what was open; a clean commit then works.
    assert store.discard_staging() == [staging]
    staging, key = stage(store, "cam1", 0)
    store.commit(staging, key)
    assert store.exists(key)


def test_cache_is_bounded_and_follows_the_bucket(s3_endpoint: str, bucket: str, keys_dir: Path,
                                                  tmp_path: Path) -> None:
    store = S3Store(s3_config(s3_endpoint, bucket, keys_dir, cache_max_bytes=1), tmp_path / "rec")
    keys = []
    for i in range(3):
        staging, key = stage(store, "cam1", i)
        store.commit(staging, key)
        keys.append(key)
    cached = sorted(p.name for p in (tmp_path / "rec" / ".cache").rglob("*.mp4"))
    assert cached == [keys[-1].rsplit("/", 1)[1]]  # only the newest copy is kept at a 1-byte budget
    first = store.local_path(keys[0])
    assert first is not None and sha256_file(first) == hashlib.sha256(store.open(keys[0]).read()).hexdigest()
    # The object changes in the bucket: the cached copy is not served any more.
    raw_client(s3_endpoint).put_object(Bucket=bucket, Key="hall-rec/" + keys[0], Body=b"replaced")
    again = store.local_path(keys[0])
    assert again is not None and again.read_bytes() == b"replaced"


def test_bad_configuration_fails_at_start_and_writes_nothing(s3_endpoint: str, bucket: str, keys_dir: Path,
                                                             tmp_path: Path) -> None:
    root = tmp_path / "rec"
    with pytest.raises(S3StoreError, match="bucket does not exist"):
        S3Store(s3_config(s3_endpoint, "no-such-bucket", keys_dir), root)
    dead = f"http://127.0.0.1:{free_tcp_port()}"
    t0 = time.monotonic()
    with pytest.raises(S3StoreError, match="unreachable") as exc:
        S3Store(s3_config(dead, bucket, keys_dir, connect_timeout_s=1.0), root)
    assert time.monotonic() - t0 < 20 and dead in str(exc.value)
    (keys_dir / "s3-broken.json").write_text('{"access_key_id": "x"}')
    with pytest.raises(S3StoreError, match="cannot read S3 credentials") as exc:
        S3Store(S3Config(s3_endpoint, bucket, credentials_file=keys_dir / "s3-broken.json"), root)
    with pytest.raises(S3StoreError, match="cannot read S3 credentials"):
        S3Store(S3Config(s3_endpoint, bucket, credentials_file=keys_dir / "s3-missing.json"), root)
    assert not root.exists() and object_names(s3_endpoint, bucket) == []


async def test_service_with_bad_store_writes_nothing(recorder_db: Database, s3_endpoint: str, keys_dir: Path,
                                                    tmp_path: Path) -> None:
    config = recorder_config(tmp_path, s3=s3_config(s3_endpoint, "missing-bucket", keys_dir))
    with pytest.raises(S3StoreError, match="missing-bucket"):
        RecorderService(recorder_db, config)
    assert await recorder_db.fetchval("SELECT count(*) FROM recorder_log_leaves") == 0
    assert not (tmp_path / "recordings").exists()


def test_settings_select_the_store(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    from config.settings import Settings

    settings = Settings(var_dir=tmp_path, recorder={"s3": {"endpoint_url": s3_endpoint, "bucket": bucket,
                                                           "prefix": "x/", "credentials": "minio"}})
    config = settings_to_config(settings)
    assert config.s3 is not None and config.s3.bucket == bucket
    assert config.s3.credentials_file == tmp_path / "keys" / "s3-minio.json"
    assert settings_to_config(Settings(var_dir=tmp_path)).s3 is None  # the directory tree stays the default


def test_file_camera_records_into_s3(s3_endpoint: str, bucket: str, keys_dir: Path, tmp_path: Path) -> None:
    """The camera worker (PyAV, key-frame cuts) writes real segments straight into the bucket."""
    clip = tmp_path / "clip.mp4"
    write_h264_mp4(clip, seconds=2.5, fps=10)
    store = S3Store(s3_config(s3_endpoint, bucket, keys_dir), tmp_path / "rec")
    segments: list[CommittedSegment] = []
    worker = CameraWorker(CameraConfig("cam1", str(clip)), store, segments.append, lambda gap: None,
                          policy=CutPolicy(1.0), realtime=True)
    worker.start()
    time.sleep(3.0)
    worker.stop()
    assert sum(s.video_frames for s in segments) == 25 and len(segments) >= 3
    assert list(store.keys("cam1/")) == [s.key for s in segments]
    for s in segments:
        path = store.local_path(s.key)
        assert path is not None and sha256_file(path) == s.sha256 and decoded_frames(path) == s.video_frames
    assert not list((tmp_path / "rec" / ".staging").rglob("*.part"))


async def commit_segments(svc: RecorderService, camera: str, count: int) -> list[CommittedSegment]:
    """Real 1 s segments through the service's normal path (store commit → leaf → index)."""
    out = []
    for i in range(count):
        s, e = T0 + i * 1000, T0 + (i + 1) * 1000
        staging = svc.store.staging_path(camera, f"t{i}.part")
        write_h264_mp4(staging, seconds=0.5, seed=i)
        seg = CommittedSegment(camera, segment_key(camera, s, e), s, e, staging.stat().st_size,
                               sha256_file(staging), "avc1.64000c", 160, 96, False, 5)
        await asyncio.to_thread(svc.store.commit, staging, seg.key)
        await svc._record_segment(seg)
        out.append(seg)
    return out


async def test_export_from_s3_verifies_and_tampering_is_detected(
        recorder_db: Database, s3_endpoint: str, bucket: str, keys_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = recorder_config(tmp_path, s3=s3_config(s3_endpoint, bucket, keys_dir), retention_interval_s=3600.0)
    svc = RecorderService(recorder_db, config)
    await svc.start()
    try:
        segs = await commit_segments(svc, "cam1", 4)
        assert await svc.audit_store() == []
        good = await svc.export("inspector1", ["cam1"], T0, T0 + 4000, "投诉核查", tmp_path / "good")
        report = verify_export(good.path)
        assert report.ok and good.segments == 4, report.format()
        # Someone with bucket access overwrites segment 2.
        tampered = bytearray(raw_client(s3_endpoint).get_object(
            Bucket=bucket, Key="hall-rec/" + segs[2].key)["Body"].read())
        tampered[200] ^= 0x01
        raw_client(s3_endpoint).put_object(Bucket=bucket, Key="hall-rec/" + segs[2].key, Body=bytes(tampered))
        assert await svc.audit_store() == [f"changed: {segs[2].key}"]
        bad = await svc.export("inspector1", ["cam1"], T0, T0 + 4000, "复核", tmp_path / "bad.zip", as_zip=True)
        report = verify_export(bad.path)
        assert not report.ok and report.failing_segments == [f"segments/cam1/{segs[2].start_ms}-{segs[2].end_ms}.mp4"]
        # A deleted object is named too.
        raw_client(s3_endpoint).delete_object(Bucket=bucket, Key="hall-rec/" + segs[3].key)
        assert f"missing: {segs[3].key}" in await svc.audit_store()
    finally:
        await svc.stop()
    assert caplog.records and SECRET not in caplog.text  # the secret is read from var/keys, never logged


async def test_recovery_indexes_an_orphan_object(recorder_db: Database, s3_endpoint: str, bucket: str,
                                                 keys_dir: Path, tmp_path: Path) -> None:
    """A crash between upload and index: start-up finds the object by listing and indexes it."""
    config = recorder_config(tmp_path, s3=s3_config(s3_endpoint, bucket, keys_dir), retention_interval_s=3600.0)
    svc = RecorderService(recorder_db, config)
    await svc.start()
    await commit_segments(svc, "cam1", 2)
    assert isinstance(svc.store, S3Store)
    staging, key = stage(svc.store, "cam1", 5)
    svc.store.commit(staging, key)  # committed, never logged or indexed
    open_seg = svc.store.staging_path("cam1", "open.part")
    open_seg.write_bytes(b"half a segment")
    await svc.stop()
    again = RecorderService(recorder_db, config)
    await again.start()
    try:
        assert dataclasses.astuple(again.recovery) == (1, 1, 1)  # staging discarded, reindexed, relogged
        assert await again.index.has_key(key) and await again.audit_store() == []
    finally:
        await again.stop()


@needs_rtsp
@pytest.mark.slow
async def test_rtsp_cameras_record_into_s3(recorder_db: Database, s3_endpoint: str, bucket: str, keys_dir: Path,
                                           tmp_path: Path, cameras: list[SyntheticCamera]) -> None:
    config = recorder_config(tmp_path, s3=s3_config(s3_endpoint, bucket, keys_dir), segment_seconds=2.0,
                             retention_interval_s=3600.0)
    svc = RecorderService(recorder_db, config)
    await svc.start([CameraConfig(c.path, c.url, label=c.label) for c in cameras])
    await asyncio.sleep(9.0)
    await svc.stop()
    segs = await svc.index.segments(["cam1", "cam2"], 0, 2**62)
    assert {s.camera for s in segs} == {"cam1", "cam2"} and len(segs) >= 4
    assert sorted(svc.store.keys()) == sorted(s.store_key for s in segs)
    for seg in segs:
        path = svc.store.local_path(seg.store_key)
        assert path is not None and sha256_file(path) == seg.sha256 and decoded_frames(path) > 0
    start, end = min(s.start_ms for s in segs), max(s.end_ms for s in segs)
    result = await svc.export("inspector1", ["cam1", "cam2"], start, end, "抽查", tmp_path / "bundle")
    assert verify_export(result.path).ok


async def test_capability_starts_on_s3_or_refuses_clearly(services: CoreServices, s3_endpoint: str, bucket: str,
                                                          tmp_path: Path) -> None:
    """`commandcenter up` with [recorder.s3]: a missing bucket stops start-up before anything is written."""
    keys = Path(services.settings.var_dir) / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "s3-test.json").write_text(json.dumps({"access_key_id": KEY_ID, "secret_access_key": SECRET}))
    s3 = {"endpoint_url": s3_endpoint, "bucket": "not-there", "credentials": "test"}
    services.settings.recorder = RecorderSettings(demo_cameras=False, s3=s3)
    with pytest.raises(S3StoreError, match="not-there"):
        await start_recorder(services)
    assert await services.db.fetchval("SELECT count(*) FROM recorder_log_leaves") == 0
    assert not (Path(services.settings.var_dir) / "recordings").exists()
    services.settings.recorder = RecorderSettings(demo_cameras=False, s3={**s3, "bucket": bucket})
    role = await start_recorder(services)
    assert role is not None and isinstance(role.service.store, S3Store)
    await role.stop()
    assert role.service.log.size == 0 and role.service.log.latest_head is not None
