"""Emergency resources (应急资源) over HTTP: the directory for the map layers, the nearest search by
ETA, and allocation to incidents. The work is done by ``dispatch.resources.service.ResourceService``
(``Node.dispatch.resources``).

Who may: reading (directory, search, an incident's allocations) — dispatchers, call-takers, the
chair and the leader (read-only); allocating and releasing — dispatchers (and admins).
Errors: unknown → 404; short stock, a repeated request, a second release, a closed incident →
409 (nothing changes); bad input → 422 naming the field.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import ConfigDict, Field

from config.roles import Role
from dispatch.model import ValidationError
from dispatch.resources.model import (
    ITEMS,
    KIND_NAMES,
    KIND_NAMES_EN,
    MAX_QUANTITY,
    TEAM_SKILLS,
    ResourceConflict,
    ResourceKind,
    ResourceNotFound,
    kinds_of,
    resource_view,
)
from dispatch.resources.search import MAX_K, hit_view
from dispatch.resources.search import Query as NearestQuery
from dispatch.resources.service import ResourceService
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require
from web_console.guards import ApiModel
from web_console.templating import language_of

router = APIRouter(route_class=RoleFirstRoute)

ALLOCATORS = require(Role.DISPATCHER)
READERS = require(Role.DISPATCHER, Role.CALLTAKER, Role.CHAIR, Role.LEADER)
Allocator = Annotated[Principal, Depends(ALLOCATORS)]
Reader = Annotated[Principal, Depends(READERS)]


def resources_of(request: Request) -> ResourceService:
    cap = node_of(request).dispatch
    if cap is None:
        raise HTTPException(503, "调度服务未在本节点运行")
    return cap.resources


@contextlib.contextmanager
def resource_errors() -> Iterator[None]:
    try:
        yield
    except ResourceNotFound as e:
        raise HTTPException(404, str(e)) from None
    except ResourceConflict as e:
        raise HTTPException(409, str(e)) from None
    except ValidationError as e:
        raise HTTPException(422, str(e)) from None


class _Body(ApiModel):
    model_config = ConfigDict(extra="forbid")


class Allocation(_Body):
    resource_id: str = Field(min_length=1, max_length=64)
    item: str = Field(min_length=1, max_length=40)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    request_id: str = Field(min_length=1, max_length=64, description="the client's id of this request: "
                            "the same request sent twice is refused (409) and allocates once")
    note: str = Field("", max_length=500)


def _legend(en: bool) -> dict[str, Any]:
    return {"kinds": {k.value: (KIND_NAMES_EN if en else KIND_NAMES)[k] for k in ResourceKind},
            "items": {k: {"name": i.name_en if en else i.name, "unit": i.unit} for k, i in ITEMS.items()},
            "skills": dict(TEAM_SKILLS)}


@router.get("/api/resources", tags=["resources"])
async def list_resources(request: Request, principal: Reader,
                         kind: Annotated[list[str] | None, Query(max_length=5)] = None) -> dict[str, Any]:
    """Every resource (or those of the given kinds) with its stock, capacity or beds — the map layers."""
    svc = resources_of(request)
    en = language_of(request) == "en"
    with resource_errors():
        kinds = kinds_of(kind) if kind else None
    return {"resources": svc.directory(kinds, en), "legend": _legend(en)}


@router.get("/api/resources/nearest", tags=["resources"])
async def nearest(request: Request, principal: Reader, kind: str = "depot",
                  item: Annotated[str | None, Query(max_length=40)] = None,
                  min_quantity: Annotated[int, Query(ge=1, le=MAX_QUANTITY)] = 1,
                  skill: Annotated[str | None, Query(max_length=40)] = None,
                  k: Annotated[int, Query(ge=1, le=MAX_K)] = 3,
                  lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
                  lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
                  incident_id: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    """"The ``k`` nearest ``kind`` with ≥ ``min_quantity`` of ``item``", by ETA, to a point or an incident.
    E.g. ``?kind=depot&item=sandbag&min_quantity=500&k=3&incident_id=...``."""
    svc = resources_of(request)
    with resource_errors():
        (rkind,) = kinds_of([kind])
        if incident_id is not None:
            lon, lat = await svc.incident_position(incident_id)
        elif lon is None or lat is None:
            raise ValidationError("lon/lat: 请给出经纬度或 incident_id")
        q = NearestQuery(lon, lat, rkind, k, item, min_quantity, skill)
        hits = svc.nearest(q)
    en = language_of(request) == "en"
    return {"query": {"kind": rkind.value, "item": item, "min_quantity": min_quantity, "skill": skill, "k": k,
                      "lon": lon, "lat": lat, "incident_id": incident_id},
            "results": [{**resource_view(h.resource, en), **hit_view(h)} for h in hits]}


@router.get("/api/incidents/{incident_id}/resources", tags=["resources"])
async def incident_allocations(request: Request, incident_id: str, principal: Reader) -> list[dict[str, Any]]:
    """Resources allocated to the incident (released ones too, with who and when)."""
    with resource_errors():
        return await resources_of(request).allocations(incident_id)


@router.post("/api/incidents/{incident_id}/resources", status_code=201, tags=["resources"])
async def allocate(request: Request, incident_id: str, body: Allocation, principal: Allocator) -> dict[str, Any]:
    """Allocate ``quantity`` of ``item`` from a resource to the incident, in one transaction.
    409 (and nothing changes) when the stock is short or ``request_id`` was already used."""
    with resource_errors():
        return await resources_of(request).allocate(
            incident_id, body.resource_id, body.item, body.quantity, body.request_id, principal.user.username,
            client_address(request), body.note)


@router.post("/api/resource-allocations/{allocation_id}/release", tags=["resources"])
async def release(request: Request, allocation_id: int, principal: Allocator) -> dict[str, Any]:
    """Return an allocation to its resource's stock (once; a second release is 409)."""
    with resource_errors():
        return await resources_of(request).release(allocation_id, principal.user.username, client_address(request))
