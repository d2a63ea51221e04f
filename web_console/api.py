"""REST API: health, the caller, users, tokens and the audit log. JSON in, JSON out."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from config.roles import Role
from core.identity import IdentityError, User
from web_console.auth import ANY_ROLE, Principal, RoleFirstRoute, client_address, require, services_of
from web_console.guards import ApiModel

router = APIRouter(route_class=RoleFirstRoute)


class UserOut(BaseModel):
    username: str
    display_name: str
    role: Role
    disabled: bool
    locked: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(username=user.username, display_name=user.display_name, role=user.role,
                   disabled=user.disabled, locked=user.is_locked())


class UserCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    password: str = Field(min_length=1, max_length=256)
    role: Role
    display_name: str = Field("", max_length=100)


class UserUpdate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    password: str | None = Field(None, min_length=1, max_length=256)
    disabled: bool | None = None
    locked: bool | None = Field(None, description="lock the account by hand (ends its sessions), or unlock it")


class TokenCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers and every migration is applied."""
    ok, reason = await services_of(request).ready()
    return JSONResponse({"status": "ready" if ok else "not ready", "reason": reason}, status_code=200 if ok else 503)


@router.get("/api/me", tags=["identity"])
async def me(principal: Annotated[Principal, Depends(require(*ANY_ROLE))]) -> dict[str, Any]:
    return {**UserOut.of(principal.user).model_dump(), "csrf_token": principal.csrf_token}


@router.get("/api/users", tags=["identity"])
async def list_users(request: Request, principal: Annotated[Principal, Depends(require())]) -> list[UserOut]:
    return [UserOut.of(u) for u in await services_of(request).identity.list_users()]


@router.post("/api/users", status_code=201, tags=["identity"])
async def create_user(request: Request, body: UserCreate,
                      principal: Annotated[Principal, Depends(require())]) -> UserOut:
    services = services_of(request)
    try:
        user = await services.identity.create_user(body.username, body.password, body.role, body.display_name)
    except IdentityError as exc:
        await services.audit.record(principal.user.username, "user.create", body.username, outcome="failed",
                                    source=client_address(request), detail={"error": str(exc)})
        raise HTTPException(409 if "already exists" in str(exc) else 400, str(exc)) from None
    await services.audit.record(principal.user.username, "user.create", body.username,
                                source=client_address(request), detail={"role": body.role.value})
    await services.bus.publish("user.created", {"username": body.username, "role": body.role.value})
    return UserOut.of(user)


@router.patch("/api/users/{username}", tags=["identity"])
async def update_user(request: Request, username: str, body: UserUpdate,
                      principal: Annotated[Principal, Depends(require())]) -> UserOut:
    services = services_of(request)
    changes = body.model_dump(exclude_none=True)
    try:
        if await services.identity.get_user(username) is None:
            raise HTTPException(404, f"no such user {username!r}")
        if body.password is not None:
            services.identity.policy.check(body.password, username)  # validate all before changing any
        if body.locked and username == principal.user.username:
            raise IdentityError("you cannot lock your own account")
        if body.role is not None:
            await services.identity.set_role(username, body.role)
        if body.password is not None:
            await services.identity.set_password(username, body.password)
        if body.disabled is not None:
            await services.identity.set_disabled(username, body.disabled)
        if body.locked is not None:
            await (services.identity.lock(username) if body.locked else services.identity.unlock(username))
            await services.audit.record(principal.user.username, "user.lock" if body.locked else "user.unlock",
                                        username, source=client_address(request))
    except IdentityError as exc:
        await services.audit.record(principal.user.username, "user.update", username, outcome="failed",
                                    source=client_address(request), detail={"error": str(exc)})
        raise HTTPException(400, str(exc)) from None
    shown = {k: ("***" if k == "password" else v) for k, v in changes.items()}
    await services.audit.record(principal.user.username, "user.update", username,
                                source=client_address(request), detail=shown)
    await services.bus.publish("user.updated", {"username": username, "fields": sorted(changes)})
    user = await services.identity.get_user(username)
    assert user is not None
    return UserOut.of(user)


@router.post("/api/users/{username}/tokens", status_code=201, tags=["identity"])
async def create_token(request: Request, username: str, body: TokenCreate,
                       principal: Annotated[Principal, Depends(require())]) -> dict[str, str]:
    """A new API token; its value is shown in this response only."""
    services = services_of(request)
    try:
        token = await services.identity.create_api_token(username, body.name)
    except IdentityError as exc:
        raise HTTPException(404, str(exc)) from None
    await services.audit.record(principal.user.username, "token.create", username,
                                source=client_address(request), detail={"name": body.name})
    return {"token": token, "name": body.name}


@router.get("/api/audit", tags=["audit"])
async def audit(request: Request, principal: Annotated[Principal, Depends(require())],
                limit: int = 100, actor: str | None = None, action: str | None = None) -> list[dict[str, Any]]:
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be between 1 and 1000")
    entries = await services_of(request).audit.recent(limit, actor, action)
    return [{**e.__dict__, "at": e.at.isoformat()} for e in entries]
