"""The call-taking desk (`/desk`, role calltaker): its page, REST API, presence websocket and the
AML endpoint (`POST /api/aml`). The work is done by ``dispatch.calltaking.service.DeskService``
(``Node.desk.service``); this module maps HTTP onto it.

Errors: a desk action that does not fit (call gone, not offered to you) → 409; bad input → 422;
an AML payload that is not AML → 400 with the reason, logged and audited.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, WebSocket
from fastapi.responses import FileResponse, Response
from pydantic import ConfigDict, Field
from starlette.background import BackgroundTask

from config.roles import Role
from dispatch.calltaking.acd import PositionState
from dispatch.calltaking.aml import AmlFormatError
from dispatch.calltaking.errors import DeskError
from dispatch.calltaking.service import DISPOSITIONS, DeskService
from dispatch.model import CATEGORIES, PRIORITY_NAMES
from dispatch.names_en import english_names
from dispatch.service import DispatchService
from gis.map_builder import areas_geojson
from web_console.auth import (
    SESSION_COOKIE,
    Principal,
    RoleFirstRoute,
    client_address,
    node_of,
    refuse_websocket,
    require,
    resolve_principal,
    same_origin,
)
from web_console.desk_host import DeskHost, DeskLease, DeskUnavailable, LocalDesk, RemoteDesk
from web_console.desk_recordings import CallRecordingNodes, RemoteRecordings, TransferRefused, remove_fetched
from web_console.events_ws import stream_until_disconnect
from web_console.guards import NUL, ApiModel, nul_message
from web_console.i18n import translate
from web_console.templating import language_of, render

log = logging.getLogger(__name__)
router = APIRouter(route_class=RoleFirstRoute)

CALLTAKERS = require(Role.CALLTAKER)
READERS = require(Role.CALLTAKER, Role.DISPATCHER)
CallTaker = Annotated[Principal, Depends(CALLTAKERS)]
Reader = Annotated[Principal, Depends(READERS)]
Inspector = Annotated[Principal, Depends(require(Role.INSPECTOR))]  # and admins


def desk_host(connection: Request | WebSocket) -> DeskHost | None:
    """This node's desk, or (a web node with ``emergency.remote_desk``) the desk node's over node RPC."""
    node = node_of(connection)
    if node.desk is not None:
        return LocalDesk(node.desk.service)
    if node.rpc is None or not node.core.settings.emergency.remote_desk:
        return None
    key = connection.headers.get("idempotency-key")
    principal = getattr(connection.state, "principal", None)
    scoped = f"{principal.user.username}:{key[:80]}" if key and principal is not None else None
    return RemoteDesk(node.rpc, DeskLease(node.rpc), language_of(connection), scoped)  # type: ignore[arg-type]


def desk_of(request: Request | WebSocket) -> DeskHost:
    desk = desk_host(request)
    if desk is None:
        raise HTTPException(503, "接警服务未在本节点运行")
    return desk


def local_desk(request: Request) -> DeskService:
    """The desk of this process."""
    svc = desk_of(request).local
    if svc is None:
        raise HTTPException(503, translate(language_of(request), "node.desk_local"))
    return svc


def dispatch_of(request: Request) -> DispatchService:
    cap = node_of(request).dispatch
    if cap is None:
        raise HTTPException(503, "接警服务未在本节点运行")
    return cap.service


@contextlib.contextmanager
def desk_errors() -> Any:
    try:
        yield
    except DeskError as e:
        raise HTTPException(409, str(e)) from None
    except DeskUnavailable as e:
        raise HTTPException(e.status, e.message) from None


async def desk_op(request: Request, name: str, **args: Any) -> Any:
    """Run desk operation `name` (``desk_host.DESK_OPS``) here or on the desk node; refusals as HTTP errors."""
    with desk_errors():
        return await desk_of(request).op(name, args)


class _Body(ApiModel):
    model_config = ConfigDict(extra="forbid")


class PositionBody(_Body):
    state: str = "available"
    group: str = Field("primary", pattern="^(primary|overflow)$")
    training: bool | None = None  # sign on in training mode (演练席位); None keeps the position's mode


class PositionTraining(_Body):
    training: bool


class ManualLocation(_Body):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    radius_m: float | None = Field(None, ge=0, le=100_000)
    label: str = Field("", max_length=200)


class IncidentFromCall(_Body):
    category: str | None = None
    subtype: str = "general"
    priority: int = Field(3, ge=1, le=5)
    description: str = Field("", max_length=4000)
    address: str = Field("", max_length=500)
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)
    radius_m: float | None = Field(None, ge=0, le=100_000)


class MergeBody(_Body):
    incident_id: str = Field(min_length=1, max_length=100)


class HangupBody(_Body):
    disposition: str = "other"


class SdpBody(_Body):
    sdp: str = Field(min_length=10, max_length=20_000)


class HoldBody(_Body):
    on_hold: bool


class DigitsBody(_Body):
    digits: str = Field(pattern="^[0-9*#A-D]{1,32}$")


class TargetBody(_Body):
    target: str = Field(min_length=1, max_length=200)


class TransferBody(TargetBody):
    blind: bool = False


# ---------------------------------------------------------------- page


@router.get("/desk", include_in_schema=False)
async def desk_page(request: Request, principal: CallTaker) -> Response:
    page = await desk_op(request, "page")
    return render(request, "desk.html", names=english_names() if language_of(request) == "en" else {},
                  position=principal.user.username, softphone=bool(page["softphone"]),
                  categories={k: {"name": c.name, "subtypes": dict(c.subtypes)} for k, c in CATEGORIES.items()},
                  priorities=PRIORITY_NAMES, dispositions=DISPOSITIONS,
                  thresholds=list(page["thresholds"]))


@router.get("/api/desk/state", tags=["desk"])
async def desk_state(request: Request, principal: CallTaker) -> dict[str, Any]:
    """What the desk draws at load: boundaries, the queue, positions, dashboard, callbacks."""
    state = await desk_op(request, "state")
    return {"boundaries": areas_geojson(dispatch_of(request).jurisdictions.counties.areas), **state,
            "position": principal.user.username}


# ---------------------------------------------------------------- positions and calls


@router.post("/api/desk/position", tags=["desk"])
async def set_position(request: Request, body: PositionBody, principal: CallTaker) -> dict[str, Any]:
    """Sign on (available), pause or log out this call-taker's position."""
    me = principal.user.username
    if body.state not in (PositionState.AVAILABLE, PositionState.PAUSED, PositionState.LOGGED_OUT):
        raise HTTPException(422, f"未知席位状态 {body.state}")
    result: dict[str, Any] = await desk_op(request, "position", me=me, state=body.state, group=body.group,
                                           training=body.training)
    await node_of(request).core.audit.record(me, "desk.position", me,
                                             detail={"state": body.state, "training": body.training},
                                             source=client_address(request))
    return result


@router.post("/api/desk/position/training", tags=["desk"])
async def set_position_training(request: Request, body: PositionTraining, principal: CallTaker) -> dict[str, Any]:
    """Put this position in training mode (演练: offered training calls only, never a real call)
    or back to real. Refused (409) while a call rings or is on the line; sign on first."""
    result: dict[str, Any] = await desk_op(request, "position_training", me=principal.user.username,
                                           training=body.training)
    return result


@router.get("/api/desk/calls/{call_id}", tags=["desk"])
async def call_detail(request: Request, call_id: str, principal: CallTaker) -> dict[str, Any]:
    result: dict[str, Any] = await desk_op(request, "call", call_id=call_id)
    return result


@router.post("/api/desk/calls/{call_id}/answer", tags=["desk"])
async def answer(request: Request, call_id: str, principal: CallTaker) -> dict[str, Any]:
    result: dict[str, Any] = await desk_op(request, "answer", me=principal.user.username, call_id=call_id)
    return result


@router.post("/api/desk/calls/{call_id}/location", tags=["desk"])
async def manual_location(request: Request, call_id: str, body: ManualLocation, principal: CallTaker) -> dict[str, Any]:
    result: dict[str, Any] = await desk_op(request, "location", call_id=call_id, lon=body.lon, lat=body.lat,
                                           radius_m=body.radius_m, label=body.label, me=principal.user.username)
    return result


@router.post("/api/desk/calls/{call_id}/incident", tags=["desk"])
async def incident_from_call(request: Request, call_id: str, body: IncidentFromCall,
                             principal: CallTaker) -> dict[str, Any]:
    """Create the incident from the call in one action (dispatchers see it at once)."""
    result: dict[str, Any] = await desk_op(request, "incident", call_id=call_id, me=principal.user.username,
                                           fields=body.model_dump())
    return result


@router.post("/api/desk/calls/{call_id}/merge", tags=["desk"])
async def merge(request: Request, call_id: str, body: MergeBody, principal: CallTaker) -> dict[str, Any]:
    """One-click merge into a possible duplicate: the call is linked to that incident."""
    result: dict[str, Any] = await desk_op(request, "merge", call_id=call_id, incident_id=body.incident_id,
                                           me=principal.user.username)
    return result


@router.post("/api/desk/calls/{call_id}/hangup", tags=["desk"])
async def hangup(request: Request, call_id: str, body: HangupBody, principal: CallTaker) -> dict[str, Any]:
    if body.disposition not in DISPOSITIONS:
        raise HTTPException(422, f"未知处理结果 {body.disposition}，应为: {', '.join(DISPOSITIONS)}")
    await desk_op(request, "hangup", call_id=call_id, me=principal.user.username, disposition=body.disposition)
    return {"ok": True}


@router.post("/api/desk/calls/{call_id}/media", tags=["desk"])
async def media(request: Request, call_id: str, body: SdpBody, principal: CallTaker) -> dict[str, Any]:
    """The browser softphone: a WebRTC offer (audio + receive-only video) into the call's MCU room."""
    return {"sdp": await desk_op(request, "media", call_id=call_id, me=principal.user.username, sdp=body.sdp)}


@router.post("/api/desk/calls/{call_id}/hold", tags=["desk"])
async def hold(request: Request, call_id: str, body: HoldBody, principal: CallTaker) -> dict[str, Any]:
    await desk_op(request, "hold", call_id=call_id, me=principal.user.username, on_hold=body.on_hold)
    return {"on_hold": body.on_hold}


@router.post("/api/desk/calls/{call_id}/dtmf", tags=["desk"])
async def dtmf(request: Request, call_id: str, body: DigitsBody, principal: CallTaker) -> dict[str, Any]:
    await desk_op(request, "dtmf", call_id=call_id, me=principal.user.username, digits=body.digits)
    return {"ok": True}


@router.post("/api/desk/calls/{call_id}/invite", tags=["desk"])
async def invite(request: Request, call_id: str, body: TargetBody, principal: CallTaker) -> dict[str, Any]:
    """Conference an agency desk in (it joins with its own browser: three-way)."""
    await desk_op(request, "invite", call_id=call_id, me=principal.user.username, target=body.target)
    return {"ok": True}


@router.post("/api/desk/calls/{call_id}/leave", tags=["desk"])
async def leave(request: Request, call_id: str, principal: CallTaker) -> dict[str, Any]:
    await desk_op(request, "leave", call_id=call_id, me=principal.user.username)
    return {"ok": True}


@router.post("/api/desk/calls/{call_id}/transfer", tags=["desk"])
async def transfer(request: Request, call_id: str, body: TransferBody, principal: CallTaker) -> dict[str, Any]:
    """Attended transfer to the consulted desk (already in the call), or blind (``blind``: at once)."""
    await desk_op(request, "transfer", call_id=call_id, me=principal.user.username, target=body.target,
                  blind=body.blind)
    return {"ok": True}


@router.get("/api/desk/places", tags=["desk"])
async def places(request: Request, principal: CallTaker, q: Annotated[str, Query(max_length=100)] = "",
                 limit: Annotated[int, Query(ge=1, le=20)] = 8) -> list[dict[str, Any]]:
    """Gazetteer suggestions (Chinese or pinyin) for a location typed by the call-taker."""
    desk_of(request)
    return dispatch_of(request).search_places(q, limit) if q.strip() else []


@router.get("/api/desk/dashboard", tags=["desk"])
async def dashboard(request: Request, principal: Reader,
                    hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24) -> dict[str, Any]:
    result: dict[str, Any] = await desk_op(request, "dashboard", hours=hours)
    return result


@router.get("/api/desk/callbacks", tags=["desk"])
async def callbacks(request: Request, principal: Reader, include_done: bool = False) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await desk_op(request, "callbacks", include_done=include_done)
    return result


@router.post("/api/desk/callbacks/{call_id}/done", tags=["desk"])
async def callback_done(request: Request, call_id: str, principal: CallTaker) -> dict[str, Any]:
    await desk_op(request, "callback_done", call_id=call_id, me=principal.user.username)
    return {"ok": True}


@router.get("/api/incidents/{incident_id}/calls", tags=["desk"])
async def incident_calls(request: Request, incident_id: str, principal: Reader) -> list[dict[str, Any]]:
    """The emergency calls linked to an incident, with their timestamps and recordings."""
    result: list[dict[str, Any]] = await desk_op(request, "incident_calls", incident_id=incident_id)
    return result


def remote_recordings(request: Request) -> RemoteRecordings:
    """A web node with ``emergency.remote_desk``: the recordings of the desk nodes, over node RPC."""
    node = node_of(request)
    if node.rpc is None:
        raise HTTPException(503, translate(language_of(request), "node.desk_local"))
    return RemoteRecordings(node.rpc, CallRecordingNodes(node.rpc), language_of(request))


async def _fetched(request: Request, call_id: str, opener: str, suffix: str, **args: Any) -> Path:
    try:
        return await remote_recordings(request).fetch(call_id, opener, args, suffix)
    except TransferRefused as e:
        raise HTTPException(e.status, e.message) from None


@router.get("/api/desk/calls/{call_id}/recording", tags=["desk"])
async def recording(request: Request, call_id: str, principal: Reader) -> FileResponse:
    """The call's audio (WAV). Every access is written to the audit log (by the node that holds it).
    On a web node with ``emergency.remote_desk`` it is fetched from the desk node that recorded the call."""
    who, source = principal.user.username, client_address(request)
    if desk_of(request).local is None:
        path = await _fetched(request, call_id, "recording_open", ".wav", actor=who, source=source)
        return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav",
                            background=BackgroundTask(remove_fetched, path))
    with desk_errors():
        path = await local_desk(request).recordings.recording_for(call_id, who, source)
    return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")


class RecordingExport(_Body):
    reason: str = Field(min_length=1, max_length=500, description="why the recording is exported (audited, logged)")


def _remove_export(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
        path.parent.rmdir()


@router.post("/api/desk/calls/{call_id}/recording/export", tags=["desk"])
async def export_recording(request: Request, call_id: str, principal: Inspector, body: RecordingExport) -> FileResponse:
    """Evidence export of a call recording (inspector, admin): a zip with the WAV, its transparency-log
    leaf with an inclusion proof and a signed tree head; `commandcenter verify-call-export` checks it
    offline. The export is audited and logged (by the node that holds the recording; on a web node with
    ``emergency.remote_desk`` the desk node that recorded the call makes the zip)."""
    who, source = principal.user.username, client_address(request)
    if desk_of(request).local is None:
        path = await _fetched(request, call_id, "recording_export_open", ".zip", actor=who, reason=body.reason,
                              source=source)
    else:
        with desk_errors():
            path = await local_desk(request).recordings.export_recording(call_id, who, body.reason, source)
    return FileResponse(path, media_type="application/zip", filename=f"{call_id}-recording.zip",
                        background=BackgroundTask(_remove_export, path))


# ---------------------------------------------------------------- AML


@router.post("/api/aml", tags=["desk"])
async def post_aml(request: Request, principal: CallTaker,
                   sender: Annotated[str, Query(alias="from", max_length=32)] = "") -> dict[str, Any]:
    """An AML report (ETSI TS 103 625): ``text/plain`` SMS text with ``?from=<sender>``, or the HTTPS
    form format (``application/x-www-form-urlencoded``). Matched to the live call by number and
    time, or stored until the call arrives (or it expires). Not AML → 400, logged."""
    desk = desk_of(request)
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await request.body()
    fmt = "https" if ctype == "application/x-www-form-urlencoded" else "sms" if ctype == "text/plain" else ""
    reason = ""
    try:
        if not fmt:
            raise AmlFormatError(f"不支持的 Content-Type: {ctype or '（无）'}，应为 text/plain 或表单")
        text = raw.decode("utf-8")
        if NUL in text:
            raise AmlFormatError(nul_message("body"))
        with desk_errors():
            outcome = await desk.op("aml", {"fmt": fmt, "text": text,
                                            "sender": sender or request.headers.get("x-aml-sender", "")})
        if "report" in outcome:
            report: dict[str, Any] = outcome["report"]
            return report
        reason = str(outcome["rejected"])
    except (AmlFormatError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, AmlFormatError) else "AML 数据不是 UTF-8"
    log.warning("AML payload refused from %s: %s (%d bytes)", client_address(request), reason, len(raw))
    await node_of(request).core.audit.record(principal.user.username, "aml.rejected", sender, outcome="failed",
                                             source=client_address(request),
                                             detail={"reason": reason, "raw": raw[:500].decode("utf-8", "replace")})
    raise HTTPException(400, reason)


# ---------------------------------------------------------------- presence


@router.websocket("/ws/desk")
async def desk_presence(websocket: WebSocket) -> None:
    """The desk page holds this open while signed on; if it drops mid-call (browser crash), the
    call goes back to the head of the queue with a flag. Also streams ``call.*`` events."""
    services = websocket.app.state.services
    principal = await resolve_principal(
        services, websocket.headers.get("authorization"), websocket.cookies.get(SESSION_COOKIE))
    if principal is None or not same_origin(websocket) or principal.user.role not in (Role.CALLTAKER, Role.ADMIN):
        reason = "unauthenticated" if principal is None else "origin" if not same_origin(websocket) else "role"
        await refuse_websocket(websocket, principal, reason)
        return
    desk = desk_host(websocket)
    if desk is None:
        await websocket.close(code=1011)
        return
    me = principal.user.username
    await websocket.accept()
    with services.bus.subscribe("call.*") as subscription:

        async def pump() -> None:
            async for event in subscription:
                await websocket.send_json(event.to_json())

        try:
            await stream_until_disconnect(websocket, pump)
        finally:
            with contextlib.suppress(DeskError, DeskUnavailable):  # a dead desk node lost the position anyway
                await desk.op("position_lost", {"me": me})
