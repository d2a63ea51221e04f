"""The FastAPI application: pages, REST API, the events websocket and local static assets."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from asyncpg.exceptions import CharacterNotInRepertoireError, UntranslatableCharacterError
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from commandcenter.node import Node
from web_console import (
    api,
    conference_console,
    desk_console,
    dispatch_console,
    events_ws,
    inspect_console,
    pages,
    plans_console,
    resources_console,
)
from web_console.auth import Forbidden, NotAuthenticated, current_principal
from web_console.guards import BodyLimit, too_large
from web_console.templating import render

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "frontend" / "node_modules"
# Front-end packages served under /static/vendor/<name>/ (installed from npm by `make`).
VENDOR_PACKAGES = ("swagger-ui-dist", "leaflet", "hls.js")


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/ws/", "/tiles/")) and request.url.path not in ("/openapi.json",)


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
    app.add_middleware(BodyLimit, limit=services.settings.http.max_body_bytes)  # 413 before the body is read

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
    app.include_router(conference_console.router)
    app.include_router(desk_console.router)
    app.include_router(resources_console.router)
    app.include_router(plans_console.router)
    return app
