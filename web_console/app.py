"""The FastAPI application: pages, REST API, the events websocket and local static assets."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from asyncpg import TargetServerAttributeNotMatched
from asyncpg.exceptions import (
    AdminShutdownError,
    CannotConnectNowError,
    CharacterNotInRepertoireError,
    CrashShutdownError,
    PostgresConnectionError,
    ReadOnlySQLTransactionError,
    UntranslatableCharacterError,
)
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from commandcenter.node import Node
from core.db import DatabaseUnavailable
from web_console import (
    api,
    camera_console,
    conference_console,
    content_console,
    deck_console,
    desk_console,
    dispatch_console,
    events_ws,
    field_console,
    inspect_console,
    leader_console,
    monitoring_console,
    pages,
    plans_console,
    replay_console,
    report_console,
    resources_console,
    sms_console,
    warnings_console,
    watch_console,
)
from web_console.auth import Forbidden, NotAuthenticated, current_principal
from web_console.guards import BodyLimit, too_large
from web_console.i18n import translate
from web_console.templating import language_of, render

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "frontend" / "node_modules"
# Front-end packages served under /static/vendor/<name>/ (installed from npm by `make`).
VENDOR_PACKAGES = ("swagger-ui-dist", "leaflet", "hls.js", "chart.js")  # chart.js: the command view


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/ws/", "/tiles/", "/hls/")) and request.url.path not in ("/openapi.json",)


def create_app(node: Node, *, manage_lifecycle: bool = False) -> FastAPI:
    """Build the app around a running node (its core services and capabilities).

    With `manage_lifecycle`, the app's lifespan stops the node on shutdown (SIGTERM).
    """
    services = node.core

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if manage_lifecycle:
            await node.stop()
            log.info("commandcenter stopped")

    app = FastAPI(
        title="commandcenter", version="0.1.0", lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,  # served below, for admins only
    )
    app.state.services = services
    app.state.node = node  # routes reach the running capabilities through `node_of(request)`
    # 413 before the body is read; a slide deck is bounded by its own route (deck.max_mb, audited)
    app.add_middleware(BodyLimit, limit=services.settings.http.max_body_bytes,
                       larger={"/api/decks/": 4 * services.settings.deck.max_mb * 1024 * 1024})
    # LL-HLS viewers' GETs without FastAPI's routing (web_console/watch_console.py)
    app.add_middleware(watch_console.HlsFastPath)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 413:
            return too_large(services.settings.http.max_body_bytes)
        return await http_exception_handler(request, exc)

    @app.exception_handler(CharacterNotInRepertoireError)
    @app.exception_handler(UntranslatableCharacterError)
    async def _unstorable_text(request: Request, exc: Exception) -> Response:
        # Last line of defence: request models, NulGuard and the raw-body checks refuse NUL with the
        # field named; a text the database still cannot store must not become a 500.
        log.warning("text the database cannot store reached %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": [{"loc": ["body"], "msg": "文本含有数据库无法保存的字符 (NUL)",
                                         "type": "nul_character"}]}, status_code=422)

    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(PostgresConnectionError)
    @app.exception_handler(ReadOnlySQLTransactionError)
    @app.exception_handler(CannotConnectNowError)
    @app.exception_handler(AdminShutdownError)
    @app.exception_handler(CrashShutdownError)
    @app.exception_handler(TargetServerAttributeNotMatched)
    async def _database_unavailable(request: Request, exc: Exception) -> Response:
        # A database failover (core/db/failover.py): a clear 503, never a traceback.
        key = "db.outcome_unknown" if getattr(exc, "outcome_unknown", False) else "db.unavailable"
        log.warning("database unavailable at %s %s: %s: %s", request.method, request.url.path,
                    type(exc).__name__, exc)
        headers = {"Retry-After": "5"}
        if wants_html(request):
            response = render(request, "error.html", status_code=503, message_key=key)
            response.headers.update(headers)
            return response
        return JSONResponse({"detail": translate(language_of(request), key), "reason": key}, status_code=503,
                            headers=headers)

    @app.exception_handler(NotAuthenticated)
    async def _unauthenticated(request: Request, exc: NotAuthenticated) -> Response:
        if wants_html(request):
            target = quote(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
            suffix = "&expired=1" if exc.expired else ""
            return RedirectResponse(f"/login?next={target}{suffix}", status_code=303)
        return JSONResponse({"detail": "authentication required", "expired": exc.expired}, status_code=401)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        principal = await current_principal(request)
        await services.audit.record(
            principal.user.username if principal else "anonymous", "access.denied", request.url.path,
            outcome="denied", source=request.client.host if request.client else "",
            detail={"method": request.method, "reason": exc.reason})
        if wants_html(request):
            return render(request, "error.html", status_code=403, message_key="error.forbidden")
        return JSONResponse({"detail": f"forbidden: {exc.reason}"}, status_code=403)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    app.mount("/static/app", StaticFiles(directory=HERE / "static"), name="static")
    for package in VENDOR_PACKAGES:
        folder = NODE_MODULES / package
        if folder.is_dir():
            app.mount(f"/static/vendor/{package}", StaticFiles(directory=folder), name=f"vendor-{package}")
        else:
            log.warning("front-end package %s missing (run `make run` or npm install in %s)",
                        package, NODE_MODULES.parent)

    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(events_ws.router)
    app.include_router(inspect_console.router)
    app.include_router(dispatch_console.router)
    app.include_router(report_console.router)
    app.include_router(conference_console.router)
    app.include_router(content_console.router)
    app.include_router(deck_console.router)
    app.include_router(desk_console.router)
    app.include_router(resources_console.router)
    app.include_router(plans_console.router)
    app.include_router(sms_console.router)
    app.include_router(leader_console.router)
    app.include_router(warnings_console.router)
    app.include_router(monitoring_console.router)
    app.include_router(watch_console.router)
    app.include_router(replay_console.router)  # replaying recorded conferences (issue 18)
    app.include_router(camera_console.router)  # far-end camera control (issue 18)
    app.include_router(field_console.router)
    return app
