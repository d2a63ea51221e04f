"""Replaying recorded conferences on a `--role web` node (issues 17 and 18): the ``replay.*`` node RPC.

A conference's segments are files in the store of the recorder node that recorded it, and the views
are logged in that node's transparency log with that node's signing keys. The ``/replay`` routes
(:mod:`web_console.replay_console`) act on a `ReplayHost`:

* `LocalReplayHost`: the conference recorder and the recorder service of this process (``all``; and
  the recorder node's end of the RPC);
* `RemoteReplayHost` on a node without them (``web``): sends ``replay.*`` to the recorder node that
  holds the conference, where `ReplayHostService` runs it on its `LocalReplayHost`.

Methods: ``replay.recorded`` {conference_id | null}, ``replay.info`` {conference_id} (the recording and
its content spans), ``replay.playback`` {conference_id, user, start_ms, end_ms, reason, source} (the
recorder node appends the access leaf and writes ``recorder.view``, as on one node), ``replay.segment``
{conference_id, user, key, track} (checks the logged view, remuxes one track in memory and answers
its size, SHA-256 and the first `CHUNK`; the rest through ``replay.chunk`` {handle, offset}). The
segment's bytes travel in bounded chunks like a call recording's (web_console/desk_recordings.py),
and their rows are deleted once read (``keep=False``).

Grants, role checks and the audit rows of refusals stay on the web node (``replay_grants`` is in
PostgreSQL). Refusals travel as ``replay.<code>`` with their HTTP status; the web node words them.

Which node: ``recorder_segments.recorder`` is the recorder's node name (``settings.node_name``,
``recorder.capability.recorder_config``), and a node's id is ``<node name>/<role>/<random>``: the
conference goes to the live recorder (or ``all``) node of that name that was heard last. A recording
written by a node that is not running answers 503 ``replay.error.node_gone``.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from noderpc.service import RpcCapability
from noderpc.transport import RpcError, RpcRefused
from recorder.conference_recording import CAMERA_PREFIX, ConferenceRecorder
from recorder.index import NoRecording
from recorder.replay import ReplayError, Track, content_spans, extract_track, merge_spans
from recorder.service import AccessError, RecorderService

REPLAY_PREFIX = "replay."
VIEW_GRANT_S = 8 * 3600  # a logged view lets its user fetch the covered segments for this long
MAX_RANGE_MS = 12 * 3600 * 1000
CHUNK = 192 * 1024  # bytes per reply: ~256 KiB of base64 in one reply row
IDLE_S = 120.0  # an unfinished segment transfer is forgotten this long after its last chunk
MAX_OPEN = 32  # segment transfers held at once by a recorder node (the oldest goes first)
CALL_TIMEOUT_S = 20.0  # a remux of a 6 s segment or a logged view on a loaded node


class ReplayRefused(Exception):
    """A refusal with its HTTP status and ``replay.error.<code>`` (and the values its text names)."""

    def __init__(self, status: int, code: str, **values: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.values = status, code, values


class ReplayHost(Protocol):
    """What the replay routes do with recorded conferences (refusals raise `ReplayRefused`)."""

    async def recorded(self, conference_id: str | None = None) -> list[dict[str, Any]]:
        """The recorded conferences (or the one), as ``ConferenceRecorder.recorded``."""

    async def info(self, conference_id: str) -> dict[str, Any]:
        """The recording and its merged content spans (``content``)."""

    async def playback(self, conference_id: str, user: str, start_ms: int | None, end_ms: int | None,
                       reason: str, source: str) -> dict[str, Any]:
        """Log the view; the range, the name, the segments (each with its content spans) and the spans."""

    async def segment(self, conference_id: str, user: str, key: str, track: Track) -> bytes:
        """One track of a segment the user's logged view covers (fMP4, remuxed)."""


class LocalReplayHost:
    """The conference recorder and the recorder service of this process."""

    def __init__(self, conferences: ConferenceRecorder, service: RecorderService) -> None:
        self.conferences = conferences
        self.service = service

    async def recorded(self, conference_id: str | None = None) -> list[dict[str, Any]]:
        return await self.conferences.recorded(conference_id)

    async def _one(self, conference_id: str) -> dict[str, Any]:
        found = await self.conferences.recorded(conference_id)
        if not found:
            raise ReplayRefused(404, "unknown", id=conference_id)
        return found[0]

    async def info(self, conference_id: str) -> dict[str, Any]:
        rec = await self._one(conference_id)
        service = self.service
        spans = await content_spans(service.db, service.log.log_id, rec["camera"], rec["start_ms"], rec["end_ms"])
        return {**rec, "content": [{"start_ms": a, "end_ms": b} for a, b in merge_spans(spans)]}

    async def playback(self, conference_id: str, user: str, start_ms: int | None, end_ms: int | None,
                       reason: str, source: str) -> dict[str, Any]:
        rec = await self._one(conference_id)
        start = rec["start_ms"] if start_ms is None else max(start_ms, rec["start_ms"])
        end = rec["end_ms"] if end_ms is None else min(end_ms, rec["end_ms"])
        if end <= start or end - start > MAX_RANGE_MS:
            raise ReplayRefused(400, "bad_range")
        service = self.service
        try:
            plan = await service.playback(user, [rec["camera"]], start, end, reason, source=source)
        except (AccessError, NoRecording):
            raise ReplayRefused(404, "no_recording") from None
        spans = await content_spans(service.db, service.log.log_id, rec["camera"], start, end)
        by_key: dict[str, list[dict[str, Any]]] = {}
        for span in spans:
            by_key.setdefault(span.key, []).append(span.to_json())
        return {"conference_id": conference_id, "name": rec["name"], "start_ms": start, "end_ms": end,
                "segments": [{**seg, "content": by_key.get(seg["key"], [])} for seg in plan.get(rec["camera"], [])],
                "content": [{"start_ms": a, "end_ms": b} for a, b in merge_spans(spans)]}

    async def segment(self, conference_id: str, user: str, key: str, track: Track) -> bytes:
        service = self.service
        seg = await service.viewed_segment(user, key, VIEW_GRANT_S)
        if seg is None or seg.camera != CAMERA_PREFIX + conference_id:
            if seg is None and await service.index.segment_by_key(key) is not None:
                raise ReplayRefused(403, "view_not_logged")
            raise ReplayRefused(404, "unknown_segment")
        path = service.store.local_path(key)
        if path is None or not path.is_file():
            raise ReplayRefused(404, "segment_missing")
        try:
            return await asyncio.to_thread(extract_track, path, track)
        except ReplayError as exc:
            raise ReplayRefused(404, exc.code) from None


# ---- the recorder node's end ---------------------------------------------------------------------

@dataclass
class _Transfer:
    data: bytes
    used: float


class ReplayHostService:
    """Serves a `LocalReplayHost` to web nodes (noderpc `RpcService`, methods ``replay.*``)."""

    def __init__(self, host: ReplayHost, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.clock = clock
        self.open: dict[str, _Transfer] = {}

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._dispatch(method, args)
        except ReplayRefused as exc:
            raise RpcRefused(exc.status, json.dumps(exc.values, ensure_ascii=False), REPLAY_PREFIX + exc.code) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcRefused(400, f"bad arguments: {exc}", REPLAY_PREFIX + "malformed") from None

    async def _dispatch(self, method: str, a: dict[str, Any]) -> dict[str, Any]:
        host = self.host
        match method:
            case "replay.recorded":
                one = a.get("conference_id")
                return {"conferences": await host.recorded(None if one is None else str(one))}
            case "replay.info":
                return await host.info(str(a["conference_id"]))
            case "replay.playback":
                return await host.playback(str(a["conference_id"]), str(a["user"]), _ms(a.get("start_ms")),
                                           _ms(a.get("end_ms")), str(a["reason"]), str(a.get("source", "")))
            case "replay.segment":
                track = str(a["track"])
                if track not in ("people", "content"):
                    raise ValueError(f"unknown track {track[:16]}")
                chosen: Literal["people", "content"] = "content" if track == "content" else "people"
                data = await host.segment(str(a["conference_id"]), str(a["user"]), str(a["key"]), chosen)
                return self._start(data)
            case "replay.chunk":
                return self._chunk(str(a["handle"]), int(a["offset"]))
        raise RpcRefused(501, f"unknown method {method[:64]}", "unknown_method")

    def _start(self, data: bytes) -> dict[str, Any]:
        self._expire()
        out = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
               "data": base64.b64encode(data[:CHUNK]).decode("ascii"), "handle": None}
        if len(data) > CHUNK:
            while len(self.open) >= MAX_OPEN:
                self.open.pop(min(self.open, key=lambda h: self.open[h].used))
            handle = secrets.token_hex(12)
            self.open[handle] = _Transfer(data, self.clock())
            out["handle"] = handle
        return out

    def _chunk(self, handle: str, offset: int) -> dict[str, Any]:
        self._expire()
        transfer = self.open.get(handle)
        if transfer is None:
            raise RpcRefused(410, "segment transfer expired", REPLAY_PREFIX + "transfer_gone")
        if offset < 0 or offset > len(transfer.data):
            raise ValueError(f"offset {offset} outside 0..{len(transfer.data)}")
        transfer.used = self.clock()
        piece = transfer.data[offset:offset + CHUNK]
        if offset + len(piece) >= len(transfer.data):
            del self.open[handle]  # the last chunk: nothing is held once a segment was sent
        return {"data": base64.b64encode(piece).decode("ascii")}

    def _expire(self) -> None:
        now = self.clock()
        for handle in [h for h, t in self.open.items() if now - t.used > IDLE_S]:
            del self.open[handle]


def _ms(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


# ---- the web node's end --------------------------------------------------------------------------

class ReplayNodes(Protocol):
    """Which node holds a conference's recording."""

    async def node_for(self, conference_id: str) -> str:
        """The node id (ReplayRefused: 404 not recorded, 503 its node is not running)."""

    async def recorder_nodes(self) -> list[str]:
        """The live recorder nodes, most recently heard first."""


class RecorderNodes:
    """`ReplayNodes` from ``recorder_segments.recorder`` (the recorder's node name) and the registry."""

    def __init__(self, rpc: RpcCapability) -> None:
        self.rpc = rpc

    async def node_for(self, conference_id: str) -> str:
        rows = await self.rpc.registry.db.fetch(
            "SELECT recorder, max(end_ms) AS last FROM recorder_segments WHERE camera = $1 AND deleted_at IS NULL"
            " GROUP BY recorder ORDER BY max(end_ms) DESC", CAMERA_PREFIX + conference_id)
        if not rows:
            raise ReplayRefused(404, "unknown", id=conference_id)
        found = holder_of([str(r["recorder"]) for r in rows], await self.recorder_nodes())
        if found is None:
            raise ReplayRefused(503, "node_gone")
        return found

    async def recorder_nodes(self) -> list[str]:
        return [n.node_id for n in await self.rpc.registry.alive("recorder")]


def holder_of(names: list[str], alive: list[str]) -> str | None:
    """The first live node (`alive`: most recently heard first) named by `names` (the recorders that wrote
    the conference's segments, latest first), else None. A node id is "<node name>/<role>/<random>"."""
    for name in names:
        found = next((n for n in alive if n.split("/", 1)[0] == name), None)
        if found is not None:
            return found
    return None


class RemoteReplayHost:
    """`ReplayHost` of a node without the recorder: ``replay.*`` on the recorder node holding the files."""

    def __init__(self, rpc: RpcCapability, nodes: ReplayNodes, key: str | None = None) -> None:
        self.rpc = rpc
        self.nodes = nodes
        self.key = key  # the playback request's idempotency key (a retried request logs one view)

    async def recorded(self, conference_id: str | None = None) -> list[dict[str, Any]]:
        self._enabled()
        if conference_id is not None:
            try:
                node = await self.nodes.node_for(conference_id)
            except ReplayRefused as exc:
                if exc.code == "unknown":
                    return []
                raise
            return list((await self._call(node, "replay.recorded", {"conference_id": conference_id}))["conferences"])
        nodes = await self.nodes.recorder_nodes()
        if not nodes:
            raise ReplayRefused(503, "node_gone")
        answers = await asyncio.gather(*(self._call(n, "replay.recorded", {"conference_id": None}) for n in nodes),
                                       return_exceptions=True)
        merged: dict[str, dict[str, Any]] = {}
        for answer in answers:
            if isinstance(answer, BaseException):
                continue
            for rec in answer["conferences"]:
                seen = merged.get(rec["conference_id"])
                merged[rec["conference_id"]] = {**rec, "recording": bool(rec["recording"]) or bool(
                    seen and seen["recording"]), "name": rec["name"] or (seen or {}).get("name", "")}
        if not merged and all(isinstance(a, BaseException) for a in answers):
            first = next(a for a in answers if isinstance(a, BaseException))
            raise first if isinstance(first, ReplayRefused) else ReplayRefused(503, "node_unreachable")
        return sorted(merged.values(), key=lambda r: int(r["start_ms"]))

    async def info(self, conference_id: str) -> dict[str, Any]:
        return await self._call(await self._node(conference_id), "replay.info", {"conference_id": conference_id})

    async def playback(self, conference_id: str, user: str, start_ms: int | None, end_ms: int | None,
                       reason: str, source: str) -> dict[str, Any]:
        node = await self._node(conference_id)
        return await self._call(node, "replay.playback", {
            "conference_id": conference_id, "user": user, "start_ms": start_ms, "end_ms": end_ms, "reason": reason,
            "source": source}, key=self.key, keep=True)

    async def segment(self, conference_id: str, user: str, key: str, track: Track) -> bytes:
        node = await self._node(conference_id)
        first = await self._call(node, "replay.segment",
                                 {"conference_id": conference_id, "user": user, "key": key, "track": track})
        size, sha256, handle = int(first["size"]), str(first["sha256"]), first.get("handle")
        pieces = [base64.b64decode(first["data"])]
        offset = len(pieces[0])
        while offset < size and handle:
            piece = base64.b64decode((await self._call(node, "replay.chunk",
                                                       {"handle": str(handle), "offset": offset}))["data"])
            if not piece:
                break
            pieces.append(piece)
            offset += len(piece)
        data = b"".join(pieces)
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise ReplayRefused(503, "node_unreachable")
        return data

    def _enabled(self) -> None:
        if not self.rpc.enabled:
            raise ReplayRefused(503, "node_unavailable")

    async def _node(self, conference_id: str) -> str:
        self._enabled()
        return await self.nodes.node_for(conference_id)

    async def _call(self, node: str, method: str, args: dict[str, Any], *, key: str | None = None,
                    keep: bool = False) -> dict[str, Any]:
        """Reads (the list, the info, segment bytes) are not kept: their rows go once read."""
        try:
            return await self.rpc.rpc.call(node, method, args, key=key, timeout=CALL_TIMEOUT_S, keep=keep)
        except RpcError as exc:
            if exc.code.startswith(REPLAY_PREFIX) and exc.code != REPLAY_PREFIX + "malformed":
                try:
                    values = json.loads(exc.message)
                except ValueError:
                    values = {}
                raise ReplayRefused(exc.status, exc.code[len(REPLAY_PREFIX):],
                                    **(values if isinstance(values, dict) else {})) from None
            raise ReplayRefused(503, "node_unavailable" if exc.code == "unavailable" else "node_unreachable") from None


__all__ = ["CHUNK", "MAX_RANGE_MS", "REPLAY_PREFIX", "VIEW_GRANT_S", "LocalReplayHost", "RecorderNodes",
           "RemoteReplayHost", "ReplayHost", "ReplayHostService", "ReplayNodes", "ReplayRefused", "holder_of"]
