"""The inspector's timeline (recorder.timeline) explains every part of a range: recorded, logged gaps by
cause, retention, the edges."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from recorder.index import Span
from recorder.timeline import explain_timeline, gap_reason

NOW = 1_000_000
SEG = 6000


def kinds(spans: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(s["kind"], s["reason"]) for s in spans]


def test_gap_causes_are_classified() -> None:
    assert gap_reason("") == "unknown"
    assert gap_reason("recorder not running") == "recorder_down"
    assert gap_reason("camera removed from recording") == "camera_removed"
    assert gap_reason("camera settings changed") == "camera_changed"
    assert gap_reason("ConnectionRefusedError: [Errno 111] Connection refused") == "camera_down"


def test_a_logged_gap_between_segments_and_retention() -> None:
    spans = [Span("c", 100_000, 200_000, "deleted"), Span("c", 200_000, 300_000, "recorded"),
             Span("c", 300_000, 310_000, "gap", "ConnectionRefusedError"), Span("c", 310_000, 400_000, "recorded")]
    out = explain_timeline(spans, [(300_000, 310_000, "ConnectionRefusedError")], 100_000, 400_000, NOW,
                           recorded_before=False, state="recording", last_error=None, segment_ms=SEG)
    assert kinds(out) == [("deleted", "retention"), ("recorded", ""), ("gap", "camera_down"), ("recorded", "")]
    assert out[2]["cause"] == "ConnectionRefusedError"


def test_edges_before_recording_and_future() -> None:
    spans = [Span("c", 500_000, NOW - 3000, "recorded")]
    out = explain_timeline(spans, [], 400_000, NOW + 60_000, NOW, recorded_before=False, state="recording",
                           last_error=None, segment_ms=SEG)
    assert kinds(out) == [("gap", "before_recording"), ("recorded", ""), ("gap", "in_progress"), ("future", "future")]
    assert out[-1]["start_ms"] == NOW and out[-1]["end_ms"] == NOW + 60_000


def test_trailing_hole_while_the_camera_is_down_or_not_recorded() -> None:
    spans = [Span("c", 400_000, 600_000, "recorded")]
    down = explain_timeline(spans, [], 400_000, 900_000, NOW, recorded_before=True, state="disconnected",
                            last_error="timed out", segment_ms=SEG)
    assert kinds(down)[-1] == ("gap", "camera_down") and down[-1]["cause"] == "timed out"
    gone = explain_timeline(spans, [], 400_000, 900_000, NOW, recorded_before=True, state=None,
                            last_error=None, segment_ms=SEG)
    assert kinds(gone)[-1] == ("gap", "not_recording")
    # a logged gap leaf overlapping the hole wins over guesses
    logged = explain_timeline(spans, [(600_000, 700_000, "recorder not running")], 400_000, 900_000, NOW,
                              recorded_before=True, state="recording", last_error=None, segment_ms=SEG)
    assert kinds(logged)[-1] == ("gap", "recorder_down")


def test_nothing_recorded() -> None:
    out = explain_timeline([], [], 0, 100_000, NOW, recorded_before=False, state="recording", last_error=None,
                           segment_ms=SEG)
    assert kinds(out) == [("gap", "before_recording")]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20), st.sampled_from(["recorded", "deleted", "gap"])),
                max_size=12),
       st.integers(0, 400), st.integers(1, 600), st.integers(0, 1200))
def test_spans_tile_the_range(raw: list[tuple[int, int, str]], start: int, length: int, now: int) -> None:
    """Whatever the index returns, the output covers [start, end) in order, without overlap."""
    spans, cursor = [], 0
    for offset, size, kind in raw:
        cursor += offset
        spans.append(Span("c", cursor * 1000, (cursor + size) * 1000, kind))
        cursor += size
    start_ms, end_ms = start * 1000, (start + length) * 1000
    out = explain_timeline(spans, [], start_ms, end_ms, now * 1000, recorded_before=False, state="recording",
                           last_error=None, segment_ms=SEG)
    assert out and out[0]["start_ms"] <= start_ms + 500 and out[-1]["end_ms"] >= end_ms - 500
    for a, b in zip(out, out[1:], strict=False):
        assert a["end_ms"] <= b["start_ms"] <= a["end_ms"] + 500
    assert all(start_ms <= s["start_ms"] < s["end_ms"] <= end_ms for s in out)
