"""Desk takeover: how soon a live standby desk lists the dead active desk's callers and takes new calls.

One command: ``python -m bench.desk_takeover [--runs 3] [--role web|desk]``. Each run is the scenario
of tests/noderpc/desk_pair.py on the embedded PostgreSQL: two real `--role web` desk nodes (with
``--role desk``: two `--role desk` nodes holding the desk lease and a web node, the deploy/ha example)
(heartbeat 0.5 s, dead after 3 s, the test settings), Kamailio's dispatcher in front
(deploy/ha/desk-proxy, OPTIONS every 1 s, inactive after 2 misses, INVITE failover after 2 s),
two SIPp callers waiting on desk A, desk A SIGKILLed, a new SIPp call at that moment. Per run:

* crash → the waiting callers on desk B's callback list (bounded by dead-after + one heartbeat);
* crash → the new call offered on desk B (the issue's goal: ≤ 10 s).

Reported as the median with min and max over the runs. Writes bench/results/desk_takeover.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_result  # noqa: E402
from core.db import EmbeddedPostgres  # noqa: E402
from tests.conftest import private_tmp_dir  # noqa: E402
from tests.noderpc.desk_pair import run_takeover  # noqa: E402


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


CONDITIONS = {
    "web": "embedded PostgreSQL; two commandcenter --role web desk nodes (heartbeat 0.5 s, dead after 3 s); "
           "Kamailio 5.6 dispatcher (algorithm 8, OPTIONS every 1 s, threshold 2, fr_timer 2 s) on "
           "127.0.0.1; SIPp callers; desk A SIGKILLed",
    "desk": "embedded PostgreSQL; the deploy/ha example's nodes: two commandcenter --role desk nodes holding the "
            "desk lease (heartbeat 0.5 s, dead after 3 s = the lease's time to live) and one --role web node "
            "with emergency.remote_desk; Kamailio 5.6 dispatcher (algorithm 8, OPTIONS every 1 s, threshold 2, "
            "fr_timer 2 s) on 127.0.0.1; SIPp callers; desk A (the holder) SIGKILLed; the new caller redials "
            "every second (a call before the standby holds the lease is refused)",
}


def measure(runs_n: int, role: str = "web") -> dict[str, Any]:
    """`runs_n` takeovers on one embedded PostgreSQL (a fresh database each): every run's figures and
    their median [min-max]. `role`: of the desk nodes (tests/noderpc/desk_pair.py). Also the desk row
    of ``python -m bench.ha --only desk`` (role desk: the example's nodes)."""
    data_dir = private_tmp_dir("cc-bench-deskha-")
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    runs: list[dict[str, Any]] = []
    try:
        for i in range(runs_n):
            run = run_takeover(url, role=role)
            runs.append({"listed_s": round(run.listed_s, 2), "offered_s": round(run.offered_s, 2),
                         "load_average": round(os.getloadavg()[0], 1)})
            if role == "desk":
                runs[-1]["calls_before_first_offered"] = run.late_refused
            print(f"desk run {i + 1}: {runs[-1]}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "runs": runs,
        "listed_s": _spread([r["listed_s"] for r in runs]),
        "offered_s": _spread([r["offered_s"] for r in runs]),
        "reference": {"goal_offered_s": 10.0, "listed_bound_s": "dead_after 3 s + heartbeat 0.5 s"},
        "role": role,
        "conditions": CONDITIONS[role],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--role", choices=("web", "desk"), default="web",
                        help="the desk nodes: --role web pair (default; bench/results/desk_takeover.json) or the "
                             "example's --role desk nodes with the lease (desk_takeover_lease.json)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    write_result("desk_takeover" if args.role == "web" else "desk_takeover_lease", measure(args.runs, args.role),
                 load_before)


if __name__ == "__main__":
    main()
