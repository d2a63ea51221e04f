"""The append-only audit log: every login (also failed ones) and every state change.

The table refuses UPDATE and DELETE (a trigger), so the application cannot rewrite history.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.db import Database


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
