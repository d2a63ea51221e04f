"""Watching conferences live (issue 18): the ``/watch`` page, the stream list, the chair's
start/stop and watch links, and the HLS files themselves.

Who may watch: signed-in viewers, chairs and operators (and admins), and anyone holding an
unexpired watch link for that one conference (``/watch/<id>?t=<token>``: a trainee without an
account). The token rides in the path of the HLS URLs (``/hls/<id>/t/<token>/index.m3u8``) so
the relative segment names in the playlist resolve under it; the playlist is the only thing
that counts a viewer.

Files (Low-Latency HLS, served from memory by :class:`mcu.streaming.service.StreamingService`):
only the names :func:`mcu.streaming.names.parse_name` accepts for the running stream are looked
up (anything else, ``../``, a NUL, a 10 kB name, is 404; a NUL in the URL is the console's
uniform 422). The playlist answers blocking reloads (``_HLS_msn``/``_HLS_part``: 400 for a
malformed or impossible one, 503 after three target durations); a request for the part the
preload hint names waits for it. Caching: the playlist is ``no-store`` (it changes every part);
init, parts and segments are ``private`` (access-controlled) and immutable for an hour: their
names carry the stream's epoch and are never reused. Parts carry ``X-Published`` (Unix time the
part became available at the server) so a load test can measure delivery latency.

Who is asking, cheaply: a low-latency viewer makes ~6 requests a second (a blocking playlist
reload and a part, ~3 times a second), and resolving a session costs a database write (its idle
timer). The HLS routes' gate (:class:`ViewerGate`, a ``require(...)`` that the role matrix reads
like any other) remembers a session it admitted for :data:`SESSION_MEMORY_S` seconds, keyed by a
hash of the cookie: a viewer costs one session lookup per 5 s instead of 30, and a session that
signs out or loses the role keeps the stream for at most those 5 s (nothing else: the memory
serves only these routes, and only GETs of the stream).

The fast path (:class:`HlsFastPath`, an ASGI middleware): FastAPI's routing and dependency
solving cost about a millisecond of CPU per request, more than serving a part; 500 viewers make
~3000 requests a second, all on one event loop. So a GET under ``/hls/`` whose session the gate
admitted in the last 5 s (or that carries a valid watch-link token) is answered by the middleware
with exactly what the route would answer, from the same service calls; everything else (no or an
unknown session, a bearer token, a NUL, another method, another shape of path) goes through the
routes unchanged, which is also how a session gets admitted.

The stream runs where the conference runs. On a node without the MCU (``--role web``) every route
reaches the stream over node RPC on the node that hosts the room (:mod:`web_console.stream_host`:
proxied, with the immutable files cached and identical requests coalesced on the web node); the
viewer's authorisation stays here. The fast path serves them too, through the same proxy, once a
routed request created it.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from http.cookies import SimpleCookie
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

from config.roles import Role
from mcu.streaming.names import CONTENT_TYPES
from mcu.streaming.service import HTTP_STATUS, Served, StreamingError, StreamingService
from web_console.auth import (
    SESSION_COOKIE,
    Forbidden,
    Principal,
    RoleFirstRoute,
    RoleGate,
    allowed,
    client_address,
    current_principal,
    node_of,
    require,
)
from web_console.guards import ApiModel
from web_console.i18n import texts_with_prefix
from web_console.stream_host import (
    LocalStreamHost,
    RemoteStreamHost,
    RpcCalls,
    StreamHost,
    StreamUnavailable,
)
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)

WATCH_ROLES = (Role.VIEWER, Role.CHAIR, Role.OPERATOR)
CHAIR_ROLES = (Role.CHAIR, Role.OPERATOR)
PLAYLIST_CACHE = "no-store"
SESSION_MEMORY_S = 5.0
SESSION_MEMORY_SIZE = 20_000
SEGMENT_CACHE = "private, max-age=3600, immutable"


class ViewerGate(RoleGate):
    """``require(*WATCH_ROLES)`` that remembers an admitted session for ``memory_s`` seconds.

    Single flight: while one request of a session is being checked (a database round trip), the
    others of that session wait for its outcome instead of each asking the database (500 players
    on one session, or one player's playlist and part requests, would otherwise queue up behind
    row locks on the same session row every time the memory expires)."""

    def __init__(self, roles: frozenset[Role], memory_s: float = SESSION_MEMORY_S,
                 size: int = SESSION_MEMORY_SIZE) -> None:
        super().__init__(roles)
        self.memory_s = memory_s
        self.size = size
        self._admitted: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._checking: dict[bytes, asyncio.Future[Principal | None]] = {}

    async def __call__(self, request: Request) -> Principal:
        if id(self) in getattr(request.state, "role_gates_passed", ()):
            principal: Principal = request.state.principal
            return principal
        cookie = request.cookies.get(SESSION_COOKIE)
        key = hashlib.sha256(cookie.encode()).digest() if cookie and "authorization" not in request.headers else None
        if key is None:
            return await super().__call__(request)
        remembered = self.remembered(cookie or "", time.monotonic())
        if remembered is None and key in self._checking:
            remembered = await asyncio.shield(self._checking[key])
        if remembered is not None:
            request.state.principal = remembered
            return remembered
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._checking[key] = future
        outcome: Principal | None = None
        try:
            principal = await super().__call__(request)
            if principal.via == "session":
                outcome = principal
                self._admitted[key] = (principal, time.monotonic() + self.memory_s)
                self._admitted.move_to_end(key)
                while len(self._admitted) > self.size:
                    self._admitted.popitem(last=False)
            return principal
        finally:  # a refusal: the waiters check for themselves (and get their own answer)
            self._checking.pop(key, None)
            future.set_result(outcome)

    def remembered(self, cookie: str, now: float) -> Principal | None:
        """The principal this gate admitted with ``cookie`` less than ``memory_s`` ago, else None."""
        hit = self._admitted.get(hashlib.sha256(cookie.encode()).digest())
        return hit[0] if hit is not None and hit[1] > now else None


def _streaming(request: Request) -> StreamingService | None:
    mcu = node_of(request).mcu
    return mcu.streaming if mcu is not None else None


def _host(request: Request) -> StreamHost:
    """This node's streams, or (a node without the MCU) the MCU nodes' over node RPC (`web_console.stream_host`)."""
    node = node_of(request)
    streaming = _streaming(request)
    if streaming is not None:
        return LocalStreamHost(streaming)
    if node.mcu is None and node.rpc is not None:
        remote: RemoteStreamHost | None = getattr(request.app.state, "remote_streams", None)
        if remote is None:
            remote = RemoteStreamHost(RpcCalls(node.rpc))
            request.app.state.remote_streams = remote
        return remote.speaking(language_of(request))
    raise HTTPException(503, "本节点未运行会议服务（直播需与 MCU 在同一进程）")


def _unavailable(exc: StreamUnavailable) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)


def _error(exc: StreamingError) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=HTTP_STATUS.get(exc.code, 400))


def _page(request: Request, conference_id: str = "", token: str = "") -> Response:
    lang = language_of(request)
    return render(request, "watch.html", watch_texts=texts_with_prefix(lang, "watch."),
                  conference_id=conference_id, token=token)


# -- pages -------------------------------------------------------------------------------------

@router.get("/watch", include_in_schema=False)
async def watch_page(request: Request, principal: Annotated[Principal, Depends(require(*WATCH_ROLES))]) -> Response:
    return _page(request)


@router.get("/watch/{conference_id}", include_in_schema=False)
async def watch_one(request: Request, conference_id: str, t: str = "") -> Response:
    """One conference: signed-in watchers, or anyone with a valid watch link (``?t=``)."""
    host = _host(request)
    if t:
        try:
            admitted = await host.token_admits(conference_id, t)
        except StreamUnavailable as exc:
            return _unavailable(exc)
        if admitted:
            return _page(request, conference_id, t)
    principal = await current_principal(request)
    if principal is None:
        target = quote(str(request.url.path))
        return RedirectResponse(f"/login?next={target}", status_code=303)
    if not allowed(principal.user.role, frozenset(WATCH_ROLES)):
        raise Forbidden("role")
    return _page(request, conference_id)


# -- the list and the chair's controls ---------------------------------------------------------

@router.get("/api/streams", tags=["watch"])
async def list_streams(request: Request, principal: Annotated[Principal, Depends(require(*WATCH_ROLES))]) -> Any:
    """The conferences streamed live now (on this node, or on the MCU nodes)."""
    try:
        return await _host(request).streams()
    except StreamUnavailable as exc:
        return _unavailable(exc)


def _not_streaming(conference_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"会议未在直播：{conference_id}", "live": False}, status_code=404)


@router.get("/api/conferences/{conference_id}/stream", tags=["conference"])
async def stream_state(request: Request, conference_id: str,
                       principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    try:
        return await _host(request).state(conference_id)
    except StreamingError as exc:
        return _not_streaming(conference_id) if exc.code == "not_streaming" else _error(exc)
    except StreamUnavailable as exc:
        return _unavailable(exc)


@router.post("/api/conferences/{conference_id}/stream", tags=["conference"])
async def stream_start(request: Request, conference_id: str,
                       principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Start streaming a running conference (idempotent)."""
    try:
        return await _host(request).start(conference_id, principal.user.username, client_address(request))
    except StreamingError as exc:
        return _error(exc)
    except StreamUnavailable as exc:
        return _unavailable(exc)


@router.delete("/api/conferences/{conference_id}/stream", tags=["conference"])
async def stream_stop(request: Request, conference_id: str,
                      principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    try:
        stopped = await _host(request).stop(conference_id, principal.user.username, client_address(request))
    except StreamingError as exc:
        return _error(exc)
    except StreamUnavailable as exc:
        return _unavailable(exc)
    if not stopped:
        return _not_streaming(conference_id)
    return {"conference_id": conference_id, "live": False}


class WatchLink(ApiModel):
    ttl_s: int = Field(24 * 3600, ge=60, le=7 * 24 * 3600, description="seconds the link stays valid")


@router.post("/api/conferences/{conference_id}/stream/link", tags=["conference"])
async def stream_link(request: Request, conference_id: str, body: WatchLink | None = None, *,
                      principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """A watch link for people without an account: this conference only, until it expires."""
    try:
        token, expires = await _host(request).link(conference_id, (body or WatchLink()).ttl_s)
    except StreamingError as exc:
        return _error(exc)
    except StreamUnavailable as exc:
        return _unavailable(exc)
    await node_of(request).core.audit.record(
        principal.user.username, "conference.streaming.link", conference_id, source=client_address(request),
        detail={"expires": expires})
    return {"conference_id": conference_id, "url": f"/watch/{conference_id}?t={token}", "expires": expires}


# -- the HLS files -----------------------------------------------------------------------------

def _with_headers(served: Served) -> tuple[Served, dict[str, str]]:
    """A stream file's answer and its headers: the route and the fast path."""
    if served.kind is None:
        return served, {"content-type": "text/plain; charset=utf-8"}
    headers = {"content-type": CONTENT_TYPES[served.kind],
               "cache-control": PLAYLIST_CACHE if served.kind == "playlist" else SEGMENT_CACHE,
               "x-content-type-options": "nosniff"}
    if served.published_at is not None:
        headers["x-published"] = f"{served.published_at:.4f}"
    return served, headers


def _link_viewer(token: str, address: str) -> str:
    return "t:" + hashlib.sha256(f"{token}|{address}".encode()).hexdigest()[:16]


async def _serve(request: Request, host: StreamHost, conference_id: str, name: str, viewer: str) -> Response:
    served, headers = _with_headers(await host.file(conference_id, name, request.query_params.multi_items(), viewer))
    return Response(served.body, status_code=served.status, headers=headers)


class HlsFastPath:
    """ASGI middleware: the stream GETs of admitted viewers without FastAPI's routing (module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = await self._try(scope) if scope["type"] == "http" else None
        if answered is None:
            await self.app(scope, receive, send)
            return
        served, headers = answered
        await send({"type": "http.response.start", "status": served.status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
                    + [(b"content-length", str(len(served.body)).encode())]})
        await send({"type": "http.response.body", "body": served.body})

    async def _try(self, scope: Scope) -> tuple[Served, dict[str, str]] | None:
        path: str = scope["path"]
        query: bytes = scope.get("query_string", b"")
        if scope["method"] != "GET" or not path.startswith("/hls/") or "\0" in path or b"%00" in query \
                or b"\0" in query:
            return None
        segments = path.split("/")
        node = getattr(scope["app"].state, "node", None) if "app" in scope else None
        mcu = node.mcu if node is not None else None
        streaming = mcu.streaming if mcu is not None else None
        host: StreamHost | None = LocalStreamHost(streaming) if streaming is not None else None
        if host is None and node is not None and mcu is None:  # a web node: the proxy, once a route made it
            host = getattr(scope["app"].state, "remote_streams", None)
        if host is None:
            return None
        headers = dict(scope["headers"])
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        if len(segments) == 6 and segments[3] == "t":  # /hls/<id>/t/<token>/<name>
            conference_id, token, name = segments[2], segments[4], segments[5]
            try:
                if not await host.token_admits(conference_id, token):
                    return None  # the route answers 403
            except StreamUnavailable:
                return None  # the route answers 503
            client = scope.get("client")
            return _with_headers(await host.file(conference_id, name, pairs,
                                                 _link_viewer(token, client[0] if client else "")))
        if len(segments) != 4 or b"authorization" in headers:
            return None
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:
            return None
        morsel = cookies.get(SESSION_COOKIE)
        principal = VIEWER_GATE.remembered(morsel.value, time.monotonic()) if morsel is not None else None
        if principal is None:
            return None
        return _with_headers(await host.file(segments[2], segments[3], pairs, "u:" + principal.user.username))


VIEWER_GATE = ViewerGate(frozenset(WATCH_ROLES))


@router.get("/hls/{conference_id}/{name}", tags=["watch"])
async def hls_file(request: Request, conference_id: str, name: str,
                   principal: Annotated[Principal, Depends(VIEWER_GATE)]) -> Response:
    """The playlist or a segment of a live stream, for signed-in watchers."""
    return await _serve(request, _host(request), conference_id, name, "u:" + principal.user.username)


@router.get("/hls/{conference_id}/t/{token}/{name}", include_in_schema=False)
async def hls_file_by_link(request: Request, conference_id: str, token: str, name: str) -> Response:
    """The same, for the holder of a watch link (no account)."""
    host = _host(request)
    try:
        admitted = await host.token_admits(conference_id, token)
    except StreamUnavailable as exc:
        return Response(exc.message, status_code=exc.status, media_type="text/plain; charset=utf-8")
    if not admitted:
        return Response("forbidden", status_code=403, media_type="text/plain")
    return await _serve(request, host, conference_id, name, _link_viewer(token, client_address(request)))
