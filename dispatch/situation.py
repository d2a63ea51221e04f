"""The content of an incident's situation report (态势报告), gathered in one place for the page and
its PDF: the plan activations (plan, version, level, the level history with who and when, the
command structure), each agency's tasks (status, times, notes, overdue by the same
``dispatch.command_view.OverduePolicy`` as the leaders' command view), the resources allocated
(supplies by depot, teams, shelter places with the shelter's occupancy, hospital beds), the
experts nearest the incident (experts are consulted, not allocated), and the command conferences
with their rooms.

Reads only; every figure comes from the services' own views (``PlanService.activations``,
``ResourceService.allocations``, ``DispatchService.conferences``), so the report says what the
consoles say. ``now`` is an argument (overdue is judged at it).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any, Protocol

from dispatch.command_view import OverduePolicy
from dispatch.names_en import AGENCY_EN
from dispatch.plans.model import LEVEL_NAMES, LEVEL_NAMES_EN, Level
from dispatch.resources.model import (
    ITEMS,
    KIND_NAMES,
    KIND_NAMES_EN,
    TEAM_SKILLS,
    Resource,
    ResourceKind,
    ResourceNotFound,
)
from dispatch.resources.search import Hit, Query

EXPERTS_SHOWN = 3


class Activations(Protocol):
    async def activations(self, incident_id: str, agency: str | None = None,
                          en: bool = False) -> list[dict[str, Any]]: ...


class Allocations(Protocol):
    def resource(self, resource_id: str) -> Resource: ...

    async def allocations(self, incident_id: str) -> list[dict[str, Any]]: ...

    def nearest(self, query: Query) -> list[Hit]: ...


class Conferences(Protocol):
    async def conferences(self, incident_id: str) -> list[dict[str, Any]]: ...


def local_time(iso: str | None, tz: tzinfo) -> str:
    """``2026-07-01T00:00:00.123+00:00`` → ``2026-07-01 08:00:00`` in ``tz`` (the report's local time)."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _task(t: Mapping[str, Any], now: datetime, tz: tzinfo, policy: OverduePolicy) -> dict[str, Any]:
    history = t["history"]
    created = datetime.fromisoformat(history[0]["at"]) if history else datetime.fromisoformat(t["updated_at"])
    times = {h["status"]: local_time(h["at"], tz) for h in history}  # the last time it entered each status
    late = None
    if policy.overdue(t["status"], created, now):
        late = "ack" if t["status"] == "assigned" else "done"
    return {"id": t["id"], "title": t["title"], "status": t["status"], "status_name": t["status_name"],
            "note": t["note"], "level_added": t["level_added"], "assigned_at": local_time(created.isoformat(), tz),
            "acknowledged_at": times.get("acknowledged", ""), "in_progress_at": times.get("in_progress", ""),
            "done_at": times.get("done", ""), "updated_at": local_time(t["updated_at"], tz), "updated_by": t["updated_by"],
            "notes": [h["note"] for h in history if h["note"]], "overdue": late}


def _activation(a: Mapping[str, Any], now: datetime, tz: tzinfo, en: bool, policy: OverduePolicy) -> dict[str, Any]:
    names = LEVEL_NAMES_EN if en else LEVEL_NAMES
    agencies = []
    for g in a["agencies"]:
        tasks = [_task(t, now, tz, policy) for t in g["tasks"]]
        agencies.append({"agency": g["agency"], "agency_name": AGENCY_EN.get(g["agency"], g["agency"]) if en
                         else g["agency_name"], "tasks": tasks, "done": g["done"], "open": g["open"],
                         "overdue": sum(t["overdue"] is not None for t in tasks)})
    proposals = a.get("proposals") or {}
    return {
        "id": a["id"], "plan_key": a["plan_key"], "plan_name": a["plan_name"], "plan_version": a["plan_version"],
        "level": a["level"], "level_name": a["level_name"], "status": a["status"],
        "activated_at": local_time(a["activated_at"], tz), "activated_by": a["activated_by"],
        "ended_at": local_time(a["ended_at"], tz), "ended_by": a["ended_by"], "conference_id": a["conference_id"],
        "commander": proposals.get("commander"), "members": proposals.get("members", []),
        "level_history": [{"at": local_time(h["at"], tz), "actor": h["actor"], "from": h["from"], "level": h["level"],
                           "from_name": names[Level[h["from"]]] if h["from"] else "",
                           "level_name": names[Level[h["level"]]], "reason": h["reason"]}
                          for h in a["level_history"]],
        "agencies": agencies,
        "overdue": sum(g["overdue"] for g in agencies),
    }


def _allocation(a: Mapping[str, Any], r: Resource | None, tz: tzinfo, en: bool) -> dict[str, Any]:
    item = ITEMS.get(a["item"])
    out = {"id": a["id"], "resource_id": a["resource_id"], "resource_name": a["resource_name"], "item": a["item"],
           "item_name": (item.name_en if en else item.name) if item else a["item"], "unit": a["unit"],
           "quantity": a["quantity"], "allocated_at": local_time(a["allocated_at"], tz), "allocated_by": a["allocated_by"],
           "released_at": local_time(a["released_at"], tz), "released_by": a["released_by"] or "", "note": a["note"]}
    if r is not None and r.kind is ResourceKind.TEAM:
        out.update(headcount=r.headcount, skills=list(r.skills) if en else [TEAM_SKILLS[s] for s in r.skills],
                   contact=r.contact)
    elif r is not None and r.kind is ResourceKind.SHELTER:
        out.update(capacity=r.capacity, occupancy=r.occupancy)
    elif r is not None and r.kind is ResourceKind.HOSPITAL:
        out.update(beds_total=r.beds_total, beds_free=r.stock.get("beds", 0))
    return out


async def situation(incident_id: str, lon: float, lat: float, *, plans: Activations, resources: Allocations,
                    conferences: Conferences, room_names: Mapping[str, str], now: datetime,
                    tz: tzinfo, en: bool = False, policy: OverduePolicy | None = None) -> dict[str, Any]:
    """Everything the report adds to the incident's own facts (the caller has checked it exists).
    Overdue tasks are judged at ``now`` by the leaders' view's ``OverduePolicy`` (one rule for both)."""
    policy = policy or OverduePolicy()
    activations = [_activation(a, now, tz, en, policy) for a in await plans.activations(incident_id, en=en)]
    by_kind: dict[str, list[dict[str, Any]]] = {k.value: [] for k in ResourceKind}
    for a in await resources.allocations(incident_id):
        try:
            r: Resource | None = resources.resource(a["resource_id"])
        except ResourceNotFound:  # no longer in the directory: the allocation row still shows
            r = None
        by_kind[a["kind"]].append(_allocation(a, r, tz, en))
    experts = [{"id": h.resource.id, "name": h.resource.name, "specialty": h.resource.specialty,
                "contact": h.resource.contact, "eta_min": round(h.eta.minutes)}
               for h in resources.nearest(Query(lon, lat, ResourceKind.EXPERT, k=EXPERTS_SHOWN))]
    opened_by = {a["conference_id"]: a["plan_name"] for a in activations if a["conference_id"]}
    confs = [{"conference_id": c["conference_id"], "status": c.get("status") or "",
              "requested_at": local_time(c["requested_at"], tz), "dispatcher": c["dispatcher"],
              "rooms": [{"id": r, "name": room_names.get(r, r)} for r in c["rooms"]],
              "plan_name": opened_by.get(c["conference_id"], "")}
             for c in await conferences.conferences(incident_id)]
    kinds = KIND_NAMES_EN if en else KIND_NAMES
    return {"activations": activations, "tasks_overdue": sum(a["overdue"] for a in activations),
            "allocations": by_kind, "kind_names": {k.value: kinds[k] for k in ResourceKind},
            "experts": experts, "conferences": confs}

