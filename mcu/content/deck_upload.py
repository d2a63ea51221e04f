"""Slide-deck uploads in transit between nodes (table ``deck_uploads``, mcu migration 0003).

A `--role web` node cannot hand a deck of several MB to the node that hosts the conference over
node RPC (its arguments are small signed JSON, `noderpc.envelope.MAX_ARGS_BYTES`): it checks the
upload, `put`s it here and sends the row's id; the hosting node `take`s it (read and deleted in one
statement, so a row is used at most once) and renders it. The web node `drop`s the row once the call
ended whatever its outcome (a hosting node that died before taking it leaves nothing behind), and
`purge` removes rows older than an hour (a web node that died between `put` and `drop`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Rows(Protocol):
    async def fetchval(self, query: str, *args: Any, idempotent: bool | None = None) -> Any: ...

    async def fetchrow(self, query: str, *args: Any, idempotent: bool | None = None) -> Any: ...

    async def execute(self, query: str, *args: Any, idempotent: bool | None = None) -> str: ...


@dataclass(frozen=True)
class DeckUpload:
    conference_id: str
    name: str
    uploaded_by: str
    data: bytes


class DeckUploads:
    """The ``deck_uploads`` table."""

    def __init__(self, db: Rows) -> None:
        self.db = db

    async def put(self, upload: DeckUpload) -> int:
        await self.purge()
        row_id: int = await self.db.fetchval(
            "INSERT INTO deck_uploads (conference_id, name, uploaded_by, data) VALUES ($1, $2, $3, $4) RETURNING id",
            upload.conference_id, upload.name, upload.uploaded_by, upload.data)
        return row_id

    async def take(self, row_id: int, conference_id: str) -> DeckUpload | None:
        """The upload `row_id` for `conference_id`, deleted as it is read (None: gone or another conference's)."""
        row = await self.db.fetchrow("DELETE FROM deck_uploads WHERE id = $1 AND conference_id = $2 "
                                     "RETURNING conference_id, name, uploaded_by, data", row_id, conference_id)
        if row is None:
            return None
        return DeckUpload(row["conference_id"], row["name"], row["uploaded_by"], bytes(row["data"]))

    async def drop(self, row_id: int) -> None:
        await self.db.execute("DELETE FROM deck_uploads WHERE id = $1", row_id, idempotent=True)

    async def purge(self) -> None:
        await self.db.execute("DELETE FROM deck_uploads WHERE created_at < now() - interval '1 hour'",
                              idempotent=True)
