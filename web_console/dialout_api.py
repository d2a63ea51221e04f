"""REST API for the chair console's invite / redial / hang-up buttons and per-site call statistics.

Routes (roles chair and operator; admins too; cookie sessions need the `X-CSRF-Token` header):

* ``GET  /api/conferences/{id}/calls`` — the conference's SIP sites: status, reason, call state, statistics;
* ``GET  /api/conferences/{id}/calls/{site}`` — one site;
* ``POST /api/conferences/{id}/calls`` ``{"site_id": "...", "uri": "sip:...", "name": "..."}`` — invite
  (a site of the plan by ``site_id``, or any SIP address by ``uri``; 202, status then ``calling``);
* ``POST /api/conferences/{id}/calls/{site}/redial`` — hang up if connected and call again (202);
* ``POST /api/conferences/{id}/calls/{site}/hangup`` — end the call (200).

Every state change is audited (`conference.call.invite|redial|hangup`, with the outcome); the
result arrives on the bus as ``conference.site_status`` (calling → joined, or failed with a
reason). The SIP capability runs in the MCU role; in a process without it these answer 503.
"""
from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from core.roles import Role
from mcu.sip_bridge import BridgedSite, DialOutError, SipBridge
from web_console.auth import Principal, client_address, require, services_of

router = APIRouter(tags=["conference calls"])

CONSOLE_ROLES = (Role.CHAIR, Role.OPERATOR)
SITE_ID = r"^[A-Za-z0-9_.-]{1,64}$"
_ERROR_STATUS = {"not_running": 404, "unknown_site": 404, "bad_uri": 400, "bad_request": 400, "bad_site": 400,
                 "busy": 409, "not_connected": 409}


class InviteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str | None = Field(None, pattern=SITE_ID)
    uri: str | None = Field(None, min_length=5, max_length=256)
    name: str = Field("", max_length=100)


def _bridge(request: Request) -> SipBridge:
    bridge = services_of(request).capabilities.get("sip")
    if not isinstance(bridge, SipBridge):
        raise HTTPException(503, "SIP 网关未在本节点运行")
    return bridge


def _row(bridge: SipBridge, conference_id: str, site: BridgedSite | None, site_id: str) -> dict[str, Any]:
    conf = bridge.conferences.running(conference_id)
    state = conf.sites.get(site_id) if conf is not None else None
    out: dict[str, Any] = site.to_json() if site is not None else {"site_id": site_id}
    if state is not None:
        out.update(status=state.status, detail=state.detail, name=state.name)
        out.setdefault("stats", state.stats)
    return out


async def _audited(request: Request, principal: Principal, action: str, conference_id: str, site_id: str,
                   detail: dict[str, Any], run: Awaitable[BridgedSite]) -> BridgedSite:
    audit = services_of(request).audit
    target = f"{conference_id}/{site_id}"
    try:
        site = await run
    except DialOutError as exc:
        await audit.record(principal.user.username, action, target, outcome="failed",
                           source=client_address(request), detail={**detail, "error": exc.code})
        raise HTTPException(_ERROR_STATUS.get(exc.code, 400), exc.message) from None
    await audit.record(principal.user.username, action, f"{conference_id}/{site.site_id}",
                       source=client_address(request), detail=detail)
    return site


@router.get("/api/conferences/{conference_id}/calls")
async def list_calls(request: Request, conference_id: str,
                     principal: Annotated[Principal, Depends(require(*CONSOLE_ROLES))]) -> list[dict[str, Any]]:
    """SIP sites of a conference with status and call statistics."""
    bridge = _bridge(request)
    if bridge.conferences.running(conference_id) is None:
        raise HTTPException(404, f"会议未在运行：{conference_id}")
    return [_row(bridge, conference_id, s, s.site_id) for (cid, _), s in bridge.sites.items() if cid == conference_id]


@router.get("/api/conferences/{conference_id}/calls/{site_id}")
async def get_call(request: Request, conference_id: str, site_id: str,
                   principal: Annotated[Principal, Depends(require(*CONSOLE_ROLES))]) -> dict[str, Any]:
    """One SIP site: status, reason, call state, codec/resolution/bitrate/loss/jitter."""
    bridge = _bridge(request)
    site = bridge.sites.get((conference_id, site_id))
    if site is None:
        raise HTTPException(404, f"没有该会场的呼叫：{site_id}")
    return _row(bridge, conference_id, site, site_id)


@router.post("/api/conferences/{conference_id}/calls", status_code=202)
async def invite(request: Request, conference_id: str, body: InviteBody,
                 principal: Annotated[Principal, Depends(require(*CONSOLE_ROLES))]) -> dict[str, Any]:
    """Invite a site (邀请): by plan site id or SIP address."""
    bridge = _bridge(request)
    detail = body.model_dump(exclude_none=True)
    site = await _audited(request, principal, "conference.call.invite", conference_id, body.site_id or body.uri or "",
                          detail, bridge.invite(conference_id, body.site_id, body.uri, body.name))
    return _row(bridge, conference_id, site, site.site_id)


@router.post("/api/conferences/{conference_id}/calls/{site_id}/redial", status_code=202)
async def redial(request: Request, conference_id: str, site_id: str,
                 principal: Annotated[Principal, Depends(require(*CONSOLE_ROLES))]) -> dict[str, Any]:
    """Redial (重拨) a site's last address."""
    bridge = _bridge(request)
    site = await _audited(request, principal, "conference.call.redial", conference_id, site_id, {},
                          bridge.redial(conference_id, site_id))
    return _row(bridge, conference_id, site, site.site_id)


@router.post("/api/conferences/{conference_id}/calls/{site_id}/hangup")
async def hangup(request: Request, conference_id: str, site_id: str,
                 principal: Annotated[Principal, Depends(require(*CONSOLE_ROLES))]) -> dict[str, Any]:
    """Hang up (挂断) a site's call."""
    bridge = _bridge(request)
    site = await _audited(request, principal, "conference.call.hangup", conference_id, site_id, {},
                          bridge.hangup(conference_id, site_id))
    return _row(bridge, conference_id, site, site.site_id)
