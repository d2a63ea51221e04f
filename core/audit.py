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


class AuditLog:
    """Writes and reads `audit_log` rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, actor: str, action: str, target: str = "", *, outcome: str = "ok",
                     source: str = "", detail: dict[str, Any] | None = None) -> int:
        """Append one entry; returns its id. `actor` is a username or a system component."""
        entry_id = await self.db.fetchval(
            "INSERT INTO audit_log (actor, action, target, outcome, source, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            actor, action, target, outcome, source, detail or {})
        return int(entry_id)

    async def recent(self, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
        """The newest entries first, optionally filtered by actor and/or action prefix."""
        rows = await self.db.fetch(
            "SELECT id, at, actor, action, target, outcome, source, detail FROM audit_log "
            "WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action LIKE $2 || '%') "
            "ORDER BY id DESC LIMIT $3",
            actor, action, limit)
        return [AuditEntry(**dict(r)) for r in rows]
