"""Live streams wherever their conference runs: `StreamHost`, in this process or over node RPC.

The ``/watch`` routes (`web_console.watch_console`) reach the streams through the `StreamHost`
Protocol declared here. Two implementations:

* `LocalStreamHost`: the `StreamingService` of this process's MCU. `StreamHostService` serves it to
  other nodes over node RPC (methods ``stream.*``), so a `--role mcu` node (no HTTP) answers.
* `RemoteStreamHost`: a `--role web` node's client, one per web app. The stream is the room's, so
  each call goes to the node the room is pinned to (`rpc_pins`).

Why proxied and not redirected: an MCU node serves no HTTP (docs/nodes.md), so there is nothing to
redirect the browser to; and the viewer's authorisation (`ViewerGate`, watch links) stays on the
web node. The HLS bytes come over node RPC like every other request (base64 in the reply row).
What bounds the cost on the MCU node and the database is that the web node asks once per web node,
not once per viewer:

* init, parts and segments carry the stream's epoch in their names and never change: the web node
  keeps them in a byte-bounded LRU (:data:`MEDIA_CACHE_BYTES`), and concurrent requests for one
  name share one RPC (single flight), including the part a preload hint names (the MCU node holds
  that request until the part exists, as it does for its own viewers);
* playlist requests with the same query (``_HLS_msn``/``_HLS_part`` passed through unchanged, or
  none) that arrive while one is in flight share it: the MCU node blocks it as it blocks a local
  viewer (up to three target durations, then 503), and every waiting viewer gets its answer. The
  viewers seen since the last playlist request travel with the next one, so the MCU node's viewer
  count stays right.

A blocking request waits for its RPC at most :data:`BLOCKING_TIMEOUT_S`. A dead owner, a missed
deadline or a node without the node secret is 503 with a ``node.*`` message (zh-CN or English),
never a traceback; no node hosting the room is 404 for the files and 409 ("not running") for a start.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

from mcu.streaming.names import MAX_TTL_S, PLAYLIST, parse_name, valid_conference_id
from mcu.streaming.service import HTTP_STATUS, Served, StreamingError, StreamingService
from noderpc.envelope import ERROR_STATUS
from noderpc.service import RpcCapability
from noderpc.transport import RpcError, RpcRefused
from web_console.i18n import translate

log = logging.getLogger(__name__)

STREAM_PREFIX = "stream."
ERROR_PREFIX = "stream:"
MEDIA_CACHE_BYTES = 64 * 1024 * 1024
TOKEN_MEMORY_S = 5.0
TOKEN_MEMORY_SIZE = 10_000
# the MCU node blocks a playlist or hinted-part request at most 3 target durations (3 x 3 s); then the reply travels
BLOCKING_TIMEOUT_S = 12.0
FILE_KINDS = ("playlist", "init", "segment", "part")


class StreamUnavailable(Exception):
    """The node hosting the stream cannot be asked (dead, no reply, no node secret): HTTP ``status``."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class StreamHost(Protocol):
    """The live streams, as the ``/watch`` routes use them (all may raise `StreamingError`, `StreamUnavailable`)."""

    async def streams(self) -> list[dict[str, Any]]: ...

    async def state(self, conference_id: str) -> dict[str, Any]: ...

    async def start(self, conference_id: str, actor: str, source: str) -> dict[str, Any]: ...

    async def stop(self, conference_id: str, actor: str, source: str) -> bool: ...

    async def link(self, conference_id: str, ttl_s: int) -> tuple[str, int]: ...

    async def token_admits(self, conference_id: str, token: str) -> bool: ...

    async def file(self, conference_id: str, name: str, query: list[tuple[str, str]], viewer: str) -> Served: ...


class LocalStreamHost:
    """The streams of this process's MCU."""

    def __init__(self, streaming: StreamingService) -> None:
        self.streaming = streaming

    async def streams(self) -> list[dict[str, Any]]:
        return self.streaming.streams()

    async def state(self, conference_id: str) -> dict[str, Any]:
        stream = self.streaming.stream(conference_id)
        if stream is None:
            raise StreamingError("not_streaming", f"会议未在直播：{conference_id}")
        return stream.to_json(self.streaming.clock())

    async def start(self, conference_id: str, actor: str, source: str) -> dict[str, Any]:
        stream = await self.streaming.start(conference_id, actor, source=source)
        return stream.to_json(self.streaming.clock())

    async def stop(self, conference_id: str, actor: str, source: str) -> bool:
        return await self.streaming.stop(conference_id, actor, source=source)

    async def link(self, conference_id: str, ttl_s: int) -> tuple[str, int]:
        return self.streaming.watch_token(conference_id, ttl_s)

    async def token_admits(self, conference_id: str, token: str) -> bool:
        return self.streaming.token_admits(conference_id, token)

    async def file(self, conference_id: str, name: str, query: list[tuple[str, str]], viewer: str) -> Served:
        return await serve_file(self.streaming, conference_id, name, query, viewer)


async def serve_file(streaming: StreamingService, conference_id: str, name: str, query: Iterable[tuple[str, str]],
                     viewer: str) -> Served:
    """The playlist (``index.m3u8``) or a media file of a stream."""
    if name == PLAYLIST:
        return await streaming.playlist(conference_id, query, viewer)
    return await streaming.media(conference_id, name)


def _served_json(served: Served) -> dict[str, Any]:
    return {"status": served.status, "body": base64.b64encode(served.body).decode("ascii"), "kind": served.kind,
            "published_at": served.published_at}


def _served_of(data: dict[str, Any]) -> Served:
    kind = data.get("kind")
    published = data.get("published_at")
    return Served(int(data["status"]), base64.b64decode(str(data["body"])),
                  kind if kind in FILE_KINDS else None,
                  float(published) if published is not None else None)


def _pairs(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or len(value) > 16:
        raise ValueError("query: a list of at most 16 pairs")
    return [(str(k)[:64], str(v)[:64]) for k, v in value]


class StreamHostService:
    """Serves a node's `LocalStreamHost` to web nodes over node RPC (methods ``stream.*``)."""

    def __init__(self, host: LocalStreamHost) -> None:
        self.host = host

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._dispatch(method, args)
        except StreamingError as exc:
            raise RpcRefused(_status(exc.code), exc.message, ERROR_PREFIX + exc.code) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcRefused(400, f"bad arguments: {exc}", ERROR_PREFIX + "bad_request") from None

    async def _dispatch(self, method: str, a: dict[str, Any]) -> dict[str, Any]:
        host = self.host
        match method:
            case "stream.streams":
                return {"streams": await host.streams()}
            case "stream.state":
                return await host.state(str(a["conference_id"]))
            case "stream.start":
                return await host.start(str(a["conference_id"]), str(a["actor"]), str(a.get("source", "")))
            case "stream.stop":
                return {"stopped": await host.stop(str(a["conference_id"]), str(a["actor"]), str(a.get("source", "")))}
            case "stream.link":
                ttl = int(a["ttl_s"])
                if not 60 <= ttl <= MAX_TTL_S:
                    raise StreamingError("bad_request", f"链接有效期须在 60 秒到 {MAX_TTL_S} 秒之间")
                token, expires = await host.link(str(a["conference_id"]), ttl)
                return {"token": token, "expires": expires}
            case "stream.admits":
                return {"admits": await host.token_admits(str(a["conference_id"]), str(a["token"]))}
            case "stream.file":
                conference_id, name = str(a["conference_id"]), str(a["name"])[:128]
                viewers = [str(v)[:80] for v in a.get("viewers", [])][:10_000]
                for viewer in viewers:  # the web node's viewers since its last playlist request
                    host.streaming.note_viewer(conference_id, viewer)
                if name == PLAYLIST and not viewers:
                    raise ValueError("a playlist request names its viewers")
                return _served_json(await host.file(conference_id, name, _pairs(a.get("query", [])),
                                                    viewers[0] if viewers else ""))
        raise RpcRefused(501, f"unknown method {method[:64]}", "unknown_method")


def _status(code: str) -> int:
    return HTTP_STATUS.get(code, 400)


class NodeCalls(Protocol):
    """Node RPC as the remote streams use it (`RpcCalls` over `noderpc`; a fake in the unit tests)."""

    @property
    def enabled(self) -> bool: ...

    async def call_owner(self, kind: str, item: str, method: str, args: dict[str, Any],
                         timeout: float | None = None) -> dict[str, Any]: ...  # noqa: ASYNC109

    async def call(self, target: str, method: str, args: dict[str, Any]) -> dict[str, Any]: ...

    async def mcu_nodes(self) -> list[str]: ...


class RpcCalls:
    """`NodeCalls` on this node's running RPC end."""

    def __init__(self, rpc: RpcCapability) -> None:
        self.rpc = rpc

    @property
    def enabled(self) -> bool:
        return self.rpc.enabled

    async def call_owner(self, kind: str, item: str, method: str, args: dict[str, Any],
                         timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109 - the RPC's deadline
        # the stream's bytes are reads: their rows go once read (a part a second would keep ~GBs an hour)
        return await self.rpc.rpc.call_owner(kind, item, method, args, timeout=timeout,
                                             keep=method != "stream.file")

    async def call(self, target: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        return await self.rpc.rpc.call(target, method, args)

    async def mcu_nodes(self) -> list[str]:
        return [node.node_id for node in await self.rpc.registry.alive("mcu")]


class _MediaCache:
    """Immutable stream files by (conference, name), least recently used out beyond ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[tuple[str, str], Served] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Served | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: tuple[str, str], served: Served) -> None:
        if key in self._items or len(served.body) > self.limit:
            return
        self._items[key] = served
        self.size += len(served.body)
        while self.size > self.limit:
            _, dropped = self._items.popitem(last=False)
            self.size -= len(dropped.body)


class RemoteStreamHost:
    """The streams of the MCU nodes, reached over node RPC (one per web app: it holds the caches)."""

    def __init__(self, rpc: NodeCalls, *, cache_bytes: int = MEDIA_CACHE_BYTES,
                 blocking_timeout: float = BLOCKING_TIMEOUT_S) -> None:
        self.rpc = rpc
        self.lang = "zh-CN"
        self.cache_bytes = cache_bytes
        self.blocking_timeout = blocking_timeout
        self._media = _MediaCache(cache_bytes)
        self._flights: dict[tuple[Any, ...], asyncio.Task[Served]] = {}
        self._viewers: dict[str, set[str]] = {}
        self._tokens: OrderedDict[tuple[str, str], float] = OrderedDict()

    def speaking(self, lang: str) -> RemoteStreamHost:
        """This host, answering in ``lang`` (a shallow view sharing the caches)."""
        if lang == self.lang:
            return self
        view = object.__new__(RemoteStreamHost)
        view.__dict__.update(self.__dict__)
        view.lang = lang
        return view

    # -- calls ---------------------------------------------------------------------------------

    def _unavailable(self, exc: RpcError) -> Exception:
        if exc.code.startswith(ERROR_PREFIX):
            return StreamingError(exc.code[len(ERROR_PREFIX):], exc.message)
        known = exc.code in ERROR_STATUS
        return StreamUnavailable(503, translate(self.lang, f"node.{exc.code}" if known else "node.failed"),
                                 "node_" + exc.code)

    async def _room(self, conference_id: str, method: str, args: dict[str, Any],
                    timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109 - the RPC's deadline
        if not self.rpc.enabled:
            raise StreamUnavailable(503, translate(self.lang, "node.unavailable"), "node_unavailable")
        try:
            return await self.rpc.call_owner("room", conference_id, method, {"conference_id": conference_id, **args},
                                             timeout=timeout)
        except RpcError as exc:
            if exc.code == "unpinned":
                raise StreamingError("not_running", f"会议未在进行：{conference_id}") from None
            raise self._unavailable(exc) from None

    async def streams(self) -> list[dict[str, Any]]:
        if not self.rpc.enabled:
            raise StreamUnavailable(503, translate(self.lang, "node.unavailable"), "node_unavailable")
        found: list[dict[str, Any]] = []
        for node_id in await self.rpc.mcu_nodes():
            try:
                found.extend((await self.rpc.call(node_id, "stream.streams", {}))["streams"])
            except RpcError as exc:  # one node's silence hides its streams, not the others'
                log.warning("stream list of node %s: %s", node_id, exc)
        return found

    async def state(self, conference_id: str) -> dict[str, Any]:
        try:
            return await self._room(conference_id, "stream.state", {})
        except StreamingError as exc:
            if exc.code == "not_running":
                raise StreamingError("not_streaming", f"会议未在直播：{conference_id}") from None
            raise

    async def start(self, conference_id: str, actor: str, source: str) -> dict[str, Any]:
        return await self._room(conference_id, "stream.start", {"actor": actor, "source": source})

    async def stop(self, conference_id: str, actor: str, source: str) -> bool:
        try:
            return bool((await self._room(conference_id, "stream.stop", {"actor": actor, "source": source}))["stopped"])
        except StreamingError as exc:
            if exc.code == "not_running":
                return False
            raise

    async def link(self, conference_id: str, ttl_s: int) -> tuple[str, int]:
        reply = await self._room(conference_id, "stream.link", {"ttl_s": ttl_s})
        return str(reply["token"]), int(reply["expires"])

    async def token_admits(self, conference_id: str, token: str) -> bool:
        """Asked of the room's node (its secret signs the links); a yes is remembered for a few seconds."""
        key = (conference_id, token)
        now = time.monotonic()
        until = self._tokens.get(key)
        if until is not None and until > now:
            return True
        try:
            admits = bool((await self._room(conference_id, "stream.admits", {"token": token}))["admits"])
        except StreamingError:
            return False
        if admits:
            self._tokens[key] = now + TOKEN_MEMORY_S
            self._tokens.move_to_end(key)
            while len(self._tokens) > TOKEN_MEMORY_SIZE:
                self._tokens.popitem(last=False)
        return admits

    # -- the HLS files ---------------------------------------------------------------------------

    async def file(self, conference_id: str, name: str, query: list[tuple[str, str]], viewer: str) -> Served:
        if not valid_conference_id(conference_id) or parse_name(name, name[:8]) is None:
            return Served(404, b"not found")  # no stream serves it: not worth a node RPC
        if name == PLAYLIST:
            self._viewers.setdefault(conference_id, set()).add(viewer)
            return await self._flight(("playlist", conference_id, tuple(query)), conference_id, name, query, viewer)
        cached = self._media.get((conference_id, name))
        if cached is not None:
            return cached
        served = await self._flight(("media", conference_id, name), conference_id, name, [], None)
        if served.status == 200:
            self._media.put((conference_id, name), served)
        return served

    async def _flight(self, key: tuple[Any, ...], conference_id: str, name: str, query: list[tuple[str, str]],
                      viewer: str | None) -> Served:
        """One RPC for all concurrent identical requests (a task of its own: a viewer who leaves cancels
        only its wait, not the others')."""
        task = self._flights.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(conference_id, name, query, viewer),
                                       name=f"hls-proxy-{conference_id}")
            self._flights[key] = task

            def done(finished: asyncio.Task[Served]) -> None:
                if self._flights.get(key) is finished:
                    del self._flights[key]

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _fetch(self, conference_id: str, name: str, query: list[tuple[str, str]], viewer: str | None) -> Served:
        # a playlist request carries the viewers seen since the last one (at least the one who asked first)
        viewers = [] if viewer is None else sorted(self._viewers.pop(conference_id, set()) | {viewer})
        try:
            reply = await self._room(conference_id, "stream.file", {"name": name, "query": query, "viewers": viewers},
                                     timeout=self.blocking_timeout)
        except StreamingError as exc:
            if exc.code == "not_running":
                return Served(404, b"not found")
            return Served(_status(exc.code), exc.message.encode())
        except StreamUnavailable as exc:
            return Served(exc.status, exc.message.encode())
        return _served_of(reply)
