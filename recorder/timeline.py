"""An inspector's timeline of one camera: every part of a time range, recorded or explained.

`explain_timeline` is pure (spans, logged gaps, the camera's state and the time in; the timeline
out): it covers the range with recorded spans, gaps with a stable reason code (`gap_reason`:
recorder down, camera down/removed/changed), spans deleted by retention, and the edges: before
recording began, a segment still being written, the future. `camera_timeline` gathers those
inputs from a running `RecorderService`. `probe_fps` reads a segment's frame rate with PyAV so
the player can step frame by frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from recorder.index import CONTIGUOUS_MS, Span

if TYPE_CHECKING:
    from recorder.service import RecorderService

DEFAULT_FPS = 25.0


def gap_reason(cause: str) -> str:
    """A stable reason code for a gap cause the recorder logged (the page explains each code)."""
    if not cause:
        return "unknown"
    if cause.startswith("recorder not running"):
        return "recorder_down"
    if cause.startswith("camera removed"):
        return "camera_removed"
    if cause.startswith("camera settings changed"):
        return "camera_changed"
    return "camera_down"


def explain_timeline(spans: list[Span], gaps: list[tuple[int, int, str]], start_ms: int, end_ms: int,
                     now_ms: int, recorded_before: bool, state: str | None, last_error: str | None,
                     segment_ms: int) -> list[dict[str, Any]]:
    """Cover [start_ms, end_ms) with recorded spans and explained holes (pure).

    `spans` come from the index (recorded / gap / deleted between segments); `gaps` are the
    logged gap leaves (start, end, cause); `state` is the camera's live health (None when the
    recorder is not recording it). Holes before the first and after the last segment get a
    reason too: before recording began, camera down now, segment still being written, future.
    """
    out: list[dict[str, Any]] = []

    def cause_at(a: int, b: int) -> str | None:
        return next((c for gs, ge, c in gaps if gs < b and ge > a), None)

    def hole(a: int, b: int, leading: bool, trailing: bool) -> None:
        if b <= a:
            return
        if trailing and b > now_ms:  # the part still to come
            hole(a, min(b, now_ms), leading, trailing)
            if max(a, now_ms) < b:
                out.append({"start_ms": max(a, now_ms), "end_ms": b, "kind": "future", "reason": "future", "cause": ""})
            return
        cause = cause_at(a, b)
        if cause is not None:
            reason = gap_reason(cause)
        elif leading and not recorded_before:
            reason = "before_recording"
        elif trailing and state is None:
            reason, cause = "not_recording", "recorder not recording this camera"
        elif trailing and state in ("disconnected", "error", "connecting"):
            reason, cause = "camera_down", last_error or state
        elif trailing and now_ms - a <= 2 * segment_ms + 2000:
            reason = "in_progress"
        else:
            reason = "unknown"
        out.append({"start_ms": a, "end_ms": b, "kind": "gap", "reason": reason, "cause": cause or ""})

    cursor = start_ms
    first = True
    for span in spans:
        a, b = max(span.start_ms, start_ms), min(span.end_ms, end_ms)
        if b <= a:
            continue
        if a - cursor > CONTIGUOUS_MS:
            hole(cursor, a, leading=first, trailing=False)
        if span.kind == "recorded":
            out.append({"start_ms": a, "end_ms": b, "kind": "recorded", "reason": "", "cause": ""})
        elif span.kind == "deleted":
            out.append({"start_ms": a, "end_ms": b, "kind": "deleted", "reason": "retention",
                        "cause": "deleted by the retention policy"})
        else:
            cause = span.cause or cause_at(a, b) or ""
            out.append({"start_ms": a, "end_ms": b, "kind": "gap", "reason": gap_reason(cause), "cause": cause})
        cursor = max(cursor, b)
        first = False
    if end_ms - cursor > CONTIGUOUS_MS:
        hole(cursor, end_ms, leading=first, trailing=True)
    return out


async def camera_timeline(service: RecorderService, camera: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    """One camera's explained timeline over the range, now: `spans` (see `explain_timeline`),
    `recorded_ms` (how much of the range was recorded) and the camera's live `state`."""
    now_ms = int(service.clock() * 1000)
    spans = await service.index.timeline(camera, start_ms, end_ms)
    gaps = [(g.start_ms, g.end_ms, g.cause) for g in await service.index.gaps([camera], start_ms, end_ms)]
    recorded_before = bool(await service.db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM recorder_segments WHERE camera=$1 AND start_ms < $2)", camera, start_ms))
    health = service.health().get(camera)
    timeline = explain_timeline(spans, gaps, start_ms, end_ms, now_ms, recorded_before,
                                health.state if health else None, health.last_error if health else None,
                                int(service.config.segment_seconds * 1000))
    return {"spans": timeline,
            "recorded_ms": sum(s["end_ms"] - s["start_ms"] for s in timeline if s["kind"] == "recorded"),
            "state": health.state if health else "not_recording"}


def probe_fps(path: Path | None) -> float:
    """Frame rate of a segment (for frame stepping); 25 when it cannot be told (blocking: run in a thread)."""
    if path is None:
        return DEFAULT_FPS
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            value = float(rate) if rate else DEFAULT_FPS
    except (av.FFmpegError, IndexError, OSError):
        return DEFAULT_FPS
    return value if 1.0 <= value <= 120.0 else DEFAULT_FPS
