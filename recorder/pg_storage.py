"""`LogStorage` on PostgreSQL (tables from recorder/migrations/0001_recorder.sql)."""

from __future__ import annotations

import json

import asyncpg

from core.db import Database
from recorder.transparency_log import LeafConflict
from recorder.tree_head import SignedTreeHead


class PgLogStorage:
    """Leaves and heads in `recorder_log_leaves` / `recorder_tree_heads` (both append-only)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load_leaves(self, log_id: str, start: int = 0) -> list[bytes]:
        rows = await self.db.fetch(
            "SELECT idx, data FROM recorder_log_leaves WHERE log_id = $1 AND idx >= $2 ORDER BY idx", log_id, start
        )
        leaves: list[bytes] = []
        for expected, row in enumerate(rows, start):
            if row["idx"] != expected:
                break  # a hole (leaf removed): the tree ends here and the head check reports it
            leaves.append(bytes(row["data"]))
        return leaves

    async def append_leaf(self, log_id: str, index: int, data: bytes, leaf_hash: bytes) -> None:
        body = json.loads(data)
        try:
            await self.db.execute(
                "INSERT INTO recorder_log_leaves (log_id, idx, data, leaf_hash, kind, body) VALUES ($1,$2,$3,$4,$5,$6)",
                log_id, index, data, leaf_hash, body["kind"], body,
            )
        except asyncpg.UniqueViolationError as exc:
            raise LeafConflict(f"leaf {index} of {log_id} already exists") from exc

    async def leaf(self, log_id: str, index: int) -> bytes:
        data = await self.db.fetchval(
            "SELECT data FROM recorder_log_leaves WHERE log_id = $1 AND idx = $2", log_id, index
        )
        if data is None:
            raise KeyError(f"no leaf {index} in log {log_id}")
        return bytes(data)

    async def save_head(self, sth: SignedTreeHead) -> None:
        await self.db.execute(
            "INSERT INTO recorder_tree_heads (log_id, tree_size, root_hash, timestamp_ms, key_id, signature) "
            "VALUES ($1,$2,$3,$4,$5,$6)",
            sth.log_id, sth.tree_size, sth.root_hash, sth.timestamp_ms, sth.key_id, sth.signature,
        )

    async def latest_head(self, log_id: str) -> SignedTreeHead | None:
        row = await self.db.fetchrow(
            "SELECT log_id, tree_size, root_hash, timestamp_ms, key_id, signature FROM recorder_tree_heads "
            "WHERE log_id = $1 ORDER BY id DESC LIMIT 1", log_id,
        )
        return None if row is None else _head(row)

    async def heads(self, log_id: str, limit: int = 100) -> list[SignedTreeHead]:
        """The newest heads first."""
        rows = await self.db.fetch(
            "SELECT log_id, tree_size, root_hash, timestamp_ms, key_id, signature FROM recorder_tree_heads "
            "WHERE log_id = $1 ORDER BY id DESC LIMIT $2", log_id, limit,
        )
        return [_head(r) for r in rows]


def _head(row: asyncpg.Record) -> SignedTreeHead:
    return SignedTreeHead(
        row["log_id"], int(row["tree_size"]), bytes(row["root_hash"]), int(row["timestamp_ms"]),
        row["key_id"], bytes(row["signature"]),
    )
