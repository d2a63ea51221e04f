"""Failover rules (core/db/failover.py) and the pool that follows them, on the real embedded server.

A backend terminated under a command stands in for a dead primary here (the full Patroni failover is
tests/ha/test_ha_failover.py): a read is retried on a fresh connection, an idempotent write too, a
non-idempotent write fails with `DatabaseUnavailable(outcome_unknown=True)`, never a hang."""
from __future__ import annotations

import asyncio

import asyncpg
import asyncpg.exceptions as pgexc
import pytest

from core.db import Database, DatabaseUnavailable, RetryPolicy
from core.db.failover import FailureKind, classify, is_read_only


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "  select id, at FROM events WHERE id > $1 ORDER BY id",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "-- a comment\nSELECT 'insert into t' AS literal",
    "SHOW synchronous_standby_names",
    "SELECT 1;",
])
def test_reads_are_recognised(sql: str) -> None:
    assert is_read_only(sql)


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES (1)",
    "WITH e AS (INSERT INTO events (topic) VALUES ($1) RETURNING id) SELECT id FROM e",
    "SELECT nextval('incident_seq')",
    "SELECT pg_notify('c', 'x')",
    "SELECT pg_advisory_lock(1)",
    "SELECT * INTO copy_of_t FROM t",
    "SELECT 1; DELETE FROM t",
    "UPDATE t SET x = 1",
    "select setval('s', 5)",
    "",
])
def test_writes_and_doubtful_statements_are_not_read_only(sql: str) -> None:
    assert not is_read_only(sql)


def test_classify_sorts_failover_errors() -> None:
    assert classify(ConnectionRefusedError(), sent=False) is FailureKind.NOT_SENT
    assert classify(asyncpg.TargetServerAttributeNotMatched("standby"), sent=False) is FailureKind.NOT_SENT
    assert classify(asyncpg.InterfaceError("connection is closed"), sent=True) is FailureKind.NOT_SENT
    assert classify(pgexc.ReadOnlySQLTransactionError("read-only"), sent=True) is FailureKind.REFUSED
    assert classify(pgexc.ConnectionDoesNotExistError("gone"), sent=True) is FailureKind.LOST
    assert classify(pgexc.AdminShutdownError("terminating"), sent=True) is FailureKind.LOST
    assert classify(TimeoutError(), sent=True) is FailureKind.LOST
    # ordinary errors are not failovers
    assert classify(pgexc.UniqueViolationError("dup"), sent=True) is FailureKind.OTHER
    assert classify(ValueError("bad"), sent=False) is FailureKind.OTHER
    assert classify(asyncpg.InterfaceError("another operation is in progress"), sent=True) is FailureKind.OTHER


def test_policy_backs_off_and_gives_up_at_the_deadline() -> None:
    p = RetryPolicy(deadline_s=10.0, first_delay_s=0.1, max_delay_s=1.0)
    assert p.next_delay(FailureKind.NOT_SENT, False, 1, 0.0) == pytest.approx(0.1)
    assert p.next_delay(FailureKind.NOT_SENT, False, 2, 0.1) == pytest.approx(0.2)
    assert p.next_delay(FailureKind.REFUSED, False, 9, 3.0) == pytest.approx(1.0)  # capped
    assert p.next_delay(FailureKind.NOT_SENT, False, 9, 9.5) == pytest.approx(0.5)  # never past the deadline
    assert p.next_delay(FailureKind.NOT_SENT, True, 3, 10.0) is None
    # a lost connection: only idempotent commands are run again
    assert p.next_delay(FailureKind.LOST, True, 1, 0.0) == pytest.approx(0.1)
    assert p.next_delay(FailureKind.LOST, False, 1, 0.0) is None
    assert p.next_delay(FailureKind.OTHER, True, 1, 0.0) is None


async def _terminate_soon(url: str, db: Database, marker: str, after: float) -> None:
    """Terminate the backend running a statement that contains `marker` (stands in for a dead node)."""
    admin = await asyncpg.connect(url)
    try:
        await asyncio.sleep(after)
        for _ in range(100):
            n = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", marker)
            if n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the statement to interrupt never ran")
    finally:
        await admin.close()


async def test_pool_retries_reads_and_keyed_writes_and_refuses_the_rest(fresh_db_url: str) -> None:
    db = Database(fresh_db_url, retry=RetryPolicy(deadline_s=10.0))
    await db.connect(min_size=1, max_size=1)
    try:
        await db.execute("CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)")
        # a read (recognised as one) whose connection dies in flight is run again on a new connection
        killer = asyncio.create_task(_terminate_soon(fresh_db_url, db, "read_marker", 0.2))
        value = await db.fetchval("SELECT count(*) + 0 * length('read_marker') FROM generate_series(1, 20000000)")
        await killer
        assert value == 20000000
        seen = db.failovers_seen
        assert seen >= 1

        # a write keyed by an id, marked idempotent: retried, applied once
        killer = asyncio.create_task(_terminate_soon(fresh_db_url, db, "keyed_marker", 0.2))
        await db.execute("INSERT INTO t (id) SELECT 1 FROM pg_sleep_for('1 second'), (SELECT 'keyed_marker') m "
                         "ON CONFLICT (id) DO NOTHING", idempotent=True)
        await killer
        assert await db.fetchval("SELECT count(*) FROM t WHERE id = 1") == 1
        assert db.failovers_seen > seen

        # a write that is not idempotent: a clear error saying the outcome is unknown, not a retry
        killer = asyncio.create_task(_terminate_soon(fresh_db_url, db, "counter_marker", 0.2))
        with pytest.raises(DatabaseUnavailable) as info:
            await db.execute("UPDATE t SET n = n + 1 FROM pg_sleep_for('1 second'), (SELECT 'counter_marker') m "
                             "WHERE id = 1")
        await killer
        assert info.value.outcome_unknown
        assert await db.fetchval("SELECT n FROM t WHERE id = 1") == 0  # terminated before it committed

        # inside a transaction: the body is not re-run; a failure before COMMIT applied nothing
        killer = asyncio.create_task(_terminate_soon(fresh_db_url, db, "tx_marker", 0.2))
        with pytest.raises(DatabaseUnavailable) as info:
            async with db.transaction() as conn:
                await conn.execute("UPDATE t SET n = 5 WHERE id = 1")
                await conn.execute("SELECT pg_sleep_for('1 second'), 'tx_marker'")
        await killer
        assert not info.value.outcome_unknown
        assert await db.fetchval("SELECT n FROM t WHERE id = 1") == 0
    finally:
        await db.close()


async def test_unreachable_database_gives_up_within_the_bound() -> None:
    import time

    from tests.conftest import free_port

    port = free_port()  # nothing listens there
    db = Database(f"postgresql://u:p@127.0.0.1:{port},127.0.0.1:{free_port()}/db?target_session_attrs=read-write",
                  retry=RetryPolicy(deadline_s=1.5), connect_timeout=1.0)
    db._pool = await asyncpg.create_pool(db.url, min_size=0, max_size=1, timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as info:
            await db.fetchval("SELECT 1")
        assert not info.value.outcome_unknown
        assert 1.4 <= time.monotonic() - started < 6.0
    finally:
        await db.close()
