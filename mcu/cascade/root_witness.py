"""The shared database as the witness of the cascade's root lease (`root_lease.RootLease`, issue 17).

Every time is compared in SQL on the database's clock (``now()``): the lease's expiry, and the
instants the standby city node stamps a county's arrival with (`now_epoch`), which it compares with
the bus's ``at`` of the city's announcements (also the database's ``now()``).
"""
from __future__ import annotations

from core.db import Database
from noderpc.lease import RENEW

RELEASE = ("UPDATE rpc_leases SET expires_at = now() - interval '1 second' "
           "WHERE name = $1 AND holder = $2 AND expires_at > now()")


class DatabaseWitness:
    """`RootWitness` over the node's database (table ``rpc_leases``, noderpc migration 0002)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def renew(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``holder``; False when another holds it (raises when the
        database does not answer)."""
        return await self.db.fetchval(RENEW, name, holder, ttl) is not None

    async def release(self, name: str, holder: str) -> None:
        await self.db.execute(RELEASE, name, holder)

    async def now_epoch(self) -> float:
        """The database's clock (seconds since the epoch)."""
        return float(await self.db.fetchval("SELECT extract(epoch FROM now())::float8"))


__all__ = ["DatabaseWitness", "RELEASE"]
