"""Unit recommendation: for each requirement of a run card, the available units that can do it,
ranked by ETA, each with an explanation a dispatcher can check.

How a unit is placed: its last AVL fix; a fix older than ``stale_after_s`` is still used but
flagged stale; a unit without AVL (or with no fix yet) stands at its home station.

Eligible: status available or returning (a returning unit can be re-tasked), not out of service,
same training flag as the incident, has the capability. Ranked by ETA (road network when
configured, else the great-circle assumption), ties (or ETAs within ``rotation_tolerance_s``)
broken by rotation — the unit dispatched least recently goes first, so work is shared — and
then by id for a stable order.

Scale: one ``UnitIndex`` per capability holds the unit positions, so a query looks only at the
``candidate_limit`` straight-line-nearest eligible units of that capability and computes their
ETAs with one shortest-path tree. A unit outside those k may in theory have a shorter road ETA
(a bridge the others lack); k defaults to 30, far more than any run card asks for.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatch.model import (
    CAPABILITY_NAMES,
    DISPATCHABLE,
    UNIT_STATUS_NAMES,
    UNIT_TYPES,
    Capability,
    Incident,
    Station,
    Unit,
    UnitStatus,
    ValidationError,
)
from dispatch.response_plans import Plan, Requirement
from gis.routing import Eta, EtaEstimator
from gis.unit_index import UnitIndex

POSITION_SOURCE_NAMES = {"avl": "实时定位", "avl_stale": "定位过期", "station": "驻地（无实时定位）"}


@dataclass(frozen=True)
class Candidate:
    unit_id: str
    callsign: str
    unit_type: str
    capability: Capability
    eta: Eta
    straight_m: float
    position: tuple[float, float]
    position_source: str  # "avl" | "avl_stale" | "station"
    position_age_s: float | None
    last_dispatched_at: datetime | None
    status: UnitStatus
    recommended: bool
    explanation: str  # zh-CN, one line


@dataclass(frozen=True)
class RequirementResult:
    requirement: Requirement
    already_assigned: tuple[str, ...]  # units on the incident that already cover it
    candidates: tuple[Candidate, ...]  # ranked best first
    shortfall: int  # how many the card asks for that no eligible unit can cover

    @property
    def recommended(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.recommended)


@dataclass
class Recommender:
    """Keeps per-capability indexes of unit positions and answers recommendation queries."""

    eta: EtaEstimator
    stations: Mapping[str, Station]
    candidate_limit: int = 30
    stale_after_s: float = 300.0
    rotation_tolerance_s: float = 0.0
    units: dict[str, Unit] = field(default_factory=dict)
    _indexes: dict[Capability, UnitIndex] = field(default_factory=dict)

    def upsert(self, unit: Unit) -> None:
        """Add or update a unit (status, position, ...); call on every change."""
        pos = self._position(unit)[0]
        old = self.units.get(unit.id)
        if old is not None:
            for cap in old.capabilities - unit.capabilities:
                self._indexes[cap].remove(unit.id)
        self.units[unit.id] = unit
        for cap in unit.capabilities:
            self._indexes.setdefault(cap, UnitIndex()).update(unit.id, *pos)

    def upsert_many(self, units: Iterable[Unit]) -> None:
        for u in units:
            self.upsert(u)

    def remove(self, unit_id: str) -> None:
        u = self.units.pop(unit_id, None)
        if u:
            for cap in u.capabilities:
                self._indexes[cap].remove(unit_id)

    def _position(self, unit: Unit, now: datetime | None = None) -> tuple[tuple[float, float], str, float | None]:
        if unit.has_avl and unit.position is not None:
            age = (now - unit.position.at).total_seconds() if now else None
            src = "avl_stale" if age is not None and age > self.stale_after_s else "avl"
            return (unit.position.lon, unit.position.lat), src, age
        st = self.stations.get(unit.station_id)
        if st is None:
            raise ValidationError(f"力量 {unit.callsign} 没有定位，且驻地 {unit.station_id!r} 未知")
        return (st.lon, st.lat), "station", None

    def recommend(
        self,
        incident: Incident,
        plan: Plan | Sequence[Requirement],
        now: datetime,
        exclude: Iterable[str] = (),
    ) -> list[RequirementResult]:
        """Ranked candidates per requirement; the top ``count`` not already picked are recommended.

        Units already assigned to the incident count towards a requirement they can fill.
        ``exclude`` drops units the dispatcher struck out.
        """
        reqs = plan.requirements if isinstance(plan, Plan) else tuple(plan)
        target = (incident.location.lon, incident.location.lat)
        excluded = set(exclude)
        picked: set[str] = set()
        counted: set[str] = set()  # assigned units already credited to an earlier requirement
        assigned = [self.units[u] for u in incident.assigned_units if u in self.units]
        results: list[RequirementResult] = []
        for req in reqs:
            already = tuple(u.id for u in assigned if req.capability in u.capabilities and u.id not in counted)[: req.count]
            counted.update(already)
            need = req.count - len(already)
            ranked = self._rank(req.capability, target, incident.training, now, excluded | set(incident.assigned_units))
            out: list[Candidate] = []
            for fields in ranked:
                rec = need > 0 and fields["unit_id"] not in picked
                if rec:
                    picked.add(fields["unit_id"])
                    need -= 1
                out.append(Candidate(recommended=rec, **fields))
            results.append(RequirementResult(req, already, tuple(out), max(0, need)))
        return results

    def _rank(
        self, cap: Capability, target: tuple[float, float], training: bool, now: datetime, excluded: set[str]
    ) -> list[dict[str, Any]]:
        idx = self._indexes.get(cap)
        if idx is None:
            return []
        units = self.units

        def eligible(uid: str) -> bool:
            u = units[uid]
            return u.status in DISPATCHABLE and u.training == training and uid not in excluded

        near = idx.nearest(target[0], target[1], k=self.candidate_limit, where=eligible)
        if not near:
            return []
        chosen = [units[n.unit_id] for n in near]
        placed = [self._position(u, now) for u in chosen]
        etas = self.eta.etas_to(target, [(p[0], u.type) for u, p in zip(chosen, placed, strict=True)])
        tol = self.rotation_tolerance_s
        rows = []
        for u, (pos, src, age), n, eta in zip(chosen, placed, near, etas, strict=True):
            bucket = math.floor(eta.seconds / tol) if tol > 0 else eta.seconds
            last = u.last_dispatched_at.timestamp() if u.last_dispatched_at else -math.inf
            rows.append(((bucket, last, u.id), u, pos, src, age, n.distance_m, eta))
        rows.sort(key=lambda r: r[0])
        return [
            {
                "unit_id": u.id, "callsign": u.callsign, "unit_type": u.type, "capability": cap, "eta": eta,
                "straight_m": d, "position": pos, "position_source": src, "position_age_s": age,
                "last_dispatched_at": u.last_dispatched_at, "status": u.status,
                "explanation": _explain(u, cap, eta, d, src, age, now),
            }
            for _, u, pos, src, age, d, eta in rows
        ]


def _explain(u: Unit, cap: Capability, eta: Eta, straight_m: float, src: str, age: float | None, now: datetime) -> str:
    parts = [
        f"{u.callsign}（{UNIT_TYPES[u.type].name}）",
        f"具备{CAPABILITY_NAMES[cap]}",
        f"直线 {straight_m / 1000:.1f} km",
        f"{'路网' if eta.method == 'road' else '估算'}行程 {eta.distance_m / 1000:.1f} km，预计 {eta.minutes:.0f} 分钟",
    ]
    if src == "avl_stale" and age is not None:
        parts.append(f"定位过期 {age / 60:.0f} 分钟")
    else:
        parts.append(f"位置：{POSITION_SOURCE_NAMES[src]}")
    if u.status != UnitStatus.AVAILABLE:
        parts.append(f"状态：{UNIT_STATUS_NAMES[u.status]}")
    if u.last_dispatched_at is None:
        parts.append("轮换：近期未出动")
    else:
        hours = (now - u.last_dispatched_at).total_seconds() / 3600
        parts.append(f"轮换：上次出动 {hours:.1f} 小时前")
    if eta.method != "road":
        parts.append(eta.assumption)
    return "；".join(parts)


def recommended_unit_ids(results: Sequence[RequirementResult]) -> list[str]:
    """Units for "dispatch all recommended" (one action), in requirement order."""
    return [c.unit_id for r in results for c in r.recommended]
