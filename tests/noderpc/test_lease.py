"""The desk lease (noderpc/lease.py) on the real embedded PostgreSQL, with a fake monotonic clock.

One holder at a time; the other gets it only after expiry; the holder's own belief ends at
send time + ttl (so before the database lets anyone else in); a frozen holder is fenced by its own
clock; a clean stop releases at once; the epoch grows with each new holder."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.db import Database, apply_migrations
from noderpc.lease import Lease, LeaseRule, lease_holder, valid_until

RULE = LeaseRule(ttl_s=1.0, renew_s=0.2)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def db(fresh_db_url: str) -> AsyncIterator[Database]:
    database = Database(fresh_db_url)
    await database.connect()
    async with database.pool.acquire() as conn:
        await apply_migrations(conn)
    yield database
    await database.close()


def test_rule() -> None:
    assert valid_until(5.0, RULE) == 6.0
    with pytest.raises(ValueError):
        LeaseRule(ttl_s=1.0, renew_s=1.0)


async def test_one_holder_expiry_fence_and_release(db: Database) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = Lease(db, "desk", "node-a", RULE, clock_a)
    b = Lease(db, "desk", "node-b", RULE, clock_b)
    changes: list[bool] = []

    async def changed(held: bool) -> None:
        changes.append(held)

    a.listeners.append(changed)
    assert await a.attempt() and a.epoch == 1
    assert not await b.attempt() and not b.held()
    assert await lease_holder(db, "desk") == "node-a"
    # A renews: still A's; its belief runs from the renewal's send time
    clock_a.t += 0.5
    assert await a.attempt() and a.epoch == 1
    # A freezes (no renewal): its own clock passes send + ttl -> it no longer believes it holds the lease
    clock_a.t += RULE.ttl_s
    assert not a.held()
    assert not await b.attempt(), "taken before the database's expiry"
    await asyncio.sleep(RULE.ttl_s + 0.1)
    assert await b.attempt() and b.epoch == 2
    assert await lease_holder(db, "desk") == "node-b"
    # A resumes: its renewal fails (B holds it) -> lost, listener told
    assert not await a.attempt() and changes == [True, False]
    # B stops cleanly: released at once, A takes it without waiting for the expiry
    await b.stop()
    assert await lease_holder(db, "desk") is None
    assert await a.attempt() and a.epoch == 3
    await a.stop()
