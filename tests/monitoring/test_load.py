"""Ingest load (issue 20): 1,000 gauges each sending one reading a second for a minute over real
MQTT (mosquitto, QoS 1) into the service and real PostgreSQL: every reading stored (rows counted),
thresholds evaluated (the 100 gauges pushed over their warning level half-way have an alarm, the
others none). No speed is asserted; the rate reached is printed (bench/monitoring.py measures the
maximum). About 65 s."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from core.runtime import CoreServices
from monitoring.broker import ManagedBroker
from monitoring.gauges import parse_gauges
from monitoring.mqtt import MqttIngest
from monitoring.service import MonitoringService
from tests.conftest import free_port

GAUGES, SECONDS = 1000, 60

PUBLISHER = """
import json, sys, time
import paho.mqtt.client as mqtt
port, gauges, seconds = map(int, sys.argv[1:4])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="load-publisher")
c.max_inflight_messages_set(1000)
c.connect("127.0.0.1", port)
c.loop_start()
infos, start = [], time.time()
for s in range(seconds):
    due = start + s
    while time.time() < due:
        time.sleep(0.005)
    for g in range(gauges):
        value = 13.0 if g % 10 == 0 and s >= seconds // 2 else 10 + (g + s) % 5 * 0.5  # others stay <= 12.0
        infos.append(c.publish(f"cc/gauges/load-{g:04d}/reading", json.dumps({"value": value, "at": due}), qos=1))
for i in infos:
    i.wait_for_publish(120)
print(json.dumps({"published": len(infos), "seconds": time.time() - start}), flush=True)
c.disconnect()
"""


async def test_a_thousand_gauges_for_a_minute_lose_nothing(services: CoreServices, tmp_path: Path) -> None:
    raw = [{"id": f"load-{i:04d}", "name": f"负载站{i}", "kind": "river_level", "unit": "m",
            "position": [111.5, 22.7], "position_quality": "made-up", "period_s": 1, "stale_periods": 30,
            "valid_range": [0, 50], "thresholds": [{"key": "warning", "name": "警戒水位", "value": 12.5,
                                                    "hysteresis": 0.1}]} for i in range(GAUGES)]
    gauges, problems = parse_gauges(raw)
    assert not problems
    port = free_port()
    broker = ManagedBroker("127.0.0.1", port, tmp_path)
    await broker.start()
    service = MonitoringService(services, gauges)
    await service.start()
    ingest = MqttIngest(service, "127.0.0.1", port, "cc/gauges")
    ingest.start()
    try:
        await asyncio.wait_for(ingest.connected.wait(), 10)
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PUBLISHER, str(port), str(GAUGES),
                                                    str(SECONDS), stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), SECONDS + 120)
        published = json.loads(out.decode().strip().splitlines()[-1])["published"]
        assert published == GAUGES * SECONDS

        async def all_stored() -> None:
            while True:
                if service.counters.stored >= published:
                    return
                await asyncio.sleep(0.05)
        await asyncio.wait_for(all_stored(), 120)
        elapsed = time.monotonic() - started
        await service.drained(60)
        stored = await services.db.fetchval("SELECT count(*) FROM monitoring_readings")
        assert stored == published and service.counters.rejected == {} and service.counters.saturations == 0
        per_gauge = await services.db.fetchval(
            "SELECT count(DISTINCT gauge_id) FROM monitoring_readings")
        assert per_gauge == GAUGES
        # thresholds evaluated: exactly the gauges pushed over 12.5 raised their warning alarm
        alarmed = {r["gauge_id"] for r in await services.db.fetch(
            "SELECT DISTINCT gauge_id FROM monitoring_alarms WHERE kind = 'threshold' AND key = 'warning'")}
        assert alarmed == {f"load-{g:04d}" for g in range(0, GAUGES, 10)}
        print(f"\n{published} readings over MQTT in {elapsed:.1f} s: {published / elapsed:.0f} readings/s sustained, "
              f"0 lost")
    finally:
        await ingest.stop()
        await service.stop()
        await broker.stop()
