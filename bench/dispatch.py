"""Dispatch end to end: 10,000 units and 500 open incidents on the real embedded PostgreSQL.

    PYTHONPATH=. python bench/dispatch.py [--units 10000] [--incidents 500] [--fixes 100000]
                                          [--consoles 200] [--events 50]

Measures, against the roadmap goals of issue 9 (ratio = measured / goal, ≤ 1 for the latencies
and ≥ 1 for the rate is on target):

* recommendation latency p50/p99 through ``DispatchService.recommend`` (reads the incident from
  PostgreSQL, ranks the units in memory); goal p99 ≤ 20 ms;
* AVL ingest rate with persistence through ``DispatchService.ingest_avl`` (validation, the track
  insert, the unit update, the index update, geofence check, one bus event per batch), batches of
  1,000; goal ≥ 10,000 updates/s;
* websocket fan-out: a ``commandcenter up`` server on the same database, 200 ``/ws/events``
  consoles logged in as the dispatcher; this process publishes events on the bus (PostgreSQL
  NOTIFY across processes, as between nodes) and every console timestamps their arrival; goal
  p99 ≤ 100 ms from publish to the last console.

Writes bench/results/dispatch.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from shapely.geometry import Point  # noqa: E402
from shapely.ops import unary_union  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

from bench.postgres import embedded_database  # noqa: E402
from config.settings import Settings  # noqa: E402
from core.runtime import CoreServices  # noqa: E402
from dispatch import store  # noqa: E402
from dispatch.model import UNIT_TYPES  # noqa: E402
from dispatch.service import DispatchService  # noqa: E402

GOALS = {"recommend_p99_ms": 20.0, "avl_updates_per_s": 10_000.0, "fanout_p99_ms": 100.0}
CATEGORIES = [("fire", "residential"), ("medical", "cardiac"), ("police", "theft"), ("traffic", "entrapment"),
              ("flood_control", "flood"), ("medical", "trauma")]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def random_points(svc: DispatchService, n: int, rng: random.Random) -> list[tuple[float, float]]:
    city = unary_union([a.geometry for a in svc.jurisdictions.counties.areas])
    minx, miny, maxx, maxy = city.bounds
    out: list[tuple[float, float]] = []
    while len(out) < n:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if city.contains(Point(x, y)):
            out.append((x, y))
    return out


async def seed_units(svc: DispatchService, n: int, rng: random.Random) -> list[str]:
    """n synthetic units (70 % available) with a fresh AVL fix inside the city."""
    stations = list(svc.stations.values())
    types = list(UNIT_TYPES)
    now = datetime.now(UTC)
    rows = []
    for i, (lon, lat) in enumerate(random_points(svc, n, rng)):
        status = rng.choices(["available", "on_scene", "returning", "out_of_service"], [70, 20, 5, 5])[0]
        rows.append((f"bench-{i:05d}", f"测试{i:05d}", rng.choice(types), rng.choice(stations).id, status,
                     lon, lat, now - timedelta(seconds=rng.uniform(0, 120))))
    async with svc.db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO units (id, callsign, type, station_id, status, lon, lat, fix_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", rows)
        svc.recommender.upsert_many(await store.load_units(conn, [r[0] for r in rows]))
    return [r[0] for r in rows]


async def bench_recommend(svc: DispatchService, n_incidents: int, rng: random.Random) -> dict[str, Any]:
    ids = []
    for lon, lat in random_points(svc, n_incidents, rng):
        cat, sub = rng.choice(CATEGORIES)
        inc = await svc.create_incident(category=cat, subtype=sub, priority=rng.randint(1, 3), lon=lon, lat=lat,
                                        actor="bench", training=False)
        ids.append(inc.id)
    for i in ids[:20]:  # warm-up
        await svc.recommend(i)
    times = []
    for i in ids:
        t = time.perf_counter()
        _card, results = await svc.recommend(i)
        times.append((time.perf_counter() - t) * 1000)
        assert results, "every bench incident has a run card"
    return {"incidents": len(ids), "p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "max_ms": max(times)}


async def bench_avl(svc: DispatchService, unit_ids: list[str], n_fixes: int, batch: int,
                    rng: random.Random) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(seconds=25)
    batches = []
    for b in range(n_fixes // batch):
        items = []
        for k in range(batch):
            uid = rng.choice(unit_ids)
            u = svc.recommender.units[uid]
            assert u.position is not None
            items.append({"unit_id": uid, "lon": u.position.lon + rng.uniform(-1e-3, 1e-3),
                          "lat": u.position.lat + rng.uniform(-1e-3, 1e-3),
                          "ts": (start + timedelta(microseconds=200 * (b * batch + k))).isoformat(), "speed_kmh": 40.0})
        batches.append(items)
    before = await svc.db.fetchval("SELECT count(*) FROM unit_positions")
    t = time.perf_counter()
    accepted = 0
    for items in batches:
        accepted += len((await svc.ingest_avl(items, "bench", "bench")).accepted)
    elapsed = time.perf_counter() - t
    stored = await svc.db.fetchval("SELECT count(*) FROM unit_positions") - before
    assert stored == accepted, (stored, accepted)
    return {"fixes": accepted, "batch": batch, "seconds": elapsed, "updates_per_s": accepted / elapsed}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db_url: str, var: Path, extra_env: dict[str, str] | None = None,
                 start_s: float = 120.0) -> tuple[subprocess.Popen[str], str, str]:
    """`commandcenter up` on `db_url`: the process, its URL and the dispatcher's first password."""
    port = free_port()
    env = {**os.environ, "CC_VAR_DIR": str(var), "CC_HTTP__PORT": str(port), "DATABASE_URL": db_url,
           "CC_DISPATCH__TRAINING": "0", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "commandcenter", "up"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    password = ""
    assert proc.stdout is not None
    deadline = time.monotonic() + start_s
    for line in proc.stdout:
        m = re.match(r"^\s+dispatcher\s+(\S+)\s+\(dispatcher\)$", line.rstrip("\n"))
        if m:
            password = m.group(1)
        if "Uvicorn running" in line or time.monotonic() > deadline:
            break
    if not password:
        proc.kill()
        raise RuntimeError("server did not print the dispatcher password")
    # keep draining output so the server never blocks on a full pipe
    asyncio.get_running_loop().run_in_executor(None, lambda: [None for _ in proc.stdout])  # type: ignore[union-attr]
    return proc, url, password


async def bench_fanout(core: CoreServices, db_url: str, consoles: int, events: int) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="cc-bench-var-"))
    proc, url, password = start_server(db_url, var)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            page = await http.get("/login")
            token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
            assert token
            r = await http.post("/login", data={"username": "dispatcher", "password": password,
                                                "login_csrf": token.group(1), "next": "/"})
            assert r.status_code == 303, r.text
            cookie = "cc_session=" + http.cookies["cc_session"]
        ws_url = url.replace("http://", "ws://") + "/ws/events?topics=incident.bench"
        arrivals: dict[int, list[float]] = {}
        all_in = asyncio.Event()
        received = [0]
        sockets = []
        for _ in range(consoles):
            ws = await ws_connect(ws_url, additional_headers={"Cookie": cookie}, max_queue=None)
            assert json.loads(await ws.recv())["topic"] == "system.hello"
            sockets.append(ws)

        async def reader(ws: Any) -> None:
            async for msg in ws:
                now = time.time()
                ev = json.loads(msg)
                arrivals.setdefault(ev["payload"]["n"], []).append((now - ev["payload"]["t"]) * 1000)
                received[0] += 1
                if received[0] >= consoles * events:
                    all_in.set()

        readers = [asyncio.create_task(reader(ws)) for ws in sockets]
        for n in range(events):
            await core.bus.publish("incident.bench", {"n": n, "t": time.time()})
            await asyncio.sleep(0.1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 10)
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        lat = [v for vs in arrivals.values() for v in vs]
        last = [max(vs) for vs in arrivals.values()]  # per event: when the last console had it
        delivered = len(lat)
        return {"consoles": consoles, "events": events, "delivered": delivered,
                "expected": consoles * events, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                "last_console_p99_ms": pct(last, 99)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(var, ignore_errors=True)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    async with embedded_database("cc-bench-pg-", "bench_dispatch") as pg:
        url = pg.url
        core = await CoreServices.start(Settings(var_dir=pg.work / "var", database={"url": url}), seed=False)
        svc = DispatchService(core)
        await svc.start()
        svc.training = False
        try:
            unit_ids = await seed_units(svc, args.units, rng)
            rec = await bench_recommend(svc, args.incidents, rng)
            avl = await bench_avl(svc, unit_ids, args.fixes, 1000, rng)
            fan = await bench_fanout(core, url, args.consoles, args.events)
        finally:
            await svc.stop()
            await core.stop()
    return {
        "setup": {"units": args.units + 56 * 2, "incidents": args.incidents, "python": platform.python_version(),
                  "cpus": os.cpu_count(), "machine": platform.machine()},
        "recommendation": rec, "avl": avl, "fanout": fan,
        "goals": GOALS,
        "ratios": {"recommend_p99_over_goal": rec["p99_ms"] / GOALS["recommend_p99_ms"],
                   "avl_rate_over_goal": avl["updates_per_s"] / GOALS["avl_updates_per_s"],
                   "fanout_p99_over_goal": fan["p99_ms"] / GOALS["fanout_p99_ms"]},
    }


def table(r: dict[str, Any]) -> str:
    rec, avl, fan, ratio = r["recommendation"], r["avl"], r["fanout"], r["ratios"]
    rows = [
        ("recommendation p50 (ms)", f"{rec['p50_ms']:.2f}", "", ""),
        ("recommendation p99 (ms)", f"{rec['p99_ms']:.2f}", "≤ 20", f"{ratio['recommend_p99_over_goal']:.2f}"),
        ("AVL ingest with persistence (updates/s)", f"{avl['updates_per_s']:,.0f}", "≥ 10,000",
         f"{ratio['avl_rate_over_goal']:.2f}"),
        (f"ws fan-out p50 to {fan['consoles']} consoles (ms)", f"{fan['p50_ms']:.1f}", "", ""),
        (f"ws fan-out p99 to {fan['consoles']} consoles (ms)", f"{fan['p99_ms']:.1f}", "≤ 100",
         f"{ratio['fanout_p99_over_goal']:.2f}"),
        ("delivered / expected events", f"{fan['delivered']}/{fan['expected']}", "", ""),
    ]
    w = max(len(a) for a, *_ in rows)
    lines = [f"{'measure':<{w}}  {'value':>12}  {'goal':>9}  {'ratio':>6}"]
    lines += [f"{a:<{w}}  {b:>12}  {c:>9}  {d:>6}" for a, b, c, d in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=10_000)
    ap.add_argument("--incidents", type=int, default=500)
    ap.add_argument("--fixes", type=int, default=100_000)
    ap.add_argument("--consoles", type=int, default=200)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    result = asyncio.run(main(ap.parse_args()))
    out = ROOT / "bench" / "results" / "dispatch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(table(result))
    print(f"\nwritten to {out.relative_to(ROOT)}")
