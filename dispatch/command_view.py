"""The leaders' command view (领导指挥视图) figures, as pure functions over plain rows.

``dispatch.command_figures`` reads the rows from PostgreSQL; this module only counts, so every
figure the view shows can be checked in a unit test with made-up rows and a fixed ``now``.

Rules (the figures the command view shows; all exclude training (演练) data, which the reader
filters out before calling):

* **open incidents**: every incident whose status is not ``closed``, counted by priority (1–5)
  and by the response level of its active plan activation (I–IV, the most severe when several
  plans are active on it; ``none`` without an active plan).
* **units deployed**: units dispatched, en route, on scene, transporting or at a hospital.
* **calls waiting**: emergency calls queued or ringing at a position (not yet answered).
* **answer rate within 10 s and 15 s today**: of the calls offered since local midnight that
  finished waiting (answered or abandoned), the share answered within the threshold
  (``dispatch.calltaking.stats.answer_stats``: an abandoned call counts against the target).
* **tasks overdue** (超时任务), by :class:`OverduePolicy`: a task still *assigned* longer than
  ``acknowledge_within`` after it was created, or still open (assigned, acknowledged, in
  progress) longer than ``complete_within``. Plans carry no time limits of their own; these
  defaults (10 min to acknowledge — the usual 签收 time in the city's duty rules — and 2 h to
  complete) are the product's, and configurable by whoever builds the policy. Done and
  withdrawn tasks are never overdue; tasks of ended activations are not counted.
* **plan progress per agency**: tasks done / tasks that count (withdrawn tasks do not), how many
  the agency has signed for (acknowledged, in progress or done: 签收) and how many are overdue.
* **resources consumed**: quantities allocated and not released, per item, to open incidents.
* **time series**: the last 24 hours in whole hours, oldest first: incidents created, calls
  offered, and the mean and longest answer time of the calls answered in each hour.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dispatch.calltaking.stats import CallTiming, answer_stats

DEPLOYED = frozenset({"dispatched", "en_route", "on_scene", "transporting", "at_hospital"})
OPEN_TASK = frozenset({"assigned", "acknowledged", "in_progress"})
LEVELS = ("I", "II", "III", "IV")
PRIORITIES = (1, 2, 3, 4, 5)
BEIJING = timezone(timedelta(hours=8))
THRESHOLDS = (10, 15)


@dataclass(frozen=True)
class OverduePolicy:
    acknowledge_within: timedelta = timedelta(minutes=10)
    complete_within: timedelta = timedelta(hours=2)

    def overdue(self, status: str, created_at: datetime, now: datetime) -> bool:
        age = now - created_at
        if status == "assigned" and age > self.acknowledge_within:
            return True
        return status in OPEN_TASK and age > self.complete_within


@dataclass(frozen=True)
class IncidentRow:
    id: str
    priority: int
    status: str
    created_at: datetime


@dataclass(frozen=True)
class TaskRow:
    activation_id: int
    agency: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class ActivationRow:
    id: int
    incident_id: str
    plan_key: str
    plan_name: str
    level: int  # 1 = I … 4 = IV
    activated_at: datetime
    conference_id: str | None
    lon: float
    lat: float
    status: str = "active"


@dataclass(frozen=True)
class AllocationRow:
    item: str
    quantity: int


@dataclass(frozen=True)
class Inputs:
    """Everything the figures are computed from (real data only; the reader filters training)."""

    incidents: Sequence[IncidentRow] = ()
    unit_statuses: Sequence[str] = ()
    calls_waiting: int = 0
    calls: Sequence[CallTiming] = ()  # every call offered in the last 24 h (and since midnight)
    activations: Sequence[ActivationRow] = ()  # active ones
    tasks: Sequence[TaskRow] = ()  # of those activations
    allocations: Sequence[AllocationRow] = ()  # open allocations to open incidents
    agency_names: Mapping[str, str] = field(default_factory=dict)
    item_names: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # item → (name, unit)


def local_midnight(now: datetime, tz: timezone = BEIJING) -> datetime:
    """The start of ``now``'s day in ``tz`` (an aware datetime)."""
    local = now.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def hour_starts(now: datetime, hours: int = 24) -> list[datetime]:
    """The starts of the last ``hours`` whole hours, oldest first; the last one holds ``now``."""
    top = now.replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=hours - 1 - i) for i in range(hours)]


def _bucket(at: datetime, starts: Sequence[datetime]) -> int | None:
    if not starts or at < starts[0] or at >= starts[-1] + timedelta(hours=1):
        return None
    return int((at - starts[0]) // timedelta(hours=1))


def open_incident_figures(incidents: Iterable[IncidentRow], levels: Mapping[str, int]) -> dict[str, Any]:
    """Open incidents: total, by priority and by the response level of their active plan."""
    by_priority = {str(p): 0 for p in PRIORITIES}
    by_level = {lv: 0 for lv in (*LEVELS, "none")}
    total = 0
    for inc in incidents:
        if inc.status == "closed":
            continue
        total += 1
        by_priority[str(inc.priority)] = by_priority.get(str(inc.priority), 0) + 1
        level = levels.get(inc.id)
        by_level[LEVELS[level - 1] if level in (1, 2, 3, 4) else "none"] += 1
    return {"total": total, "by_priority": by_priority, "by_level": by_level}


def incident_levels(activations: Iterable[ActivationRow]) -> dict[str, int]:
    """incident id → the most severe level (the smallest number) among its active activations."""
    out: dict[str, int] = {}
    for a in activations:
        if a.status == "active":
            out[a.incident_id] = min(a.level, out.get(a.incident_id, 5))
    return out


def plan_progress(activations: Sequence[ActivationRow], tasks: Iterable[TaskRow], now: datetime,
                  policy: OverduePolicy, agency_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each active activation (most severe level first, then newest) with its progress per agency."""
    per: dict[int, dict[str, dict[str, Any]]] = {a.id: {} for a in activations}
    for t in tasks:
        groups = per.get(t.activation_id)
        if groups is None or t.status == "cancelled":
            continue
        g = groups.setdefault(t.agency, {"agency": t.agency, "agency_name": agency_names.get(t.agency, t.agency),
                                         "done": 0, "acknowledged": 0, "total": 0, "overdue": 0})
        g["total"] += 1
        g["done"] += t.status == "done"
        g["acknowledged"] += t.status != "assigned"
        g["overdue"] += policy.overdue(t.status, t.created_at, now)
    out = []
    for a in sorted(activations, key=lambda a: (a.level, -a.activated_at.timestamp(), -a.id)):
        agencies = sorted(per[a.id].values(), key=lambda g: g["agency"])
        out.append({
            "id": a.id, "incident_id": a.incident_id, "plan_key": a.plan_key, "plan_name": a.plan_name,
            "level": LEVELS[a.level - 1], "activated_at": a.activated_at.isoformat(),
            "conference_id": a.conference_id, "lon": a.lon, "lat": a.lat, "agencies": agencies,
            "done": sum(g["done"] for g in agencies), "total": sum(g["total"] for g in agencies),
            "acknowledged": sum(g["acknowledged"] for g in agencies),
            "overdue": sum(g["overdue"] for g in agencies),
        })
    return out


def consumed(allocations: Iterable[AllocationRow], item_names: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Quantities allocated per item, largest first."""
    totals: dict[str, int] = {}
    for a in allocations:
        totals[a.item] = totals.get(a.item, 0) + a.quantity
    return [{"item": k, "name": item_names.get(k, (k, ""))[0], "unit": item_names.get(k, (k, ""))[1], "quantity": q}
            for k, q in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]


def series(incidents: Iterable[IncidentRow], calls: Iterable[CallTiming], now: datetime,
           hours: int = 24) -> dict[str, Any]:
    """Hourly counts over the last ``hours`` hours: incidents, calls, mean and longest answer time."""
    starts = hour_starts(now, hours)
    created = [0] * hours
    offered = [0] * hours
    waits: list[list[float]] = [[] for _ in range(hours)]
    for inc in incidents:
        i = _bucket(inc.created_at, starts)
        if i is not None:
            created[i] += 1
    for c in calls:
        i = _bucket(c.offered_at, starts)
        if i is None:
            continue
        offered[i] += 1
        if c.answered_at is not None:
            waits[i].append((c.answered_at - c.offered_at).total_seconds())
    return {"hours": [s.isoformat() for s in starts], "incidents": created, "calls": offered,
            "answer_mean_s": [round(sum(w) / len(w), 1) if w else None for w in waits],
            "answer_max_s": [round(max(w), 1) if w else None for w in waits]}


def summary(data: Inputs, now: datetime, policy: OverduePolicy | None = None,
            tz: timezone = BEIJING) -> dict[str, Any]:
    """Every figure of the command view (see the module docstring for what each one counts)."""
    policy = policy or OverduePolicy()
    active = [a for a in data.activations if a.status == "active"]
    progress = plan_progress(active, data.tasks, now, policy, data.agency_names)
    midnight = local_midnight(now, tz)
    today = answer_stats([c for c in data.calls if c.offered_at >= midnight], THRESHOLDS)
    return {
        "generated_at": now.isoformat(),
        "figures": {
            "open_incidents": open_incident_figures(data.incidents, incident_levels(active)),
            "units_deployed": sum(1 for s in data.unit_statuses if s in DEPLOYED),
            "units_total": len(data.unit_statuses),
            "calls_waiting": data.calls_waiting,
            "answer": {"since": midnight.isoformat(), "offered": today.offered, "answered": today.answered,
                       "abandoned": today.abandoned, "within_10": today.within[10], "within_15": today.within[15]},
            "tasks_overdue": sum(a["overdue"] for a in progress),
            "tasks_open": sum(a["total"] - a["done"] for a in progress),
        },
        "activations": progress,
        "resources_consumed": consumed(data.allocations, data.item_names),
        "series": series(data.incidents, data.calls, now),
    }
