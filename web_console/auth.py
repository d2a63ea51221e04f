"""Who is asking, and may they: sessions, API tokens, role checks and CSRF.

Every route declares its roles with `require(...)`. Admins may open everything. Browser
sessions are an HttpOnly, SameSite=strict cookie; state-changing requests made with that cookie
must also carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`).
Requests authenticated with an API token (`Authorization: Bearer cc_...`) carry no cookie and
need no CSRF token.
"""
from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from core.identity import User
from core.roles import Role
from core.runtime import CoreServices

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


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency admitting the given roles (and admins); 401/403 otherwise."""
    role_set = frozenset(roles)

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if principal is None:
            raise NotAuthenticated(expired=SESSION_COOKIE in request.cookies)
        if not allowed(principal.user.role, role_set):
            raise Forbidden("role")
        await check_csrf(request, principal)
        return principal

    return dependency


ANY_ROLE = tuple(Role)
