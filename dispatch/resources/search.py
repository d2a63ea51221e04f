"""The nearest-resource query: "the 3 nearest depots with ≥ 500 sandbags", ranked by ETA.

Positions live in one ``gis.unit_index.UnitIndex`` per resource kind (the grid the unit
recommendation uses; resources rarely move, stock changes often, so the stock test is the
index's ``where`` filter, not part of the index). A query takes the ``candidate_limit``
straight-line-nearest resources that pass the filter and ranks them by ``EtaEstimator.etas_to``
(one shortest-path tree to the target when a road network is configured, else great-circle ×
detour ÷ speed, with the assumption stated). As for units, a resource outside those candidates
may in theory have a shorter road ETA; ``candidate_limit`` defaults to max(30, 4 k).
Supplies travel by truck: the ETA uses the speed of ``VEHICLE_TYPE``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dispatch.model import ValidationError
from dispatch.resources.model import ITEMS, TEAM_SKILLS, Resource, ResourceKind, check_quantity
from gis.routing import Eta, EtaEstimator
from gis.unit_index import UnitIndex

VEHICLE_TYPE = "supply_truck"
MAX_K = 50


@dataclass(frozen=True)
class Query:
    """What is wanted near a point. ``item``/``min_quantity``: stock of that item at least that much;
    ``skill``: teams with that skill."""

    lon: float
    lat: float
    kind: ResourceKind
    k: int = 3
    item: str | None = None
    min_quantity: int = 1
    skill: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_K:
            raise ValidationError(f"k: 必须是 1–{MAX_K} 的整数")
        if self.item is not None and self.item not in ITEMS:
            raise ValidationError(f"item: 未知物资 {self.item!r}（可选 {', '.join(ITEMS)}）")
        check_quantity(self.min_quantity, "min_quantity")
        if self.skill is not None and self.skill not in TEAM_SKILLS:
            raise ValidationError(f"skill: 未知技能 {self.skill!r}（可选 {', '.join(TEAM_SKILLS)}）")

    def accepts(self, r: Resource) -> bool:
        if self.item is not None and r.stock.get(self.item, 0) < self.min_quantity:
            return False
        return self.skill is None or self.skill in r.skills


@dataclass(frozen=True)
class Hit:
    resource: Resource
    eta: Eta
    straight_m: float


@dataclass
class ResourceIndex:
    """Resources by id with one spatial grid per kind; ``nearest`` answers a ``Query``."""

    eta: EtaEstimator
    candidate_limit: int = 30
    resources: dict[str, Resource] = field(default_factory=dict)
    _grids: dict[ResourceKind, UnitIndex] = field(default_factory=dict)

    def upsert(self, r: Resource) -> None:
        old = self.resources.get(r.id)
        if old is not None and old.kind is not r.kind:
            self._grids[old.kind].remove(r.id)
        self.resources[r.id] = r
        self._grids.setdefault(r.kind, UnitIndex()).update(r.id, r.lon, r.lat)

    def upsert_many(self, rs: Iterable[Resource]) -> None:
        for r in rs:
            self.upsert(r)

    def set_stock(self, resource_id: str, item: str, quantity: int) -> Resource | None:
        r = self.resources.get(resource_id)
        if r is None:
            return None
        r2 = r.with_stock(item, quantity)
        self.resources[resource_id] = r2
        return r2

    def nearest(self, q: Query) -> list[Hit]:
        grid = self._grids.get(q.kind)
        if grid is None:
            return []
        res = self.resources
        near = grid.nearest(q.lon, q.lat, k=max(self.candidate_limit, 4 * q.k), where=lambda rid: q.accepts(res[rid]))
        return self._rank(q, [(res[n.unit_id], n.distance_m) for n in near])

    def _rank(self, q: Query, found: list[tuple[Resource, float]]) -> list[Hit]:
        if not found:
            return []
        etas = self.eta.etas_to((q.lon, q.lat), [((r.lon, r.lat), VEHICLE_TYPE) for r, _ in found])
        hits = [Hit(r, e, d) for (r, d), e in zip(found, etas, strict=True)]
        hits.sort(key=lambda h: (h.eta.seconds, h.resource.id))
        return hits[: q.k]

    def nearest_brute_force(self, q: Query) -> list[Hit]:
        """Reference answer: every resource of the kind that passes the filter, ETA for each."""
        from gis.geodesy import haversine_m

        found = [(r, haversine_m(q.lon, q.lat, r.lon, r.lat)) for r in self.resources.values()
                 if r.kind is q.kind and q.accepts(r)]
        return self._rank(q, found)


def hit_view(h: Hit) -> dict[str, object]:
    e = h.eta
    return {"eta_s": round(e.seconds, 1), "eta_min": round(e.minutes, 1), "distance_m": round(e.distance_m),
            "straight_m": round(h.straight_m), "method": e.method, "assumption": e.assumption,
            "minutes_text": f"约 {math.ceil(e.minutes)} 分钟"}
