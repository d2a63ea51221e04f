"""The Low-Latency HLS playlist of one live stream: a pure state machine (no I/O, no clock).

RFC 8216bis (HLS 2nd edition) rules this machine keeps:

* **Parts and segments.** Media arrives as partial segments (:meth:`LivePlaylist.add_part`), each
  one fMP4 fragment of about ``part_target`` seconds. A part either continues the current
  segment or starts the next one (``starts_segment``: the packager starts segments on key frames,
  every ~2 s). A segment is complete once the next one has started; its data is its parts
  concatenated. Part ``p`` of segment ``n`` is ``<epoch>_<n>.<p>.m4s``; segment ``n`` is
  ``<epoch>_<n>.m4s``.
* **Window.** ``window`` complete segments plus the segment in progress are listed; parts are
  listed for the segments that end within three target durations of the live edge (and for the
  one in progress); older parts are forgotten (their bytes too), older segments as well.
* **Playlist tags.** ``EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3×PART-TARGET``,
  ``EXT-X-PART-INF``, ``EXT-X-PROGRAM-DATE-TIME`` on every segment (the wall-clock time its first
  frame was composed: the caller passes it), ``EXT-X-PART`` with ``INDEPENDENT=YES`` on parts that
  start with a key frame, and one ``EXT-X-PRELOAD-HINT`` for the next part of the segment in
  progress.
* **Blocking reload** (:func:`parse_query`, :meth:`LivePlaylist.check`). ``_HLS_msn=<M>``
  (optionally ``&_HLS_part=<P>``) asks for a playlist that contains segment M (or its part P).
  It is *ready* when it does (a part index past the last part of a complete segment means part 0
  of the next one, which exists); *bad* (HTTP 400, at once) when it is malformed, when
  ``_HLS_part`` comes without ``_HLS_msn``, when M is more than two segments past the segment in
  progress, or when P is beyond what any segment can hold (:data:`MAX_PART_INDEX`); else the
  caller *waits* and checks again after each new part, at most :func:`blocking_deadline`.
  ``_HLS_skip`` is accepted and ignored (no delta updates are advertised); other query
  parameters are ignored.

Time: every method that needs it takes ``now`` (Unix seconds); nothing reads a clock.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

MAX_QUERY_DIGITS = 12
MAX_PART_INDEX = 200
BLOCKING_TARGETS = 3  # a blocked reload answers within three target durations (RFC 8216bis 6.2.5.2)

Readiness = Literal["ready", "wait", "bad"]


class BadRequest(ValueError):
    """A malformed or impossible playlist request (HTTP 400)."""


@dataclass(frozen=True)
class Blocking:
    """What a blocking reload waits for: segment ``msn`` (and its part ``part``)."""

    msn: int
    part: int | None = None


@dataclass(frozen=True)
class Part:
    msn: int
    index: int
    duration: float
    independent: bool
    data: bytes
    published_at: float  # Unix seconds when it became available
    date: float  # Unix seconds of its first frame's composition


@dataclass
class Segment:
    msn: int
    date: float
    parts: list[Part] = field(default_factory=list)
    duration: float = 0.0  # of its parts so far (kept when the parts are forgotten)
    complete: bool = False
    data: bytes | None = None  # set when complete


def _number(name: str, value: str) -> int:
    if not value or len(value) > MAX_QUERY_DIGITS or not value.isascii() or not value.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(value)


def parse_query(pairs: Iterable[tuple[str, str]]) -> Blocking | None:
    """The blocking request of a playlist URL's query (``None``: a plain reload)."""
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in ("_HLS_msn", "_HLS_part", "_HLS_skip"):
            if key in seen:
                raise BadRequest(f"{key} given twice")
            seen[key] = value
    skip = seen.get("_HLS_skip")
    if skip is not None and skip not in ("YES", "v2"):
        raise BadRequest("_HLS_skip must be YES or v2")
    if "_HLS_msn" not in seen:
        if "_HLS_part" in seen:
            raise BadRequest("_HLS_part requires _HLS_msn")
        return None
    msn = _number("_HLS_msn", seen["_HLS_msn"])
    part = _number("_HLS_part", seen["_HLS_part"]) if "_HLS_part" in seen else None
    if part is not None and part > MAX_PART_INDEX:
        raise BadRequest("_HLS_part out of range")
    return Blocking(msn, part)


def blocking_deadline(now: float, target_duration: int) -> float:
    return now + BLOCKING_TARGETS * target_duration


def _date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LivePlaylist:
    """Segments and parts of one live stream, and its playlist text (rendered once per change)."""

    def __init__(self, epoch: str, *, target_duration: int, part_target: float, window: int = 6) -> None:
        if not 1 <= target_duration <= 10:
            raise ValueError("target_duration must be 1..10 s")
        if not 0.1 <= part_target <= target_duration:
            raise ValueError("part_target must be between 0.1 s and the target duration")
        if not 3 <= window <= 30:
            raise ValueError("window must be 3..30 segments")
        self.epoch = epoch
        self.target_duration = target_duration
        self.part_target = part_target
        self.window = window
        self.segments: deque[Segment] = deque()
        self.version = 0  # bumped on every change
        self._text: str | None = None
        self.ended = False

    # ---- producer ------------------------------------------------------------------------------
    def add_part(self, data: bytes, duration: float, *, independent: bool, starts_segment: bool,
                 date: float, now: float) -> Part:
        """Publish the next part (``date``: wall-clock composition time of its first frame)."""
        if self.ended:
            raise ValueError("the stream has ended")
        if not 0 < duration <= 60:
            raise ValueError("part duration out of range")
        if not self.segments or starts_segment:
            if self.segments:
                self._complete(self.segments[-1])
                msn = self.segments[-1].msn + 1
            else:
                msn = 0
            self.segments.append(Segment(msn, date))
        segment = self.segments[-1]
        part = Part(segment.msn, len(segment.parts), duration, independent, data, now, date)
        segment.parts.append(part)
        segment.duration += duration
        self._trim()
        self.version += 1
        self._text = None
        return part

    def end(self) -> None:
        """No more parts: the segment in progress completes and the playlist gets EXT-X-ENDLIST."""
        if self.segments and not self.segments[-1].complete:
            self._complete(self.segments[-1])
        self.ended = True
        self.version += 1
        self._text = None

    def _complete(self, segment: Segment) -> None:
        segment.complete = True
        segment.data = b"".join(p.data for p in segment.parts)

    def _trim(self) -> None:
        while len(self.segments) > self.window + 1:
            self.segments.popleft()
        edge = self._edge_time()
        for segment in self.segments:
            if not (segment.complete and segment.parts):
                continue
            if edge - (segment.date + segment.duration) > 3 * self.target_duration:
                segment.parts = []  # the segment stays listed (EXTINF), its parts no longer

    def _edge_time(self) -> float:
        if not self.segments:
            return 0.0
        last = self.segments[-1]
        return last.date + last.duration

    # ---- consumer ------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self.segments)

    def next_part(self) -> tuple[int, int] | None:
        """(msn, index) the preload hint names; None before the first part or after the end."""
        if not self.segments or self.ended:
            return None
        last = self.segments[-1]
        return last.msn, len(last.parts)

    def check(self, request: Blocking) -> Readiness:
        """Whether a blocking reload for ``request`` can be answered now (see the module rules)."""
        if request.part is not None and request.part > MAX_PART_INDEX:
            return "bad"
        if not self.segments:
            return "bad" if request.msn > 2 else "wait"
        current = self.segments[-1]
        if request.msn > current.msn + 2:
            return "bad"
        if self.ended or request.msn < current.msn:
            return "ready"
        if request.msn == current.msn and request.part is not None and request.part < len(current.parts):
            return "ready"
        return "wait"

    def part(self, msn: int, index: int) -> Part | None:
        segment = self._segment(msn)
        if segment is None or not segment.parts or index >= len(segment.parts):
            return None
        return segment.parts[index]

    def segment_data(self, msn: int) -> bytes | None:
        segment = self._segment(msn)
        return segment.data if segment is not None and segment.complete else None

    def _segment(self, msn: int) -> Segment | None:
        if not self.segments:
            return None
        index = msn - self.segments[0].msn
        return self.segments[index] if 0 <= index < len(self.segments) else None

    def render(self) -> str:
        if self._text is None:
            self._text = self._render()
        return self._text

    def _render(self) -> str:
        first = self.segments[0].msn if self.segments else 0
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", f"#EXT-X-TARGETDURATION:{self.target_duration}",
                 f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * self.part_target:.3f}",
                 f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.3f}", f"#EXT-X-MEDIA-SEQUENCE:{first}",
                 f'#EXT-X-MAP:URI="{self.epoch}_init.mp4"']
        for segment in self.segments:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(segment.date)}")
            for part in segment.parts:
                lines.append(f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{self.epoch}_{part.msn}.{part.index}.m4s"'
                             + (",INDEPENDENT=YES" if part.independent else ""))
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration:.5f},")
                lines.append(f"{self.epoch}_{segment.msn}.m4s")
        hint = self.next_part()
        if hint is not None:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.epoch}_{hint[0]}.{hint[1]}.m4s"')
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def target_duration_for(segment_seconds: float) -> int:
    """The EXT-X-TARGETDURATION a stream cutting ~``segment_seconds`` segments declares: one
    second of slack for a late key frame (the packager cuts anyway before exceeding it)."""
    return math.ceil(segment_seconds) + 1
