"""The event bus: in-process delivery, delivery to another process through PostgreSQL, slow subscribers."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from config.roles import Role
from core.bus import Bus, visible_to
from core.db import Database, apply_migrations
from tests.conftest import ROOT


async def test_in_process_publish_reaches_matching_subscribers_only() -> None:
    bus = Bus()
    conf = bus.subscribe("conference.*")
    everything = bus.subscribe()
    await bus.publish("conference.layout_changed", {"layout": "2x2"})
    await bus.publish("incident.created", {"id": 7})
    first = await asyncio.wait_for(conf.get(), 1)
    assert (first.topic, first.payload) == ("conference.layout_changed", {"layout": "2x2"})
    assert conf._queue.empty()
    topics = [(await everything.get()).topic, (await everything.get()).topic]
    assert topics == ["conference.layout_changed", "incident.created"]


async def test_a_slow_subscriber_loses_oldest_events_without_blocking_the_publisher() -> None:
    bus = Bus()
    slow = bus.subscribe(maxsize=3)
    for i in range(10):
        await bus.publish("system.tick", {"i": i})
    assert slow.dropped == 7
    assert [(await slow.get()).payload["i"] for _ in range(3)] == [7, 8, 9]


async def test_event_published_in_another_process_is_received_here(fresh_db_url: str) -> None:
    db = Database(fresh_db_url)
    await db.connect()
    async with db.pool.acquire() as conn:
        await apply_migrations(conn)
    bus = Bus(node_id="receiver")
    await bus.attach(db)
    sub = bus.subscribe("incident.*")
    try:
        publisher = textwrap.dedent(f"""
            import asyncio
            from core.bus import Bus
            from core.db import Database
            async def main():
                db = Database({fresh_db_url!r}); await db.connect()
                bus = Bus(node_id="publisher"); await bus.attach(db)
                await bus.publish("incident.created", {{"id": 42, "name": "罗定市 山体滑坡"}})
                await bus.detach(); await db.close()
            asyncio.run(main())
        """)
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", publisher], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        event = await asyncio.wait_for(sub.get(), 10)
        assert event.topic == "incident.created"
        assert event.payload == {"id": 42, "name": "罗定市 山体滑坡"}
        assert event.origin == "publisher" and event.id is not None
        # the event row is the payload
        row = await db.fetchrow("SELECT topic, payload FROM events WHERE id = $1", event.id)
        assert row is not None and row["payload"]["id"] == 42
    finally:
        await bus.detach()
        await db.close()


async def test_own_events_are_not_delivered_twice(fresh_db_url: str) -> None:
    db = Database(fresh_db_url)
    await db.connect()
    async with db.pool.acquire() as conn:
        await apply_migrations(conn)
    bus = Bus()
    await bus.attach(db)
    sub = bus.subscribe()
    try:
        await bus.publish("system.ping", {})
        await asyncio.wait_for(sub.get(), 1)
        await asyncio.sleep(0.5)  # let the NOTIFY round trip come back
        assert sub._queue.empty()
    finally:
        await bus.detach()
        await db.close()


def test_event_visibility_by_role() -> None:
    assert visible_to("conference.muted", Role.CHAIR)
    assert not visible_to("conference.muted", Role.CALLTAKER)
    assert visible_to("incident.created", Role.DISPATCHER)
    assert not visible_to("recording.viewed", Role.DISPATCHER)
    assert visible_to("recording.viewed", Role.INSPECTOR)
    assert not visible_to("user.created", Role.CHAIR)
    assert visible_to("user.created", Role.ADMIN)
    assert not visible_to("unheard_of.thing", Role.VIEWER)


async def test_old_events_are_pruned(fresh_db_url: str) -> None:
    db = Database(fresh_db_url)
    await db.connect()
    async with db.pool.acquire() as conn:
        await apply_migrations(conn)
    bus = Bus()
    await bus.attach(db, keep_hours=1.0, prune_every=0)  # no background pass racing the explicit one
    try:
        old = await bus.publish("unit.moved", {"id": "old"})
        fresh = await bus.publish("unit.moved", {"id": "fresh"})
        await db.execute("UPDATE events SET at = now() - interval '2 hours' WHERE id = $1", old.id)
        assert await bus.prune(1.0) == 1
        remaining = [r["id"] for r in await db.fetch("SELECT id FROM events")]
        assert remaining == [fresh.id]
    finally:
        await bus.detach()
        await db.close()
