"""Who is asking, and may they: sessions, API tokens, role checks and CSRF.

Every route declares its roles with `require(...)`. Admins may open everything. Browser
sessions are an HttpOnly, SameSite=strict cookie; state-changing requests made with that cookie
must also carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`).
Requests authenticated with an API token (`Authorization: Bearer cc_...`) carry no cookie and
need no CSRF token.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import Request, WebSocket
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.responses import Response

from commandcenter.node import Node
from config.roles import Role
from core.identity import User
from core.runtime import CoreServices
from web_console.guards import nul_in_url

SESSION_COOKIE = "cc_session"
LANG_COOKIE = "cc_lang"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    user: User
    via: Literal["session", "token"]
    csrf_token: str = ""


class NotAuthenticated(Exception):
    """No valid session or token. `expired` when a session cookie was sent but is no longer valid."""

    def __init__(self, expired: bool = False) -> None:
        self.expired = expired


class Forbidden(Exception):
    """Authenticated, but the role (or CSRF token) does not allow this request."""

    def __init__(self, reason: str = "forbidden") -> None:
        self.reason = reason


def services_of(request: Request) -> CoreServices:
    services: CoreServices = request.app.state.services
    return services


def node_of(connection: HTTPConnection) -> Node:
    """The running node (its capabilities: None where one does not run in this process)."""
    node: Node = connection.app.state.node
    return node


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


async def resolve_principal(services: CoreServices, authorization: str | None, cookie: str | None) -> Principal | None:
    """The principal behind a bearer token or a session cookie, or None."""
    if authorization and authorization.lower().startswith("bearer "):
        user = await services.identity.resolve_api_token(authorization[7:].strip())
        return Principal(user, "token") if user else None
    if cookie:
        http = services.settings.http
        found = await services.identity.resolve_session(cookie, http.session_idle_seconds, http.session_max_seconds)
        if found:
            return Principal(found[0], "session", found[1])
    return None


async def current_principal(request: Request) -> Principal | None:
    """The caller, cached on the request; None when anonymous."""
    if not hasattr(request.state, "principal"):
        request.state.principal = await resolve_principal(
            services_of(request), request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))
    principal: Principal | None = request.state.principal
    return principal


def allowed(role: Role, roles: frozenset[Role]) -> bool:
    return role is Role.ADMIN or role in roles


async def check_csrf(request: Request, principal: Principal) -> None:
    """Refuse a cookie-authenticated state change that lacks the session's CSRF token."""
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get("x-csrf-token", "")
    if not sent and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        sent = str(form.get("csrf_token", ""))
    if not sent or not hmac.compare_digest(sent, principal.csrf_token):
        raise Forbidden("csrf")


class RoleGate:
    """The dependency `require(...)` returns: admits the given roles (and admins); 401/403 otherwise.

    A class (not a closure) so that `RoleFirstRoute` can find it among a route's dependencies and
    run it before FastAPI parses the body, and so the role matrix can be read off the route table.
    """

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    async def __call__(self, request: Request) -> Principal:
        if id(self) in getattr(request.state, "role_gates_passed", ()):  # already run by RoleFirstRoute
            principal: Principal = request.state.principal
            return principal
        principal_or_none = await current_principal(request)
        if principal_or_none is None:
            raise NotAuthenticated(expired=SESSION_COOKIE in request.cookies)
        if not allowed(principal_or_none.user.role, self.roles):
            raise Forbidden("role")
        await check_csrf(request, principal_or_none)
        return principal_or_none


class SystemTokenGate(RoleGate):
    """Admits ``roles`` (and admins), or a system presenting a token in ``header`` that
    ``system_of(request, token)`` names (a push feed, a warning-feed reader).

    A system is not a user: it gets a principal named ``system:<name>`` (role viewer) that passes no
    other gate. A wrong token is 401, whatever session cookie comes with it."""

    def __init__(self, roles: frozenset[Role], header: str,
                 system_of: Callable[[Request, str], str | None]) -> None:
        super().__init__(roles)
        self.header = header
        self.system_of = system_of

    async def __call__(self, request: Request) -> Principal:
        token = request.headers.get(self.header)
        if token is None:
            return await super().__call__(request)
        name = self.system_of(request, token)
        if name is None:
            raise NotAuthenticated()
        principal = Principal(User(0, f"system:{name}", name, Role.VIEWER, False, None), "token")
        request.state.principal = principal
        return principal


def require(*roles: Role) -> RoleGate:
    """A FastAPI dependency admitting the given roles (and admins); 401/403 otherwise."""
    return RoleGate(frozenset(roles))


def role_gates(dependant: Dependant) -> Iterator[RoleGate]:
    """Every `require(...)` among a route's dependencies (depth first)."""
    for sub in dependant.dependencies:
        if isinstance(sub.call, RoleGate):
            yield sub.call
        yield from role_gates(sub)


class RoleFirstRoute(APIRoute):
    """An APIRoute that checks the caller's role before FastAPI reads and validates the body.

    FastAPI parses the body (400 for broken JSON, 422 for a wrong shape) before it solves the
    dependencies, so a caller with the wrong role would learn about the body instead of getting 403.
    It then refuses a NUL character in the URL path or query (422 naming the place).
    Every router of the console uses this class (a test walks the route table to keep it so).
    The roles also go into the OpenAPI document as ``x-roles`` (admins are always admitted;
    absent: public), which is the role matrix the schemathesis run checks against.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        roles = route_roles(self)
        if roles is not None:
            ordered = [r.value for r in Role if r in roles or r is Role.ADMIN]
            self.openapi_extra = {**(self.openapi_extra or {}), "x-roles": ordered}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gates = list(role_gates(self.dependant))

        async def checked(request: Request) -> Response:
            passed: set[int] = set()
            for gate in gates:
                await gate(request)
                passed.add(id(gate))
            request.state.role_gates_passed = passed
            refused = nul_in_url(request.scope)  # PostgreSQL cannot store NUL: 422, never 500
            if refused is not None:
                return refused
            return await handler(request)

        return checked


def route_roles(route: APIRoute) -> frozenset[Role] | None:
    """The roles a route admits besides admin (None: public; empty: admins only)."""
    gates = list(role_gates(route.dependant))
    if not gates:
        return None
    roles = frozenset(Role) - {Role.ADMIN}
    for gate in gates:
        roles &= gate.roles
    return roles


def same_origin(websocket: WebSocket) -> bool:
    """Whether a websocket's Origin (when sent) is this host.

    Browsers always send Origin; a page on another site must not ride our session."""
    origin = websocket.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host", "")


async def refuse_websocket(websocket: WebSocket, principal: Principal | None, reason: str) -> None:
    """Close a websocket the caller may not open (4401 for reason "unauthenticated", else 4403).

    Refusals of a signed-in caller (wrong role, foreign Origin) are audited like an HTTP 403: who,
    what, from where; anonymous ones are not (as HTTP 401s are not), so nobody can fill the log.
    """
    if principal is not None:
        services: CoreServices = websocket.app.state.services
        await services.audit.record(
            principal.user.username, "access.denied", websocket.url.path, outcome="denied",
            source=websocket.client.host if websocket.client else "",
            detail={"method": "WEBSOCKET", "reason": reason, "origin": websocket.headers.get("origin", "")})
    await websocket.close(code=4401 if reason == "unauthenticated" else 4403)


ANY_ROLE = tuple(Role)
