"""Pure parts of the segmenter: cut policy, timestamp repair, codec strings, store keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.segmenter import CutPolicy, StreamClock, avc_codec_string
from recorder.store import DirectoryStore, StoreError, check_camera_id, parse_key, segment_key


def test_cut_only_on_key_frames_after_target() -> None:
    policy = CutPolicy(6.0)
    assert not policy.should_cut(0.0, 5.9, True)
    assert policy.should_cut(0.0, 5.995, True)  # RTP rounding slack
    assert not policy.should_cut(0.0, 9.0, False)  # never between key frames
    assert policy.should_cut(10.0, 16.0, True)


def test_stream_clock_continues_across_rtcp_rebase() -> None:
    clock = StreamClock()
    ts = [clock.map(i * 0.04, None) for i in range(95)]  # 0 .. 3.76 s
    # The demuxer re-bases to 0.008 s at the first RTCP report: not a gap.
    after = [clock.map(0.008 + i * 0.04, 3.8 + i * 0.04) for i in range(3)]
    assert after[0] == pytest.approx(ts[-1] + 0.04)
    assert after[2] - after[1] == pytest.approx(0.04)
    # A forward re-sync of +3.9 s while packets kept arriving: still continuous.
    jump = clock.map(after[-1] - clock.offset + 3.9 + 0.04, after[-1] + 0.04)
    assert jump == pytest.approx(after[-1] + 0.04)
    assert clock.resyncs == 2


def test_stream_clock_keeps_a_real_pause() -> None:
    clock = StreamClock()
    for i in range(50):
        clock.map(i * 0.04, i * 0.04)
    # No packets for 3 s by the wall clock, and the timestamps jump oddly: follow the wall clock.
    t = clock.map(100.0, 1.96 + 3.0)
    assert t == pytest.approx(4.96)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=60))
def test_stream_clock_never_goes_backwards_by_more_than_a_step(raw: list[float]) -> None:
    clock = StreamClock()
    out = [clock.map(t, None) for t in raw]
    for a, b in zip(out, out[1:], strict=False):
        assert b >= a - 0.5 - 1e-9


def test_avc_codec_strings() -> None:
    assert avc_codec_string(bytes.fromhex("01640028ffe1")) == "avc1.640028"
    assert avc_codec_string(bytes.fromhex("000000016742c01e") + b"\x00" * 8) == "avc1.42c01e"
    assert avc_codec_string(None) == "avc1.42e01e"


def test_store_keys_and_bad_ids() -> None:
    key = segment_key("cam-1", 1_795_000_000_000, 1_795_000_006_000)
    assert key == "cam-1/20261118/1795000000000-1795000006000.mp4"  # UTC day of the start
    assert parse_key(key).end_ms == 1_795_000_006_000
    for bad in ("", "../x", "a/b", ".hidden", "x" * 65, "摄像机"):
        with pytest.raises(StoreError):
            check_camera_id(bad)
    for bad_key in ("../../etc/passwd", "cam/20260101/1-2.mp4/..", "cam/2026/1-2.mp4"):
        with pytest.raises(StoreError):
            parse_key(bad_key)


def test_directory_store_commit_is_atomic_and_listable(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "rec")
    staging = store.staging_path("cam1", "a.part")
    staging.write_bytes(b"data")
    key = segment_key("cam1", 1000, 2000)
    store.commit(staging, key)
    assert not staging.exists() and store.exists(key) and list(store.keys()) == [key]
    assert list(store.keys("cam1/")) == [key]
    leftover = store.staging_path("cam1", "b.part")
    leftover.write_bytes(b"half")
    assert store.discard_staging() == [leftover] and not leftover.exists()
    with pytest.raises(StoreError):
        list(store.keys("../"))
