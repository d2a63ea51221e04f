"""The asyncpg connection pool every service shares."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come back as Python objects, and go in from them.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=lambda v: json.dumps(v, ensure_ascii=False), decoder=json.loads,
            schema="pg_catalog",
        )


class Database:
    """A thin holder of an asyncpg pool, with the URL it came from."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def connect(self, min_size: int = 1, max_size: int = 10) -> None:
        """Open the pool. Raises on an unreachable database."""
        self._pool = await asyncpg.create_pool(
            self.url, min_size=min_size, max_size=max_size, init=_init_connection
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

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside a transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        status: str = await self.pool.execute(query, *args)
        return status

    async def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            return bool(await self.fetchval("SELECT 1") == 1)
        except (OSError, asyncpg.PostgresError, RuntimeError):
            return False

    async def dedicated_connection(self) -> asyncpg.Connection:
        """A connection outside the pool (for LISTEN), with the same codecs."""
        conn = await asyncpg.connect(self.url)
        await _init_connection(conn)
        return conn
