"""The cost of the hash-chained audit log, on the real embedded PostgreSQL.

    PYTHONPATH=. python bench/audit_chain.py [--rows 2000] [--writers 20] [--per-writer 100]

Measures, on a fresh database with every migration applied:

* one audit write at a time through ``AuditLog.record`` (the chain trigger hashes the row and
  takes the head lock in the inserting transaction): latency p50/p99;
* ``--writers`` concurrent writers on a pool of as many connections (they take turns on the
  chain head): total rows/s;
* ``verify_chain`` (``commandcenter audit verify``) over everything written: rows/s.

Reference, in the same run: the same writes as plain INSERTs into a table of the same columns
with no trigger (what the audit log cost before the chain). Writes bench/results/audit_chain.json
and prints a table.
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
from core.audit import AuditLog, verify_chain  # noqa: E402
from core.db import Database, apply_migrations  # noqa: E402


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(rows: int, writers: int, per_writer: int) -> dict[str, object]:
    async with embedded_database("cc-bench-audit-") as pg:
        url = pg.url
        db = Database(url)
        await db.connect(min_size=writers, max_size=writers)
        async with db.pool.acquire() as conn:
            await apply_migrations(conn)
        await db.execute(
            "CREATE TABLE audit_plain (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), "
            "actor text NOT NULL, action text NOT NULL, target text NOT NULL DEFAULT '', "
            "outcome text NOT NULL DEFAULT 'ok', source text NOT NULL DEFAULT '', detail jsonb NOT NULL DEFAULT '{}')")
        chained = AuditLog(db)

        async def plain(actor: str, action: str, target: str = "", *, source: str = "",
                        detail: dict[str, object] | None = None) -> None:
            await db.execute("INSERT INTO audit_plain (actor, action, target, outcome, source, detail) "
                             "VALUES ($1, $2, $3, 'ok', $4, $5)", actor, action, target, source, detail or {})

        result: dict[str, object] = {"rows_sequential": rows, "writers": writers}
        for label, record in (("plain", plain), ("chained", chained.record)):
            latencies = []
            for i in range(rows):
                started = time.perf_counter()
                await record("bench", "bench.write", f"row{i}", source="127.0.0.1", detail={"i": i})
                latencies.append(time.perf_counter() - started)

            async def writer(w: int, record: Any = record) -> None:
                for i in range(per_writer):
                    await record(f"writer{w}", "bench.concurrent", str(i), detail={"w": w, "i": i})

            started = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(writers)))
            concurrent_s = time.perf_counter() - started
            result[label] = {
                "write_p50_ms": round(statistics.median(latencies) * 1000, 3),
                "write_p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
                "concurrent_rows_per_s": round(writers * per_writer / concurrent_s, 1),
            }
        started = time.perf_counter()
        report = await verify_chain(db)
        took = time.perf_counter() - started
        result.update(verify_ok=report.ok, verify_rows=report.rows, verify_rows_per_s=round(report.rows / took, 1))
        await db.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--per-writer", type=int, default=100)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result = asyncio.run(run(args.rows, args.writers, args.per_writer))
    write_result("audit_chain", result, load_before)


if __name__ == "__main__":
    main()
