"""The append-only, hash-chained audit log: every login (also failed ones) and every state change.

The table refuses UPDATE and DELETE (a trigger), so the application cannot rewrite history. And
each row carries the SHA-256 of its predecessor's hash and its own contents, computed by the
database in the inserting transaction (core/migrations/0003_audit_chain.sql), so an edit, a
deletion or an inserted row is found by `verify_chain` (`commandcenter audit verify`) even when a
database superuser disabled the trigger to make it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.db import Database

GENESIS = bytes(32)  # prev_hash of the first row


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    source: str
    detail: dict[str, Any]


def _no_nul(value: Any) -> Any:
    """`value` with every NUL in its strings (dict keys too) replaced by the text ``\\u0000``."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nul(v) for v in value]
    return value


class AuditLog:
    """Writes and reads `audit_log` rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, actor: str, action: str, target: str = "", *, outcome: str = "ok",
                     source: str = "", detail: dict[str, Any] | None = None) -> int:
        """Append one entry; returns its id. `actor` is a username or a system component.

        NUL characters (which PostgreSQL text and jsonb cannot store) are written as the visible
        escape ``\\u0000``, so recording what a caller sent can never fail the write."""
        actor, action, target, outcome, source = (_no_nul(v) for v in (actor, action, target, outcome, source))
        entry_id = await self.db.fetchval(
            "INSERT INTO audit_log (actor, action, target, outcome, source, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            actor, action, target, outcome, source, _no_nul(detail or {}))
        return int(entry_id)

    async def recent(self, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
        """The newest entries first, optionally filtered by actor and/or action prefix."""
        rows = await self.db.fetch(
            "SELECT id, at, actor, action, target, outcome, source, detail FROM audit_log "
            "WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action LIKE $2 || '%') "
            "ORDER BY id DESC LIMIT $3",
            actor, action, limit)
        return [AuditEntry(**dict(r)) for r in rows]


def canonical_entry(entry_id: int, at_us: int, actor: str, action: str, target: str, outcome: str,
                    source: str, detail_text: str) -> bytes:
    """The bytes a row's hash covers (the same encoding as SQL `audit_row_hash`).

    `at_us` is microseconds since the epoch; `detail_text` is PostgreSQL's text form of the jsonb."""
    fields = (str(entry_id), str(at_us), actor, action, target, outcome, source, detail_text)
    return ("audit-v1," + "".join(f"{len(f.encode())}:{f}," for f in fields)).encode()


def entry_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the audit chain. `broken_id` names the first row that fails."""

    ok: bool
    rows: int
    last_id: int | None
    head_hash: str
    problem: str = ""
    broken_id: int | None = None

    def summary(self) -> str:
        if self.ok:
            return (f"audit log intact: {self.rows} rows, newest id {self.last_id}, head hash {self.head_hash}\n"
                    f"keep this anchor outside the database and check it later with: "
                    f"commandcenter audit verify --anchor {self.last_id}:{self.head_hash}")
        return f"audit log BROKEN at row {self.broken_id}: {self.problem} ({self.rows} rows checked before it)"


_CHAIN_ROWS = (
    "SELECT id, (extract(epoch FROM at) * 1000000)::bigint AS at_us, actor, action, target, outcome, source, "
    "detail::text AS detail_text, prev_hash, row_hash FROM audit_log ORDER BY id")


async def verify_chain(db: Database, anchors: dict[int, bytes] | None = None) -> ChainReport:
    """Recompute every row's hash and link, in id order, in one snapshot; stop at the first break.

    Edited: a row whose contents do not match its hash. Deleted (or a rewritten predecessor): a row
    whose prev_hash is not its predecessor's hash. Inserted: a row the next one skips (links past).
    Newest rows deleted: the chain head (audit_chain_head) names a later row than the table has.

    Someone who can write the database could recompute every hash from an edited row to the end,
    head included. `anchors` ({row id: row hash}, from an earlier summary kept outside the
    database) catch that: the anchored rows must still be there with those hashes.
    """
    anchors = dict(anchors or {})
    async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_chain_head WHERE id = 1")
        expected, before_expected = GENESIS, b""
        prev_id: int | None = None
        before_prev_id: int | None = None
        rows = 0

        def broken(row_id: int, problem: str) -> ChainReport:
            return ChainReport(False, rows, prev_id, expected.hex(), problem, row_id)

        async for r in conn.cursor(_CHAIN_ROWS, prefetch=1000):
            row_id = int(r["id"])
            prev_hash, row_hash = r["prev_hash"], r["row_hash"]
            if prev_hash is None or row_hash is None:
                return broken(row_id, "row has no hash: written with the chain bypassed (inserted)")
            canonical = canonical_entry(row_id, int(r["at_us"]), r["actor"], r["action"], r["target"],
                                        r["outcome"], r["source"], r["detail_text"])
            if entry_hash(bytes(prev_hash), canonical) != bytes(row_hash):
                return broken(row_id, "contents do not match the row's hash (edited)")
            if bytes(prev_hash) != expected:
                if prev_id is not None and bytes(prev_hash) == before_expected:
                    return ChainReport(False, rows - 1, before_prev_id, before_expected.hex(),
                                       f"row is not in the chain (inserted): row {row_id} links to "
                                       f"{'the start' if before_prev_id is None else f'row {before_prev_id}'}",
                                       prev_id)
                where = "the start" if prev_id is None else f"row {prev_id}"
                return broken(row_id, f"does not link to {where}: rows between {where} and row {row_id} "
                                      f"were deleted{'' if prev_id is None else f', or row {prev_id} was rewritten'}")
            if row_id in anchors and anchors.pop(row_id) != bytes(row_hash):
                return broken(row_id, "does not match its anchor: the chain was rewritten up to here")
            before_expected, before_prev_id = expected, prev_id
            expected, prev_id = bytes(row_hash), row_id
            rows += 1
    if anchors:
        missing = min(anchors)
        return ChainReport(False, rows, prev_id, expected.hex(), "an anchored row is missing (deleted)", missing)
    if head is None:
        return ChainReport(False, rows, prev_id, expected.hex(), "the chain head (audit_chain_head) is missing", None)
    if head["last_id"] != prev_id or bytes(head["last_hash"]) != expected:
        problem = (f"the chain head names row {head['last_id']}, the newest row is {prev_id}: "
                   "the newest rows were deleted, or the head was rewritten")
        return ChainReport(False, rows, prev_id, expected.hex(), problem,
                           head["last_id"] if head["last_id"] is not None else prev_id)
    return ChainReport(True, rows, prev_id, expected.hex())
