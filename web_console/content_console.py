"""The chair console's content token, content layout and raise-hand queue (REST).

* `GET  /api/conferences/<id>/content`: the token (policy, holder, queued requests), the content
  layout, whether content is live, the raised hands with their times and the hand settings;
* `POST /api/conferences/<id>/content` `{"action": "grant"|"revoke"|"take"|"policy"|"layout"|"dismiss", ...}`;
* `POST /api/conferences/<id>/hands` `{"action": "approve"|"dismiss"|"settings", ...}`.

Chair, operator and leader roles (and admins). Every call, accepted or refused, is audited; refusals answer
400 with the reason (zh-CN) and change nothing; 404 when the conference does not run here, 503 when
this node runs no conferences. Changes reach every console as ``conference.content`` /
``conference.hands`` bus events over `/ws/events`; presenters and raised hands are told on their
signalling channel (:mod:`web_console.content_signalling`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.requests import HTTPConnection

from config.roles import Role
from mcu.content.service import ConferenceContent, ContentError, ContentService
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.guards import ApiModel

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


def _service(connection: HTTPConnection) -> ContentService:
    mcu = node_of(connection).mcu
    if mcu is None or mcu.content is None:
        raise HTTPException(503, "本节点未运行会议服务（会控需与 MCU 在同一进程）")
    return mcu.content


def _content(request: Request, conference_id: str) -> ConferenceContent | None:
    return _service(request).get(conference_id)


async def _audit(request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any],
                 outcome: str = "ok") -> None:
    await services_of(request).audit.record(principal.user.username, action, target, outcome=outcome,
                                            source=client_address(request), detail=detail)


def _not_running(conference_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"会议未在进行：{conference_id}"}, status_code=404)


def _need_site(site: str | None) -> str:
    if not site:
        raise ContentError("missing", "缺少参数: site")
    return site


@router.get("/api/conferences/{conference_id}/content", tags=["content"])
async def content_state(request: Request, conference_id: str,
                        principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    content = _content(request, conference_id)
    if content is None:
        return _not_running(conference_id)
    return content.state()


async def _chair_action(request: Request, principal: Principal, conference_id: str, action: str,
                        detail: dict[str, Any], apply: Callable[[ConferenceContent], None]) -> Any:
    """Run one chair action on a running conference's content and hands, audited either way: the
    new state, or the refusal (400 with the code) and nothing changed."""
    content = _content(request, conference_id)
    if content is None:
        await _audit(request, principal, action, conference_id, detail | {"error": "not running"}, "failed")
        return _not_running(conference_id)
    try:
        apply(content)
    except ContentError as exc:
        await _audit(request, principal, action, conference_id, detail | {"code": exc.code, "error": exc.message},
                     "failed")
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=400)
    await _audit(request, principal, action, conference_id, detail)
    return content.state()


@router.post("/api/conferences/{conference_id}/content", tags=["content"])
async def content_action(request: Request, conference_id: str, body: ContentAction,
                         principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Grant/revoke/take the content token, its policy, the content layout, dismiss a queued request."""

    def apply(content: ConferenceContent) -> None:
        match body.action:
            case "grant":
                content.grant(_need_site(body.site))
            case "revoke":
                content.revoke()
            case "take":
                content.take(principal.user.username)
            case "policy":
                content.set_policy(body.policy or "")
            case "layout":
                content.set_layout(body.layout or "")
            case "dismiss":
                content.dismiss_request(_need_site(body.site))

    return await _chair_action(request, principal, conference_id, f"conference.content.{body.action}",
                               body.model_dump(exclude_none=True), apply)


@router.post("/api/conferences/{conference_id}/hands", tags=["content"])
async def hands_action(request: Request, conference_id: str, body: HandsAction,
                       principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Approve or dismiss a raised hand; change what approving does and the DTMF key sequences."""

    def apply(content: ConferenceContent) -> None:
        match body.action:
            case "approve":
                content.approve(_need_site(body.site))
            case "dismiss":
                content.dismiss(_need_site(body.site))
            case "settings":
                content.configure_hands(body.approve, body.mute_others, body.raise_keys, body.lower_keys)

    return await _chair_action(request, principal, conference_id, f"conference.hands.{body.action}",
                               body.model_dump(exclude_none=True), apply)
