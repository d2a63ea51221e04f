"""The event bus across lost connections: re-LISTEN, replay by event id, each event delivered once.

The cursor rules (core/event_cursor.py) are pure and tested first; then a real bus on the embedded
PostgreSQL loses its LISTEN connection (its backend is terminated, as in a failover), events are
stored while it is away, and every one arrives exactly once."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import asyncpg
import pytest

from core.bus import CHANNEL, Bus
from core.db import Database, apply_migrations
from core.event_cursor import EventCursor


def test_cursor_delivers_each_id_once_in_any_order() -> None:
    c = EventCursor(start=10, gap_grace=5.0)
    assert c.accept(12, now=0.0)          # 11 is missing for now (its transaction has not committed)
    assert c.pending_gaps == [11]
    assert c.horizon == 10
    assert not c.accept(12, now=0.1)      # duplicate (NOTIFY and replay both bring it)
    assert c.accept(11, now=1.0)          # the late commit is still delivered
    assert c.horizon == 12 and c.pending_gaps == []
    assert not c.accept(11, now=1.0) and not c.accept(9, now=1.0)


def test_cursor_gives_up_on_a_gap_after_the_grace() -> None:
    c = EventCursor(start=0, gap_grace=5.0)
    assert c.accept(3, now=0.0)
    c.advance(now=4.9)
    assert c.horizon == 0 and c.pending_gaps == [1, 2]
    assert c.accept(1, now=4.95)
    c.advance(now=5.0)                    # id 2 rolled back (or was skipped by a failover)
    assert c.horizon == 3 and c.pending_gaps == []
    assert not c.accept(2, now=6.0)       # given up: not delivered out of the blue later


def test_cursor_does_not_track_a_huge_jump_id_by_id() -> None:
    c = EventCursor(start=5, max_gap=100)
    assert c.accept(7, now=0.0)
    assert c.accept(1_000_000, now=0.0)
    assert c.horizon == 1_000_000 and c.pending_gaps == []
    assert not c.accept(6, now=0.0)
    with pytest.raises(ValueError):
        EventCursor(start=-1)


async def _store_without_notify(conn: asyncpg.Connection, topic: str, payload: dict[str, object]) -> int:
    """An event row whose NOTIFY never reached us (sent while we were not listening)."""
    return int(await conn.fetchval(
        "INSERT INTO events (topic, origin, payload, key) VALUES ($1, 'elsewhere', $2::text::jsonb, $3) RETURNING id",
        topic, json.dumps(payload), uuid.uuid4()))


async def test_bus_relistens_after_losing_its_connection_and_replays_what_it_missed(fresh_db_url: str) -> None:
    db = Database(fresh_db_url)
    await db.connect()
    async with db.pool.acquire() as conn:
        await apply_migrations(conn)
    receiver = Bus(node_id="receiver")
    await receiver.attach(db, replay_every=0.3)
    sub = receiver.subscribe("incident.*")
    other_db = Database(fresh_db_url)
    await other_db.connect()
    publisher = Bus(node_id="publisher")
    await publisher.attach(other_db, replay_every=0.3)
    admin = await asyncpg.connect(fresh_db_url)
    try:
        await publisher.publish("incident.created", {"n": 0})
        # the receiver's LISTEN connection dies (a failover ends every connection to the old primary)
        listener_pid = receiver._listener.get_server_pid() if receiver._listener else None
        assert listener_pid
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener_pid)
        # while it is away: rows whose NOTIFY it cannot hear, and ordinary publishes
        missed = [await _store_without_notify(admin, "incident.created", {"n": i}) for i in range(1, 6)]
        for i in range(6, 11):
            await publisher.publish("incident.created", {"n": i})
        # an id taken first but committed last (out of order): only a later replay can bring it
        late = await asyncpg.connect(fresh_db_url)
        tx = late.transaction()
        await tx.start()
        late_id = await _store_without_notify(late, "incident.created", {"n": 11})
        await publisher.publish("incident.created", {"n": 12})
        await tx.commit()
        await late.close()

        received: list[int] = []
        ids: list[int] = []
        async def collect() -> None:
            while len(received) < 13:
                event = await sub.get()
                received.append(event.payload["n"])
                ids.append(event.id or 0)
        await asyncio.wait_for(collect(), 20)
        await asyncio.sleep(1.0)  # a duplicate would arrive by now (NOTIFY + replays every 0.3 s)
        assert sub._queue.empty(), "an event was delivered twice"
        assert Counter(received) == Counter(range(13))
        assert set(missed) | {late_id} <= set(ids)
        assert receiver.resubscriptions >= 1
        assert receiver.replayed >= len(missed) + 1
        assert receiver.listening.is_set()
    finally:
        await admin.close()
        await publisher.detach()
        await receiver.detach()
        await other_db.close()
        await db.close()


async def test_own_events_are_delivered_once_though_notify_and_replay_also_bring_them(fresh_db_url: str) -> None:
    db = Database(fresh_db_url)
    await db.connect()
    async with db.pool.acquire() as conn:
        await apply_migrations(conn)
    bus = Bus(node_id="solo")
    await bus.attach(db, replay_every=0.2)
    sub = bus.subscribe()
    try:
        events = [await bus.publish("system.tick", {"i": i}) for i in range(20)]
        assert len({e.id for e in events}) == 20
        await asyncio.sleep(1.0)
        got = []
        while not sub._queue.empty():
            got.append(sub._queue.get_nowait().payload["i"])
        assert got == list(range(20))
        assert await db.fetchval("SELECT count(*) FROM events") == 20
        assert CHANNEL == "cc_events"
    finally:
        await bus.detach()
        await db.close()
