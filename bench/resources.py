"""Nearest-resource queries over 10,000 resources (issue 19), with a brute-force reference.

    python -m bench.resources [--resources 10000] [--queries 1000] [--seed 1]

Resources are placed at random inside the real Yunfu county boundaries: 40 % depots (each item's
stock random, sandbags 0–3000), 20 % shelters, 15 % teams (1–2 random skills), 15 % hospitals,
10 % experts. Queries are random points in the city, a third each of: "the 3 nearest depots with
≥ 500 sandbags", "the 3 nearest shelters with ≥ 200 free places", "the 3 nearest teams with
water-rescue skill". Modes (all through ``dispatch.resources.search.ResourceIndex``):

* great_circle: no road network (ETA = great-circle × detour ÷ truck speed);
* road_warm:    the synthetic 60 × 60 road grid of bench/dispatch_recommend.py, second pass over the
                same points (shortest-path tree cached), as for repeated searches around one incident;
* brute_force:  reference on the first ``--reference`` queries — every resource of the kind that passes
                the filter, an ETA for each, full sort — for great-circle and road; the indexed answers
                are compared with it (``agree``: same ids in the same order).

Also measures allocations applied to the in-memory index per second (``set_stock``). Goal: p99 ≤ 20 ms.
Writes bench/results/resources.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.dispatch_recommend import grid_network, random_points
from dispatch.resources.model import BEDS, PLACES, SUPPLY_ITEMS, TEAM, TEAM_SKILLS, Resource, ResourceKind
from dispatch.resources.search import Query, ResourceIndex
from gis.routing import EtaEstimator

ROOT = Path(__file__).resolve().parents[1]
GOAL_P99_MS = 20.0


def make_resources(rng: random.Random, n: int) -> list[Resource]:
    pts = random_points(rng, n)
    skills = list(TEAM_SKILLS)
    out: list[Resource] = []
    for i, (lon, lat) in enumerate(pts):
        u = rng.random()
        rid = f"r{i:05d}"
        if u < 0.40:
            stock = {k: rng.randint(0, 3000 if k == "sandbag" else 200) for k in SUPPLY_ITEMS}
            out.append(Resource(rid, ResourceKind.DEPOT, rid, lon, lat, stock=stock))
        elif u < 0.60:
            cap = rng.randint(100, 3000)
            out.append(Resource(rid, ResourceKind.SHELTER, rid, lon, lat, capacity=cap,
                                stock={PLACES.key: rng.randint(0, cap)}))
        elif u < 0.75:
            out.append(Resource(rid, ResourceKind.TEAM, rid, lon, lat, headcount=rng.randint(5, 50),
                                skills=tuple(rng.sample(skills, rng.randint(1, 2))), stock={TEAM.key: 1}))
        elif u < 0.90:
            total = rng.randint(50, 1500)
            out.append(Resource(rid, ResourceKind.HOSPITAL, rid, lon, lat, beds_total=total,
                                stock={BEDS.key: rng.randint(0, total // 10)}))
        else:
            out.append(Resource(rid, ResourceKind.EXPERT, rid, lon, lat, specialty="水文"))
    return out


def make_queries(rng: random.Random, n: int) -> list[Query]:
    qs = []
    for i, (lon, lat) in enumerate(random_points(rng, n)):
        if i % 3 == 0:
            qs.append(Query(lon, lat, ResourceKind.DEPOT, 3, "sandbag", 500))
        elif i % 3 == 1:
            qs.append(Query(lon, lat, ResourceKind.SHELTER, 3, PLACES.key, 200))
        else:
            qs.append(Query(lon, lat, ResourceKind.TEAM, 3, TEAM.key, 1, "water_rescue"))
    return qs


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def timed(index: ResourceIndex, qs: list[Query], brute: bool = False) -> tuple[dict[str, float], list[list[str]]]:
    for q in qs[:20]:  # warm-up: a running service has answered queries before
        index.nearest(q)
    lat_ms: list[float] = []
    answers: list[list[str]] = []
    for q in qs:
        t = time.perf_counter()
        hits = index.nearest_brute_force(q) if brute else index.nearest(q)
        lat_ms.append((time.perf_counter() - t) * 1000)
        answers.append([h.resource.id for h in hits])
    return ({"queries": len(qs), "p50_ms": statistics.median(lat_ms), "p99_ms": pct(lat_ms, 99),
             "max_ms": max(lat_ms), "p99_vs_goal": pct(lat_ms, 99) / GOAL_P99_MS}, answers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resources", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--reference", type=int, default=200, help="queries also answered by brute force")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    resources = make_resources(rng, args.resources)
    queries = make_queries(rng, args.queries)
    ref_qs = queries[: args.reference]
    modes: dict[str, dict[str, float]] = {}

    gc = ResourceIndex(EtaEstimator())
    t = time.perf_counter()
    gc.upsert_many(resources)
    load_s = time.perf_counter() - t
    modes["great_circle"], gc_answers = timed(gc, queries)
    modes["brute_force"], bf_answers = timed(gc, ref_qs, brute=True)
    gc_agree = sum(a == b for a, b in zip(gc_answers, bf_answers, strict=False))

    t = time.perf_counter()
    net = grid_network(random.Random(args.seed))
    build_net_s = time.perf_counter() - t
    road = ResourceIndex(EtaEstimator(network=net, max_snap_m=5_000))
    road.upsert_many(resources)
    modes["road_cold"], _ = timed(road, queries)
    modes["road_warm"], road_answers = timed(road, queries)
    modes["brute_force_road"], bfr_answers = timed(road, ref_qs, brute=True)
    road_agree = sum(a == b for a, b in zip(road_answers, bfr_answers, strict=False))

    depots = [r.id for r in resources if r.kind is ResourceKind.DEPOT]
    n_upd = 100_000
    t = time.perf_counter()
    for i in range(n_upd):
        gc.set_stock(depots[i % len(depots)], "sandbag", i % 3000)
    upd_s = n_upd / (time.perf_counter() - t)

    out = {
        "benchmark": "resources", "resources": args.resources, "queries": args.queries, "seed": args.seed,
        "kinds": {k.value: sum(r.kind is k for r in resources) for k in ResourceKind},
        "goal_p99_ms": GOAL_P99_MS, "modes": modes,
        "agree_with_brute_force": {"great_circle": f"{gc_agree}/{len(ref_qs)}", "road": f"{road_agree}/{len(ref_qs)}",
                                   "great_circle_all": gc_agree == len(ref_qs)},
        "road_nodes": net.graph.number_of_nodes(), "road_edges": net.graph.number_of_edges(),
        "build_road_network_s": build_net_s, "load_resources_s": load_s, "stock_updates_per_s": upd_s,
        "python": platform.python_version(), "machine": platform.machine(),
        "load_average": list(os.getloadavg()),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "resources.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"nearest-resource queries, {args.resources} resources, {args.queries} queries (k=3, with a stock/skill filter)")
    print(f"{'mode':<17} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/goal':>9}")
    for name, r in modes.items():
        print(f"{name:<17} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['max_ms']:8.2f} {r['p99_vs_goal']:9.2f}")
    print(f"indexed answer == brute force: great circle {gc_agree}/{len(ref_qs)}, road {road_agree}/{len(ref_qs)}")
    print(f"stock updates in the index: {upd_s:,.0f}/s; load average {out['load_average']}")


if __name__ == "__main__":
    main()
