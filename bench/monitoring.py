"""Monitoring ingest end to end: MQTT → parsed → thresholds evaluated → stored in PostgreSQL (issue 20;
goal ≥ 5,000 readings/s with thresholds evaluated).

    python -m bench.monitoring [--gauges 1000] [--readings 60000]

A real mosquitto (the managed broker, monitoring/broker.py) and a real PostgreSQL (the embedded
one, pgserver) run beside this process; the monitoring service and its MQTT ingest (aiomqtt) run in
this process exactly as in the product (our MQTT client, monitoring/mqtt.py). Publisher processes
(pre-encoded PUBLISH packets on a plain socket, QoS 1, up to 1,000 in flight each; made before the
clock starts, so publishing costs the shared CPU little; mosquitto checks every packet) send ``--readings`` readings spread over
``--gauges`` synthetic river gauges (each with a warning and a guaranteed level, so every reading is
evaluated and some raise alarms), as fast as they can: first one reading per message
(``cc/gauges/<id>/reading``, from `PUBLISHERS` processes at once), then in batches of 100 per message
(``cc/gauges/batch``, one process). The clock runs from the go given to the publishers until the
service has stored the last reading; ``lost`` is published minus stored (must be 0). The reference,
in the same run, is raw asyncpg COPY of as many rows into the same table (``ratio_to_raw_copy``).
Two more figures say where the time goes: ``service_only`` is the ingest's own CPU per one-reading
message without a broker (parse, check, evaluate, buffer), and ``ingest_process_cpu_us_per_reading``
the CPU this process (MQTT client included) spent per reading during each mode. Then, for 20
gauges in turn, a reading crossing the warning level is published and timed until the
``monitoring.alarm_raised`` event is on the bus (the consoles' websockets forward it from there).

Writes bench/results/monitoring.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL = 5000.0
WINDOW = 1000  # unacknowledged QoS 1 messages per publisher
PUBLISHERS = 4  # one-reading messages come from this many publisher processes (gauges have their own links)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gauge_table(n: int) -> list[dict[str, Any]]:
    return [{"id": f"bench-{i:05d}", "name": f"基准站{i}", "kind": "river_level", "unit": "m",
             "position": [111.5 + (i % 100) * 0.005, 22.7 + (i // 100) * 0.005], "position_quality": "made-up",
             "period_s": 1, "stale_periods": 600, "valid_range": [0.0, 50.0],
             "thresholds": [{"key": "warning", "name": "警戒水位", "value": 30.0, "hysteresis": 0.2},
                            {"key": "guaranteed", "name": "保证水位", "value": 40.0, "hysteresis": 0.2,
                             "severity": "critical"}]} for i in range(n)]


# -- the publisher process ---------------------------------------------------------------------------

def publish(port: int, gauges: int, readings: int, batch: int, part: int, parts: int) -> None:
    """Send this publisher's share of the readings (every `parts`-th, from `part`) with QoS 1 as fast as
    the broker takes them, up to `WINDOW` unacknowledged. The PUBLISH packets are made first (JSON and
    MQTT framing by monitoring/mqtt_protocol.py's encoder: a publisher process costs the shared CPU
    little, so the figure is the ingest's); "ready" is printed, and publishing starts when a line
    arrives on stdin, so every publisher starts at once. mosquitto checks every packet it is sent."""
    from monitoring.mqtt_protocol import ClientConnection, PubAck, encode_publish

    rng = random.Random(7)
    level = [25.0 + rng.random() * 3 for _ in range(gauges)]
    now = time.time()
    messages = []
    for k in range(readings):
        g = k % gauges
        level[g] = min(49.0, max(1.0, level[g] + rng.uniform(-0.5, 0.55)))
        if k % parts == part:
            messages.append((f"bench-{g:05d}", round(level[g], 3), now - 600 + k * 600.0 / readings))
    if batch <= 1:
        payloads = [(f"cc/gauges/{gid}/reading", json.dumps({"value": v, "at": at})) for gid, v, at in messages]
    else:
        payloads = [("cc/gauges/batch", json.dumps({"readings": [{"gauge": gid, "value": v, "at": at}
                                                                 for gid, v, at in messages[i:i + batch]]}))
                    for i in range(0, len(messages), batch)]
    packets = [encode_publish(topic, body.encode(), 1, n % 0xFFFF + 1) for n, (topic, body) in enumerate(payloads)]
    conn = ClientConnection(f"bench-publisher-{os.getpid()}", keepalive=0)
    sock = socket.create_connection(("127.0.0.1", port))
    conn.connect(0.0)
    sock.sendall(conn.data_to_send())
    while not conn.connected:
        conn.receive_data(sock.recv(4096))
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    sent = acked = 0
    while acked < len(packets):
        if sent < len(packets) and sent - acked < WINDOW:
            upto = min(len(packets), acked + WINDOW, sent + 200)
            sock.sendall(b"".join(packets[sent:upto]))
            sent = upto
            continue
        acked += sum(1 for e in conn.receive_data(sock.recv(65536)) if isinstance(e, PubAck))
    print(json.dumps({"started": started, "sent": time.time()}), flush=True)
    conn.disconnect()
    sock.sendall(conn.data_to_send())
    sock.close()


# -- the measurement ---------------------------------------------------------------------------------

async def measure(gauges: int, readings: int) -> dict[str, Any]:
    from config.settings import Settings
    from core.db import EmbeddedPostgres
    from core.runtime import CoreServices
    from monitoring.broker import ManagedBroker
    from monitoring.gauges import parse_gauges
    from monitoring.mqtt import MqttIngest
    from monitoring.service import MonitoringService

    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-monitoring-"))
    pg = EmbeddedPostgres(tmp / "pg")
    url = await asyncio.to_thread(pg.start)
    port = free_port()
    broker = ManagedBroker("127.0.0.1", port, tmp)
    core = None
    try:
        settings = Settings.model_validate({"var_dir": tmp, "database": {"url": url}, "monitoring": {"broker": "none"}})
        core = await CoreServices.start(settings)
        await broker.start()
        gauge_set, problems = parse_gauges(gauge_table(gauges))
        assert not problems, problems
        out: dict[str, Any] = {}
        out["reference_copy"] = await reference_copy(core, gauges, readings)
        out["service_only"] = await service_only(core, gauge_set, readings)
        for mode, batch, publishers in (("single", 1, PUBLISHERS), ("batch", 100, 1)):
            await core.db.execute("TRUNCATE monitoring_readings, monitoring_alarms")
            service = MonitoringService(core, gauge_set)
            await service.start()
            ingest = MqttIngest(service, "127.0.0.1", port, "cc/gauges")
            ingest.start()
            await asyncio.wait_for(ingest.connected.wait(), 10)
            procs = [await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.monitoring", "--publish", str(port), str(gauges), str(readings),
                str(batch), str(part), str(publishers), cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE) for part in range(publishers)]
            for proc in procs:
                assert proc.stdout is not None
                assert (await asyncio.wait_for(proc.stdout.readline(), 120)).strip() == b"ready"
            started = time.time()
            cpu0 = time.process_time()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()

            async def all_in(svc: MonitoringService = service) -> None:
                while True:
                    if svc.counters.stored + sum(svc.counters.rejected.values()) >= readings:
                        return
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(all_in(), 300)
            done = time.time()
            cpu = time.process_time() - cpu0
            pubs = [json.loads((await proc.communicate())[0].decode().strip().splitlines()[-1]) for proc in procs]
            await service.drained(60)
            stored_rows = int(await core.db.fetchval("SELECT count(*) FROM monitoring_readings"))
            seconds = done - started
            out[mode] = {"readings": readings, "per_message": batch, "publishers": publishers, "stored": stored_rows,
                         "lost": readings - stored_rows, "rejected": sum(service.counters.rejected.values()),
                         "alarms": int(await core.db.fetchval("SELECT count(*) FROM monitoring_alarms")),
                         "seconds": round(seconds, 3), "readings_per_s": round(stored_rows / seconds, 1),
                         "publish_seconds": round(max(p["sent"] for p in pubs) - started, 3),
                         "ingest_process_cpu_us_per_reading": round(1e6 * cpu / readings, 1),
                         "ingest_process_readings_per_cpu_s": round(readings / cpu, 1) if cpu > 0 else None}
            out[mode]["ratio_to_goal"] = round(out[mode]["readings_per_s"] / GOAL, 2)
            out[mode]["ratio_to_raw_copy"] = round(out[mode]["readings_per_s"]
                                                   / out["reference_copy"]["rows_per_s"], 3)
            if mode == "batch":
                out["crossing_to_alarm"] = await crossing_latency(core, port, gauge_set)
            await ingest.stop()
            await service.stop()
        return out
    finally:
        await broker.stop()
        if core is not None:
            await core.stop()
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_rows(gauges: int, readings: int) -> list[tuple[str, float, float]]:
    now = time.time()
    return [(f"bench-{k % gauges:05d}", 25.0 + (k % 13) * 0.1, now - 600 + k * 600.0 / readings)
            for k in range(readings)]


async def reference_copy(core: Any, gauges: int, readings: int, chunk: int = 1000) -> dict[str, Any]:
    """The reference: the same number of rows written by raw asyncpg COPY into the same table, in
    chunks of `chunk` (what 0.2 s flushes at 5,000 readings/s carry), no MQTT, no evaluation."""
    from monitoring import store

    await core.db.execute("TRUNCATE monitoring_readings")
    rows = [(g, store.ts(at), v) for g, v, at in ((g, v, at) for g, v, at in bench_rows(gauges, readings))]
    t0 = time.perf_counter()
    async with core.db.pool.acquire() as conn:
        for i in range(0, len(rows), chunk):
            await conn.copy_records_to_table("monitoring_readings", columns=store.READING_COLUMNS,
                                             records=rows[i:i + chunk])
    seconds = time.perf_counter() - t0
    await core.db.execute("TRUNCATE monitoring_readings")
    return {"rows": readings, "chunk": chunk, "seconds": round(seconds, 3), "rows_per_s": round(readings / seconds, 1)}


async def service_only(core: Any, gauge_set: Any, readings: int) -> dict[str, Any]:
    """The ingest's own CPU per one-reading message: `MqttIngest.handle` (parse, check, evaluate the
    thresholds, buffer) on prepared payloads, no broker; then the flush of what it buffered."""
    from monitoring.mqtt import MqttIngest
    from monitoring.service import MonitoringService

    service = MonitoringService(core, gauge_set)
    ingest = MqttIngest(service, "127.0.0.1", 1, "cc/gauges")
    now = time.time()
    msgs = [(f"cc/gauges/{g}/reading", json.dumps({"value": v, "at": now - 600 + k * 0.01}).encode())
            for k, (g, v, _) in enumerate(bench_rows(len(gauge_set), readings))]
    t0 = time.process_time()
    for topic, body in msgs:
        ingest.handle(topic, body)
    cpu = time.process_time() - t0
    await service.flush()
    await core.db.execute("TRUNCATE monitoring_readings, monitoring_alarms")
    return {"messages": readings, "cpu_us_per_message": round(1e6 * cpu / readings, 1),
            "messages_per_cpu_s": round(readings / cpu, 1)}


async def crossing_latency(core: Any, port: int, gauges: Any, n: int = 20) -> dict[str, Any]:
    """Publish a reading that crosses a gauge's warning level; time until ``monitoring.alarm_raised``
    is on the bus (what the consoles' websockets forward), for `n` gauges in turn."""
    import aiomqtt

    samples = []
    ids = [g.id for g in gauges][-n:]
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-crossing") as client:
        with core.bus.subscribe("monitoring.alarm_raised") as sub:
            for gid in ids:
                await client.publish(f"cc/gauges/{gid}/reading", json.dumps({"value": 20.0}), qos=1)
                await asyncio.sleep(0.3)  # below the warning level first (and any older alarm of this gauge cleared)
                t0 = time.perf_counter()
                await client.publish(f"cc/gauges/{gid}/reading", json.dumps({"value": 31.0}), qos=1)
                while True:
                    event = await asyncio.wait_for(sub.get(), 10)
                    if event.payload.get("alarm", {}).get("gauge_id") == gid:
                        break
                samples.append(time.perf_counter() - t0)
    samples.sort()
    return {"n": len(samples), "p50_ms": round(1000 * samples[len(samples) // 2], 1),
            "p95_ms": round(1000 * samples[min(len(samples) - 1, int(0.95 * len(samples)))], 1),
            "max_ms": round(1000 * samples[-1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gauges", type=int, default=1000)
    ap.add_argument("--readings", type=int, default=60000)
    ap.add_argument("--publish", nargs=6, type=int, metavar=("PORT", "GAUGES", "READINGS", "BATCH", "PART", "PARTS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publish:
        publish(*args.publish)
        return
    results = asyncio.run(measure(args.gauges, args.readings))
    doc = {"benchmark": "monitoring", "at": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
           "conditions": f"{args.gauges} gauges, {args.readings} readings, mosquitto + embedded PostgreSQL on this "
                         "host, ingest and service in one process; one-reading messages from "
                         f"{PUBLISHERS} publisher processes (pre-encoded PUBLISH packets on plain sockets), batches from one (QoS 1); reference: raw asyncpg "
                         "COPY of the same number of rows in the same run",
           "goal_readings_per_s": GOAL, **results}
    res = ROOT / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "monitoring.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"{'mode':8} {'readings':>9} {'lost':>5} {'seconds':>8} {'readings/s':>11} {'÷ raw COPY':>10} {'alarms':>7}")
    for mode in ("single", "batch"):
        r = results[mode]
        print(f"{mode:8} {r['readings']:>9} {r['lost']:>5} {r['seconds']:>8} {r['readings_per_s']:>11} "
              f"{r['ratio_to_raw_copy']:>10} {r['alarms']:>7}")
    ref, core = results["reference_copy"], results["service_only"]
    print(f"reference: raw asyncpg COPY of the same rows in chunks of {ref['chunk']}: {ref['rows_per_s']} rows/s; "
          f"the ingest's own CPU per one-reading message: {core['cpu_us_per_message']} µs")
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores shared with other jobs)")
    c = results["crossing_to_alarm"]
    print(f"threshold crossing → alarm event on the bus: p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms (n={c['n']})")


if __name__ == "__main__":
    main()
