"""A lease in PostgreSQL: one holder per name at a time, kept by renewing it (the desk's leadership).

Rules (``LeaseRule``; the pure part is ``valid_until``):

* The holder renews every ``renew_s``; a renewal sets ``expires_at = now() + ttl_s`` on the
  database's clock. Anyone may take the lease only once it has expired (or it was released).
  So at most one node holds it by the database's clock.
* A holder believes it holds the lease only until ``t0 + ttl_s`` on its *own monotonic clock*, where
  ``t0`` is when it *sent* its last successful renewal: the database set the expiry later than
  that, so the holder's belief always ends before the database lets anyone else in (clock rates
  assumed equal). A process that was stopped (SIGSTOP, a long GC, a hung VM) or cut off from the
  database stops believing it is the holder when its own clock passes that point, before it does
  anything else: the fence. `held()` is that check; callers ask it before every act of a holder.
* Why not ``pg_advisory_lock``: a session lock lives as long as the session. A process that is
  stopped but not dead keeps its TCP connection, so the lock would never pass to the standby; and a
  holder cut off from the database cannot know the server released it. A lease expires by itself.
* A clean stop releases the lease (the standby takes it at its next attempt).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.db import Database

log = logging.getLogger(__name__)

RENEW = """
INSERT INTO rpc_leases (name, holder, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
    epoch = rpc_leases.epoch + CASE WHEN rpc_leases.holder = EXCLUDED.holder THEN 0 ELSE 1 END,
    acquired_at = CASE WHEN rpc_leases.holder = EXCLUDED.holder THEN rpc_leases.acquired_at ELSE now() END
WHERE rpc_leases.holder = EXCLUDED.holder OR rpc_leases.expires_at < now()
RETURNING epoch
"""


@dataclass(frozen=True)
class LeaseRule:
    ttl_s: float = 10.0
    renew_s: float = 2.0

    def __post_init__(self) -> None:
        if self.renew_s <= 0 or self.ttl_s <= self.renew_s:
            raise ValueError("ttl_s must exceed renew_s > 0")


def valid_until(sent_at: float, rule: LeaseRule) -> float:
    """Until when (holder's monotonic clock) a renewal sent at `sent_at` that succeeded lets it act."""
    return sent_at + rule.ttl_s


Changed = Callable[[bool], Awaitable[None]]


class Lease:
    """This node's attempt to hold lease `name`; `held()` before every act of the holder."""

    def __init__(self, db: Database, name: str, holder: str, rule: LeaseRule,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.rule = rule
        self.clock = clock
        self.epoch = 0
        self._until = 0.0
        self._believed = False
        self.listeners: list[Changed] = []
        self._task: asyncio.Task[None] | None = None

    def held(self) -> bool:
        return self.clock() < self._until

    async def attempt(self) -> bool:
        """One renewal (or acquisition) attempt; whether this node holds the lease now."""
        sent = self.clock()
        try:
            epoch = await self.db.fetchval(RENEW, self.name, self.holder, self.rule.ttl_s)
        except Exception:  # noqa: BLE001 - the database is away: the lease lapses by itself
            log.warning("lease %s: renewal failed", self.name, exc_info=True)
            epoch = None
        if epoch is not None:
            self.epoch = int(epoch)
            self._until = valid_until(sent, self.rule)
        else:
            self._until = 0.0
        await self._notice()
        return self.held()

    async def _notice(self) -> None:
        now_held = self.held()
        if now_held != self._believed:
            self._believed = now_held
            log.warning("lease %s %s by %s (epoch %d)", self.name, "acquired" if now_held else "lost", self.holder,
                        self.epoch)
            for listener in list(self.listeners):
                try:
                    await listener(now_held)
                except Exception:  # noqa: BLE001 - one listener must not stop the lease
                    log.exception("lease %s listener failed", self.name)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"lease-{self.name}")

    async def _loop(self) -> None:
        while True:
            await self.attempt()
            # wake at the next renewal, or when the belief runs out, whichever is first
            await asyncio.sleep(max(0.05, min(self.rule.renew_s, self._until - self.clock()
                                              if self.held() else self.rule.renew_s)))

    async def stop(self) -> None:
        """Stop renewing and release the lease if held (a clean stop hands over at once)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._until:
            self._until = 0.0
            with contextlib.suppress(Exception):
                await self.db.execute("UPDATE rpc_leases SET expires_at = now() - interval '1 second' "
                                      "WHERE name = $1 AND holder = $2", self.name, self.holder)  # epoch kept


async def lease_holder(db: Database, name: str) -> str | None:
    """Who holds lease `name` now (database clock), for the nodes that route to it."""
    value = await db.fetchval("SELECT holder FROM rpc_leases WHERE name = $1 AND expires_at > now()", name)
    return None if value is None else str(value)


__all__ = ["Lease", "LeaseRule", "lease_holder", "valid_until"]
