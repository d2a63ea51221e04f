"""`deck_uploads` (mcu migration 0003): a row is taken once, by its conference only, and never kept."""
from __future__ import annotations

from typing import Any

import asyncpg

from core.db import apply_migrations
from mcu.content.deck_upload import DeckUpload, DeckUploads


class Conn:
    """An asyncpg connection as the `Rows` the store declares."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetchval(self, query: str, *args: Any, idempotent: bool | None = None) -> Any:
        return await self.conn.fetchval(query, *args)

    async def fetchrow(self, query: str, *args: Any, idempotent: bool | None = None) -> Any:
        return await self.conn.fetchrow(query, *args)

    async def execute(self, query: str, *args: Any, idempotent: bool | None = None) -> str:
        return str(await self.conn.execute(query, *args))


async def test_an_upload_is_taken_once_by_its_conference(fresh_db_url: str) -> None:
    conn = await asyncpg.connect(fresh_db_url)
    try:
        await apply_migrations(conn)
        uploads = DeckUploads(Conn(conn))
        data = bytes(range(256)) * 4096  # 1 MiB, every byte value
        row = await uploads.put(DeckUpload("80000001", "汇报.pdf", "chair", data))
        assert await uploads.take(row, "80000002") is None, "another conference's upload is not handed out"
        taken = await uploads.take(row, "80000001")
        assert taken == DeckUpload("80000001", "汇报.pdf", "chair", data)
        assert await uploads.take(row, "80000001") is None, "taken once"

        left = await uploads.put(DeckUpload("80000001", "x.png", "chair", b"\x89PNG"))
        await uploads.drop(left)
        await uploads.drop(left)  # idempotent
        stale = await uploads.put(DeckUpload("80000001", "old.png", "chair", b"\x89PNG"))
        await conn.execute("UPDATE deck_uploads SET created_at = now() - interval '2 hours' WHERE id = $1", stale)
        fresh = await uploads.put(DeckUpload("80000001", "new.png", "chair", b"\x89PNG"))  # purges the stale one
        assert [r["id"] for r in await conn.fetch("SELECT id FROM deck_uploads")] == [fresh]
    finally:
        await conn.close()
