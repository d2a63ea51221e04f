"""The PostgreSQL playback index: segments, gaps, spans, legal holds, bookmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.db import Database
from recorder.ingest import CommittedSegment

# Two segments closer than this are one continuous span (timestamps are rounded to ms,
# and re-mapping after a reconnect may leave a few ms between files).
CONTIGUOUS_MS = 500


@dataclass(frozen=True)
class IndexedSegment:
    id: int
    camera: str
    start_ms: int
    end_ms: int
    size: int
    sha256: str
    codec: str
    width: int
    height: int
    has_audio: bool
    store_key: str
    log_id: str
    leaf_index: int
    deleted: bool


@dataclass(frozen=True)
class Span:
    """A stretch of continuous recording (kind='recorded') or its absence (kind='gap'/'deleted')."""

    camera: str
    start_ms: int
    end_ms: int
    kind: str
    cause: str = ""


@dataclass(frozen=True)
class IndexedGap:
    camera: str
    start_ms: int
    end_ms: int
    cause: str
    log_id: str
    leaf_index: int


class NoRecording(LookupError):
    """Nothing was recorded in the requested range; `nearest` lists the closest spans."""

    def __init__(self, cameras: Sequence[str], start_ms: int, end_ms: int, nearest: list[Span]) -> None:
        super().__init__(f"no recording in range for {', '.join(cameras)}")
        self.cameras, self.start_ms, self.end_ms, self.nearest = list(cameras), start_ms, end_ms, nearest


_SEGMENT_COLUMNS = (
    "id, camera, start_ms, end_ms, size, sha256, codec, width, height, has_audio, store_key, log_id, "
    "leaf_index, deleted_at IS NOT NULL AS deleted"
)


def _segment(row: asyncpg.Record) -> IndexedSegment:
    return IndexedSegment(**dict(row))


class SegmentIndex:
    """Reads and writes the recorder's index tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_segment(self, seg: CommittedSegment, log_id: str, leaf_index: int, recorder: str) -> None:
        await self.db.execute(
            "INSERT INTO recorder_segments (camera, start_ms, end_ms, size, sha256, codec, width, height, has_audio,"
            " store_key, log_id, leaf_index, recorder) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
            " ON CONFLICT (store_key) DO NOTHING",
            seg.camera, seg.start_ms, seg.end_ms, seg.size, seg.sha256, seg.codec, seg.width, seg.height,
            seg.has_audio, seg.key, log_id, leaf_index, recorder,
        )

    async def add_gap(self, camera: str, start_ms: int, end_ms: int, cause: str, log_id: str, leaf_index: int) -> None:
        await self.db.execute(
            "INSERT INTO recorder_gaps (camera, start_ms, end_ms, cause, log_id, leaf_index) VALUES ($1,$2,$3,$4,$5,$6)",
            camera, start_ms, end_ms, cause, log_id, leaf_index,
        )

    async def has_key(self, key: str) -> bool:
        return bool(await self.db.fetchval("SELECT EXISTS (SELECT 1 FROM recorder_segments WHERE store_key=$1)", key))

    async def segments(
        self, cameras: Sequence[str], start_ms: int, end_ms: int, include_deleted: bool = False
    ) -> list[IndexedSegment]:
        """Segments of `cameras` overlapping [start_ms, end_ms), by camera then time."""
        rows = await self.db.fetch(
            f"SELECT {_SEGMENT_COLUMNS} FROM recorder_segments WHERE camera = ANY($1::text[])"
            " AND start_ms < $3 AND end_ms > $2 AND ($4 OR deleted_at IS NULL) ORDER BY camera, start_ms",
            list(cameras), start_ms, end_ms, include_deleted,
        )
        return [_segment(r) for r in rows]

    async def segment_by_key(self, key: str) -> IndexedSegment | None:
        row = await self.db.fetchrow(f"SELECT {_SEGMENT_COLUMNS} FROM recorder_segments WHERE store_key = $1", key)
        return None if row is None else _segment(row)

    async def all_live_segments(self) -> list[IndexedSegment]:
        rows = await self.db.fetch(f"SELECT {_SEGMENT_COLUMNS} FROM recorder_segments WHERE deleted_at IS NULL")
        return [_segment(r) for r in rows]

    async def gaps(self, cameras: Sequence[str], start_ms: int, end_ms: int) -> list[IndexedGap]:
        rows = await self.db.fetch(
            "SELECT camera, start_ms, end_ms, cause, log_id, leaf_index FROM recorder_gaps"
            " WHERE camera = ANY($1::text[]) AND start_ms < $3 AND end_ms > $2 ORDER BY camera, start_ms",
            list(cameras), start_ms, end_ms,
        )
        return [IndexedGap(**dict(r)) for r in rows]

    async def last_end_ms(self, camera: str) -> int | None:
        value = await self.db.fetchval("SELECT max(end_ms) FROM recorder_segments WHERE camera = $1", camera)
        return None if value is None else int(value)

    async def timeline(self, camera: str, start_ms: int, end_ms: int) -> list[Span]:
        """Recorded spans, explained gaps and unexplained holes of one camera within a range."""
        segs = await self.segments([camera], start_ms, end_ms, include_deleted=True)
        gaps = {(g.start_ms, g.end_ms): g.cause for g in await self.gaps([camera], start_ms, end_ms)}
        spans: list[Span] = []
        for seg in segs:
            kind = "deleted" if seg.deleted else "recorded"
            last = spans[-1] if spans else None
            if last and last.kind == kind and seg.start_ms - last.end_ms <= CONTIGUOUS_MS:
                spans[-1] = Span(camera, last.start_ms, max(last.end_ms, seg.end_ms), kind)
                continue
            if last and seg.start_ms - last.end_ms > CONTIGUOUS_MS:
                cause = next((c for (gs, ge), c in gaps.items() if gs < seg.start_ms and ge > last.end_ms), "")
                spans.append(Span(camera, last.end_ms, seg.start_ms, "gap", cause))
            spans.append(Span(camera, seg.start_ms, seg.end_ms, kind))
        return spans

    async def nearest_spans(self, cameras: Sequence[str], at_ms: int, limit: int = 2) -> list[Span]:
        """The recorded segments closest to `at_ms` before and after it, per camera (for 'no recording')."""
        out: list[Span] = []
        for camera in cameras:
            before = await self.db.fetchrow(
                "SELECT start_ms, end_ms FROM recorder_segments WHERE camera=$1 AND deleted_at IS NULL"
                " AND end_ms <= $2 ORDER BY end_ms DESC LIMIT 1", camera, at_ms)
            after = await self.db.fetchrow(
                "SELECT start_ms, end_ms FROM recorder_segments WHERE camera=$1 AND deleted_at IS NULL"
                " AND start_ms >= $2 ORDER BY start_ms LIMIT 1", camera, at_ms)
            for row in (before, after):
                if row is not None:
                    out.append(Span(camera, int(row["start_ms"]), int(row["end_ms"]), "recorded"))
        return out[: limit * max(1, len(cameras))]

    async def require_segments(self, cameras: Sequence[str], start_ms: int, end_ms: int) -> list[IndexedSegment]:
        """Like `segments`, but NoRecording (with the nearest spans) when there are none."""
        segs = await self.segments(cameras, start_ms, end_ms)
        if not segs:
            raise NoRecording(cameras, start_ms, end_ms, await self.nearest_spans(cameras, start_ms))
        return segs

    async def mark_deleted(self, ids: Sequence[int], by: str) -> None:
        await self.db.execute(
            "UPDATE recorder_segments SET deleted_at = now(), deleted_by = $2 WHERE id = ANY($1::bigint[])",
            list(ids), by,
        )

    async def add_bookmark(self, camera: str, at_ms: int, note: str, user: str) -> int:
        return int(await self.db.fetchval(
            "INSERT INTO recorder_bookmarks (camera, at_ms, note, created_by) VALUES ($1,$2,$3,$4) RETURNING id",
            camera, at_ms, note, user))

    async def bookmarks(self, cameras: Sequence[str], start_ms: int, end_ms: int) -> list[dict[str, object]]:
        rows = await self.db.fetch(
            "SELECT id, camera, at_ms, note, created_by, created_at FROM recorder_bookmarks"
            " WHERE camera = ANY($1::text[]) AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms",
            list(cameras), start_ms, end_ms)
        return [dict(r) for r in rows]
