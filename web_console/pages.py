"""HTML pages: login, the per-role landing page, consoles, user administration, audit, docs."""
from __future__ import annotations

import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from config.roles import ROLES, Role
from core.identity import IdentityError
from web_console.auth import (
    ANY_ROLE,
    SESSION_COOKIE,
    Principal,
    RoleFirstRoute,
    allowed,
    client_address,
    require,
    services_of,
)
from web_console.guards import NUL, nul_message
from web_console.templating import render

router = APIRouter(include_in_schema=False, route_class=RoleFirstRoute)

LOGIN_CSRF_COOKIE = "cc_login_csrf"


@dataclass(frozen=True)
class Console:
    key: str
    path: str
    roles: frozenset[Role]


# The consoles of the product and who may open them (admins open all). The landing page lists
# those the caller may open; each console's own issue replaces its placeholder.
CONSOLES: tuple[Console, ...] = (
    Console("conference", "/conference", frozenset({Role.CHAIR, Role.OPERATOR})),
    Console("watch", "/watch", frozenset({Role.VIEWER, Role.CHAIR, Role.OPERATOR})),
    Console("desk", "/desk", frozenset({Role.CALLTAKER})),
    Console("dispatch", "/dispatch", frozenset({Role.DISPATCHER, Role.CHAIR, Role.LEADER})),  # chair, leader: read-only
    Console("inspect", "/inspect", frozenset({Role.INSPECTOR})),
    Console("command", "/command", frozenset({Role.LEADER, Role.CHAIR})),  # 领导指挥视图: leader_console.py
    Console("warnings", "/warnings", frozenset({Role.DISPATCHER, Role.LEADER, Role.CHAIR})),  # 预警发布: warnings_console.py
    Console("sms", "/sms", frozenset({Role.DISPATCHER, Role.LEADER})),  # 短信平台: sms_console.py (leader reads)
    Console("field", "/field", frozenset({Role.RESPONDER})),  # 单兵移动端: field_console.py (issue 20)
    Console("replay", "/replay", frozenset({Role.VIEWER, Role.CHAIR, Role.OPERATOR})),  # 会议录像回放: replay_console.py
    Console("users", "/admin/users", frozenset()),
    Console("crews", "/admin/crews", frozenset()),  # 单兵绑定: field_console.py (issue 20)
    Console("audit", "/admin/audit", frozenset()),
    Console("docs", "/docs", frozenset()),
)


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect would let a phishing link bounce through our login.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@router.get("/login")
async def login_page(request: Request, next: str = "/", expired: int = 0) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", next=_safe_next(next), login_csrf=token,
                      error_key="login.expired" if expired else "")
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login")
    return response


@router.post("/login")
async def login(request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/", login_csrf: Annotated[str, Form()] = "") -> Response:
    services = services_of(request)
    source = client_address(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if NUL in username or NUL in password or NUL in login_csrf:
        return render(request, "login.html", status_code=422, next=_safe_next(next.replace(NUL, "")),
                      login_csrf=cookie, error_key="login.nul")
    if not cookie or not hmac.compare_digest(cookie, login_csrf):
        await services.audit.record(username or "anonymous", "login", username, outcome="denied",
                                    source=source, detail={"reason": "csrf"})
        return render(request, "login.html", status_code=403, next=_safe_next(next),
                      login_csrf=cookie, error_key="login.csrf")
    result = await services.identity.authenticate(username.strip(), password, source)
    if not result.ok or result.user is None:
        # Throttled (429) or hashing pool full (503): refused before the password was checked.
        refused = result.reason in ("throttled", "busy")
        wait = math.ceil(result.retry_after)
        await services.audit.record(username or "anonymous", "login", username,
                                    outcome="denied" if refused else "failed", source=source,
                                    detail={"reason": result.reason, **({"retry_after": wait} if refused else {})})
        status = {"throttled": 429, "busy": 503}.get(result.reason, 401)
        response = render(request, "login.html", status_code=status, next=_safe_next(next), login_csrf=cookie,
                          error_key=f"login.{result.reason}", retry_after=wait, username=username)
        if refused:
            response.headers["Retry-After"] = str(max(1, wait))
        return response
    token, _csrf = await services.identity.create_session(result.user, source)
    await services.audit.record(result.user.username, "login", result.user.username, source=source)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=services.settings.http.scheme == "https")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, principal: Annotated[Principal, Depends(require(*ANY_ROLE))]) -> Response:
    services = services_of(request)
    await services.identity.end_session(request.cookies.get(SESSION_COOKIE, ""))
    await services.audit.record(principal.user.username, "logout", principal.user.username,
                                source=client_address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
async def home(request: Request, principal: Annotated[Principal, Depends(require(*ANY_ROLE))]) -> Response:
    consoles = [c for c in CONSOLES if allowed(principal.user.role, c.roles)]
    return render(request, "home.html", consoles=consoles)


def _console_page(console: Console) -> None:
    async def page(request: Request) -> Response:
        return render(request, "placeholder.html", console=console)

    # Route-level dependency: a string annotation could not see `console` from this closure.
    router.add_api_route(console.path, page, methods=["GET"], name=f"console-{console.key}",
                         dependencies=[Depends(require(*console.roles))])


for _console in CONSOLES[:5]:
    if _console.key not in ("inspect", "dispatch", "conference", "desk", "watch"):  # each served by its own module
        _console_page(_console)


# -- administration ------------------------------------------------------------------------------

def _nul_field(**fields: str) -> str:
    """The name of the first form field holding a NUL character ('' when none does)."""
    return next((name for name, value in fields.items() if NUL in value), "")


@router.get("/admin/users")
async def users_page(request: Request, principal: Annotated[Principal, Depends(require())],
                     notice: str = "", error: str = "") -> Response:
    users = await services_of(request).identity.list_users()
    return render(request, "users.html", users=users, roles=ROLES, notice=notice, error=error)


@router.post("/admin/users")
async def users_create(request: Request, principal: Annotated[Principal, Depends(require())],
                       username: Annotated[str, Form()], password: Annotated[str, Form()],
                       role: Annotated[str, Form()], display_name: Annotated[str, Form()] = "") -> Response:
    services = services_of(request)
    bad = _nul_field(username=username, password=password, role=role, display_name=display_name)
    if bad:
        users = await services.identity.list_users()
        return render(request, "users.html", status_code=422, users=users, roles=ROLES, error=nul_message(bad))
    try:
        await services.identity.create_user(username.strip(), password, role, display_name.strip())
    except IdentityError as exc:
        await services.audit.record(principal.user.username, "user.create", username, outcome="failed",
                                    source=client_address(request), detail={"error": str(exc)})
        users = await services.identity.list_users()
        return render(request, "users.html", status_code=400, users=users, roles=ROLES, error=str(exc))
    await services.audit.record(principal.user.username, "user.create", username,
                                source=client_address(request), detail={"role": role})
    await services.bus.publish("user.created", {"username": username, "role": role})
    return RedirectResponse(f"/admin/users?notice=created:{username}", status_code=303)


@router.post("/admin/users/{username}")
async def users_update(request: Request, username: str, principal: Annotated[Principal, Depends(require())],
                       action: Annotated[str, Form()], password: Annotated[str, Form()] = "",
                       role: Annotated[str, Form()] = "") -> Response:
    services = services_of(request)
    bad = _nul_field(username=username, action=action, password=password, role=role)
    if bad:
        users = await services.identity.list_users()
        return render(request, "users.html", status_code=422, users=users, roles=ROLES, error=nul_message(bad))
    try:
        if action == "password":
            await services.identity.set_password(username, password)
        elif action == "role":
            await services.identity.set_role(username, role)
        elif action in ("disable", "enable"):
            if username == principal.user.username and action == "disable":
                raise IdentityError("you cannot disable your own account")
            await services.identity.set_disabled(username, action == "disable")
        elif action in ("lock", "unlock"):
            if username == principal.user.username and action == "lock":
                raise IdentityError("you cannot lock your own account")
            await (services.identity.lock(username) if action == "lock" else services.identity.unlock(username))
        else:
            raise IdentityError(f"unknown action {action!r}")
    except IdentityError as exc:
        await services.audit.record(principal.user.username, f"user.{action}", username, outcome="failed",
                                    source=client_address(request), detail={"error": str(exc)})
        users = await services.identity.list_users()
        return render(request, "users.html", status_code=400, users=users, roles=ROLES, error=str(exc))
    await services.audit.record(principal.user.username, f"user.{action}", username,
                                source=client_address(request), detail={"role": role} if role else {})
    await services.bus.publish("user.updated", {"username": username, "action": action})
    return RedirectResponse(f"/admin/users?notice=updated:{username}", status_code=303)


@router.get("/admin/audit")
async def audit_page(request: Request, principal: Annotated[Principal, Depends(require())],
                     actor: str | None = None, action: str | None = None) -> Response:
    entries = await services_of(request).audit.recent(200, actor or None, action or None)
    return render(request, "audit.html", entries=entries, actor=actor or "", action=action or "")


@router.get("/docs")
async def docs(request: Request, principal: Annotated[Principal, Depends(require())]) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="commandcenter API",
        swagger_js_url="/static/vendor/swagger-ui-dist/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui-dist/swagger-ui.css",
        swagger_favicon_url="/static/app/favicon.svg",
    )


@router.get("/openapi.json")
async def openapi(request: Request, principal: Annotated[Principal, Depends(require())]) -> JSONResponse:
    return JSONResponse(request.app.openapi())
