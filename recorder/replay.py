"""Replaying recorded conferences: who may, where the content stream shows, and the tracks apart.

A conference recording's segments (``conf-<id>``, :mod:`recorder.conference_recording`) carry the
people view with the mix and, while someone presented, a second video track: the content stream.
The replay page plays the two side by side, so each segment is served one track at a time,
remuxed in memory (never re-encoded): :func:`extract_track`.

Rules:

* chairs and operators (and admins) may replay every recorded conference and grant or revoke its
  replay to named viewers; a viewer may replay a conference only while a grant names them;
* every replay is a logged view (an access leaf in the transparency log and an audit entry, made
  by the caller through :meth:`recorder.service.RecorderService.record_view`) before any footage
  is served; segment bytes go only to a user whose logged view covers them;
* a grant or revoke is audited (``conference.replay.grant`` / ``.revoke``); a refusal is audited
  by the caller with ``outcome="denied"``.

Refusals are :class:`ReplayError` with a stable ``code`` and a zh-CN message; nothing changes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import av

from recorder.segmenter import MOVFLAGS

Track = Literal["people", "content"]
TRACKS: tuple[Track, ...] = ("people", "content")
MAX_GRANTS = 200  # per conference


class ReplayError(ValueError):
    """A refused replay request; `code` is stable, `message` zh-CN."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Db(Protocol):
    """The database calls this module makes (``core.db.Database``)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class ContentSpan:
    """The content stream showed content from `start_ms` to `end_ms` (wall clock), in segment `key`."""

    start_ms: int
    end_ms: int
    key: str
    codec: str

    def to_json(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "key": self.key, "codec": self.codec}


class ReplayGrants:
    """Which viewers a chair allowed to replay which conference (table ``recorder_replay_grants``)."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def grant(self, conference_id: str, username: str, granted_by: str) -> bool:
        """Allow `username` to replay the conference (True: new, False: already allowed)."""
        count = await self.db.fetchval(
            "SELECT count(*) FROM recorder_replay_grants WHERE conference_id = $1", conference_id)
        if int(count) >= MAX_GRANTS:
            raise ReplayError("too_many", f"每个会议最多授权 {MAX_GRANTS} 人回放")
        status = await self.db.execute(
            "INSERT INTO recorder_replay_grants (conference_id, username, granted_by) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING", conference_id, username, granted_by)
        return str(status).endswith(" 1")

    async def revoke(self, conference_id: str, username: str) -> bool:
        """Withdraw the grant (False: there was none)."""
        status = await self.db.execute(
            "DELETE FROM recorder_replay_grants WHERE conference_id = $1 AND username = $2", conference_id, username)
        return str(status).endswith(" 1")

    async def allowed(self, conference_id: str, username: str) -> bool:
        return bool(await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM recorder_replay_grants WHERE conference_id = $1 AND username = $2)",
            conference_id, username))

    async def listing(self, conference_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT username, granted_by, granted_at FROM recorder_replay_grants WHERE conference_id = $1"
            " ORDER BY granted_at, username", conference_id)
        return [{"username": r["username"], "granted_by": r["granted_by"],
                 "granted_at": r["granted_at"].isoformat()} for r in rows]

    async def conferences_of(self, username: str) -> list[str]:
        """The conferences `username` was granted."""
        rows = await self.db.fetch(
            "SELECT conference_id FROM recorder_replay_grants WHERE username = $1 ORDER BY conference_id", username)
        return [str(r["conference_id"]) for r in rows]


async def content_spans(db: Db, log_id: str, camera: str, start_ms: int, end_ms: int) -> list[ContentSpan]:
    """The content leaves of a conference recording overlapping [start_ms, end_ms), in time order."""
    rows = await db.fetch(
        "SELECT body FROM recorder_log_leaves WHERE kind = 'content' AND log_id = $1 AND body->>'camera' = $2"
        " AND (body->>'start_ms')::bigint < $4 AND (body->>'end_ms')::bigint > $3"
        " ORDER BY (body->>'start_ms')::bigint", log_id, camera, start_ms, end_ms)
    return [ContentSpan(int(b["start_ms"]), int(b["end_ms"]), str(b["key"]), str(b["codec"]))
            for b in (r["body"] for r in rows)]


def merge_spans(spans: list[ContentSpan], tolerance_ms: int = 200) -> list[tuple[int, int]]:
    """Per-segment spans joined into the intervals someone presented (a hole up to `tolerance_ms` is none)."""
    merged: list[list[int]] = []
    for span in sorted(spans, key=lambda s: s.start_ms):
        if merged and span.start_ms - merged[-1][1] <= tolerance_ms:
            merged[-1][1] = max(merged[-1][1], span.end_ms)
        else:
            merged.append([span.start_ms, span.end_ms])
    return [(a, b) for a, b in merged]


def extract_track(path: Path, track: Track) -> bytes:
    """One track of a conference segment as a fragmented MP4 of its own (stream copy, in memory).

    ``people``: the first video track and the audio; ``content``: the second video track alone.
    Timestamps are kept, so both start at the segment's media time 0 like the stored file.
    ReplayError ``no_content`` when the segment has no content track.
    """
    if track not in TRACKS:
        raise ReplayError("bad_track", f"未知的轨道：{track}")
    out_buf = io.BytesIO()
    with av.open(str(path)) as src:
        videos = list(src.streams.video)
        wanted: list[Any]
        if track == "content":
            if len(videos) < 2:
                raise ReplayError("no_content", "该录像片段没有内容共享画面")
            wanted = [videos[1]]
        else:
            wanted = [videos[0], *src.streams.audio[:1]]
        with av.open(out_buf, mode="w", format="mp4",
                     options={"movflags": MOVFLAGS, "avoid_negative_ts": "disabled"}) as out:
            mapping = {s.index: out.add_stream_from_template(s) for s in wanted}
            for stream in wanted:
                mapping[stream.index].time_base = stream.time_base
            for packet in src.demux(wanted):
                if packet.dts is None:
                    continue
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
    return out_buf.getvalue()


def broadcast_track_only(path: Path) -> bytes | None:
    """The segment without its content track (the inspector's one-SourceBuffer player), or None when
    it has no content track (serve the file as it is)."""
    with av.open(str(path)) as src:
        if len(src.streams.video) < 2:
            return None
    return extract_track(path, "people")
