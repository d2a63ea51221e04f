"""Training mode (演练): demo units that move along plausible paths, and demo incidents.

Pure and seeded: the app calls ``TrainingSimulator.tick(now)`` on a timer and feeds the returned
fixes through the normal AVL path (flagged training), so the console shows a live picture
without any real data. Paths follow the road network when one is configured (fastest path by
travel time) and are straight lines otherwise. Every incident it makes has ``training=True``.
"""
from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import networkx as nx

from dispatch.model import CATEGORIES, Incident, Location, Position, new_incident
from gis.geodesy import haversine_m
from gis.routing import RoadNetwork


@dataclass(frozen=True)
class Route:
    """A polyline with cumulative distances, travelled at a constant speed from ``start``."""

    points: tuple[tuple[float, float], ...]
    cum_m: tuple[float, ...]
    speed_kmh: float
    start: datetime

    @property
    def length_m(self) -> float:
        return self.cum_m[-1]

    def position_at(self, t: datetime) -> tuple[float, float, bool]:
        """(lon, lat, arrived) at time t (clamped to the ends)."""
        travelled = max(0.0, (t - self.start).total_seconds()) * self.speed_kmh / 3.6
        if travelled >= self.length_m:
            return self.points[-1][0], self.points[-1][1], True
        i = bisect.bisect_right(self.cum_m, travelled) - 1
        seg = self.cum_m[i + 1] - self.cum_m[i]
        f = (travelled - self.cum_m[i]) / seg if seg > 0 else 0.0
        (x1, y1), (x2, y2) = self.points[i], self.points[i + 1]
        return x1 + (x2 - x1) * f, y1 + (y2 - y1) * f, False


def make_route(
    origin: tuple[float, float],
    dest: tuple[float, float],
    speed_kmh: float,
    start: datetime,
    network: RoadNetwork | None = None,
) -> Route:
    """Fastest road path (snapped ends joined by straight legs) or a straight line."""
    if speed_kmh <= 0:
        raise ValueError("速度必须为正")
    pts: list[tuple[float, float]] = [origin]
    if network is not None:
        a, _ = network.snap(*origin)
        b, _ = network.snap(*dest)
        try:
            pts += nx.shortest_path(network.graph, a, b, weight="seconds")
        except nx.NetworkXNoPath:
            pass
    pts.append(dest)
    dedup = [pts[0]] + [p for prev, p in zip(pts, pts[1:], strict=False) if p != prev]
    if len(dedup) == 1:
        dedup.append(dedup[0])
    cum = [0.0]
    for (x1, y1), (x2, y2) in zip(dedup, dedup[1:], strict=False):
        cum.append(cum[-1] + haversine_m(x1, y1, x2, y2))
    return Route(tuple(dedup), tuple(cum), speed_kmh, start)


@dataclass
class TrainingSimulator:
    """Moves units along routes and invents incidents, deterministically for a seed."""

    spots: Sequence[tuple[float, float]]  # plausible places (townships, villages, landmarks)
    network: RoadNetwork | None = None
    seed: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    _rng: random.Random = field(init=False)
    _n: int = 0

    def __post_init__(self) -> None:
        if not self.spots:
            raise ValueError("演练需要至少一个地点")
        self._rng = random.Random(self.seed)

    def send(self, unit_id: str, origin: tuple[float, float], dest: tuple[float, float], speed_kmh: float, now: datetime) -> Route:
        """Start moving a unit (e.g. after a training dispatch, or on patrol to a random spot)."""
        r = make_route(origin, dest, speed_kmh, now, self.network)
        self.routes[unit_id] = r
        return r

    def patrol(self, unit_id: str, origin: tuple[float, float], speed_kmh: float, now: datetime) -> Route:
        return self.send(unit_id, origin, self._rng.choice(list(self.spots)), speed_kmh, now)

    def tick(self, now: datetime) -> tuple[list[tuple[str, Position]], list[str]]:
        """Positions of moving units at ``now`` and the units that arrived (their routes end)."""
        fixes, arrived = [], []
        for uid, r in list(self.routes.items()):
            lon, lat, done = r.position_at(now)
            fixes.append((uid, Position(lon, lat, now, 0.0 if done else r.speed_kmh)))
            if done:
                arrived.append(uid)
                del self.routes[uid]
        return fixes, arrived

    def incident(self, now: datetime, actor: str = "演练") -> Incident:
        """A demo incident near one of the spots (jittered ~300 m), flagged training."""
        self._n += 1
        lon, lat = self._rng.choice(list(self.spots))
        lon += self._rng.uniform(-0.003, 0.003)
        lat += self._rng.uniform(-0.003, 0.003)
        cat = self._rng.choice(list(CATEGORIES))
        sub = self._rng.choice(list(CATEGORIES[cat].subtypes))
        return new_incident(
            f"DRILL-{self.seed}-{self._n:05d}", cat, sub, self._rng.randint(1, 4),
            Location(lon, lat, 50.0, "training", "演练地点"), now, actor,
            description="【演练】模拟警情", training=True,
        )
