"""Which unit a field responder's login is the crew of (table ``unit_crew_logins``).

A console user of role ``responder`` is bound to exactly one unit; the field page shows that unit's
assignment and changes only that unit. Bindings come from the site plan's users (``unit = ...``,
seeded at start for logins without a binding: an administrator's rebinding is kept, an unbinding of a
login the plan binds lasts until the next start) or from an administrator.
"""
from __future__ import annotations

from collections.abc import Iterable

from core.db import Database


class CrewRoster:
    """Logins bound to units, read from PostgreSQL on every ask (a rebinding takes effect at once)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def seed(self, bindings: Iterable[tuple[str, str]]) -> int:
        """Bind ``(username, unit_id)`` pairs that are not bound yet; returns how many were added."""
        added = 0
        async with self.db.transaction() as conn:
            for username, unit_id in bindings:
                status = await conn.execute(
                    "INSERT INTO unit_crew_logins (username, unit_id, bound_by) VALUES ($1, $2, 'site-plan') "
                    "ON CONFLICT (username) DO NOTHING", username, unit_id)
                added += status.endswith(" 1")
        return added

    async def unit_of(self, username: str) -> str | None:
        unit: str | None = await self.db.fetchval(
            "SELECT unit_id FROM unit_crew_logins WHERE username = $1", username)
        return unit

    async def bind(self, username: str, unit_id: str, actor: str) -> None:
        """Bind (or rebind) a login to a unit; the caller checks that both exist."""
        await self.db.execute(
            "INSERT INTO unit_crew_logins (username, unit_id, bound_by) VALUES ($1, $2, $3) "
            "ON CONFLICT (username) DO UPDATE SET unit_id = $2, bound_by = $3, bound_at = now()",
            username, unit_id, actor)

    async def unbind(self, username: str) -> bool:
        status: str = await self.db.execute("DELETE FROM unit_crew_logins WHERE username = $1", username)
        return status.endswith(" 1")
