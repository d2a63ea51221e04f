"""The field responders' phone page (`/field`, role responder: 单兵 / 移动指挥) and its API.

A responder's login is the crew of one unit (``dispatch.crews.CrewRoster``, table
``unit_crew_logins``). The page shows that unit's assigned incident and its navigation target,
sets the unit's status through dispatch's unit status machine (``DispatchService.set_unit_status``:
a refused transition is 409 with the model's message), sends the phone's GPS as AVL through the
same validation and storage as ``POST /api/avl`` (``DispatchService.ingest_avl``), and names the
incident's command conference, which the page joins over the ordinary WebRTC signalling socket
(``/ws/conference/<id>``) with the unit's callsign as its pane label.

Security: a responder sees only their own unit and its incident, and changes only their own unit;
a request for another unit is 403 and audited (``field.*`` with outcome ``denied``). Admins may act
on any unit (and bind logins to units). Responders get no bus events: the page polls its state.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ConfigDict, Field
from starlette.requests import HTTPConnection

from config.roles import Role
from dispatch.capability import DispatchCapability
from dispatch.model import UNIT_TRANSITIONS, DispatchError, IllegalTransition, UnitStatus, UnitUnavailable
from dispatch.service import DispatchService, IncidentNotFound
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.guards import ApiModel, TokenBucket
from web_console.i18n import translate
from web_console.templating import language_of, render
from web_console.tiles import mbtiles_path, tile_response

router = APIRouter(route_class=RoleFirstRoute)

Responder = Annotated[Principal, Depends(require(Role.RESPONDER))]
Admin = Annotated[Principal, Depends(require())]

# The statuses a crew sets from the phone, in the order of a job (dispatching is the dispatcher's).
FIELD_STATUSES: tuple[UnitStatus, ...] = (
    UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE, UnitStatus.TRANSPORTING, UnitStatus.AT_HOSPITAL,
    UnitStatus.RETURNING, UnitStatus.AVAILABLE, UnitStatus.OUT_OF_SERVICE,
)
# Phones report every few seconds; more than this per unit is refused (429), nothing stored.
AVL_RATE_PER_S = 1.0
AVL_BURST = 5
_avl_limiter = TokenBucket(AVL_RATE_PER_S, AVL_BURST)


def _dispatch(request: Request) -> DispatchCapability:
    cap = node_of(request).dispatch
    if cap is None:
        raise HTTPException(503, "调度服务未在本节点运行")
    return cap


@contextlib.contextmanager
def _model_errors() -> Iterator[None]:
    try:
        yield
    except IncidentNotFound as e:
        raise HTTPException(404, str(e)) from None
    except (UnitUnavailable, IllegalTransition) as e:
        raise HTTPException(409, str(e)) from None
    except DispatchError as e:
        raise HTTPException(422, str(e)) from None


async def _own_unit(request: Request, principal: Principal, unit_id: str, action: str) -> DispatchService:
    """The dispatch service when `principal` may act on `unit_id`: its own unit, or any for an admin.
    403 (audited) otherwise; 404 for an unknown unit asked by an admin."""
    cap = _dispatch(request)
    svc = cap.service
    if principal.user.role is Role.ADMIN:
        if unit_id not in svc.recommender.units:
            raise HTTPException(404, f"未知力量 {unit_id}")
        return svc
    own = await cap.crews.unit_of(principal.user.username)
    if own != unit_id:
        await services_of(request).audit.record(
            principal.user.username, action, unit_id, outcome="denied", source=client_address(request),
            detail={"reason": "not_own_unit", "own_unit": own})
        raise HTTPException(403, "只能操作本人所属力量")
    return svc


def unit_state(svc: DispatchService, unit_id: str) -> dict[str, Any]:
    """The unit as the phone shows it: callsign, status, position and the statuses it may go to."""
    u = svc.unit(unit_id)
    allowed = [s.value for s in FIELD_STATUSES if s in UNIT_TRANSITIONS[u.status]]
    view = svc.unit_json(u)
    return {k: view[k] for k in ("id", "callsign", "type_name", "agency_name", "status", "status_name", "colour",
                                 "incident_id", "lon", "lat", "position_source", "stale")} | {"allowed": allowed}


async def assignment(svc: DispatchService, incident_id: str | None) -> dict[str, Any] | None:
    """What the crew needs of its incident: where, what, the notes, and its running command conference.
    Not the caller's number or name (the dispatcher passes on what the crew needs)."""
    if incident_id is None:
        return None
    try:
        inc = await svc.incident(incident_id)
    except IncidentNotFound:
        return None
    view = svc.view(inc)
    conferences = [c for c in await svc.conferences(incident_id) if c["status"] == "running"]
    keep = ("id", "category_name", "subtype_name", "priority", "priority_name", "colour", "status_name", "lon",
            "lat", "address", "county_name", "township_name", "description", "notes", "training")
    return {k: view[k] for k in keep} | {
        "conference_id": conferences[-1]["conference_id"] if conferences else None}


async def responder_may_join(connection: HTTPConnection, username: str, conference_id: str) -> bool:
    """Whether a responder may join `conference_id`: only a command conference of its unit's incident
    (the signalling socket asks this for every responder's join; other roles are not concerned)."""
    cap = node_of(connection).dispatch
    if cap is None:
        return False
    unit_id = await cap.crews.unit_of(username)
    unit = cap.service.recommender.units.get(unit_id) if unit_id is not None else None
    if unit is None or unit.incident_id is None:
        return False
    return any(c["conference_id"] == conference_id for c in await cap.service.conferences(unit.incident_id))


@router.get("/api/field/state", tags=["field"])
async def field_state(request: Request, principal: Responder) -> dict[str, Any]:
    """The caller's unit and its assigned incident (``unit`` null when the login is bound to none)."""
    cap = _dispatch(request)
    unit_id = await cap.crews.unit_of(principal.user.username)
    if unit_id is None or unit_id not in cap.service.recommender.units:
        return {"unit": None, "incident": None}
    unit = unit_state(cap.service, unit_id)
    return {"unit": unit, "incident": await assignment(cap.service, unit["incident_id"])}


@router.get("/api/field/units/{unit_id}", tags=["field"])
async def field_unit(request: Request, unit_id: str, principal: Responder) -> dict[str, Any]:
    """One unit and its incident: the caller's own (403, audited, for any other)."""
    svc = await _own_unit(request, principal, unit_id, "field.view")
    unit = unit_state(svc, unit_id)
    return {"unit": unit, "incident": await assignment(svc, unit["incident_id"])}


class _Body(ApiModel):
    model_config = ConfigDict(extra="forbid")


class FieldStatus(_Body):
    status: str = Field(min_length=1, max_length=32)


class FieldFix(_Body):
    """One fix from the phone's geolocation; ranges are checked by ``dispatch.avl.validate_batch``."""
    lon: float
    lat: float
    ts: str | float = Field(description="ISO 8601 with a UTC offset, or Unix seconds")
    accuracy_m: float | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None


@router.post("/api/field/units/{unit_id}/status", tags=["field"])
async def field_status(request: Request, unit_id: str, body: FieldStatus, principal: Responder) -> dict[str, Any]:
    """Set the unit's status (en route, on scene, leaving scene …) by dispatch's rules: a transition
    the status machine refuses is 409 with the reason; dispatching is the dispatcher's (422)."""
    svc = await _own_unit(request, principal, unit_id, "field.status")
    if body.status not in {s.value for s in FIELD_STATUSES}:
        raise HTTPException(422, f"不能在移动端设置状态 {body.status!r}")
    with _model_errors():
        await svc.set_unit_status(unit_id, body.status, principal.user.username, "field")
    unit = unit_state(svc, unit_id)
    return {"unit": unit, "incident": await assignment(svc, unit["incident_id"])}


@router.post("/api/field/units/{unit_id}/avl", tags=["field"])
async def field_avl(request: Request, unit_id: str, body: FieldFix, principal: Responder) -> Response:
    """The phone's position as an AVL fix of the unit: validated and stored as ``POST /api/avl``
    does (422 with the reason when rejected); more than one a second on average is 429."""
    svc = await _own_unit(request, principal, unit_id, "field.avl")
    wait = _avl_limiter.take(unit_id, time.monotonic())
    if wait > 0:
        return JSONResponse({"detail": "位置上报过于频繁"}, status_code=429,
                            headers={"Retry-After": TokenBucket.retry_after_header(wait)})
    item = {"unit_id": unit_id, **body.model_dump(exclude_none=True)}
    result = await svc.ingest_avl([item], principal.user.username, "field")
    if not result.accepted:
        reason = result.rejected[0].reason if result.rejected else "位置无效"
        return JSONResponse({"detail": reason, **result.as_json()}, status_code=422)
    return JSONResponse(result.as_json())


class CrewBinding(_Body):
    unit_id: str = Field(min_length=1, max_length=100)


@router.get("/api/field/crews", tags=["field"])
async def crews(request: Request, principal: Admin) -> list[dict[str, Any]]:
    """Every login bound to a unit (administrators)."""
    rows = await _dispatch(request).service.db.fetch(
        "SELECT username, unit_id, bound_by, bound_at FROM unit_crew_logins ORDER BY username")
    return [{**dict(r), "bound_at": r["bound_at"].isoformat()} for r in rows]


class CrewRefused(Exception):
    """A binding refused: `status` is the HTTP status, the message says why (zh-CN, names the item)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _bind(request: Request, principal: Principal, username: str, unit_id: str) -> None:
    """Bind a responder login to a unit, audited; CrewRefused (404 unknown user or unit, 422 a login
    whose role is not responder) changes nothing."""
    cap = _dispatch(request)
    services = services_of(request)
    user = await services.identity.get_user(username)
    if user is None:
        raise CrewRefused(404, f"用户 {username} 不存在")
    if user.role is not Role.RESPONDER:
        raise CrewRefused(422, f"用户 {username} 的角色不是单兵（responder）")
    if unit_id not in cap.service.recommender.units:
        raise CrewRefused(404, f"未知力量 {unit_id}")
    await cap.crews.bind(username, unit_id, principal.user.username)
    await services.audit.record(principal.user.username, "field.crew_bind", username, source=client_address(request),
                                detail={"unit": unit_id})


async def _unbind(request: Request, principal: Principal, username: str) -> None:
    """Unbind a login, audited; CrewRefused 404 when it is bound to none."""
    if not await _dispatch(request).crews.unbind(username):
        raise CrewRefused(404, f"用户 {username} 未绑定力量")
    await services_of(request).audit.record(principal.user.username, "field.crew_unbind", username,
                                            source=client_address(request))


@router.put("/api/field/crews/{username}", tags=["field"])
async def bind_crew(request: Request, username: str, body: CrewBinding, principal: Admin) -> dict[str, Any]:
    """Make a responder login the crew of a unit (administrators; audited). 404 unknown user or unit,
    422 a login whose role is not responder."""
    try:
        await _bind(request, principal, username, body.unit_id)
    except CrewRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return {"username": username, "unit_id": body.unit_id}


@router.delete("/api/field/crews/{username}", tags=["field"])
async def unbind_crew(request: Request, username: str, principal: Admin) -> dict[str, Any]:
    """Unbind a login from its unit (administrators; audited); 404 when it is bound to none."""
    try:
        await _unbind(request, principal, username)
    except CrewRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return {"username": username, "unit_id": None}


# -- the administrators' screen: which responder login is the crew of which unit ------------------

async def _crews_page(request: Request, *, status_code: int = 200, error: str = "", notice: str = "") -> Response:
    cap = _dispatch(request)
    rows = await cap.service.db.fetch(
        "SELECT username, unit_id, bound_by, bound_at FROM unit_crew_logins ORDER BY username")
    units = cap.service.recommender.units
    users = await services_of(request).identity.list_users()
    names = {u.username: u.display_name for u in users}
    bindings = [{"username": r["username"], "display_name": names.get(r["username"], ""), "unit_id": r["unit_id"],
                 "callsign": units[r["unit_id"]].callsign if r["unit_id"] in units else r["unit_id"],
                 "bound_by": r["bound_by"], "bound_at": r["bound_at"].strftime("%Y-%m-%d %H:%M")} for r in rows]
    responders = [u for u in users if u.role is Role.RESPONDER]
    unit_choices = sorted(((u.id, u.callsign) for u in units.values()), key=lambda x: x[1])
    return render(request, "crews.html", status_code=status_code, bindings=bindings, responders=responders,
                  units=unit_choices, error=error, notice=notice)


@router.get("/admin/crews", include_in_schema=False)
async def crews_page(request: Request, principal: Admin, notice: str = "") -> Response:
    kind, _, name = notice.partition(":")
    text = translate(language_of(request), f"crews.{kind}", name=name[:64]) if kind in ("bound", "unbound") else ""
    return await _crews_page(request, notice=text)


@router.post("/admin/crews", include_in_schema=False)
async def crews_bind_form(request: Request, principal: Admin, username: Annotated[str, Form(max_length=64)],
                          unit_id: Annotated[str, Form(max_length=100)]) -> Response:
    try:
        await _bind(request, principal, username.strip(), unit_id.strip())
    except CrewRefused as exc:
        return await _crews_page(request, status_code=exc.status, error=str(exc))
    return RedirectResponse(f"/admin/crews?notice=bound:{username.strip()}", status_code=303)


@router.post("/admin/crews/{username}/remove", include_in_schema=False)
async def crews_unbind_form(request: Request, principal: Admin, username: str) -> Response:
    try:
        await _unbind(request, principal, username)
    except CrewRefused as exc:
        return await _crews_page(request, status_code=exc.status, error=str(exc))
    return RedirectResponse(f"/admin/crews?notice=unbound:{username}", status_code=303)


@router.get("/field", include_in_schema=False)
async def field_page(request: Request, principal: Responder) -> Response:
    cap = _dispatch(request)
    unit_id = await cap.crews.unit_of(principal.user.username)
    lang = language_of(request)
    return render(request, "field.html", unit_id=unit_id or "", tiles=mbtiles_path(request).is_file(),
                  statuses=[s.value for s in FIELD_STATUSES],
                  status_names={s.value: translate(lang, f"field.unit_status.{s.value}") for s in UnitStatus})


@router.get("/field/tiles/{z}/{x}/{y}", include_in_schema=False)
async def field_tiles(request: Request, z: int, x: int, y: int, principal: Responder) -> Response:
    """The offline raster tiles of the dispatch map (``dispatch.mbtiles``), for the phone's small map."""
    return await tile_response(request, z, x, y)
