"""Node RPC over PostgreSQL: a request row plus NOTIFY to the target, the reply row plus NOTIFY back.

The asyncio adapter of `noderpc.envelope`. Each node LISTENs on one channel of its own
(``cc_rpc_<hash of node id>``); a notification carries ``req:<id>`` or ``rep:<id>`` and the row is
the payload (``rpc_requests``). The server side checks the signature and the deadline, runs its
`RpcService` at most once per row (the reply is written with ``WHERE reply IS NULL``), signs the
reply and notifies the sender. The client waits for that notification until the deadline, then
reads the row once more (a notification lost to a reconnect costs nothing). A listener that lost its
connection reconnects and sweeps the open requests addressed to it.

Errors reach the caller as `RpcError` with a code from `envelope.ERROR_STATUS` (dead, deadline,
forged, ...) or, for a handler's own refusal (`RpcRefused`), its status and message. No
traceback crosses the wire: an unexpected exception is logged on the target and travels as
``failed``.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from typing import Any, Protocol

import asyncpg

from core.db import Database

from .envelope import (
    ERROR_STATUS,
    EnvelopeError,
    Reply,
    check_reply,
    check_request,
    make_request,
    parse_reply,
    parse_request,
    refusal,
    sign,
)
from .pinning import OwnerState
from .registry import Registry

log = logging.getLogger(__name__)


class RpcService(Protocol):
    """What a node offers to others: one method name and JSON arguments in, a JSON object out."""

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """The result, or raise `RpcRefused` (a domain refusal: nothing changed, says why)."""


class RpcRefused(Exception):
    """A handler's refusal, carried to the caller with its HTTP status and message."""

    def __init__(self, status: int, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class RpcError(Exception):
    """A call that did not succeed: `code` (envelope.ERROR_STATUS or the handler's), `status`, `message`."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status if status is not None else ERROR_STATUS.get(code, 500)


def channel_of(node_id: str) -> str:
    return "cc_rpc_" + hashlib.sha256(node_id.encode()).hexdigest()[:24]


class NodeRpc:
    """This node's end of the RPC: serves its `RpcService` (if any) and calls other nodes."""

    def __init__(self, db: Database, registry: Registry, secret: bytes, *, default_timeout: float = 5.0) -> None:
        self.db = db
        self.registry = registry
        self.node_id = registry.node_id
        self.secret = secret
        self.default_timeout = default_timeout
        self.services: dict[str, RpcService] = {}  # by method prefix ("room.", "desk."; "" = any)
        self._listener: asyncpg.Connection | None = None
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._serving: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self.refused = 0  # forged or late requests refused (for tests and the log)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        self._watch = asyncio.create_task(self._keep_listening(), name="noderpc-listener")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    @property
    def service(self) -> RpcService | None:
        """The service of every method (when one serves them all), else None."""
        return self.services.get("")

    def serve(self, service: RpcService, prefix: str = "") -> None:
        """Answer other nodes' requests whose method starts with `prefix` with `service` (the composition
        root sets them; the longest matching prefix wins)."""
        self.services[prefix] = service
        self._spawn(self._sweep())

    def service_for(self, method: str) -> RpcService | None:
        matching = [p for p in self.services if method.startswith(p)]
        return self.services[max(matching, key=len)] if matching else None

    async def _listen(self) -> None:
        self._listener = await self.db.dedicated_connection()
        await self._listener.add_listener(channel_of(self.node_id), self._on_notify)

    async def _keep_listening(self) -> None:
        """Reconnect the listener when its connection dies; then sweep what arrived meanwhile."""
        while True:
            await asyncio.sleep(1.0)
            if self._listener is not None and not self._listener.is_closed():
                continue
            try:
                await self._listen()
            except Exception:  # noqa: BLE001 - keep trying while the database fails over
                log.warning("node RPC listener reconnect failed", exc_info=True)
                continue
            await self._sweep()
            for request_id, waiter in list(self._waiting.items()):
                self._spawn(self._read_reply_into(request_id, waiter))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind, _, request_id = payload.partition(":")
        if kind == "rep":
            waiter = self._waiting.get(request_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == "req":
            self._spawn(self._serve(request_id))

    async def _read_reply_into(self, request_id: str, waiter: asyncio.Future[None]) -> None:
        if await self.db.fetchval("SELECT reply IS NOT NULL FROM rpc_requests WHERE id = $1", request_id):
            if not waiter.done():
                waiter.set_result(None)

    # -- server --------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        rows = await self.db.fetch("SELECT id FROM rpc_requests WHERE target = $1 AND reply IS NULL", self.node_id)
        for row in rows:
            self._spawn(self._serve(row["id"]))

    async def _serve(self, request_id: str) -> None:
        if request_id in self._serving:
            return
        self._serving.add(request_id)
        try:
            row = await self.db.fetchrow("SELECT * FROM rpc_requests WHERE id = $1 AND target = $2 AND reply IS NULL",
                                         request_id, self.node_id)
            if row is None:
                return
            reply = await self._run(dict(row))
            try:
                signature = sign(self.secret, reply)
            except EnvelopeError:
                signature = ""
            await self.db.execute("UPDATE rpc_requests SET reply = $2, reply_signature = $3, replied_at = now() "
                                  "WHERE id = $1 AND reply IS NULL", request_id, reply.to_json(), signature)
            await self.db.execute("SELECT pg_notify($1, $2)", channel_of(str(row["sender"])), "rep:" + request_id)
        except Exception:  # noqa: BLE001 - one bad request must not stop the listener
            log.exception("serving node RPC request %s failed", request_id)
        finally:
            self._serving.discard(request_id)

    async def _run(self, row: dict[str, Any]) -> Reply:
        request_id = str(row.get("id"))
        try:
            request = parse_request(row)
            check_request(self.secret, request, row.get("signature") or "", self.node_id, time.time())
        except EnvelopeError as exc:
            self.refused += 1
            log.warning("node RPC request %s from %r refused: %s (%s)", request_id, row.get("sender"), exc.code,
                        exc.message)
            return refusal(request_id, exc)
        service = self.service_for(request.method)
        if service is None:
            return refusal(request_id, EnvelopeError("unavailable", "this node serves no requests"))
        try:
            result = await asyncio.wait_for(service.handle(request.method, request.args),
                                            max(0.05, request.deadline - time.time()))
        except RpcRefused as exc:
            return Reply(request_id, False, {}, exc.code, exc.message, exc.status)
        except TimeoutError:
            return refusal(request_id, EnvelopeError("deadline", "the operation did not finish before its deadline"))
        except Exception:  # noqa: BLE001 - logged here; only a code travels
            log.exception("node RPC %s failed", request.method)
            return refusal(request_id, EnvelopeError("failed", "the operation failed on the owning node"))
        return Reply(request_id, True, result)

    # -- client --------------------------------------------------------------------------------

    async def call(self, target: str, method: str, args: dict[str, Any], *, key: str | None = None,
                   timeout: float | None = None, keep: bool = True) -> dict[str, Any]:  # noqa: ASYNC109 - deadline
        """Call `method` on node `target`; the result, or RpcError. Same `key` = same request (run once).

        ``keep=False`` (a read without a key: a live stream's bytes, a recording's chunks): the row is
        deleted once read (or at the deadline) instead of kept for ``KEEP_REQUESTS_S`` as the
        idempotency record and trace."""
        timeout = timeout or self.default_timeout
        try:
            request = make_request(request_id=secrets.token_hex(12), key=key or secrets.token_hex(12),
                                   sender=self.node_id, target=target, method=method, args=args, now=time.time(),
                                   timeout=timeout)
            signature = sign(self.secret, request)
        except EnvelopeError as exc:
            raise RpcError(exc.code, exc.message) from None
        request_id = await self.db.fetchval(
            "INSERT INTO rpc_requests (id, idempotency_key, sender, target, method, args, deadline, signature) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (target, idempotency_key) DO NOTHING RETURNING id",
            request.id, request.key, request.sender, request.target, request.method, request.args, request.deadline,
            signature)
        if request_id is None:  # a retry: the first request's row (and perhaps its reply) answers it
            request_id = await self.db.fetchval(
                "SELECT id FROM rpc_requests WHERE target = $1 AND idempotency_key = $2", target, request.key)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        try:
            await self.db.execute("SELECT pg_notify($1, $2)", channel_of(target), "req:" + request_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            row = await self.db.fetchrow("SELECT reply, reply_signature FROM rpc_requests WHERE id = $1", request_id)
        finally:
            self._waiting.pop(request_id, None)
            if not keep and key is None:
                await self.db.execute("DELETE FROM rpc_requests WHERE id = $1", request_id)
        if row is None or row["reply"] is None:
            raise RpcError("deadline", f"no reply from node {target} within {timeout:g} s")
        try:
            reply = parse_reply(request_id, row["reply"])
            check_reply(self.secret, reply, row["reply_signature"])
        except EnvelopeError as exc:
            raise RpcError(exc.code, exc.message) from None
        if not reply.ok:
            raise RpcError(reply.error or "failed", reply.message, reply.status)
        return reply.result

    async def call_owner(self, kind: str, item: str, method: str, args: dict[str, Any], *, key: str | None = None,
                         timeout: float | None = None, keep: bool = True) -> dict[str, Any]:  # noqa: ASYNC109
        """Call `method` on the live node that hosts (kind, item); RpcError dead/unpinned otherwise."""
        owner = await self.registry.owner(kind, item)
        if owner.state is OwnerState.UNPINNED or owner.node is None:
            raise RpcError("unpinned", f"no node hosts {kind} {item}")
        if owner.state is OwnerState.DEAD:
            raise RpcError("dead", f"node {owner.node.node_id} hosting {kind} {item} stopped responding")
        return await self.call(owner.node.node_id, method, args, key=key, timeout=timeout, keep=keep)
