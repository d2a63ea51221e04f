"""SMS end to end at the configured throughput: messages per second from the send until every
recipient is reported delivered, against the configured limit (a ratio; 1.0 = the limit is reached
and held, never exceeded by more than the burst).

    python -m bench.sms [--messages 300] [--throughput 50]

Core services on an embedded PostgreSQL in a temporary directory, real Kannel (bearerbox + smsbox)
with fakesmsc as the operator, all on 127.0.0.1. One send of ``--messages`` one-part messages to
distinct numbers; the clock runs from the send call until the last delivery report is stored.
The sender's bucket allows a burst of up to 10, so the ideal time is (N − burst) / limit.

Writes bench/results/sms.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.report import write_result


async def run(messages: int, throughput: float) -> dict[str, object]:
    from config.settings import Settings
    from core.runtime import CoreServices
    from sms import capability

    var = Path(tempfile.mkdtemp(prefix="cc-bench-sms-"))
    core = await CoreServices.start(Settings(var_dir=var, sms={"enabled": True, "throughput": throughput,
                                                               "queue_limit": messages + 10}), seed=False)
    cap = await capability.start(core)
    assert cap is not None
    try:
        numbers = [f"1370000{i:04d}" for i in range(messages)]
        started = time.perf_counter()
        view = await cap.service.send("Bench: drill message", kind="command", actor="bench", numbers=numbers)
        while True:
            async with core.db.pool.acquire() as conn:
                done = await conn.fetchval("SELECT count(*) FROM sms_recipients WHERE message_id = $1 "
                                           "AND status = 'delivered'", view["id"])
            if done == messages:
                break
            if time.perf_counter() - started > 10 * messages / throughput + 30:
                raise RuntimeError(f"only {done}/{messages} delivered")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        burst = min(throughput, 10.0)
        rate = (messages - burst) / elapsed
        assert cap.kannel.operator is not None  # the benchmark's operator is fakesmsc
        received = len({line.split(" ")[1] for line in cap.kannel.operator.received()})
        return {"messages": messages, "throughput_limit": throughput, "elapsed_s": round(elapsed, 2),
                "delivered_per_s": round(rate, 1), "ratio_to_limit": round(rate / throughput, 3),
                "received_by_operator": received}
    finally:
        await cap.stop()
        await core.stop()
        shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--throughput", type=float, default=50.0)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result = asyncio.run(run(args.messages, args.throughput))
    write_result("sms", result, load_before)


if __name__ == "__main__":
    main()
