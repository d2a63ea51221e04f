"""Plan activation end to end: from the dispatcher's API call until every agency's desk can read its
task list and the command conference exists (issue 19; goal p95 ≤ 2 s).

    python -m bench.plans [--activations 20] [--level II]

A ``commandcenter up`` server (every role in one process, its embedded PostgreSQL, the demo site
plan with its five demo plans and four agency desks) runs beside this process. For each
activation: the dispatcher creates a flood incident in Luoding (not timed), then the clock starts;
``POST /api/incidents/{id}/plans`` (flood plan, level II: four agencies, the conference with the
county and township rooms); then, at once, each of the four agency desks reads
``GET /api/incidents/{id}/plans`` and must find its own tasks, and the chair reads
``GET /api/conferences/{conference_id}``; the clock stops when all five answers are in. The
conference is ended afterwards (not timed) so that twenty conferences do not pile up on the MCU.

Writes bench/results/plans.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
GOAL_P95_S = 2.0
DESKS = {"flood_desk": "flood_control", "meteo_desk": "meteorology", "em_desk": "emergency_mgmt",
         "fire_desk": "fire"}
LUODING = {"lon": 111.5700, "lat": 22.7690}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(var: Path) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    """`commandcenter up` on its own embedded PostgreSQL; its URL and the seeded passwords."""
    port = free_port()
    env = {**os.environ, "CC_VAR_DIR": str(var), "CC_HTTP__PORT": str(port), "CC_DISPATCH__TRAINING": "0",
           "CC_RECORDER__DEMO_CAMERAS": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "commandcenter", "up"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    passwords: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        m = re.match(r"^\s+(\w+)\s+(\S+)\s+\((\w+)\)$", line.rstrip("\n"))
        if m:
            passwords[m.group(1)] = m.group(2)
        if "Uvicorn running" in line or time.monotonic() > deadline:
            break
    if not set(DESKS) | {"dispatcher", "chair"} <= set(passwords):
        proc.kill()
        raise RuntimeError(f"server did not print the passwords it needs (got {sorted(passwords)})")
    stdout = proc.stdout

    def drain() -> None:  # keep reading so the server never blocks on a full pipe
        for _ in stdout:
            pass

    asyncio.get_running_loop().run_in_executor(None, drain)
    return proc, f"http://127.0.0.1:{port}", passwords


async def login(url: str, user: str, password: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(base_url=url, timeout=30)
    page = await c.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    r = await c.post("/login", data={"username": user, "password": password, "login_csrf": token.group(1),
                                     "next": "/"})
    assert r.status_code == 303, r.text
    c.headers["X-CSRF-Token"] = (await c.get("/api/me")).json()["csrf_token"]
    return c


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


async def one(dispatcher: httpx.AsyncClient, chair: httpx.AsyncClient, desks: dict[str, httpx.AsyncClient],
              level: str) -> dict[str, Any]:
    inc = await dispatcher.post("/api/incidents", json={"category": "flood_control", "subtype": "flood",
                                                        "priority": 1, **LUODING})
    inc.raise_for_status()
    iid = inc.json()["id"]
    t0 = time.perf_counter()
    r = await dispatcher.post(f"/api/incidents/{iid}/plans", json={"plan_key": "flood", "level": level})
    r.raise_for_status()
    t_api = time.perf_counter() - t0
    conf = r.json()["conference_id"]

    async def desk_reads(user: str, agency: str) -> int:
        got = (await desks[user].get(f"/api/incidents/{iid}/plans")).json()["activations"][0]["agencies"]
        assert [g["agency"] for g in got] == [agency], (user, got)
        return len(got[0]["tasks"])

    async def conference() -> str:
        c = await chair.get(f"/api/conferences/{conf}")
        c.raise_for_status()
        return "running" if c.json().get("running") else "requested"

    *counts, conf_status = await asyncio.gather(*(desk_reads(u, a) for u, a in DESKS.items()), conference())
    total = time.perf_counter() - t0
    await chair.post(f"/api/conferences/{conf}/end")
    return {"total_s": total, "api_s": t_api, "tasks": sum(counts), "conference_status": conf_status}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="cc-bench-plans-"))
    proc, url, pw = start_server(var)
    clients: list[httpx.AsyncClient] = []
    try:
        dispatcher = await login(url, "dispatcher", pw["dispatcher"])
        chair = await login(url, "chair", pw["chair"])
        desks = {u: await login(url, u, pw[u]) for u in DESKS}
        clients = [dispatcher, chair, *desks.values()]
        await one(dispatcher, chair, desks, args.level)  # warm-up (first queries, first conference)
        runs = [await one(dispatcher, chair, desks, args.level) for _ in range(args.activations)]
    finally:
        for c in clients:
            await c.aclose()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(var, ignore_errors=True)
    totals = [r["total_s"] for r in runs]
    apis = [r["api_s"] for r in runs]
    return {
        "benchmark": "plans", "activations": args.activations, "level": args.level,
        "activation_to_desks_and_conference": {"p50_s": statistics.median(totals), "p95_s": pct(totals, 95),
                                               "max_s": max(totals), "p95_vs_goal": pct(totals, 95) / GOAL_P95_S},
        "activation_api_call": {"p50_s": statistics.median(apis), "p95_s": pct(apis, 95)},
        "tasks_per_activation": runs[0]["tasks"], "conference_status": sorted({r["conference_status"] for r in runs}),
        "goal_p95_s": GOAL_P95_S, "python": platform.python_version(), "machine": platform.machine(),
        "load_average": list(os.getloadavg()), "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--activations", type=int, default=20)
    ap.add_argument("--level", default="II", choices=["I", "II", "III"])  # IV opens no conference
    args = ap.parse_args()
    out = asyncio.run(run(args))
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "plans.json").write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    a = out["activation_to_desks_and_conference"]
    print(f"{'plan activation (n=' + str(out['activations']) + ')':<40} {'p50 s':>8} {'p95 s':>8} {'max s':>8} goal")
    print(f"{'API call → 4 desks + conference':<40} {a['p50_s']:>8.3f} {a['p95_s']:>8.3f} {a['max_s']:>8.3f} "
          f"<= {GOAL_P95_S}")
    print(f"{'API call alone':<40} {out['activation_api_call']['p50_s']:>8.3f} "
          f"{out['activation_api_call']['p95_s']:>8.3f}")
    print(f"tasks per activation {out['tasks_per_activation']}; conference status {out['conference_status']}; "
          f"load average {out['load_average']}")


if __name__ == "__main__":
    main()
