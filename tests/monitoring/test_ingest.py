"""Monitoring end to end below the web: real mosquitto, real PostgreSQL, the dispatch and plans
services as the alarm's responder (commandcenter/node.py's wiring)."""
from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable

from commandcenter.node import Node
from monitoring import store
from tests.monitoring.conftest import Publisher

RIVER = "gauge-luoding-river"  # demo: warning 12.0 (hysteresis 0.2, incident), guaranteed 14.0 (propose flood III)


async def wait_for(predicate: Callable[[], Awaitable[bool]], wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def settle(node: Node, published_total: int) -> None:
    """Wait until the ingest saw `published_total` messages, then until all is stored and handled."""
    assert node.monitoring is not None and node.monitoring.ingest is not None
    ingest = node.monitoring.ingest

    async def seen() -> bool:
        return ingest.messages >= published_total
    await wait_for(seen)
    await node.monitoring.service.drained()


async def test_rising_level_over_mqtt_stores_raises_alarm_incident_and_proposal(web_node: Node,
                                                                                  publisher: Publisher) -> None:
    db = web_node.core.db
    svc = web_node.monitoring.service  # type: ignore[union-attr]
    now = time.time()
    levels = [10.0, 10.8, 11.5, 11.9, 12.05]  # crosses 警戒水位 12.0 on the last one
    for i, v in enumerate(levels):
        await publisher.reading(RIVER, v, now - 60 + i)
    await settle(web_node, len(levels))
    assert await store.count_readings(db, RIVER) == len(levels)
    rows = await db.fetch("SELECT value FROM monitoring_readings WHERE gauge_id = $1 ORDER BY at", RIVER)
    assert [r["value"] for r in rows] == levels

    alarms = await store.alarms(db)
    assert [(a["gauge_id"], a["kind"], a["key"], a["value"]) for a in alarms] == [(RIVER, "threshold", "warning", 12.05)]
    alarm = alarms[0]
    assert alarm["incident_id"], alarm
    incident = await db.fetchrow("SELECT category, subtype, priority, description FROM incidents WHERE id = $1",
                                 alarm["incident_id"])
    assert incident is not None
    assert incident["category"] == "flood_control" and incident["subtype"] == "flood"
    assert "罗定江罗城水位站" in incident["description"] and "警戒水位" in incident["description"]
    topics = [r["topic"] for r in await db.fetch("SELECT topic FROM events WHERE topic LIKE 'monitoring.%' ORDER BY id")]
    assert "monitoring.alarm_raised" in topics and "monitoring.alarm_response" in topics
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'monitoring.threshold_raised'") == 1

    # hysteresis: wobbling around the line (above 11.8) neither clears nor raises again
    wobble = [11.95, 12.1, 11.85, 12.02, 11.81, 12.0]
    for i, v in enumerate(wobble):
        await publisher.reading(RIVER, v, now - 50 + i)
    await settle(web_node, len(levels) + len(wobble))
    after = await store.alarms(db)
    assert len(after) == 1 and after[0]["cleared_at"] is None
    assert await db.fetchval("SELECT count(*) FROM incidents") == 1

    # 保证水位: a plan proposal on the same incident (one incident per flood episode)
    await publisher.reading(RIVER, 14.2, now - 40)
    await settle(web_node, len(levels) + len(wobble) + 1)
    critical = next(a for a in await store.alarms(db) if a["key"] == "guaranteed")
    assert critical["severity"] == "critical" and critical["incident_id"] == alarm["incident_id"]
    assert critical["proposal"]["plan"] == "flood" and critical["proposal"]["level"] == "III"
    assert critical["proposal"]["plan_name"].startswith("云浮市")
    assert await db.fetchval("SELECT count(*) FROM incidents") == 1
    assert svc.machines[RIVER].state() == "critical"

    # falling below warning - hysteresis clears both
    await publisher.reading(RIVER, 11.7, now - 30)
    await settle(web_node, len(levels) + len(wobble) + 2)
    assert all(a["cleared_at"] is not None for a in await store.alarms(db))
    assert svc.machines[RIVER].state() == "normal"


async def test_bad_payloads_are_counted_and_change_nothing(web_node: Node, publisher: Publisher) -> None:
    db = web_node.core.db
    svc = web_node.monitoring.service  # type: ignore[union-attr]
    prefix = web_node.core.settings.monitoring.topic_prefix
    bad: list[tuple[str, bytes, str]] = [
        (f"{prefix}/{RIVER}/reading", b"not json at all", "not_json"),
        (f"{prefix}/{RIVER}/reading", b'{"value": "13.0"}', "bad_value"),
        (f"{prefix}/{RIVER}/reading", b'{"value": NaN}', "not_json"),
        (f"{prefix}/{RIVER}/reading", b'{"value": 1e400}', "bad_value"),
        (f"{prefix}/{RIVER}/reading", b'{"value": 99999}', "out_of_range"),
        (f"{prefix}/{RIVER}/reading", b'[13.0]', "not_object"),
        (f"{prefix}/gauge-nowhere/reading", b'{"value": 13.0}', "unknown_gauge"),
        (f"{prefix}/{RIVER}/reading", b'{"value": 13.0, "junk": "' + b"x" * 100_000 + b'"}', "too_large"),
        (f"{prefix}/{RIVER}/reading", b'{"value": 13.0, "at": "soon"}', "bad_time"),
        (f"{prefix}/batch", b'{"readings": 5}', "not_object"),
    ]
    for topic, payload, _ in bad:
        await publisher.raw(topic, payload)
    await settle(web_node, len(bad))
    expected: dict[str, int] = {}
    for _, _, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(svc.counters.rejected) == expected
    assert svc.counters.accepted == 0
    assert await store.count_readings(db) == 0
    assert await store.alarms(db) == []
    assert svc.machines[RIVER].last_value is None

    # the ingest still works after all that
    await publisher.reading(RIVER, 10.5)
    await settle(web_node, len(bad) + 1)
    assert await store.count_readings(db, RIVER) == 1


async def test_batch_topic_and_rain_window(web_node: Node, publisher: Publisher) -> None:
    db = web_node.core.db
    svc = web_node.monitoring.service  # type: ignore[union-attr]
    prefix = web_node.core.settings.monitoring.topic_prefix
    now = time.time()
    items = [{"gauge": "rain-luoding-luocheng", "value": 8.0, "at": now - 3000 + 600 * i} for i in range(4)]
    items.append({"gauge": "rain-luoding-luocheng", "value": "lots"})
    await publisher.raw(f"{prefix}/batch", json.dumps({"readings": items}).encode())
    await settle(web_node, 1)
    assert svc.counters.accepted == 4 and svc.counters.rejected["bad_value"] == 1
    assert svc.machines["rain-luoding-luocheng"].accumulated("rain_1h", now) == 32.0
    alarms = await store.alarms(db)
    assert [(a["key"], a["value"]) for a in alarms] == [("rain_1h", 32.0)]
    assert alarms[0]["incident_id"] is None  # 1-hour rain: no action configured


async def test_stale_sensor_raises_a_fault_and_acknowledge_is_audited(web_node: Node, publisher: Publisher) -> None:
    db = web_node.core.db
    svc = web_node.monitoring.service  # type: ignore[union-attr]
    await publisher.reading(RIVER, 10.0)
    await settle(web_node, 1)
    at = svc.machines[RIVER].last_at
    assert at is not None
    svc.tick(at + 59)  # period 10 s × 6
    await svc.drained()
    assert not [a for a in await store.alarms(db) if a["gauge_id"] == RIVER]
    svc.tick(at + 60)
    await svc.drained()
    faults = [a for a in await store.alarms(db) if a["gauge_id"] == RIVER]
    assert [(a["kind"], a["key"]) for a in faults] == [("fault", "stale")]
    assert svc.machines[RIVER].state() == "fault"

    result = await svc.acknowledge(faults[0]["id"], "dispatcher", "127.0.0.1", "已通知维护")
    assert result and result["acked_by"] == "dispatcher" and result["ack_note"] == "已通知维护"
    row = await db.fetchrow("SELECT actor, target, source, detail FROM audit_log WHERE action = 'monitoring.acknowledge'")
    assert row is not None
    assert row["actor"] == "dispatcher" and row["target"] == str(faults[0]["id"]) and row["source"] == "127.0.0.1"
    assert await svc.acknowledge(faults[0]["id"], "other", "", "") == {}
    assert await svc.acknowledge(10**9, "other", "", "") is None
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'monitoring.acknowledge'") == 1

    # the next reading clears the fault
    await publisher.reading(RIVER, 10.1)
    await settle(web_node, 2)
    cleared = await store.alarm(db, faults[0]["id"])
    assert cleared is not None and cleared["cleared_at"] is not None


async def test_charts_are_downsampled(web_node: Node) -> None:
    db = web_node.core.db
    svc = web_node.monitoring.service  # type: ignore[union-attr]
    now = time.time()
    rows = [(RIVER, now - 3600 * 23 + 10 * i, 10 + math.sin(i / 50)) for i in range(8000)]  # 10 s for 22 h
    await store.insert_readings(db, rows)
    day = await svc.series(RIVER, "24h")
    week = await svc.series(RIVER, "7d")
    assert 260 <= len(day) <= 290 and sum(b.count for b in day) == 8000
    assert len(week) <= 50 and sum(b.count for b in week) == 8000
    assert all(b.min <= b.mean <= b.max for b in day)
    others = [(g, now - 7 * 86400 + 3 * i, 5.0) for i in range(100_000)
              for g in ("gauge-xijiang-ducheng", "gauge-nanjiang-liantan")]  # two more gauges, a week at 3 s
    await store.insert_readings(db, others)
    assert len(await svc.series(RIVER, "24h")) == len(day)
    await db.execute("ANALYZE monitoring_readings")
    plan = "\n".join(r[0] for r in await db.fetch(
        "EXPLAIN SELECT at, value FROM monitoring_readings WHERE gauge_id = $1 AND at >= now() - interval '1 day'",
        RIVER))
    assert "monitoring_readings_gauge_at" in plan, plan
