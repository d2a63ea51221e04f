"""Replaying recorded conferences (issue 18): the ``/replay`` page, its API and the chair's grants.

Who may replay: chairs and operators (and admins) every recorded conference; a viewer only a
conference a chair granted them (``recorder.replay.ReplayGrants``). A viewer without a grant gets
403 and an audit row (``conference.replay``, ``outcome=denied``); a grant or revoke is audited.

Playing is a logged view, like an inspector's: ``POST /api/replay/<id>/playback`` appends an
access leaf to the transparency log and an audit entry (``recorder.view``, reason 会议回放) before
it returns the segments; segment bytes are served only to a user whose logged view covers them
(and, for a viewer, whose grant still stands). Each segment is served one track at a time
(``?track=people``: the people view and the mix; ``?track=content``: the content stream), remuxed
in memory, never re-encoded, so the page plays the two side by side in sync.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field

from config.roles import Role
from recorder.conference_recording import CAMERA_PREFIX
from recorder.replay import ReplayError, ReplayGrants, Track
from recorder.store import StoreError, parse_key
from web_console.auth import Principal, RoleFirstRoute, allowed, client_address, node_of, require, services_of
from web_console.guards import ApiModel
from web_console.i18n import texts_with_prefix, translate
from web_console.replay_host import (
    LocalReplayHost,
    RecorderNodes,
    RemoteReplayHost,
    ReplayHost,
    ReplayRefused,
)
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)

REPLAY_ROLES = (Role.VIEWER, Role.CHAIR, Role.OPERATOR)
GRANT_ROLES = frozenset({Role.CHAIR, Role.OPERATOR})  # and admins
Replayer = Annotated[Principal, Depends(require(*REPLAY_ROLES))]
Granter = Annotated[Principal, Depends(require(*GRANT_ROLES))]
_CONFERENCE_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_USERNAME = re.compile(r"^[^\x00-\x1f/]{1,64}$")


def _fail(request: Request, status: int, code: str, **values: object) -> JSONResponse:
    return JSONResponse({"detail": translate(language_of(request), f"replay.error.{code}", **values), "code": code},
                        status_code=status)


def _refused(request: Request, exc: ReplayRefused) -> JSONResponse:
    return _fail(request, exc.status, exc.code, **exc.values)


def _host(request: Request, principal: Principal | None = None) -> ReplayHost | JSONResponse:
    """This process's recorder (`all`), or on a node without one (`web`) the recorder nodes' over node RPC
    (a playback's ``Idempotency-Key``, scoped to the user, makes a retried request log one view)."""
    node = node_of(request)
    role, recorder = node.conference_recording, node.recorder
    if role is not None and recorder is not None:
        return LocalReplayHost(role.recorder, recorder.service)
    if role is None and recorder is None and node.rpc is not None:
        header = request.headers.get("Idempotency-Key")
        key = f"replay:{principal.user.username}:{header[:128]}" if header and principal is not None else None
        return RemoteReplayHost(node.rpc, RecorderNodes(node.rpc), key)
    return _fail(request, 503, "unavailable")


def _grants(request: Request) -> ReplayGrants:
    return ReplayGrants(services_of(request).db)


def _can_grant(principal: Principal) -> bool:
    return allowed(principal.user.role, GRANT_ROLES)


async def _audit(request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any],
                 outcome: str = "ok") -> None:
    await services_of(request).audit.record(principal.user.username, action, target, outcome=outcome,
                                            source=client_address(request), detail=detail)


async def _may_replay(request: Request, principal: Principal, conference_id: str, what: str) -> JSONResponse | None:
    """None when the caller may replay this conference; otherwise the refusal (a missing grant audited)."""
    if not _CONFERENCE_ID.fullmatch(conference_id):
        return _fail(request, 404, "unknown", id=conference_id[:64])
    if not _can_grant(principal) and not await _grants(request).allowed(conference_id, principal.user.username):
        await _audit(request, principal, "conference.replay", conference_id, {"what": what, "error": "no grant"},
                     "denied")
        return _fail(request, 403, "not_granted")
    return None


async def _recorded(request: Request, principal: Principal, conference_id: str,
                    what: str) -> tuple[ReplayHost, dict[str, Any]] | JSONResponse:
    """The recorded conference, when the caller may replay it; otherwise the refusal (audited)."""
    host = _host(request)
    if isinstance(host, JSONResponse):
        return host
    refused = await _may_replay(request, principal, conference_id, what)
    if refused is not None:
        return refused
    try:
        found = await host.recorded(conference_id)
    except ReplayRefused as exc:
        return _refused(request, exc)
    if not found:
        return _fail(request, 404, "unknown", id=conference_id)
    return host, found[0]


# ---- pages ---------------------------------------------------------------------------------------

def _page(request: Request, conference_id: str) -> Response:
    lang = language_of(request)
    return render(request, "replay.html", conference_id=conference_id,
                  texts_json=json.dumps(texts_with_prefix(lang, "replay."), ensure_ascii=False))


@router.get("/replay", include_in_schema=False)
async def replay_page(request: Request, principal: Replayer) -> Response:
    return _page(request, "")


@router.get("/replay/{conference_id}", include_in_schema=False)
async def replay_one(request: Request, conference_id: str, principal: Replayer) -> Response:
    return _page(request, conference_id if _CONFERENCE_ID.fullmatch(conference_id) else "")


# ---- the list and one conference ---------------------------------------------------------------

@router.get("/api/replay", tags=["replay"])
async def replay_list(request: Request, principal: Replayer) -> Any:
    """The recorded conferences the caller may replay (chairs: all; viewers: those granted)."""
    host = _host(request)
    if isinstance(host, JSONResponse):
        return host
    try:
        recorded = await host.recorded()
    except ReplayRefused as exc:
        return _refused(request, exc)
    if not _can_grant(principal):
        mine: set[str] = set(await _grants(request).conferences_of(principal.user.username))
        recorded = [r for r in recorded if r["conference_id"] in mine]
    return {"conferences": recorded, "can_grant": _can_grant(principal)}


@router.get("/api/replay/{conference_id}", tags=["replay"])
async def replay_info(request: Request, conference_id: str, principal: Replayer) -> Any:
    """What was recorded (range, segments), when content was shared; for chairs, who may replay it."""
    host = _host(request)
    if isinstance(host, JSONResponse):
        return host
    refused = await _may_replay(request, principal, conference_id, "info")
    if refused is not None:
        return refused
    try:
        out = {**await host.info(conference_id), "can_grant": _can_grant(principal)}
    except ReplayRefused as exc:
        return _refused(request, exc)
    if _can_grant(principal):
        out["grants"] = await _grants(request).listing(conference_id)
    return out


class PlaybackBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    start_ms: int | None = Field(None, ge=0, le=2**53, description="default: the recording's start")
    end_ms: int | None = Field(None, ge=0, le=2**53, description="default: the recording's end")


@router.post("/api/replay/{conference_id}/playback", tags=["replay"])
async def replay_playback(request: Request, conference_id: str, principal: Replayer,
                          body: PlaybackBody | None = None) -> Any:
    """Log the view (leaf + audit), then the segments with a URL per track and their content spans."""
    host = _host(request, principal)
    if isinstance(host, JSONResponse):
        return host
    refused = await _may_replay(request, principal, conference_id, "playback")
    if refused is not None:
        return refused
    body = body or PlaybackBody()
    try:
        plan = await host.playback(conference_id, principal.user.username, body.start_ms, body.end_ms,
                                   translate("zh-CN", "replay.reason"), client_address(request))
    except ReplayRefused as exc:
        return _refused(request, exc)
    base = f"/api/replay/{conference_id}/segments/"
    segments = []
    for seg in plan["segments"]:
        content = seg["content"]
        segments.append({**seg, "people_url": base + seg["key"] + "?track=people",
                         "content_url": base + seg["key"] + "?track=content" if content else None,
                         "content_codecs": content[0]["codec"] if content else None})
    return {**plan, "segments": segments}


@router.get("/api/replay/{conference_id}/segments/{key:path}", tags=["replay"])
async def replay_segment(request: Request, conference_id: str, key: str, principal: Replayer,
                         track: str = "people") -> Response:
    """One track of a segment (fMP4), when the caller's logged view covers it (403 otherwise)."""
    host = _host(request)
    if isinstance(host, JSONResponse):
        return host
    if track not in ("people", "content"):
        return _fail(request, 400, "bad_track")
    try:
        camera = parse_key(key).camera
    except StoreError:
        return _fail(request, 404, "unknown_segment")
    if camera != CAMERA_PREFIX + conference_id or not _CONFERENCE_ID.fullmatch(conference_id):
        return _fail(request, 404, "unknown_segment")
    if not _can_grant(principal) and not await _grants(request).allowed(conference_id, principal.user.username):
        await _audit(request, principal, "conference.replay", conference_id, {"what": "segment", "key": key,
                                                                              "error": "no grant"}, "denied")
        return _fail(request, 403, "not_granted")
    chosen: Track = "content" if track == "content" else "people"
    try:
        data = await host.segment(conference_id, principal.user.username, key, chosen)
    except ReplayRefused as exc:
        if exc.code == "view_not_logged":
            await _audit(request, principal, "conference.replay", conference_id,
                         {"what": "segment", "key": key, "error": "no logged view covers this segment"}, "denied")
        return _refused(request, exc)
    return Response(data, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})


# ---- grants --------------------------------------------------------------------------------------

class GrantBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64, description="the viewer allowed to replay")


@router.post("/api/replay/{conference_id}/grants", tags=["replay"])
async def grant(request: Request, conference_id: str, body: GrantBody, principal: Granter) -> Any:
    """Allow a viewer to replay this recorded conference (audited; idempotent)."""
    found = await _recorded(request, principal, conference_id, "grant")
    if isinstance(found, JSONResponse):
        await _audit(request, principal, "conference.replay.grant", conference_id,
                     {"username": body.username, "error": "not recorded"}, "failed")
        return found
    username = body.username.strip()
    user = await services_of(request).identity.get_user(username) if _USERNAME.fullmatch(username) else None
    if user is None or user.role is not Role.VIEWER:
        await _audit(request, principal, "conference.replay.grant", conference_id,
                     {"username": username, "error": "not a viewer"}, "failed")
        return _fail(request, 400, "not_viewer", name=username)
    try:
        new = await _grants(request).grant(conference_id, username, principal.user.username)
    except ReplayError as exc:
        await _audit(request, principal, "conference.replay.grant", conference_id,
                     {"username": username, "error": exc.code}, "failed")
        return _fail(request, 409, exc.code)
    await _audit(request, principal, "conference.replay.grant", conference_id, {"username": username, "new": new})
    return {"conference_id": conference_id, "grants": await _grants(request).listing(conference_id)}


@router.delete("/api/replay/{conference_id}/grants/{username}", tags=["replay"])
async def revoke(request: Request, conference_id: str, username: str, principal: Granter) -> Any:
    """Withdraw a viewer's replay of this conference (audited); 404 when there was no grant."""
    if not _CONFERENCE_ID.fullmatch(conference_id) or not await _grants(request).revoke(conference_id, username):
        await _audit(request, principal, "conference.replay.revoke", conference_id[:64],
                     {"username": username[:64], "error": "no grant"}, "failed")
        return _fail(request, 404, "no_grant", name=username[:64])
    await _audit(request, principal, "conference.replay.revoke", conference_id, {"username": username})
    return {"conference_id": conference_id, "grants": await _grants(request).listing(conference_id)}
