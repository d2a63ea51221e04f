"""The asyncpg connection pool every service shares, and how it rides out a database failover.

The URL may name several hosts (`postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write`):
asyncpg tries them in turn and keeps the one that takes writes, so after Patroni promotes a
standby, new connections land on the new primary. Connections to the old primary die (or turn
read-only); on the first such error the pool expires all its connections.

`fetch`, `fetchrow`, `fetchval` and `execute` run one statement with the rules of
`core/db/failover.py`: retried while no server received it or one refused it; retried after a lost
connection only when idempotent (a read, detected by `is_read_only`, or a caller's
`idempotent=True` for a write keyed by an id); otherwise `DatabaseUnavailable`, which the web app
answers with a 503. `transaction()` retries getting its connection; a failover inside its body
becomes `DatabaseUnavailable` (the body is the caller's code and is not re-run).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from core.db.failover import DatabaseUnavailable, FailureKind, RetryPolicy, classify, is_read_only

log = logging.getLogger(__name__)
T = TypeVar("T")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come back as Python objects, and go in from them.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=lambda v: json.dumps(v, ensure_ascii=False), decoder=json.loads,
            schema="pg_catalog",
        )


class Database:
    """An asyncpg pool with the URL it came from, and the failover retry rules."""

    def __init__(self, url: str, *, retry: RetryPolicy | None = None, connect_timeout: float = 5.0,
                 command_timeout: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._clock = clock
        self._pool: asyncpg.Pool | None = None
        self.failovers_seen = 0  # connection failures that expired the pool (a figure for logs/tests)

    async def connect(self, min_size: int = 1, max_size: int = 10) -> None:
        """Open the pool. Raises on an unreachable database."""
        self._pool = await asyncpg.create_pool(
            self.url, min_size=min_size, max_size=max_size, init=_init_connection,
            timeout=self.connect_timeout, command_timeout=self.command_timeout,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not connected")
        return self._pool

    async def _failed(self, kind: FailureKind, exc: BaseException, attempt: int = 1) -> None:
        """A connection-level failure: every pooled connection may point at a dead or demoted node."""
        self.failovers_seen += 1
        # one warning per command; its retries (every 50 ms .. 1 s during a failover) at debug level
        log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                "database: %s (%s: %s); expiring pooled connections", kind.value, type(exc).__name__, exc)
        if self._pool is not None:
            await self._pool.expire_connections()

    async def run(self, op: Callable[[asyncpg.Connection], Awaitable[T]], *, idempotent: bool) -> T:
        """Run `op` on a pooled connection under the retry rules (see the module docstring)."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            sent = False
            try:
                async with self.pool.acquire(timeout=self.retry.deadline_s) as conn:
                    sent = True
                    return await op(conn)
            except Exception as exc:  # noqa: BLE001 - classified below; ordinary errors re-raised
                kind = classify(exc, sent=sent)
                if kind is FailureKind.OTHER:
                    raise
                await self._failed(kind, exc, attempt)
                delay = self.retry.next_delay(kind, idempotent, attempt, self._clock() - started)
                if delay is None:
                    raise _unavailable(kind, idempotent) from exc
                await asyncio.sleep(delay)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside a transaction (getting it is retried; the body is not)."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                cm = self.pool.acquire(timeout=self.retry.deadline_s)
                conn = await cm.__aenter__()
            except Exception as exc:  # noqa: BLE001
                kind = classify(exc, sent=False)
                if kind is FailureKind.OTHER:
                    raise
                await self._failed(kind, exc, attempt)
                delay = self.retry.next_delay(kind, True, attempt, self._clock() - started)
                if delay is None:
                    raise _unavailable(kind, True) from exc
                await asyncio.sleep(delay)
                continue
            break
        body_done = False
        try:
            try:
                async with conn.transaction():
                    yield conn
                    body_done = True
            except Exception as exc:
                kind = classify(exc, sent=True)
                if kind is FailureKind.OTHER:
                    raise
                await self._failed(kind, exc)
                # failing before COMMIT was sent: rolled back, nothing applied; during COMMIT: unknown
                raise _unavailable(kind, not body_done) from exc
        finally:
            await cm.__aexit__(None, None, None)

    async def fetch(self, query: str, *args: Any, idempotent: bool | None = None) -> list[asyncpg.Record]:
        async def op(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(query, *args))
        return await self.run(op, idempotent=_idempotent(query, idempotent))

    async def fetchrow(self, query: str, *args: Any, idempotent: bool | None = None) -> asyncpg.Record | None:
        async def op(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(query, *args)
        return await self.run(op, idempotent=_idempotent(query, idempotent))

    async def fetchval(self, query: str, *args: Any, idempotent: bool | None = None) -> Any:
        async def op(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(query, *args)
        return await self.run(op, idempotent=_idempotent(query, idempotent))

    async def execute(self, query: str, *args: Any, idempotent: bool | None = None) -> str:
        async def op(conn: asyncpg.Connection) -> str:
            status: str = await conn.execute(query, *args)
            return status
        return await self.run(op, idempotent=_idempotent(query, idempotent))

    async def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            return bool(await self.pool.fetchval("SELECT 1", timeout=self.connect_timeout) == 1)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError):
            return False

    async def dedicated_connection(self) -> asyncpg.Connection:
        """A connection outside the pool (for LISTEN), with the same codecs."""
        conn = await asyncpg.connect(self.url, timeout=self.connect_timeout)
        await _init_connection(conn)
        return conn


def _idempotent(query: str, explicit: bool | None) -> bool:
    return is_read_only(query) if explicit is None else explicit


def _unavailable(kind: FailureKind, idempotent: bool) -> DatabaseUnavailable:
    unknown = kind is FailureKind.LOST and not idempotent
    return DatabaseUnavailable(
        "database connection lost while the command ran; it may or may not have been applied" if unknown
        else "no database node accepted the command within the failover bound", outcome_unknown=unknown)
