"""No reading lost while the database is away (issue 20, bad input / outages): a failed flush keeps
its batch and retries; when `max_buffer` readings wait, the MQTT ingest leaves the broker (whose
persistent QoS 1 session queues for it) and comes back when there is room; every reading published
is stored once the database answers again (at least once: a redelivery may be stored twice). Real mosquitto, real PostgreSQL (the table is renamed
away to make COPY fail)."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from core.runtime import CoreServices
from monitoring.broker import ManagedBroker
from monitoring.gauges import parse_gauges
from monitoring.mqtt import MqttIngest
from monitoring.service import MonitoringService
from tests.conftest import free_port

GAUGES = 20


async def _until(cond: Callable[[], bool], within: float, what: str) -> None:
    async def loop() -> None:
        while not cond():  # noqa: ASYNC110 - counters of the service, polled
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(loop(), within)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


async def test_database_outage_pushes_back_and_loses_nothing(services: CoreServices, tmp_path: Path) -> None:
    gauges, problems = parse_gauges([
        {"id": f"bp-{i:02d}", "name": f"站{i}", "kind": "river_level", "unit": "m", "position": [111.5, 22.7],
         "position_quality": "made-up", "period_s": 1, "stale_periods": 600, "valid_range": [0, 50],
         "thresholds": [{"key": "warning", "name": "警戒水位", "value": 30.0}]} for i in range(GAUGES)])
    assert not problems
    port = free_port()
    broker = ManagedBroker("127.0.0.1", port, tmp_path)
    await broker.start()
    service = MonitoringService(services, gauges, flush_interval=0.05, max_buffer=200)
    await service.start()
    ingest = MqttIngest(service, "127.0.0.1", port, "cc/gauges")
    ingest.start()
    sent = 0
    base = time.time() - 60
    try:
        await asyncio.wait_for(ingest.connected.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", port, identifier="bp-gauges") as pub:
            async def send(n: int) -> None:
                nonlocal sent
                for _ in range(n):
                    await pub.publish(f"cc/gauges/bp-{sent % GAUGES:02d}/reading",
                                      json.dumps({"value": 10.0 + sent % 7, "at": base + sent * 0.001}), qos=1)
                    sent += 1

            await send(50)
            await _until(lambda: service.counters.stored == 50, 10, "the first 50 stored")
            await services.db.execute("ALTER TABLE monitoring_readings RENAME TO monitoring_readings_away")
            await send(300)  # past max_buffer: the service saturates, the ingest leaves the broker
            await _until(lambda: service.saturated and not ingest.connected.is_set(), 15, "the ingest paused")
            assert ingest.pauses == 1 and service.counters.saturations == 1
            taken = service.counters.accepted
            await send(400)  # published while the ingest is away: queued by the broker for its session
            await asyncio.sleep(0.5)
            assert service.counters.accepted == taken, "the paused ingest went on taking readings"
            await services.db.execute("ALTER TABLE monitoring_readings_away RENAME TO monitoring_readings")
            await _until(lambda: service.counters.stored >= sent, 30, f"all {sent} readings stored")
        assert ingest.connected.is_set() and not service.saturated
        # at least once (QoS 1): a message read just before the ingest left may come again; each reading is
        # told apart by its own time, and every one of them is there
        distinct = await services.db.fetchval("SELECT count(DISTINCT (gauge_id, at)) FROM monitoring_readings")
        stored = await services.db.fetchval("SELECT count(*) FROM monitoring_readings")
        assert distinct == sent == 750 and stored - distinct <= 20
        assert service.counters.rejected == {}
    finally:
        await ingest.stop()
        await service.stop()
        await broker.stop()
