"""The dispatch map console (role dispatcher): its page, REST API, AVL websocket and offline tiles
(the situation report is ``web_console/report_console.py``). The work is done by
``dispatch.service.DispatchService`` (the capability ``Node.dispatch``); this module maps HTTP onto it and model errors onto statuses:
unknown → 404, a refused change or a unit already taken → 409, bad input → 422 (EIDO and CAP list
every problem)."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field

from config.roles import Role
from dispatch.exchange.cap import CapError
from dispatch.exchange.eido import EidoError
from dispatch.model import (
    AGENCIES,
    CAPABILITY_NAMES,
    CATEGORIES,
    INCIDENT_STATUS_NAMES,
    PRIORITY_NAMES,
    UNIT_STATUS_COLOURS,
    UNIT_STATUS_NAMES,
    IllegalTransition,
    UnitUnavailable,
    ValidationError,
)
from dispatch.names_en import english_names
from dispatch.service import DispatchService, IncidentNotFound
from dispatch.views import recommendation_view, timeline_view
from gis.map_builder import PRIORITY_COLOURS, areas_geojson
from web_console.auth import (
    Principal,
    RoleFirstRoute,
    client_address,
    node_of,
    refuse_websocket,
    require,
    resolve_principal,
    same_origin,
)
from web_console.guards import ApiModel, nul_error, nul_message, nul_path
from web_console.templating import language_of, render
from web_console.tiles import mbtiles_path, tile_response

router = APIRouter(route_class=RoleFirstRoute)

DISPATCHERS = require(Role.DISPATCHER)
READERS = require(Role.DISPATCHER, Role.CALLTAKER)
# read-only: the map, incidents and units for the leader and the chair too (issue 19); they change nothing
WATCHERS = require(Role.DISPATCHER, Role.CALLTAKER, Role.CHAIR, Role.LEADER)
Dispatcher = Annotated[Principal, Depends(DISPATCHERS)]
Reader = Annotated[Principal, Depends(READERS)]
Watcher = Annotated[Principal, Depends(WATCHERS)]
MapViewer = Annotated[Principal, Depends(require(Role.DISPATCHER, Role.CHAIR, Role.LEADER))]  # the /dispatch page


def service_of(request: Request | WebSocket) -> DispatchService:
    cap = node_of(request).dispatch
    if cap is None:
        raise HTTPException(503, "调度服务未在本节点运行")
    return cap.service


@contextlib.contextmanager
def model_errors() -> Iterator[None]:
    """Model errors as HTTP answers with the zh-CN message."""
    try:
        yield
    except IncidentNotFound as e:
        raise HTTPException(404, str(e)) from None
    except (UnitUnavailable, IllegalTransition) as e:
        raise HTTPException(409, str(e)) from None
    except EidoError as e:
        raise HTTPException(422, {"message": "EIDO 校验失败", "errors": e.errors}) from None
    except CapError as e:
        raise HTTPException(422, {"message": "CAP 校验失败", "issues": [
            {"path": i.path, "rule": i.rule, "message": i.message} for i in e.issues]}) from None
    except ValidationError as e:
        raise HTTPException(422, str(e)) from None


class _Body(ApiModel):
    model_config = ConfigDict(extra="forbid")


class IncidentCreate(_Body):
    category: str
    subtype: str = "general"
    priority: int = Field(ge=1, le=5)
    lon: float
    lat: float
    uncertainty_m: float | None = Field(None, ge=0)
    address: str = Field("", max_length=500)
    description: str = Field("", max_length=4000)
    caller_number: str = Field("", max_length=64)
    caller_name: str = Field("", max_length=100)
    call_id: str | None = Field(None, max_length=100)
    agencies: list[str] = Field(default_factory=list)
    location_source: str = "manual"


class StatusChange(_Body):
    status: str
    agency: str | None = None


class Text(_Body):
    text: str = Field(min_length=1, max_length=4000)


class Dispatch(_Body):
    unit_ids: list[str] = Field(default_factory=list, max_length=100)
    recommended: bool = False


class UnitRef(_Body):
    unit_id: str


class OtherIncident(_Body):
    other: str


class CapRequest(_Body):
    event: str = Field(min_length=1, max_length=100)
    level: str
    headline: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=4000)
    instruction: str = Field("", max_length=4000)
    polygon: list[list[float]] | None = None
    county_code: int | None = None
    incident_id: str | None = None
    area_desc: str = Field("", max_length=200)


class TrainingToggle(_Body):
    enabled: bool


# ---------------------------------------------------------------- state for the console


def legend() -> dict[str, Any]:
    return {
        "unit_status": {s.value: {"name": UNIT_STATUS_NAMES[s], "colour": UNIT_STATUS_COLOURS[s]} for s in UNIT_STATUS_NAMES},
        "priority": {p: {"name": PRIORITY_NAMES[p], "colour": PRIORITY_COLOURS[p]} for p in PRIORITY_NAMES},
        "incident_status": {s.value: n for s, n in INCIDENT_STATUS_NAMES.items()},
        "categories": {k: {"name": c.name, "subtypes": dict(c.subtypes)} for k, c in CATEGORIES.items()},
        "agencies": dict(AGENCIES),
        "capabilities": {c.value: n for c, n in CAPABILITY_NAMES.items()},
    }


@router.get("/api/dispatch/state", tags=["dispatch"])
async def state(request: Request, principal: Watcher) -> dict[str, Any]:
    """Everything the map console draws at load: mode, boundaries, stations, units, open incidents.

    In training mode the open incidents are the drill's plus every open real one: a real emergency
    is never hidden behind a drill. ``training_alarm``: real calls waiting at the desk while every
    call-taking position is in training (null when no desk runs on this node)."""
    svc = service_of(request)
    incidents = await svc.incidents(open_only=True)
    if svc.training:
        incidents += await svc.incidents(training=False, open_only=True)
    desk = node_of(request).desk
    return {
        "training_alarm": desk.service.training_alarm_view() if desk is not None else None,
        "training": svc.training, "legend": legend(), "stale_after_s": svc.stale_after_s,
        "boundaries": areas_geojson(svc.jurisdictions.counties.areas),
        "stations": [{"id": s.id, "name": s.name, "agency": s.agency, "lon": s.lon, "lat": s.lat}
                     for s in svc.stations.values()],
        "units": [svc.unit_json(u) for u in svc.units()],
        "incidents": [svc.view(i) for i in incidents],
        "user": principal.user.username,
    }


@router.get("/api/dispatch/stats", tags=["dispatch"])
async def stats(request: Request, principal: Watcher) -> dict[str, Any]:
    """Counts of real incidents and units; training (演练) data is excluded."""
    return await service_of(request).statistics()


@router.post("/api/dispatch/training", tags=["dispatch"])
async def training(request: Request, body: TrainingToggle, principal: Dispatcher) -> dict[str, Any]:
    """Switch training mode (演练) on or off for every console."""
    svc = service_of(request)
    await svc.set_training(body.enabled, principal.user.username, client_address(request))
    return {"training": svc.training}


# ---------------------------------------------------------------- incidents


@router.get("/api/incidents", tags=["dispatch"])
async def list_incidents(request: Request, principal: Watcher, open: bool = True,
                         training: bool | None = None) -> list[dict[str, Any]]:
    svc = service_of(request)
    return [svc.view(i) for i in await svc.incidents(training=training, open_only=open)]


@router.post("/api/incidents", status_code=201, tags=["dispatch"])
async def create_incident(request: Request, body: IncidentCreate, principal: Reader) -> dict[str, Any]:
    """Log a new incident (category, priority, location; county and township are resolved)."""
    svc = service_of(request)
    with model_errors():
        inc = await svc.create_incident(**body.model_dump(), actor=principal.user.username,
                                        source=client_address(request))
    return svc.view(inc)


@router.get("/api/incidents/duplicates", tags=["dispatch"])
async def duplicates(request: Request, principal: Reader, lon: float, lat: float, category: str) -> list[dict[str, Any]]:
    """Open incidents within 500 m / 30 min of a related category: maybe the same event."""
    with model_errors():
        return await service_of(request).possible_duplicates(lon, lat, category)


@router.get("/api/incidents/{incident_id}", tags=["dispatch"])
async def get_incident(request: Request, incident_id: str, principal: Watcher) -> dict[str, Any]:
    svc = service_of(request)
    with model_errors():
        inc = await svc.incident(incident_id)
    return {**svc.view(inc), "timeline": timeline_view(inc), "conferences": await svc.conferences(incident_id)}


async def _act(request: Request, principal: Principal, method: str, *args: Any) -> dict[str, Any]:
    svc = service_of(request)
    with model_errors():
        result = await getattr(svc, method)(*args, principal.user.username, client_address(request))
    inc = result[0] if isinstance(result, tuple) else result
    return {**svc.view(inc), "timeline": timeline_view(inc)}


@router.post("/api/incidents/{incident_id}/status", tags=["dispatch"])
async def incident_status(request: Request, incident_id: str, body: StatusChange, principal: Dispatcher) -> dict[str, Any]:
    svc = service_of(request)
    with model_errors():
        inc = await svc.set_incident_status(incident_id, body.status, principal.user.username, body.agency,
                                            client_address(request))
    return {**svc.view(inc), "timeline": timeline_view(inc)}


class LocationChange(_Body):
    lon: float
    lat: float
    uncertainty_m: float | None = Field(None, ge=0)
    address: str = Field("", max_length=500)
    location_source: str = "manual"


@router.post("/api/incidents/{incident_id}/location", tags=["dispatch"])
async def location(request: Request, incident_id: str, body: LocationChange, principal: Reader) -> dict[str, Any]:
    """Move the incident (a new fix or a corrected address); county and township are resolved again."""
    svc = service_of(request)
    with model_errors():
        inc = await svc.set_location(incident_id, body.lon, body.lat, principal.user.username, body.uncertainty_m,
                                     body.address, body.location_source, client_address(request))
    return {**svc.view(inc), "timeline": timeline_view(inc)}


@router.post("/api/incidents/{incident_id}/close", tags=["dispatch"])
async def close(request: Request, incident_id: str, body: Text, principal: Dispatcher) -> dict[str, Any]:
    return await _act(request, principal, "close_incident", incident_id, body.text)


@router.post("/api/incidents/{incident_id}/reopen", tags=["dispatch"])
async def reopen(request: Request, incident_id: str, body: Text, principal: Dispatcher) -> dict[str, Any]:
    return await _act(request, principal, "reopen_incident", incident_id, body.text)


@router.post("/api/incidents/{incident_id}/notes", tags=["dispatch"])
async def note(request: Request, incident_id: str, body: Text, principal: Reader) -> dict[str, Any]:
    return await _act(request, principal, "add_note", incident_id, body.text)


@router.post("/api/incidents/{incident_id}/calls", tags=["dispatch"])
async def link_call(request: Request, incident_id: str, body: Text, principal: Reader) -> dict[str, Any]:
    return await _act(request, principal, "link_call", incident_id, body.text)


@router.post("/api/incidents/{incident_id}/priority", tags=["dispatch"])
async def priority(request: Request, incident_id: str, body: StatusChange, principal: Dispatcher) -> dict[str, Any]:
    try:
        value = int(body.status)
    except ValueError:
        raise HTTPException(422, "优先级必须是 1–5 的整数") from None
    return await _act(request, principal, "set_priority", incident_id, value)


@router.post("/api/incidents/{incident_id}/components", tags=["dispatch"])
async def component(request: Request, incident_id: str, body: StatusChange, principal: Dispatcher) -> dict[str, Any]:
    """Make the incident joint (联动): add an agency component (``status`` carries the agency key)."""
    return await _act(request, principal, "add_component", incident_id, body.agency or body.status)


@router.post("/api/incidents/{incident_id}/link", tags=["dispatch"])
async def link(request: Request, incident_id: str, body: OtherIncident, principal: Dispatcher) -> dict[str, Any]:
    return await _act(request, principal, "link_incidents", incident_id, body.other)


@router.post("/api/incidents/{incident_id}/merge", tags=["dispatch"])
async def merge(request: Request, incident_id: str, body: OtherIncident, principal: Dispatcher) -> dict[str, Any]:
    """Merge incident ``other`` (a duplicate) into this one."""
    return await _act(request, principal, "merge_incidents", incident_id, body.other)


@router.get("/api/incidents/{incident_id}/recommendations", tags=["dispatch"])
async def recommendations(request: Request, incident_id: str, principal: Watcher,
                          exclude: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    """Per run-card requirement: eligible units ranked by ETA, with the reasons."""
    svc = service_of(request)
    with model_errors():
        card, results = await svc.recommend(incident_id, exclude or ())
    return {"plan": card, "requirements": recommendation_view(results),
            "recommended": [c.unit_id for r in results for c in r.recommended]}


@router.post("/api/incidents/{incident_id}/dispatch", tags=["dispatch"])
async def dispatch_units(request: Request, incident_id: str, body: Dispatch, principal: Dispatcher) -> dict[str, Any]:
    """Send units: ``recommended: true`` sends all recommended (one action); else ``unit_ids``.
    409 when a unit is no longer available (another dispatcher was first)."""
    if body.recommended:
        return await _act(request, principal, "dispatch_recommended", incident_id)
    return await _act(request, principal, "dispatch", incident_id, body.unit_ids)


@router.post("/api/incidents/{incident_id}/recall", tags=["dispatch"])
async def recall(request: Request, incident_id: str, body: UnitRef, principal: Dispatcher) -> dict[str, Any]:
    return await _act(request, principal, "recall", incident_id, body.unit_id)


@router.post("/api/incidents/{incident_id}/conference", status_code=201, tags=["dispatch"])
async def command_conference(request: Request, incident_id: str, principal: Dispatcher) -> dict[str, Any]:
    """启动指挥会议: record a command conference with the county leaders' rooms and ask the MCU."""
    svc = service_of(request)
    with model_errors():
        conf = await svc.request_conference(incident_id, principal.user.username, client_address(request))
    return conf.as_json()


@router.get("/api/incidents/{incident_id}/eido", tags=["dispatch"])
async def export_eido(request: Request, incident_id: str, principal: Watcher) -> dict[str, Any]:
    """The incident as a NENA EIDO (NENA-STA-021) JSON document."""
    with model_errors():
        return await service_of(request).export_eido(incident_id)


def _nul_in_json(raw: bytes) -> JSONResponse | None:
    """422 naming the place when a JSON body holds a NUL character (invalid JSON is left to the caller)."""
    try:
        where = nul_path(json.loads(raw))
    except (ValueError, UnicodeDecodeError):
        return None
    return None if where is None else nul_error(["body", where], where or "body")


@router.post("/api/eido", status_code=201, tags=["dispatch"])
async def import_eido(request: Request, principal: Dispatcher) -> Any:
    """Import an EIDO document; 422 lists every problem; 409 when the incident exists."""
    svc = service_of(request)
    raw = await request.body()
    refused = _nul_in_json(raw)
    if refused is not None:
        return refused
    with model_errors():
        inc = await svc.import_eido(raw, principal.user.username, client_address(request))
    return svc.view(inc)


# ---------------------------------------------------------------- units and AVL


@router.get("/api/units", tags=["dispatch"])
async def list_units(request: Request, principal: Watcher, training: bool | None = None) -> list[dict[str, Any]]:
    svc = service_of(request)
    return [svc.unit_json(u) for u in svc.units(training)]


@router.post("/api/units/{unit_id}/status", tags=["dispatch"])
async def unit_status(request: Request, unit_id: str, body: StatusChange, principal: Dispatcher) -> dict[str, Any]:
    """Change a unit's status (on scene / returning / available / out of service ...)."""
    svc = service_of(request)
    with model_errors():
        unit = await svc.set_unit_status(unit_id, body.status, principal.user.username, "console")
    return svc.unit_json(unit)


@router.post("/api/avl", tags=["dispatch"])
async def avl(request: Request, principal: Dispatcher) -> JSONResponse:
    """A batch of fixes ``[{unit_id, lon, lat, ts, speed_kmh?, heading_deg?, accuracy_m?}]``.
    Bad items are rejected one by one with a reason; the rest are stored."""
    svc = service_of(request)
    try:
        items = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return JSONResponse({"detail": f"请求体不是有效 JSON: {e}"}, status_code=422)
    where = nul_path(items)
    if where is not None:
        return nul_error(["body", where], where or "body")
    result = await svc.ingest_avl(items, principal.user.username, "avl")
    return JSONResponse(result.as_json(), status_code=200 if result.accepted or not result.rejected else 422)


@router.websocket("/ws/avl")
async def avl_socket(websocket: WebSocket) -> None:
    """AVL over a websocket: each text message is a batch; each answer is that batch's result."""
    services = websocket.app.state.services
    principal = await resolve_principal(services, websocket.headers.get("authorization"),
                                        websocket.cookies.get("cc_session"))
    if principal is None or not same_origin(websocket):
        await refuse_websocket(websocket, principal, "unauthenticated" if principal is None else "origin")
        return
    if principal.user.role not in (Role.DISPATCHER, Role.ADMIN):
        await refuse_websocket(websocket, principal, "role")
        return
    svc = service_of(websocket)
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            try:
                items = json.loads(text)
            except json.JSONDecodeError as e:
                await websocket.send_json({"accepted": 0, "rejected": [
                    {"index": -1, "unit_id": None, "code": "malformed", "reason": f"不是有效 JSON: {e}"}]})
                continue
            where = nul_path(items)
            if where is not None:
                await websocket.send_json({"accepted": 0, "rejected": [
                    {"index": -1, "unit_id": None, "code": "malformed", "reason": nul_message(where or "body")}]})
                continue
            result = await svc.ingest_avl(items, principal.user.username, "avl-ws")
            await websocket.send_json(result.as_json())
    except WebSocketDisconnect:
        pass


# ---------------------------------------------------------------- CAP, gazetteer, tiles


@router.post("/api/cap", status_code=201, tags=["dispatch"])
async def issue_cap(request: Request, body: CapRequest, principal: Dispatcher) -> dict[str, Any]:
    """Issue a public warning as CAP 1.2 (GB/T 35965.1 mapping) for a drawn polygon or a county.
    422 lists every CAP rule that fails."""
    svc = service_of(request)
    with model_errors():
        return await svc.issue_cap(**body.model_dump(), actor=principal.user.username, source=client_address(request))


@router.get("/api/cap/{identifier}", tags=["dispatch"])
async def cap_xml(request: Request, identifier: str, principal: Watcher) -> Response:
    xml = await service_of(request).cap_alert_xml(identifier)
    if xml is None:
        raise HTTPException(404, f"预警 {identifier} 不存在")
    return Response(xml, media_type="application/cap+xml")


@router.get("/api/gazetteer", tags=["dispatch"])
async def gazetteer(request: Request, principal: Watcher, q: str = Query(min_length=1, max_length=50),
                    limit: int = Query(10, ge=1, le=50)) -> list[dict[str, Any]]:
    """Places by Chinese name, pinyin, initials or a fuzzy match."""
    return service_of(request).search_places(q, limit)


@router.get("/tiles/{z}/{x}/{y}", tags=["dispatch"])
async def tiles(request: Request, z: int, x: int, y: int, principal: Watcher) -> Response:
    """Offline raster tiles from a local MBTiles file (``dispatch.mbtiles``, default ``var/tiles.mbtiles``)."""
    return await tile_response(request, z, x, y)


# ---------------------------------------------------------------- pages


@router.get("/dispatch", include_in_schema=False)
async def console_page(request: Request, principal: MapViewer) -> Response:
    from web_console.i18n import texts_with_prefix  # (imported here: the page's resource texts)

    svc = service_of(request)
    lang = language_of(request)
    return render(request, "dispatch.html", training=svc.training, tiles=mbtiles_path(request).is_file(),
                  names=english_names() if lang == "en" else {},
                  resource_texts=texts_with_prefix(lang, "resources."),
                  read_only=principal.user.role in (Role.CHAIR, Role.LEADER))
