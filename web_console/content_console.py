"""The chair console's content token, content layout and raise-hand queue (REST).

* `GET  /api/conferences/<id>/content`: the token (policy, holder, queued requests), the content
  layout, whether content is live, the raised hands with their times and the hand settings;
* `POST /api/conferences/<id>/content` `{"action": "grant"|"revoke"|"take"|"policy"|"layout"|"dismiss", ...}`;
* `POST /api/conferences/<id>/hands` `{"action": "approve"|"dismiss"|"settings", ...}`.

Chair, operator and leader roles (and admins). Every call, accepted or refused, is audited; refusals answer
400 with the reason (zh-CN) and change nothing; 404 when the conference does not run here, 503 when
this node runs no conferences and has no node RPC.

The logic is `web_console.conference_host.content_control`, run through the `RoomHost` Protocol: on a
node without an MCU (`--role web`) each call goes to the node hosting the room (``room.content``);
role checks and the audit rows stay on this node (audit detail ``"via": "node-rpc"``), a dead or
silent hosting node is a 503 with a ``node.*`` message in the caller's language. Changes reach every console as ``conference.content`` /
``conference.hands`` bus events over `/ws/events`; presenters and raised hands are told on their
signalling channel (:mod:`web_console.content_signalling`).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from config.roles import Role
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.conference_host import HostRefused, LocalRoomHost, RemoteRoomHost, RoomHost
from web_console.guards import ApiModel
from web_console.templating import language_of

router = APIRouter(route_class=RoleFirstRoute)
CHAIR_ROLES = (Role.CHAIR, Role.OPERATOR, Role.LEADER)  # a leader chairing a meeting does what the chair does


class ContentAction(ApiModel):
    action: Literal["grant", "revoke", "take", "policy", "layout", "dismiss"]
    site: str | None = Field(None, max_length=128)
    policy: Literal["free", "chair"] | None = None
    layout: Literal["content+speakers", "content", "people"] | None = None


class HandsAction(ApiModel):
    action: Literal["approve", "dismiss", "settings"]
    site: str | None = Field(None, max_length=128)
    approve: Literal["broadcast", "pane", "unmute"] | None = None
    mute_others: bool | None = None
    raise_keys: str | None = Field(None, max_length=8)
    lower_keys: str | None = Field(None, max_length=8)


def _host(request: Request) -> RoomHost:
    """This node's rooms, or (no MCU here, node RPC on: a `--role web` node) the hosting node's over node RPC."""
    node = node_of(request)
    if node.mcu is not None:
        return LocalRoomHost(node.mcu)
    if node.rpc is not None:
        return RemoteRoomHost(node.rpc, language_of(request))
    raise HTTPException(503, "本节点未运行会议服务（会控需与 MCU 在同一进程）")


def _remote(host: RoomHost) -> bool:
    return isinstance(host, RemoteRoomHost)


async def _audit(request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any],
                 outcome: str = "ok") -> None:
    await services_of(request).audit.record(principal.user.username, action, target, outcome=outcome,
                                            source=client_address(request), detail=detail)


def _refusal(exc: HostRefused) -> JSONResponse:
    if exc.status == 400:  # a ContentError (or malformed arguments): its code for pages and tests
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=400)
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


@router.get("/api/conferences/{conference_id}/content", tags=["content"])
async def content_state(request: Request, conference_id: str,
                        principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    try:
        return await _host(request).content(conference_id, {"kind": "state"})
    except HostRefused as exc:
        return _refusal(exc)


async def _chair_action(request: Request, principal: Principal, conference_id: str, kind: str,
                        body: ContentAction | HandsAction) -> Any:
    """Run one chair action on a running conference's content and hands (`content_control`, here or on
    the hosting node), audited here either way: the new state, or the refusal and nothing changed."""
    action = f"conference.{kind}.{body.action}"
    detail = body.model_dump(exclude_none=True)
    host = _host(request)
    via = {"via": "node-rpc"} if _remote(host) else {}
    try:
        state = await host.content(conference_id, {**detail, "kind": kind, "actor": principal.user.username})
    except HostRefused as exc:
        error = {"error": "not running"} if exc.code == "not_running" else {"code": exc.code, "error": exc.message}
        await _audit(request, principal, action, conference_id, detail | error | via, "failed")
        return _refusal(exc)
    await _audit(request, principal, action, conference_id, detail | via)
    return state


@router.post("/api/conferences/{conference_id}/content", tags=["content"])
async def content_action(request: Request, conference_id: str, body: ContentAction,
                         principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Grant/revoke/take the content token, its policy, the content layout, dismiss a queued request."""
    return await _chair_action(request, principal, conference_id, "content", body)


@router.post("/api/conferences/{conference_id}/hands", tags=["content"])
async def hands_action(request: Request, conference_id: str, body: HandsAction,
                       principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Approve or dismiss a raised hand; change what approving does and the DTMF key sequences."""
    return await _chair_action(request, principal, conference_id, "hands", body)
