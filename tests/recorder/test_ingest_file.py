"""The camera worker on a file source (no GStreamer needed): segments, pause on full disk, bad sources."""

from __future__ import annotations

import time
from pathlib import Path

from recorder.ingest import CameraConfig, CameraWorker, CommittedSegment, Gap
from recorder.segmenter import CutPolicy
from recorder.store import DirectoryStore
from tests.recorder.recorder_media import decoded_frames, write_h264_mp4


def run_worker(tmp_path: Path, source: Path | str, paused: bool = False, seconds: float = 3.0,
               ) -> tuple[CameraWorker, list[CommittedSegment], list[Gap], DirectoryStore]:
    store = DirectoryStore(tmp_path / "rec")
    segments: list[CommittedSegment] = []
    gaps: list[Gap] = []
    worker = CameraWorker(CameraConfig("cam1", str(source)), store, segments.append, gaps.append,
                          policy=CutPolicy(1.0), realtime=True)
    if paused:
        worker.pause()
    worker.start()
    time.sleep(seconds)
    worker.stop()
    return worker, segments, gaps, store


def test_file_source_is_cut_on_key_frames_and_committed(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_h264_mp4(clip, seconds=2.5, fps=10)  # key frame every second
    worker, segments, _, store = run_worker(tmp_path, clip)
    assert [s.video_frames for s in segments[:2]] == [10, 10]
    assert sum(s.video_frames for s in segments) == 25
    for a, b in zip(segments, segments[1:], strict=False):
        assert b.start_ms == a.end_ms  # contiguous within one connection
    for s in segments:
        path = store.local_path(s.key)
        assert path is not None and decoded_frames(path) == s.video_frames
    assert worker.health.segments == len(segments) and worker.max_lag_s < 0.5


def test_paused_worker_writes_nothing(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_h264_mp4(clip, seconds=2.0, fps=10)
    worker, segments, _, store = run_worker(tmp_path, clip, paused=True)
    assert segments == [] and list(store.keys()) == []
    assert not list((tmp_path / "rec" / ".staging").rglob("*.part"))
    assert worker.health.video_frames > 0  # still connected: health stays visible


def test_malformed_and_missing_sources_are_marked_not_fatal(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    for source in (junk, tmp_path / "missing.mp4"):
        worker, segments, _, _ = run_worker(tmp_path, source, seconds=1.5)
        assert segments == []
        assert worker.health.last_error and worker.health.state == "stopped"
        assert 1 <= worker.health.reconnects <= 3  # back-off, not a tight loop
