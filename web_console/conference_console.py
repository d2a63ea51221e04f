"""The chair console (`/conference`), the browser join page (`/join/<id>`), their REST API and the
WebRTC signalling websocket (`/ws/conference/<id>`).

Chair operations are one endpoint, `POST /api/conferences/<id>/ops` with `{"op": ..., ...}`,
mapped onto `mcu.room.Room` methods; every call (accepted or refused) is audited with who,
what and from where, and the room's events reach every console over `/ws/events`.

Signalling protocol (JSON text frames):

    client -> {"type": "join", "sdp": OFFER, "name": "...", "pin": "...", "codec": "h264"|"vp8"}
    client -> {"type": "preview", "sdp": OFFER}            (chair/operator: receive-only broadcast)
    server -> {"type": "answer", "sdp": ANSWER, "participant_id": "..."}
    server -> {"type": "refused", "code": "wrong_pin"|..., "message": "...", "retry_after": s}
    client -> {"type": "leave"} | {"type": "ping"}          server -> {"type": "pong"}
    server -> {"type": "error", "code": "malformed", "message": "..."} then close (1008)
    server -> {"type": "bye", "reason": "removed"|"ended"|...} then close (1000)
    content sharing and request to speak: see :mod:`web_console.content_signalling`

The leg lives as long as the websocket: when the socket drops (tab closed, browser killed) the
site leaves at once.

Size: about 650 lines: the chair's HTTP routes plus the join websocket's signalling protocol
above, both over the same conference lookups and audit rows; the domain rules live in
:mod:`mcu.chair` and :mod:`mcu.conferences`.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field, ValidationError
from starlette.requests import HTTPConnection

from config.roles import Role
from core.runtime import CoreServices
from mcu.capability import McuCapability
from mcu.cascade.remote_chair import apply_remotely
from mcu.chair import ChairOperation, apply_operation
from mcu.conferences import (
    DIAL_ACTIONS,
    ConferenceError,
    ConferenceService,
    DialError,
    RemoteCommandError,
    RunningConference,
)
from mcu.layout import LAYOUTS
from mcu.legs.webrtc import WebRtcLeg
from mcu.room import RoomError
from recorder.conference_recording import HTTP_STATUS as RECORDING_HTTP_STATUS
from recorder.conference_recording import ConferenceRecorder, ConferenceRecordingError
from web_console import content_signalling, field_console
from web_console.auth import (
    SESSION_COOKIE,
    Principal,
    RoleFirstRoute,
    allowed,
    client_address,
    current_principal,
    node_of,
    refuse_websocket,
    require,
    resolve_principal,
    same_origin,
    services_of,
)
from web_console.conference_host import HostRefused, JoinRequest, LocalRoomHost, RemoteRoomHost, RoomHost
from web_console.guards import NUL, ApiModel, TokenBucket, nul_message
from web_console.room_state import room_state
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)
CHAIR_ROLES = (Role.CHAIR, Role.OPERATOR)
MAX_SIGNAL_BYTES = 64 * 1024


def _mcu(connection: HTTPConnection) -> McuCapability:
    role = node_of(connection).mcu
    if role is None:  # a --role web process: the conferences run in an MCU process
        raise HTTPException(503, "本节点未运行会议服务（会控需与 MCU 在同一进程）")
    return role


def _conferences(connection: HTTPConnection) -> ConferenceService:
    return _mcu(connection).conferences


def _remote(connection: HTTPConnection, *, per_request: bool = True) -> RoomHost | None:
    """The rooms of other nodes (node RPC) when no MCU runs here; None when one does.

    `per_request`: the HTTP request's ``Idempotency-Key`` (if sent) makes a retry run once."""
    node = node_of(connection)
    if node.mcu is not None or node.rpc is None:
        return None
    key = connection.headers.get("idempotency-key") if per_request else None
    principal = getattr(connection.state, "principal", None)
    scoped = f"{principal.user.username}:{key[:80]}" if key and principal is not None else None
    return RemoteRoomHost(node.rpc, language_of(connection), scoped)  # type: ignore[arg-type]


async def _hosted(request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any],
                  work: Any) -> Any:
    """Run `work` (a RoomHost call) for a route: audited here, refusals as {"detail": ...} with their status."""
    try:
        result = await work
    except HostRefused as exc:
        await _audit(request, principal, action, target, detail | {"error": exc.message, "code": exc.code}, "failed")
        return _error(exc.status, exc.message)
    await _audit(request, principal, action, target, detail | {"via": "node-rpc"})
    return result


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


# -- pages ----------------------------------------------------------------------------------------

@router.get("/conference", include_in_schema=False)
async def console_page(request: Request, principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Response:
    plan = services_of(request).plan
    return render(request, "conference.html", layouts=LAYOUTS,
                  meeting_rooms=[{"id": r.id, "name": r.name, "contacts": bool(r.contacts)}
                                 for r in plan.meeting_rooms])


ANONYMOUS_UNAVAILABLE = "无法加入该会议：会议号不存在、未开始、已结束、已锁定或不对访客开放"
JOIN_STATUS = {"unknown": 404, "ended": 410, "locked": 423, "not_started": 409, "unavailable": 404}


def _join_limiter(request: Request) -> TokenBucket:
    """The app's per-source bucket for anonymous join pages (made on first use from the settings)."""
    limiter: TokenBucket | None = getattr(request.app.state, "join_limiter", None)
    if limiter is None:
        http = services_of(request).settings.http
        limiter = request.app.state.join_limiter = TokenBucket(http.join_per_minute / 60.0, http.join_burst)
    return limiter


@dataclass(frozen=True)
class _RemoteRecord:
    name: str
    pin: bool
    guests: bool


async def _local_join_state(request: Request, conference_id: str) -> tuple[str, Any]:
    """The join page's state of a conference of this node's MCU, and its record."""
    state, record = "ok", None
    try:
        service = _conferences(request)
        record = await service.get(conference_id) if conference_id.isdigit() and len(conference_id) <= 12 else None
        conf = service.running(conference_id)
        if record is None:
            state = "unknown"
        elif record.status == "ended":
            state = "ended"
        elif conf is None:
            state = "not_started"
        elif conf.room.locked:
            state = "locked"
    except ConferenceError:
        state = "unknown"
    return state, record


async def _remote_join_state(remote: RoomHost, conference_id: str) -> tuple[str, Any]:
    """The join page's state of a conference hosted on another node (unknown when unreachable)."""
    if not (conference_id.isdigit() and len(conference_id) <= 12):
        return "unknown", None
    try:
        found = await remote.state(conference_id)
    except HostRefused:
        return "unknown", None
    conf = found.get("conference") or {}
    record = _RemoteRecord(str(conf.get("name", "")), bool(conf.get("has_pin")), bool(conf.get("guests")))
    if conf.get("status") == "ended":
        return "ended", record
    if not found.get("running"):
        return "not_started", record
    return ("locked" if found.get("locked") else "ok"), record


@router.get("/join/{conference_id}", include_in_schema=False)
async def join_page(request: Request, conference_id: str) -> Response:
    """Public: the browser client, or a page saying the conference cannot be joined.

    A signed-in user is told why (unknown, not started, ended, locked). An anonymous visitor gets
    one and the same answer (404, no name, no state) for every conference they may not join —
    unknown, not started, ended, locked, or not open to guests — so conference ids cannot be
    enumerated, and is rate-limited per source address (429 with Retry-After).
    """
    principal = await current_principal(request)
    if principal is None:
        wait = _join_limiter(request).take(client_address(request), time.monotonic())
        if wait > 0:
            seconds = TokenBucket.retry_after_header(wait)
            response = render(request, "join.html", status_code=429, state="rate_limited", conference_id="",
                              conference_name="", needs_pin=False, needs_login=False, display_name="",
                              retry_after=seconds)
            response.headers["Retry-After"] = seconds
            return response
    remote = _remote(request, per_request=False)
    state, record = await (_remote_join_state(remote, conference_id) if remote is not None
                           else _local_join_state(request, conference_id))
    may_skip = principal is not None and allowed(principal.user.role, frozenset(CHAIR_ROLES))
    if principal is None and (state != "ok" or record is None or not record.guests):
        return render(request, "join.html", status_code=JOIN_STATUS["unavailable"], state="unavailable",
                      conference_id=conference_id, conference_name="", needs_pin=False, needs_login=False,
                      display_name="")
    needs_login = record is not None and not record.guests and principal is None
    return render(request, "join.html", status_code=JOIN_STATUS.get(state, 200), state=state,
                  conference_id=conference_id, conference_name=record.name if record else "",
                  needs_pin=bool(record and record.pin) and not may_skip, needs_login=needs_login,
                  display_name=(principal.user.display_name or principal.user.username) if principal else "")


# -- REST API -------------------------------------------------------------------------------------

class CreateConference(ApiModel):
    name: str = Field(min_length=1, max_length=100)
    pin: str = ""
    guests: bool = False
    sites: list[str] = Field(default_factory=list)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    start_now: bool = False
    # meeting notice by SMS to the rooms' contacts (issue 20); None: on when a room has contacts
    sms_notice: bool | None = None


class Extend(ApiModel):
    minutes: int


class Operation(ApiModel):
    # the HTTP body of a chair operation: the fields of `mcu.chair.ChairOperation` (a comment, not a
    # docstring, so the OpenAPI schema stays as it was)
    op: str
    site: str | None = None
    target: str | None = None
    layout: str | None = None
    index: int | None = None
    mode: str | None = None
    enabled: bool = True
    text: str = ""
    position: str = "top"
    scroll: bool = False
    sites: list[str] = Field(default_factory=list)
    interval: float = 10.0
    pane: int | None = None
    mute_others: bool = False

    def chair_operation(self) -> ChairOperation:
        return ChairOperation(**self.model_dump())


async def _audit(request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any],
                 outcome: str = "ok") -> None:
    await services_of(request).audit.record(principal.user.username, action, target, outcome=outcome,
                                            source=client_address(request), detail=detail)


@router.get("/api/conferences", tags=["conference"])
async def list_conferences(request: Request, principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))],
                           include_ended: bool = False) -> Any:
    if (remote := _remote(request)) is not None:
        try:
            return await remote.conferences(include_ended)
        except HostRefused as exc:
            return _error(exc.status, exc.message)
    service = _conferences(request)
    return [{**r.to_json(), "running": service.running(r.id) is not None}
            for r in await service.list_conferences(include_ended)]


@router.get("/api/meeting-rooms", tags=["conference"])
async def meeting_rooms(request: Request, principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    return [{"id": r.id, "name": r.name, "protocol": r.endpoints[0].protocol if r.endpoints else "webrtc"}
            for r in services_of(request).plan.meeting_rooms]


def _sms_notice(request: Request, body: CreateConference) -> bool:
    """Whether the rooms' contacts get the meeting notice: the form's choice, else when any has contacts."""
    if body.sms_notice is not None:
        return body.sms_notice
    return any(r.contacts for r in services_of(request).plan.meeting_rooms if r.id in body.sites)


@router.post("/api/conferences", status_code=201, tags=["conference"])
async def create_conference(request: Request, body: CreateConference,
                            principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    detail = body.model_dump(mode="json", exclude={"pin"}) | {"has_pin": bool(body.pin)}
    if (remote := _remote(request)) is not None:  # scheduled by a live MCU node, which hosts it when started
        fields = body.model_dump(mode="json", exclude={"start_now", "sms_notice"})
        created = await _hosted(request, principal, "conference.create", body.name, detail,
                                remote.create(fields, principal.user.username, body.start_now))
        return JSONResponse(created, status_code=201) if isinstance(created, dict) else created
    service = _conferences(request)
    try:
        record = await service.create(name=body.name, actor=principal.user.username, pin=body.pin,
                                      guests=body.guests, sites=body.sites, starts_at=body.starts_at,
                                      ends_at=body.ends_at, notify=_sms_notice(request, body))
        if body.start_now:
            await service.start_conference(record.id, principal.user.username)
    except ConferenceError as exc:
        await _audit(request, principal, "conference.create", body.name, detail | {"error": str(exc)}, "failed")
        return _error(400, str(exc))
    await _audit(request, principal, "conference.create", record.id, detail)
    return {**record.to_json(), "running": service.running(record.id) is not None}


@router.post("/api/conferences/{conference_id}/start", tags=["conference"])
async def start_conference(request: Request, conference_id: str,
                           principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    if (remote := _remote(request)) is not None:
        return await _hosted(request, principal, "conference.start", conference_id, {},
                             remote.start(conference_id, principal.user.username))
    service = _conferences(request)
    try:
        conf = await service.start_conference(conference_id, principal.user.username)
    except ConferenceError as exc:
        await _audit(request, principal, "conference.start", conference_id, {"error": str(exc)}, "failed")
        return _error(400, str(exc))
    await _audit(request, principal, "conference.start", conference_id, {})
    return room_state(conf)


@router.post("/api/conferences/{conference_id}/extend", tags=["conference"])
async def extend_conference(request: Request, conference_id: str, body: Extend,
                            principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    if (remote := _remote(request)) is not None:
        return await _hosted(request, principal, "conference.extend", conference_id, {"minutes": body.minutes},
                             remote.extend(conference_id, body.minutes, principal.user.username))
    service = _conferences(request)
    try:
        record = await service.extend(conference_id, body.minutes, principal.user.username)
    except ConferenceError as exc:
        await _audit(request, principal, "conference.extend", conference_id, {"error": str(exc)}, "failed")
        return _error(400, str(exc))
    await _audit(request, principal, "conference.extend", conference_id, {"minutes": body.minutes})
    return record.to_json()


@router.post("/api/conferences/{conference_id}/end", tags=["conference"])
async def end_conference(request: Request, conference_id: str,
                         principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    if (remote := _remote(request)) is not None:
        return await _hosted(request, principal, "conference.end", conference_id, {},
                             remote.end(conference_id, principal.user.username))
    service = _conferences(request)
    try:
        await service.end(conference_id, principal.user.username)
    except ConferenceError as exc:
        await _audit(request, principal, "conference.end", conference_id, {"error": str(exc)}, "failed")
        return _error(400, str(exc))
    await _audit(request, principal, "conference.end", conference_id, {})
    return {"id": conference_id, "status": "ended"}


@router.get("/api/conferences/{conference_id}", tags=["conference"])
async def conference_state(request: Request, conference_id: str,
                           principal: Annotated[Principal, Depends(require(*CHAIR_ROLES, Role.LEADER))]) -> Any:
    """The conference's state; the leader reads it too (the command view's camera control lists its sites)."""
    if (remote := _remote(request)) is not None:
        try:
            return await remote.state(conference_id)
        except HostRefused as exc:
            return _error(exc.status, exc.message)
    service = _conferences(request)
    conf = service.running(conference_id)
    if conf is not None:
        legs = _mcu(request).webrtc
        keys = legs.legs if legs is not None else {}  # an MCU without WebRTC legs has none to list
        return room_state(conf) | {"webrtc_legs": sorted(k.split("/", 1)[1] for k in keys
                                                         if k.startswith(conference_id + "/"))}
    record = await service.get(conference_id)
    if record is None:
        return _error(404, f"会议不存在：{conference_id}")
    return {"conference": record.to_json(), "running": False, "sites": [], "layouts": list(LAYOUTS)}


@router.post("/api/conferences/{conference_id}/ops", tags=["conference"])
async def chair_operation(request: Request, conference_id: str, body: Operation,
                          principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """One chair operation (see `apply_operation`); refused operations change nothing and say why."""
    detail = body.model_dump(exclude_defaults=True)
    if (remote := _remote(request)) is not None:  # the room runs on another node: operate it there
        return await _hosted(request, principal, f"conference.{body.op}", conference_id, detail,
                             remote.operate(conference_id, body.chair_operation()))
    service = _conferences(request)
    conf = service.running(conference_id)
    if conf is None:
        await _audit(request, principal, f"conference.{body.op}", conference_id, detail | {"error": "not running"},
                     "failed")
        return _error(404, f"会议未在进行：{conference_id}")
    if conf.is_remote(body.site):
        return await _remote_operation(request, principal, conf, body, detail)
    try:
        apply_operation(conf.room, body.chair_operation())
    except (RoomError, ValueError) as exc:
        await _audit(request, principal, f"conference.{body.op}", conference_id, detail | {"error": str(exc)},
                     "failed")
        return _error(400, str(exc))
    await _audit(request, principal, f"conference.{body.op}", conference_id, detail)
    return room_state(conf)


def _dial_status(exc: ConferenceError) -> int:
    return exc.status if isinstance(exc, DialError) else 400


def _dial_detail(exc: ConferenceError) -> dict[str, Any]:
    return {"error": str(exc), **({"code": exc.code} if isinstance(exc, DialError) else {})}


async def _remote_operation(request: Request, principal: Principal, conf: RunningConference, body: Operation,
                            detail: dict[str, Any]) -> Any:
    """A chair operation on a site behind a cascade link: sent over the control channel, answered
    with the remote node's result (503 unreachable, 504 timeout, 409 refused) or the new state."""
    action = f"conference.{body.op}"
    try:
        await apply_remotely(conf, body.chair_operation())
    except RoomError as exc:
        await _audit(request, principal, action, conf.id, detail | {"remote": True, "error": str(exc)}, "failed")
        return _error(400, str(exc))
    except RemoteCommandError as exc:
        await _audit(request, principal, action, conf.id,
                     detail | {"remote": True, "code": exc.code, "error": exc.message}, "failed")
        return _error(exc.status, exc.message)
    await _audit(request, principal, action, conf.id, detail | {"remote": True})
    return room_state(conf)


@router.get("/api/conferences/{conference_id}/cascade", tags=["conference"])
async def cascade_paths(request: Request, conference_id: str,
                        principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Per cascade link: its path state (专线 / 电信备份 / 中断) and switch history from the `cascade`
    capability, and whether the control channel to that node is up."""
    node = node_of(request)
    failover, control = node.cascade, node.cascade_control
    status = getattr(failover, "status", None)
    found = status(conference_id) if status is not None else []
    links = list(await found if inspect.isawaitable(found) else found)
    channels: dict[str, bool] = control.channels() if control is not None else {}
    labels: dict[str, str] = control.labels() if control is not None else {}
    return {"conference_id": conference_id, "available": status is not None, "links": links,
            "channels": channels, "labels": labels}


@router.post("/api/conferences/{conference_id}/sites/{site_id}/{action}", tags=["conference"])
async def dial_site(request: Request, conference_id: str, site_id: str, action: str,
                    principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Invite / redial / hang up a SIP or H.323 site through its protocol's dialer.

    404 conference not running or site not in it, 409 already calling/connected (invite) or not
    connected (hang-up), 501 no dialer for the site's protocol on this node, 503 no media ports.
    """
    if action not in DIAL_ACTIONS:
        return _error(404, f"未知操作：{action}")
    if (remote := _remote(request)) is not None:
        return await _hosted(request, principal, f"conference.{action}", f"{conference_id}/{site_id}", {},
                             _ok(remote.dial(conference_id, site_id, action, principal.user.username)))
    service = _conferences(request)
    try:
        await service.dial(conference_id, site_id, action, principal.user.username)
    except ConferenceError as exc:
        await _audit(request, principal, f"conference.{action}", f"{conference_id}/{site_id}", _dial_detail(exc),
                     "failed")
        return _error(_dial_status(exc), str(exc))
    await _audit(request, principal, f"conference.{action}", f"{conference_id}/{site_id}", {})
    return {"ok": True}


async def _ok(work: Any) -> dict[str, bool]:
    await work
    return {"ok": True}


_USERINFO_PASSWORD = re.compile(r"^(\s*sips?:[^:@;/]*):[^@]*@", re.IGNORECASE)


def _redacted(address: str) -> str:
    """The address without a ``user:password@`` password, for the audit log."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", address)


class AddSite(ApiModel):
    """Add a site by address: a SIP URI (``sip:room@10.1.2.3``) or an H.323 address (``h323:``,
    an alias, an E.164 number, ``alias@host`` or an IP with optional port)."""

    model_config = ConfigDict(extra="forbid")
    address: str = Field(min_length=1, max_length=256)
    name: str = Field("", max_length=100)


@router.post("/api/conferences/{conference_id}/sites", status_code=202, tags=["conference"])
async def add_site(request: Request, conference_id: str, body: AddSite,
                   principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Call a site that is not (yet) in the conference by its address; 202 with its site-list row.

    The protocol comes from the address; the call goes through that protocol's dialer and shows in
    the site list (calling → joined, or failed with the reason), where redial/hang-up work as for
    any site. 400 bad address, 404 conference not running, 409 already in the conference or being
    called, 501 no dialer for that protocol on this node, 503 no media ports.
    """
    service = _conferences(request)
    name = "".join(c for c in body.name.strip() if c.isprintable())
    address = _redacted(body.address)
    detail: dict[str, Any] = {"address": address, "name": name}
    try:
        site_id, protocol = await service.dial_address(conference_id, body.address, name, principal.user.username)
    except ConferenceError as exc:
        await _audit(request, principal, "conference.invite", f"{conference_id}/{address[:80]}",
                     detail | _dial_detail(exc), "failed")
        return _error(_dial_status(exc), str(exc))
    await _audit(request, principal, "conference.invite", f"{conference_id}/{site_id}", detail | {"protocol": protocol})
    conf = service.running(conference_id)
    rows = conf.site_list() if conf is not None else []
    row = next((r for r in rows if r["site_id"] == site_id), {"site_id": site_id, "protocol": protocol})
    return JSONResponse(row, status_code=202)


# -- recording ------------------------------------------------------------------------------------

def _conference_recorder(connection: HTTPConnection) -> ConferenceRecorder | None:
    role = node_of(connection).conference_recording
    return role.recorder if role is not None else None


@router.get("/api/conferences/{conference_id}/recording", tags=["conference"])
async def recording_state(request: Request, conference_id: str,
                          principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """The conference's running recording (since when, how many segments); 404 when none runs.

    ``/recording`` names the running recording: POST starts it, DELETE stops it, and after a
    DELETE it is gone (404), as REST clients and checkers expect. The footage already written
    stays in the tamper-evident store for inspectors, under retention and legal holds.
    """
    if (remote := _remote(request)) is not None:
        try:
            return await remote.recording(conference_id, "state", principal.user.username, client_address(request))
        except HostRefused as exc:
            if exc.code == "not_recording":  # the same shape as this node's own answer below
                return JSONResponse({"detail": exc.message, "available": True, "recording": False}, status_code=404)
            return _error(exc.status, exc.message)
    recorder = _conference_recorder(request)
    if recorder is None:
        return {"available": False, "recording": False}
    handle = recorder.recording(conference_id)
    if handle is None:
        return JSONResponse({"detail": f"会议未在录制：{conference_id}", "available": True, "recording": False},
                            status_code=404)
    return {"available": True, "recording": True, **handle.to_json()}


async def _recording_action(request: Request, conference_id: str, principal: Principal, start: bool) -> Any:
    if (remote := _remote(request)) is not None:
        verb = "start" if start else "stop"
        return await _hosted(request, principal, f"conference.recording.{verb}", conference_id, {},
                             remote.recording(conference_id, verb, principal.user.username, client_address(request)))
    recorder = _conference_recorder(request)
    if recorder is None:
        return _error(503, "本节点未运行会议录制（需 MCU 与录像在同一进程）")
    action = recorder.start_recording if start else recorder.stop_recording
    try:
        handle = await action(conference_id, principal.user.username, source=client_address(request))
    except ConferenceRecordingError as exc:
        await _audit(request, principal, f"conference.recording.{'start' if start else 'stop'}", conference_id,
                     {"code": exc.code, "error": exc.message}, "failed")
        return _error(RECORDING_HTTP_STATUS.get(exc.code, 400), exc.message)
    if handle is None:  # DELETE of a recording that does not run: nothing to stop
        await _audit(request, principal, "conference.recording.stop", conference_id, {"error": "not recording"},
                     "failed")
        return _error(404, f"会议未在录制：{conference_id}")
    return {"recording": start, **handle.to_json()}


@router.post("/api/conferences/{conference_id}/recording", tags=["conference"])
async def recording_start(request: Request, conference_id: str,
                          principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Record the broadcast view and the mixed audio into the recording store (idempotent)."""
    return await _recording_action(request, conference_id, principal, start=True)


@router.delete("/api/conferences/{conference_id}/recording", tags=["conference"])
async def recording_stop(request: Request, conference_id: str,
                         principal: Annotated[Principal, Depends(require(*CHAIR_ROLES))]) -> Any:
    """Stop the running recording (its open segment is committed first); 404 when none runs."""
    return await _recording_action(request, conference_id, principal, start=False)


# -- signalling -----------------------------------------------------------------------------------

class JoinMessage(ApiModel):
    type: Literal["join", "preview"]
    sdp: str = Field(min_length=10, max_length=MAX_SIGNAL_BYTES)
    name: str = Field("", max_length=64)
    pin: str = Field("", max_length=32)
    codec: Literal["h264", "vp8"] | None = None


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps(message, ensure_ascii=False))


async def _malformed(websocket: WebSocket, reason: str) -> None:
    await _send(websocket, {"type": "error", "code": "malformed", "message": reason})
    with contextlib.suppress(Exception):
        await websocket.close(code=1008)


@router.websocket("/ws/conference/{conference_id}")
async def signalling(websocket: WebSocket, conference_id: str) -> None:
    services: CoreServices = websocket.app.state.services
    principal = await resolve_principal(services, websocket.headers.get("authorization"),
                                        websocket.cookies.get(SESSION_COOKIE))
    if not same_origin(websocket):
        await refuse_websocket(websocket, principal, "origin")
        return
    await websocket.accept()
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), 30)
    except (WebSocketDisconnect, TimeoutError, KeyError, RuntimeError):
        return
    try:
        if len(raw) > MAX_SIGNAL_BYTES:
            raise ValueError("message too large")
        if NUL in conference_id:
            raise ValueError(nul_message("conference_id"))
        message = JoinMessage.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        await _malformed(websocket, f"bad first message: {str(exc)[:200]}")
        return
    if principal is not None and principal.user.role is Role.RESPONDER and not await field_console.responder_may_join(
            websocket, principal.user.username, conference_id):  # a unit's crew: its incident's command conference only
        await services.audit.record(principal.user.username, f"conference.{message.type}", conference_id,
                                    outcome="denied", source=websocket.client.host if websocket.client else "",
                                    detail={"code": "forbidden"})
        await _send(websocket, {"type": "refused", "code": "forbidden", "message": "单兵只能加入本力量警情的指挥会议"})
        await websocket.close(code=1000)
        return
    if (remote := _remote(websocket, per_request=False)) is not None:  # the room runs on another node
        await _proxy_leg(websocket, services, remote, principal, conference_id, message)
        return
    try:
        mcu = _mcu(websocket)
    except HTTPException as exc:
        await _send(websocket, {"type": "refused", "code": "unavailable", "message": str(exc.detail)})
        await websocket.close(code=1000)
        return
    leg = await _admit(websocket, services, LocalRoomHost(mcu), principal, conference_id, message)
    if leg is None:
        return
    await _run_leg(websocket, leg)


def _join_request(websocket: WebSocket, principal: Principal | None, conference_id: str,
                  message: JoinMessage) -> JoinRequest:
    chair = principal is not None and allowed(principal.user.role, frozenset(CHAIR_ROLES))
    # the leader previews too: the command view's receive-only video (issue 19)
    may_preview = chair or (principal is not None and principal.user.role is Role.LEADER)
    return JoinRequest(conference_id, message.type, message.sdp, message.name, message.pin, message.codec,
                       principal.user.username if principal else None,
                       principal.user.display_name if principal else "", chair,
                       websocket.client.host if websocket.client else "", may_preview)


async def _refuse(websocket: WebSocket, services: CoreServices, req: JoinRequest, exc: HostRefused) -> None:
    if exc.code == "malformed":
        await _malformed(websocket, exc.message)
        return
    await services.audit.record(req.username or "guest", f"conference.{req.kind}", req.conference_id,
                                outcome="denied", source=req.source, detail={"code": exc.code})
    await _send(websocket, {"type": "refused", "code": exc.code, "message": exc.message,
                            "retry_after": exc.retry_after})
    with contextlib.suppress(Exception):
        await websocket.close(code=1000)


async def _proxy_leg(websocket: WebSocket, services: CoreServices, host: RoomHost, principal: Principal | None,
                     conference_id: str, message: JoinMessage) -> None:
    """Signalling for a room on another node: the offer, pings and leave go there over node RPC; what
    the leg there says to the browser (its pane size) comes back by long poll (`_forward_leg_signals`)."""
    req = _join_request(websocket, principal, conference_id, message)
    try:
        joined = await host.join(req)
    except HostRefused as exc:
        await _refuse(websocket, services, req, exc)
        return
    participant = str(joined["participant_id"])
    await services.audit.record(req.username or "guest", f"conference.{req.kind}", conference_id, source=req.source,
                                detail={"participant_id": participant, "name": joined.get("name"),
                                        "codec": joined.get("codec"), "via": "node-rpc"})
    await _send(websocket, {"type": "answer", "sdp": joined["sdp"], "participant_id": participant,
                            "codec": joined.get("codec")})
    forward = asyncio.create_task(_forward_leg_signals(websocket, host, conference_id, participant),
                                  name="proxied-leg-signals")
    try:
        while True:
            try:
                raw = await websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError, KeyError):
                return
            try:
                parsed = json.loads(raw)
                kind = parsed.get("type") if isinstance(parsed, dict) else None
            except ValueError:
                kind = None
            if kind == "ping":
                try:
                    state = await host.leg_state(conference_id, participant)
                except HostRefused as exc:  # the hosting node died: so did the leg
                    state = {"open": False, "reason": exc.code}
                if not state.get("open"):
                    await _send(websocket, {"type": "bye", "reason": state.get("reason") or "ended"})
                    with contextlib.suppress(Exception):
                        await websocket.close(code=1000)
                    return
                await _send(websocket, {"type": "pong", "stats": state.get("stats")})
            elif kind == "leave":
                await _send(websocket, {"type": "bye", "reason": "left"})
                with contextlib.suppress(Exception):
                    await websocket.close(code=1000)
                return
            else:
                await _malformed(websocket, f"unexpected message: {raw[:80]!r}")
                return
    finally:
        forward.cancel()
        with contextlib.suppress(BaseException):
            await forward
        await host.leave(conference_id, participant)


async def _forward_leg_signals(websocket: WebSocket, host: RoomHost, conference_id: str, participant: str) -> None:
    """Forward the proxied leg's messages for its browser (`send_size`) until the leg is gone; a failed
    poll (the hosting node busy or restarting) is retried after a pause, the pings judge the leg's end."""
    version = 0
    while True:
        try:
            got = await host.leg_signals(conference_id, participant, version)
        except HostRefused:
            await asyncio.sleep(2.0)
            continue
        if not got.get("open"):
            return
        version = int(got.get("version") or version)
        message = got.get("message")
        if isinstance(message, dict) and message.get("type") == "send_size":
            await _send(websocket, message)


async def _admit(websocket: WebSocket, services: CoreServices, host: LocalRoomHost, principal: Principal | None,
                 conference_id: str, message: JoinMessage) -> WebRtcLeg | None:
    req = _join_request(websocket, principal, conference_id, message)
    try:
        leg, answer = await host.admit(req)
    except HostRefused as exc:
        await _refuse(websocket, services, req, exc)
        return None
    await services.audit.record(req.username or "guest", f"conference.{message.type}", conference_id,
                                source=req.source,
                                detail={"participant_id": leg.participant_id, "name": leg.name, "codec": leg.codec})
    await _send(websocket, {"type": "answer", "sdp": answer, "participant_id": leg.participant_id,
                            "codec": leg.codec})
    return leg


async def _run_leg(websocket: WebSocket, leg: WebRtcLeg) -> None:
    """Serve the signalling socket until the peer leaves, the leg ends or a message is malformed."""
    closed_wait = asyncio.create_task(leg.closed.wait())
    content = _mcu(websocket).content
    detach = content_signalling.attach(websocket, content, leg)
    sends: set[asyncio.Task[None]] = set()

    def signal(message: dict[str, Any]) -> None:  # e.g. the pane size the browser should send (mcu.pane_size)
        task = asyncio.get_running_loop().create_task(_send(websocket, message))
        sends.add(task)
        task.add_done_callback(sends.discard)

    detach_size = leg.attach_signalling(signal)
    try:
        while True:
            receive = asyncio.create_task(websocket.receive_text())
            done, _ = await asyncio.wait({receive, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
            if closed_wait in done:
                receive.cancel()
                with contextlib.suppress(BaseException):
                    await receive
                await _send(websocket, {"type": "bye", "reason": leg.close_reason})
                with contextlib.suppress(Exception):
                    await websocket.close(code=1000)
                return
            try:
                raw = receive.result()
            except (WebSocketDisconnect, RuntimeError, KeyError):
                return  # the browser went away: the finally below makes the site leave now
            try:
                message = json.loads(raw)
                kind = message.get("type") if isinstance(message, dict) else None
            except ValueError:
                kind = None
            if kind == "ping":
                await _send(websocket, {"type": "pong", "stats": leg.describe()})
            elif isinstance(kind, str) and kind in content_signalling.CONTENT_MESSAGES:
                await content_signalling.handle(websocket, content, leg, message)
            elif kind == "leave":
                await leg.close("left")
                await _send(websocket, {"type": "bye", "reason": "left"})
                with contextlib.suppress(Exception):
                    await websocket.close(code=1000)
                return
            else:
                await _malformed(websocket, f"unexpected message: {raw[:80]!r}")
                return
    finally:
        detach()
        detach_size()
        closed_wait.cancel()
        with contextlib.suppress(BaseException):
            await closed_wait
        await leg.close("left")
