"""Recommendation latency with 10,000 units and 500 open incidents (pure in-memory part).

    PYTHONPATH=. python bench/dispatch_recommend.py [--units 10000] [--incidents 500] [--seed 1]

Units are placed at random inside the real Yunfu county boundaries (20 % without AVL, standing at
one of 60 stations); statuses: 70 % available, 20 % busy, 5 % returning, 5 % out of service.
Incidents are random points in the city with a run card of 3–4 requirements. Modes:

* great_circle: no road network (ETA = great-circle × detour ÷ type speed)
* road_cold:    synthetic 60 × 60 road grid over the city, first query per incident (one Dijkstra)
* road_warm:    same incidents again (shortest-path tree cached)
* brute_force:  reference (first 100 incidents) — scan every unit, great-circle ETA for all eligible, full sort

The roadmap goal (issue 9) is p99 ≤ 20 ms; the table shows p99 / 20 ms as a ratio. Also measures
in-memory position updates per second of the unit index (the AVL goal is ≥ 10,000 updates/s
*with persistence*; this is only the index part). Writes bench/results/dispatch_recommend.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shapely.geometry import Point  # noqa: E402
from shapely.ops import unary_union  # noqa: E402

from dispatch.model import (  # noqa: E402
    DISPATCHABLE,
    UNIT_TYPES,
    Capability,
    Location,
    Position,
    Station,
    Unit,
    UnitStatus,
    new_incident,
)
from dispatch.recommendation import Recommender  # noqa: E402
from dispatch.response_plans import Requirement  # noqa: E402
from gis.geodesy import haversine_m  # noqa: E402
from gis.jurisdictions import load_areas_geojson  # noqa: E402
from gis.routing import EtaEstimator, RoadNetwork  # noqa: E402

GOAL_P99_MS = 20.0
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CARDS = [
    ("fire", [Requirement(Capability.ENGINE, 2), Requirement(Capability.LADDER, 1), Requirement(Capability.BLS, 1)]),
    ("medical", [Requirement(Capability.ALS, 1), Requirement(Capability.PATROL, 1), Requirement(Capability.BLS, 1)]),
    ("traffic", [Requirement(Capability.PATROL, 2), Requirement(Capability.RESCUE, 1), Requirement(Capability.BLS, 1),
                 Requirement(Capability.ENGINE, 1)]),
    ("flood_control", [Requirement(Capability.BOAT, 2), Requirement(Capability.PUMP, 1), Requirement(Capability.FLOOD_TEAM, 2)]),
]


def random_points(rng: random.Random, n: int) -> list[tuple[float, float]]:
    areas = load_areas_geojson(ROOT / "config" / "demo" / "yunfu_counties.geojson")
    city = unary_union([a.geometry for a in areas])
    x0, y0, x1, y1 = city.bounds
    out: list[tuple[float, float]] = []
    while len(out) < n:
        p = (rng.uniform(x0, x1), rng.uniform(y0, y1))
        if city.contains(Point(p)):
            out.append(p)
    return out


def grid_network(rng: random.Random, n: int = 60) -> RoadNetwork:
    x0, y0, x1, y1 = 111.05, 22.35, 112.55, 23.45
    feats = []
    for i in range(n):
        for j in range(n):
            x, y = x0 + (x1 - x0) * i / (n - 1), y0 + (y1 - y0) * j / (n - 1)
            for dx, dy in ((1, 0), (0, 1)):
                if i + dx < n and j + dy < n:
                    x2, y2 = x0 + (x1 - x0) * (i + dx) / (n - 1), y0 + (y1 - y0) * (j + dy) / (n - 1)
                    feats.append({"type": "Feature", "properties": {"speed_kmh": rng.choice([30, 40, 60, 80])},
                                  "geometry": {"type": "LineString", "coordinates": [[x, y], [x2, y2]]}})
    return RoadNetwork.from_geojson({"type": "FeatureCollection", "features": feats})


def make_units(rng: random.Random, n: int, stations: dict[str, Station]) -> list[Unit]:
    pts = random_points(rng, n)
    types = list(UNIT_TYPES)
    sts = list(stations)
    units = []
    for i, (lon, lat) in enumerate(pts):
        r = rng.random()
        status = (UnitStatus.AVAILABLE if r < 0.70 else UnitStatus.ON_SCENE if r < 0.90
                  else UnitStatus.RETURNING if r < 0.95 else UnitStatus.OUT_OF_SERVICE)
        has_avl = rng.random() >= 0.2
        units.append(Unit(
            f"U{i:05d}", f"单位{i}", rng.choice(types), rng.choice(sts), status=status,
            incident_id="X" if status == UnitStatus.ON_SCENE else None,
            position=Position(lon, lat, NOW - timedelta(seconds=rng.uniform(0, 900))) if has_avl else None,
            has_avl=has_avl,
            last_dispatched_at=NOW - timedelta(hours=rng.uniform(0, 48)) if rng.random() < 0.8 else None,
        ))
    return units


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def brute_force(units: list[Unit], stations: dict[str, Station], est: EtaEstimator, target: tuple[float, float],
                reqs: list[Requirement]) -> list[list[str]]:
    out = []
    for req in reqs:
        rows = []
        for u in units:
            if u.status not in DISPATCHABLE or req.capability not in u.capabilities:
                continue
            pos = (u.position.lon, u.position.lat) if u.has_avl and u.position else (stations[u.station_id].lon, stations[u.station_id].lat)
            d = haversine_m(*pos, *target) * est.detour_factor
            last = u.last_dispatched_at.timestamp() if u.last_dispatched_at else float("-inf")
            rows.append((d / (est.speed_for(u.type) / 3.6), last, u.id))
        rows.sort()
        out.append([uid for _, _, uid in rows[: req.count]])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=10_000)
    ap.add_argument("--incidents", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    stations = {f"ST{i:02d}": Station(f"ST{i:02d}", f"站{i}", "fire", lon, lat)
                for i, (lon, lat) in enumerate(random_points(rng, 60))}
    units = make_units(rng, args.units, stations)
    incidents = []
    for i, (lon, lat) in enumerate(random_points(rng, args.incidents)):
        cat, reqs = CARDS[i % len(CARDS)]
        incidents.append((new_incident(f"INC{i:04d}", cat, "general", rng.randint(1, 3), Location(lon, lat), NOW, "bench"), reqs))

    t = time.perf_counter()
    net = grid_network(rng)
    build_net_s = time.perf_counter() - t
    results: dict[str, dict[str, float]] = {}

    def run(name: str, rec: Recommender) -> None:
        lat_ms = []
        for inc, reqs in incidents:
            t0 = time.perf_counter()
            rec.recommend(inc, reqs, NOW)
            lat_ms.append((time.perf_counter() - t0) * 1000)
        results[name] = {"p50_ms": statistics.median(lat_ms), "p99_ms": pct(lat_ms, 99), "max_ms": max(lat_ms),
                         "mean_ms": statistics.fmean(lat_ms)}

    gc = Recommender(EtaEstimator(), stations)
    t = time.perf_counter()
    gc.upsert_many(units)
    load_s = time.perf_counter() - t
    run("great_circle", gc)
    road = Recommender(EtaEstimator(network=net, max_snap_m=5_000), stations)
    road.upsert_many(units)
    run("road_cold", road)
    run("road_warm", road)

    est = EtaEstimator()
    lat_ms = []
    for inc, reqs in incidents[:100]:  # the reference is slow; 100 incidents are enough for p50/p99
        t0 = time.perf_counter()
        brute_force(units, stations, est, (inc.location.lon, inc.location.lat), reqs)
        lat_ms.append((time.perf_counter() - t0) * 1000)
    results["brute_force"] = {"p50_ms": statistics.median(lat_ms), "p99_ms": pct(lat_ms, 99), "max_ms": max(lat_ms),
                              "mean_ms": statistics.fmean(lat_ms)}
    # sanity: the indexed great-circle answer equals brute force on the first incidents
    for inc, reqs in incidents[:20]:
        got = [[c.unit_id for c in r.recommended] for r in gc.recommend(inc, reqs, NOW)]
        exp = brute_force(units, stations, est, (inc.location.lon, inc.location.lat), reqs)
        flat_got = [u for g in got for u in g]
        assert len(flat_got) == len(set(flat_got))
        assert got[0] == exp[0], (inc.id, got[0], exp[0])

    # in-memory AVL index updates
    idx_units = list(gc.units.values())
    n_upd = 200_000
    moves = [(rng.choice(idx_units), rng.uniform(111.1, 112.5), rng.uniform(22.4, 23.4)) for _ in range(n_upd)]
    t = time.perf_counter()
    for u, lon, lat in moves:
        for cap in u.capabilities:
            gc._indexes[cap].update(u.id, lon, lat)
    upd_s = n_upd / (time.perf_counter() - t)

    for r in results.values():
        r["p99_vs_goal"] = r["p99_ms"] / GOAL_P99_MS
    out = {
        "benchmark": "dispatch_recommend",
        "units": args.units, "incidents": args.incidents, "seed": args.seed,
        "road_nodes": net.graph.number_of_nodes(), "road_edges": net.graph.number_of_edges(),
        "build_road_network_s": build_net_s, "load_units_s": load_s,
        "goal_p99_ms": GOAL_P99_MS, "modes": results,
        "unit_index_updates_per_s": upd_s,
        "python": platform.python_version(), "machine": platform.machine(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "dispatch_recommend.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"recommendation latency, {args.units} units, {args.incidents} open incidents (per incident, 3–4 requirements)")
    print(f"{'mode':<14} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/goal':>9}")
    for name, r in results.items():
        print(f"{name:<14} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['max_ms']:8.2f} {r['p99_vs_goal']:9.2f}")
    print(f"brute_force / great_circle p50 ratio: {results['brute_force']['p50_ms'] / results['great_circle']['p50_ms']:.1f}x")
    print(f"unit index position updates (in memory): {upd_s:,.0f}/s")
    print(f"road grid {out['road_nodes']} nodes / {out['road_edges']} edges, built in {build_net_s:.2f} s; units loaded in {load_s:.2f} s")


if __name__ == "__main__":
    main()
