"""The cost of a node-to-node call over PostgreSQL (noderpc), on the real embedded PostgreSQL.

    PYTHONPATH=. python bench/noderpc.py [--calls 500] [--callers 20] [--per-caller 25]

Two nodes (a caller and a server, each with its own pool and LISTEN connection, in one process) on a
fresh database with every migration applied:

* one signed call at a time to a no-op method (request row + NOTIFY, reply row + NOTIFY, both
  signatures checked): latency p50/p99;
* ``--callers`` concurrent callers: calls/s;
* ``call_owner`` (look up the room's pin and the owner's liveness first): latency p50.

Reference, in the same run: one ``SELECT 1`` round trip on the same pool (the floor any database
round trip pays). Writes bench/results/noderpc.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench.postgres import embedded_database  # noqa: E402
from bench.report import write_result  # noqa: E402
from core.db import Database, apply_migrations  # noqa: E402
from noderpc.pinning import LivenessRule  # noqa: E402
from noderpc.registry import Registry  # noqa: E402
from noderpc.transport import NodeRpc  # noqa: E402

SECRET = b"bench-node-secret-0123456789abcdef"


class Echo:
    def hosted(self) -> dict[str, list[str]]:
        return {"room": ["80000001"]}

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"echo": args}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values) * 1000, 3), "p99_ms": round(_percentile(values, 0.99) * 1000, 3)}


async def run(calls: int, callers: int, per_caller: int) -> dict[str, object]:
    async with embedded_database("cc-bench-noderpc-") as pg:
        url = pg.url
        dbs = [Database(url), Database(url)]
        for db in dbs:
            await db.connect(min_size=4, max_size=callers + 2)
        async with dbs[0].pool.acquire() as conn:
            await apply_migrations(conn)
        rule = LivenessRule(2.0, 10.0)
        nodes = []
        for db, node_id in zip(dbs, ("mcu/bench", "web/bench"), strict=True):
            registry = Registry(db, node_id, node_id.split("/")[0], "", rule)
            await registry.start()
            rpc = NodeRpc(db, registry, SECRET, default_timeout=10.0)
            await rpc.start()
            nodes.append(rpc)
        host, caller = nodes
        echo = Echo()
        host.registry.add_source(echo)
        host.serve(echo)
        await host.registry.beat()

        floor = []
        for _ in range(calls):
            started = time.perf_counter()
            await dbs[1].fetchval("SELECT 1")
            floor.append(time.perf_counter() - started)
        serial = []
        for i in range(calls):
            started = time.perf_counter()
            await caller.call("mcu/bench", "bench.echo", {"i": i})
            serial.append(time.perf_counter() - started)
        owner = []
        for i in range(min(calls, 200)):
            started = time.perf_counter()
            await caller.call_owner("room", "80000001", "bench.echo", {"i": i})
            owner.append(time.perf_counter() - started)

        async def one(c: int) -> None:
            for i in range(per_caller):
                await caller.call("mcu/bench", "bench.echo", {"c": c, "i": i})

        started = time.perf_counter()
        await asyncio.gather(*(one(c) for c in range(callers)))
        concurrent_s = time.perf_counter() - started
        result: dict[str, object] = {
            "calls_sequential": calls, "callers": callers,
            "select1": _ms(floor), "call": _ms(serial), "call_owner": _ms(owner),
            "concurrent_calls_per_s": round(callers * per_caller / concurrent_s, 1),
        }
        for rpc in nodes:
            await rpc.stop()
            await rpc.registry.stop()
        for db in dbs:
            await db.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--per-caller", type=int, default=25)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result = asyncio.run(run(args.calls, args.callers, args.per_caller))
    write_result("noderpc", result, load_before)


if __name__ == "__main__":
    main()
