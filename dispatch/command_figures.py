"""Reads what the leaders' command view counts from PostgreSQL (the system of record, so every web
node shows the same figures), then lets the pure ``dispatch.command_view`` count it.

Training (演练) data is left out here: incidents, units, calls and conferences flagged ``training``.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from dispatch.calltaking.stats import CallTiming
from dispatch.command_view import (
    ActivationRow,
    AllocationRow,
    IncidentRow,
    Inputs,
    OverduePolicy,
    TaskRow,
    local_midnight,
    summary,
)
from dispatch.model import AGENCIES
from dispatch.names_en import AGENCY_EN
from dispatch.resources.model import ITEMS


class Rows(Protocol):
    """The part of ``core.db.Database`` used here."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


async def read_inputs(db: Rows, now: datetime, en: bool = False) -> Inputs:
    since = min(now - timedelta(hours=24), local_midnight(now))
    incidents = await db.fetch(
        "SELECT id, priority, status, created_at FROM incidents WHERE NOT training "
        "AND (status <> 'closed' OR created_at >= $1)", since)
    units = await db.fetch("SELECT status FROM units WHERE NOT training")
    waiting = await db.fetchval(
        "SELECT count(*) FROM emergency_calls WHERE NOT training AND state IN ('queued', 'offered')")
    calls = await db.fetch(
        "SELECT offered_at, answered_at, abandoned_at FROM emergency_calls WHERE NOT training AND offered_at >= $1",
        since)
    activations = await db.fetch(
        "SELECT a.id, a.incident_id, a.plan_key, a.plan_name, a.level, a.activated_at, a.conference_id, "
        "a.status, i.lon, i.lat FROM plan_activations a JOIN incidents i ON i.id = a.incident_id "
        "WHERE a.status = 'active' AND NOT i.training")
    tasks = await db.fetch(
        "SELECT t.activation_id, t.agency, t.status, t.created_at FROM plan_tasks t "
        "JOIN plan_activations a ON a.id = t.activation_id JOIN incidents i ON i.id = a.incident_id "
        "WHERE a.status = 'active' AND NOT i.training")
    allocations = await db.fetch(
        "SELECT r.item, r.quantity FROM resource_allocations r JOIN incidents i ON i.id = r.incident_id "
        "WHERE r.released_at IS NULL AND i.status <> 'closed' AND NOT i.training")
    return Inputs(
        incidents=[IncidentRow(r["id"], r["priority"], r["status"], r["created_at"]) for r in incidents],
        unit_statuses=[r["status"] for r in units],
        calls_waiting=int(waiting or 0),
        calls=[CallTiming(r["offered_at"], r["answered_at"], r["abandoned_at"] is not None) for r in calls],
        activations=[ActivationRow(r["id"], r["incident_id"], r["plan_key"], r["plan_name"], r["level"],
                                   r["activated_at"], r["conference_id"], r["lon"], r["lat"], r["status"])
                     for r in activations],
        tasks=[TaskRow(r["activation_id"], r["agency"], r["status"], r["created_at"]) for r in tasks],
        allocations=[AllocationRow(r["item"], r["quantity"]) for r in allocations],
        agency_names=dict(AGENCY_EN) if en else dict(AGENCIES),
        item_names={k: (i.name_en if en else i.name, i.unit) for k, i in ITEMS.items()},
    )


async def command_conferences(db: Rows) -> list[dict[str, Any]]:
    """Command conferences of open real incidents, those of active plan activations first, newest first."""
    rows = await db.fetch(
        "SELECT c.conference_id, c.incident_id, c.status, c.requested_at, "
        "EXISTS (SELECT 1 FROM plan_activations a WHERE a.conference_id = c.conference_id AND a.status = 'active') "
        "AS of_plan FROM command_conferences c JOIN incidents i ON i.id = c.incident_id "
        "WHERE NOT c.training AND i.status <> 'closed' ORDER BY of_plan DESC, c.requested_at DESC LIMIT 20")
    return [{"conference_id": r["conference_id"], "incident_id": r["incident_id"], "status": r["status"],
             "of_plan": r["of_plan"], "join_url": f"/join/{r['conference_id']}"} for r in rows]


async def command_summary(db: Rows, now: datetime, en: bool = False,
                          policy: OverduePolicy | None = None) -> dict[str, Any]:
    """The command view's figures (``dispatch.command_view.summary``) from the database."""
    return summary(await read_inputs(db, now, en), now, policy)
