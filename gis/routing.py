"""Routing and ETA.

Two ways to estimate how long a unit needs to reach a point:

* **Road network** (when configured): GeoJSON LineStrings with a speed property become a directed
  networkx graph whose edge weight is travel time in seconds. Points are snapped to the nearest
  graph node (shapely STRtree over the nodes); the walk/drive from the point to its node is
  charged at ``access_speed_kmh``. For the dispatch case (many units, one incident) one Dijkstra
  runs *backwards* from the incident's node and its result is cached (LRU), so ranking 10,000
  units costs one shortest-path tree plus a dictionary lookup per unit.
* **Great-circle fallback**: distance × detour factor ÷ a speed per unit type. The estimate carries
  the assumption as a zh-CN sentence for the UI, because a dispatcher must know it is a guess.

The fallback is used when no network is configured, a point is farther than ``max_snap_m`` from
the network, or the two nodes are not connected.
"""
from __future__ import annotations

import heapq
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import shapely
from shapely.geometry import Point

from gis.geodesy import check_lon_lat, haversine_m

# Typical urban/rural emergency driving speeds in km/h used only by the great-circle fallback.
DEFAULT_TYPE_SPEEDS_KMH: dict[str, float] = {
    "police_car": 50.0,
    "fire_engine": 40.0,
    "water_tender": 35.0,
    "ladder": 35.0,
    "rescue": 40.0,
    "ambulance_als": 45.0,
    "ambulance_bls": 45.0,
    "flood_team": 35.0,
    "pump": 35.0,
    "boat": 15.0,
}
DEFAULT_SPEED_KMH = 40.0
DEFAULT_DETOUR_FACTOR = 1.4


class RoadNetworkError(ValueError):
    """Bad road data (file, feature index and field named)."""


@dataclass(frozen=True)
class Eta:
    """An ETA with how it was obtained."""

    seconds: float
    distance_m: float  # along the road (road method) or great-circle × detour (fallback)
    method: str  # "road" | "great_circle"
    assumption: str  # zh-CN text for the UI

    @property
    def minutes(self) -> float:
        return self.seconds / 60.0


def _node_key(lon: float, lat: float) -> tuple[float, float]:
    # Roads that meet at the same vertex (to ~10 cm) share a node.
    return (round(lon, 6), round(lat, 6))


class RoadNetwork:
    """A directed road graph with travel times, node snapping and a cached shortest-path tree."""

    def __init__(self, graph: nx.DiGraph, cache_size: int = 512) -> None:
        if graph.number_of_nodes() == 0:
            raise RoadNetworkError("路网为空")
        self.graph = graph
        self._reverse = graph.reverse(copy=False)
        self._nodes: list[tuple[float, float]] = list(graph.nodes)
        self._tree = shapely.STRtree([Point(n) for n in self._nodes])
        self._cache: OrderedDict[tuple[float, float], _ReverseDijkstra] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_geojson(
        cls,
        source: str | Path | Mapping[str, Any],
        speed_field: str = "speed_kmh",
        default_speed_kmh: float | None = None,
    ) -> RoadNetwork:
        """Build from a FeatureCollection of LineString/MultiLineString with a speed (km/h).

        ``oneway: true`` makes a feature one-directional (digitised direction).
        """
        where = str(source) if isinstance(source, str | Path) else "<geojson>"
        if isinstance(source, str | Path):
            try:
                doc = json.loads(Path(source).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise RoadNetworkError(f"{where}: 无法读取 GeoJSON: {e}") from e
        else:
            doc = source
        g: nx.DiGraph = nx.DiGraph()
        features = doc.get("features") if isinstance(doc, Mapping) else None
        if not isinstance(features, list):
            raise RoadNetworkError(f"{where}: 需要 FeatureCollection（features 数组）")
        for i, feat in enumerate(features):
            fw = f"{where}: features[{i}]"
            try:
                _add_feature(g, feat, fw, speed_field, default_speed_kmh)
            except RoadNetworkError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                # any other shape problem in hand-edited data: name the feature, never crash
                raise RoadNetworkError(f"{fw}: 数据格式错误: {e}") from None
        if g.number_of_nodes() == 0:
            raise RoadNetworkError(f"{where}: 路网为空（没有有效线段）")
        return cls(g)

    def snap(self, lon: float, lat: float) -> tuple[tuple[float, float], float]:
        """Nearest graph node and the great-circle distance to it in metres.

        "Nearest" is planar in degrees (STRtree); with road nodes every few hundred metres the
        difference from the ground-nearest node is negligible for an ETA.
        """
        i = int(self._tree.query_nearest(Point(lon, lat), all_matches=False)[0])
        node = self._nodes[i]
        return node, haversine_m(lon, lat, node[0], node[1])

    def snap_many(self, points: Sequence[tuple[float, float]]) -> list[tuple[tuple[float, float], float]]:
        """``snap`` for many points in one vectorised STRtree query."""
        if not points:
            return []
        geoms = shapely.points(np.asarray(points, dtype=float))
        pairs = self._tree.query_nearest(geoms, all_matches=False)
        out: list[tuple[tuple[float, float], float]] = [((0.0, 0.0), 0.0)] * len(points)
        for i, j in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
            node = self._nodes[j]
            out[i] = (node, haversine_m(points[i][0], points[i][1], node[0], node[1]))
        return out

    def times_to(
        self, node: tuple[float, float], wanted: Iterable[tuple[float, float]] | None = None
    ) -> Mapping[Any, tuple[float, float]]:
        """(travel seconds, road metres) to ``node`` from nodes, by a cached reverse Dijkstra.

        With ``wanted``, the search stops as soon as those nodes are settled (or unreachable);
        the search state is cached and resumed by later queries for the same target. Without it,
        the whole graph is settled. Written by hand rather than with networkx because networkx's
        Dijkstra can neither stop at a set of targets nor resume, and ranking the 30 nearest
        units of a county should not pay for settling the whole city.
        """
        search = self._cache.get(node)
        if search is None:
            search = _ReverseDijkstra(self._reverse, node)
            self._cache[node] = search
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(node)
        search.run(None if wanted is None else set(wanted))
        return search.settled

    def clear_cache(self) -> None:
        self._cache.clear()


def _add_feature(g: nx.DiGraph, feat: Any, fw: str, speed_field: str, default_speed_kmh: float | None) -> None:
    """Add one road feature's segments (both directions unless ``oneway``) to the graph."""
    if not isinstance(feat, dict):
        raise RoadNetworkError(f"{fw}: 必须是 Feature 对象")
    props = feat.get("properties") or {}
    if not isinstance(props, dict):
        raise RoadNetworkError(f"{fw}.properties: 必须是对象")
    speed = props.get(speed_field, default_speed_kmh)
    if not isinstance(speed, int | float) or isinstance(speed, bool) or not speed > 0:
        raise RoadNetworkError(f"{fw}.properties.{speed_field}: 需要正数速度 (km/h), 得到 {speed!r}")
    geom = feat.get("geometry") or {}
    if not isinstance(geom, dict):
        raise RoadNetworkError(f"{fw}.geometry: 必须是对象")
    if geom.get("type") == "LineString":
        lines: list[Any] = [geom.get("coordinates")]
    elif geom.get("type") == "MultiLineString":
        lines = geom.get("coordinates") or []
    else:
        raise RoadNetworkError(f"{fw}.geometry: 需要 LineString/MultiLineString, 得到 {geom.get('type')!r}")
    oneway = props.get("oneway", False)
    if not isinstance(oneway, bool):
        raise RoadNetworkError(f"{fw}.properties.oneway: 应为 true/false，得到 {oneway!r}")
    for line in lines if isinstance(lines, list) else [None]:
        if not isinstance(line, list | tuple) or len(line) < 2 or not all(isinstance(pt, list | tuple) and len(pt) >= 2 for pt in line):
            raise RoadNetworkError(f"{fw}.geometry: 线段至少需要两个 [经度, 纬度] 点")
        for (x1, y1, *_), (x2, y2, *_) in zip(line, line[1:], strict=False):
            try:
                check_lon_lat(x1, y1)
                check_lon_lat(x2, y2)
            except ValueError as e:
                raise RoadNetworkError(f"{fw}.geometry: {e}") from e
            a, b = _node_key(x1, y1), _node_key(x2, y2)
            if a == b:
                continue
            length = haversine_m(x1, y1, x2, y2)
            t = length / (speed / 3.6)
            for u, v in ((a, b),) if oneway else ((a, b), (b, a)):
                # keep the fastest of parallel edges
                if not g.has_edge(u, v) or g[u][v]["seconds"] > t:
                    g.add_edge(u, v, seconds=t, length_m=length)


@dataclass
class EtaEstimator:
    """ETA for units of a type from one point to another, road network first, fallback second."""

    network: RoadNetwork | None = None
    type_speeds_kmh: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TYPE_SPEEDS_KMH))
    default_speed_kmh: float = DEFAULT_SPEED_KMH
    detour_factor: float = DEFAULT_DETOUR_FACTOR
    access_speed_kmh: float = 20.0  # from a point to its snapped road node (yard, lane, field)
    max_snap_m: float = 1_000.0

    def speed_for(self, unit_type: str) -> float:
        return self.type_speeds_kmh.get(unit_type, self.default_speed_kmh)

    def great_circle(self, origin: tuple[float, float], target: tuple[float, float], unit_type: str, why: str = "") -> Eta:
        """Fallback estimate: great-circle × detour ÷ type speed, with the assumption text."""
        d = haversine_m(origin[0], origin[1], target[0], target[1]) * self.detour_factor
        v = self.speed_for(unit_type)
        text = f"估算：直线距离 × 绕行系数 {self.detour_factor:g} ÷ 车速 {v:g} km/h"
        if why:
            text += f"（{why}）"
        return Eta(d / (v / 3.6), d, "great_circle", text)

    def eta(self, origin: tuple[float, float], target: tuple[float, float], unit_type: str) -> Eta:
        """ETA for one unit (see ``etas_to`` for many units to one target)."""
        return self.etas_to(target, [(origin, unit_type)])[0]

    def etas_to(self, target: tuple[float, float], origins: Sequence[tuple[tuple[float, float], str]]) -> list[Eta]:
        """ETAs for many (position, unit_type) origins to one target, reusing one shortest-path tree."""
        check_lon_lat(*target)
        if self.network is None:
            return [self.great_circle(o, target, t, "未配置路网") for o, t in origins]
        tnode, tsnap = self.network.snap(*target)
        if tsnap > self.max_snap_m:
            return [self.great_circle(o, target, t, f"目标距路网 {tsnap:.0f} m") for o, t in origins]
        access = self.access_speed_kmh / 3.6
        out: list[Eta] = []
        snaps = self.network.snap_many([o for o, _ in origins])
        times = self.network.times_to(tnode, [n for n, d in snaps if d <= self.max_snap_m])
        for (o, t), (onode, osnap) in zip(origins, snaps, strict=True):
            road = times.get(onode)
            if osnap > self.max_snap_m:
                out.append(self.great_circle(o, target, t, f"起点距路网 {osnap:.0f} m"))
            elif road is None:
                out.append(self.great_circle(o, target, t, "路网不连通"))
            else:
                secs = road[0] + (osnap + tsnap) / access
                out.append(Eta(secs, road[1] + osnap + tsnap, "road", "路网最短时间路径"))
        return out


class _ReverseDijkstra:
    """Resumable single-target Dijkstra over the reversed graph (seconds, with road length)."""

    def __init__(self, reverse: nx.DiGraph, target: tuple[float, float]) -> None:
        self._adj = reverse._adj  # plain dict-of-dicts: much faster than the view API in the hot loop
        self.settled: dict[Any, tuple[float, float]] = {}
        self._best: dict[Any, float] = {target: 0.0}
        self._heap: list[tuple[float, float, int, Any]] = [(0.0, 0.0, 0, target)]
        self._counter = 1  # tie-breaker so nodes are never compared

    def run(self, wanted: set[Any] | None) -> None:
        settled, best, heap, adj = self.settled, self._best, self._heap, self._adj
        missing = None if wanted is None else {n for n in wanted if n not in settled}
        if missing is not None and not missing:
            return
        while heap:
            t, length, _, u = heapq.heappop(heap)
            if u in settled:
                continue
            settled[u] = (t, length)
            if missing is not None:
                missing.discard(u)
                if not missing:
                    return
            for v, data in adj[u].items():
                if v in settled:
                    continue
                nt = t + data["seconds"]
                if nt < best.get(v, math.inf):
                    best[v] = nt
                    heapq.heappush(heap, (nt, length + data["length_m"], self._counter, v))
                    self._counter += 1
