"""Call recordings of a desk node, played and exported from a `--role web` node (issue 17).

A call's WAV is a file in its desk node's var dir (`emergency_calls.recording_path`, the node in
`emergency_calls.desk_node`). A web node with ``emergency.remote_desk`` fetches it over node RPC in
bounded chunks, the way it runs every other desk operation (no second channel, no second
credential: the request rows are signed with the node secret like ``desk.<op>``):

* ``desk.recording_open`` {call_id, actor, source} / ``desk.recording_export_open`` {call_id, actor,
  reason, source}: the desk node runs ``recording_for`` / ``export_recording`` of its
  `CallRecordings` (the audit rows `call.recording_view` / `call.recording_export` are written there,
  with the user and the client address the web node passes) and answers a transfer handle with the
  file's size and SHA-256;
* ``desk.recording_chunk`` {handle, offset}: at most `CHUNK` bytes (base64) from `offset`;
* ``desk.recording_close`` {handle}: forget the handle (an export's temporary zip is deleted).

The web node writes the chunks to a temporary file, checks size and SHA-256, and serves it as a single
node does. Each chunk's request row is deleted once read (`NodeRpc.call(..., keep=False)`), so a few
MB do not sit in ``rpc_requests`` for the hour request rows are kept. Handles expire `IDLE_S` after
their last use (an abandoned transfer leaves nothing behind).

Which node: the call row's ``desk_node`` while it is alive, else a live run of the same node (same
node name and role: the process restarted on the same var dir, so the files are there), else 503
``node.recording_gone``. A call without a desk node (or an unknown call) goes to the lease holder,
which answers as a single node does.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dispatch.calltaking.errors import DeskError
from dispatch.calltaking.recordings import digest_file
from noderpc.lease import lease_holder
from noderpc.service import RpcCapability
from noderpc.transport import RpcError, RpcRefused
from web_console.i18n import translate

CHUNK = 192 * 1024  # bytes per chunk: ~256 KiB of base64 in one reply row
IDLE_S = 120.0
OPS = ("recording_open", "recording_export_open", "recording_chunk", "recording_close")


class TransferRefused(Exception):
    """A recording could not be fetched from its desk node (HTTP `status`: 503 mostly, 409 a desk refusal)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class _Transfer:
    path: Path
    size: int
    temporary: bool  # an export's zip: deleted when the transfer ends
    used: float


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
        path.parent.rmdir()


class Recordings(Protocol):
    """What the desk node's end uses of its desk (``dispatch.calltaking.call_recordings.CallRecordings``):
    each call audits the access and raises DeskError when refused."""

    async def recording_for(self, call_id: str, actor: str, source: str = "") -> Path: ...

    async def export_recording(self, call_id: str, actor: str, reason: str, source: str = "") -> Path: ...


class RecordingTransfers:
    """The desk node's end: open transfers by handle (served within `DeskHostService`)."""

    def __init__(self, recordings: Recordings, clock: Callable[[], float] = time.monotonic) -> None:
        self.recordings = recordings
        self.clock = clock
        self.open: dict[str, _Transfer] = {}

    async def handle(self, name: str, a: dict[str, Any]) -> dict[str, Any]:
        await self._expire()
        try:
            if name == "recording_open":
                path = await self.recordings.recording_for(str(a["call_id"]), str(a["actor"]), str(a.get("source", "")))
                return await self._start(path, temporary=False)
            if name == "recording_export_open":
                path = await self.recordings.export_recording(str(a["call_id"]), str(a["actor"]), str(a["reason"]),
                                                              str(a.get("source", "")))
                return await self._start(path, temporary=True)
        except DeskError as exc:
            raise RpcRefused(409, str(exc), "desk.conflict") from None
        transfer = self.open.get(str(a["handle"]))
        if name == "recording_close":
            if transfer is not None:
                await self._end(str(a["handle"]))
            return {"ok": True}
        if transfer is None:
            raise RpcRefused(410, "recording transfer expired", "desk.transfer_gone")
        offset = int(a["offset"])
        if offset < 0 or offset > transfer.size:
            raise RpcRefused(400, f"offset {offset} outside 0..{transfer.size}", "desk.malformed")
        transfer.used = self.clock()
        data = await asyncio.to_thread(_read, transfer.path, offset, CHUNK)
        return {"data": base64.b64encode(data).decode("ascii")}

    async def _start(self, path: Path, *, temporary: bool) -> dict[str, Any]:
        digest = await asyncio.to_thread(digest_file, path)
        handle = secrets.token_hex(12)
        self.open[handle] = _Transfer(path, digest.size, temporary, self.clock())
        return {"handle": handle, "size": digest.size, "sha256": digest.sha256}

    async def _end(self, handle: str) -> None:
        transfer = self.open.pop(handle)
        if transfer.temporary:
            await asyncio.to_thread(_remove, transfer.path)

    async def _expire(self) -> None:
        now = self.clock()
        for handle in [h for h, t in self.open.items() if now - t.used > IDLE_S]:
            await self._end(handle)


def _read(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


class RecordingNodes(Protocol):
    """Which node holds a call's recording (None: no live node does, see `node_for`)."""

    async def node_for(self, call_id: str) -> str | None: ...


class CallRecordingNodes:
    """`RecordingNodes` from the call row, the node registry and the desk lease (module docstring)."""

    def __init__(self, rpc: RpcCapability, lease: str = "desk") -> None:
        self.rpc = rpc
        self.lease = lease

    async def node_for(self, call_id: str) -> str | None:
        db = self.rpc.registry.db
        made_by = await db.fetchval("SELECT desk_node FROM emergency_calls WHERE id = $1", call_id)
        if not made_by:
            holder = await lease_holder(db, self.lease)
            if holder is None:
                raise TransferRefused(503, "node.no_desk")
            return holder
        return holder_of(str(made_by), [n.node_id for n in await self.rpc.registry.alive()])


def holder_of(made_by: str, alive: list[str]) -> str | None:
    """The live node that holds a recording made by node `made_by`: that node (active or standby), else a
    later run of it (same "<node name>/<role>/": the same var dir), else None."""
    if made_by in alive:
        return made_by
    run_of = made_by.rsplit("/", 1)[0] + "/"
    return next((n for n in alive if n.startswith(run_of)), None)


class RemoteRecordings:
    """The web node's end: fetch a call's WAV or export zip from its desk node into a temporary file."""

    def __init__(self, rpc: RpcCapability, nodes: RecordingNodes, lang: str = "zh-CN") -> None:
        self.rpc = rpc
        self.nodes = nodes
        self.lang = lang

    async def fetch(self, call_id: str, opener: str, args: dict[str, Any], suffix: str) -> Path:
        """The file (in a temporary directory of its own: the caller removes both), or TransferRefused."""
        if not self.rpc.enabled:
            raise TransferRefused(503, translate(self.lang, "node.unavailable"))
        try:
            target = await self.nodes.node_for(call_id)
        except TransferRefused as exc:
            raise TransferRefused(exc.status, translate(self.lang, exc.message)) from None
        if target is None:
            raise TransferRefused(503, translate(self.lang, "node.recording_gone"))
        opened = await self._call(target, opener, {"call_id": call_id, **args})
        handle, size, sha256 = str(opened["handle"]), int(opened["size"]), str(opened["sha256"])
        dest = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="call-recording-")) / f"{call_id}{suffix}"
        try:
            digest = hashlib.sha256()
            with open(dest, "wb") as out:  # noqa: ASYNC230 - bounded chunks, each written at once
                offset = 0
                while offset < size:
                    chunk = base64.b64decode((await self._call(target, "recording_chunk",
                                                               {"handle": handle, "offset": offset}))["data"])
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    offset += len(chunk)
            if offset != size or digest.hexdigest() != sha256:
                raise TransferRefused(503, translate(self.lang, "node.desk_unreachable"))
        except BaseException:
            await asyncio.to_thread(_remove, dest)
            raise
        finally:
            with contextlib.suppress(TransferRefused):
                await self._call(target, "recording_close", {"handle": handle})
        return dest

    async def _call(self, target: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.rpc.rpc.call(target, "desk." + name, args, keep=False)
        except RpcError as exc:
            if exc.code == "desk.conflict":
                raise TransferRefused(409, exc.message) from None
            if exc.code.startswith("desk."):
                raise TransferRefused(exc.status or 400, exc.message) from None
            code = "node.unavailable" if exc.code == "unavailable" else "node.desk_unreachable"
            raise TransferRefused(503, translate(self.lang, code)) from None


def remove_fetched(path: Path) -> None:
    """Delete a fetched file and its temporary directory (after the response was sent)."""
    _remove(path)


__all__ = ["CHUNK", "OPS", "CallRecordingNodes", "RecordingNodes", "RecordingTransfers", "Recordings", "RemoteRecordings",
           "TransferRefused", "holder_of", "remove_fetched"]
