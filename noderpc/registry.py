"""Heartbeats and pins in PostgreSQL (the asyncio adapter of `noderpc.pinning`).

Every node registers itself in ``rpc_nodes`` and touches ``last_seen`` every ``heartbeat_s``; on
each beat it also makes its pins in ``rpc_pins`` match what it hosts (asked of its `HostedItems`),
so a room started or ended on this node is found within one heartbeat. Times are the database's
``now()``, so every node judges liveness on one clock. A clean stop marks the node stopped and
drops its pins at once; a crash is noticed after ``dead_after_s``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from core.db import Database

from .pinning import KINDS, LivenessRule, NodeInfo, Owner, live_nodes, may_take_over, owner_of, pin_changes

log = logging.getLogger(__name__)

KEEP_REQUESTS_S = 3600.0


class HostedItems(Protocol):
    """What this node hosts right now: kind ("room", "call", "recording") → keys."""

    def hosted(self) -> Mapping[str, Sequence[str]]: ...


def _node(row: Mapping[str, object]) -> NodeInfo:
    return NodeInfo(str(row["node_id"]), str(row["role"]), str(row["base_url"]), float(row["last_seen"]),  # type: ignore[arg-type]
                    bool(row["stopped"]))


class Registry:
    """This node's row and pins, and look-ups of other nodes' ones."""

    def __init__(self, db: Database, node_id: str, role: str, base_url: str, rule: LivenessRule,
                 predecessor: str | None = None) -> None:
        self.db = db
        self.node_id = node_id
        # The id of this node's previous run (same var dir): it is dead by definition, even while its
        # last heartbeat still looks fresh, so what it hosted is recovered at once, not held "elsewhere".
        self.predecessor = predecessor if predecessor != node_id else None
        self.role = role
        self.base_url = base_url
        self.rule = rule
        self.sources: list[HostedItems] = []
        self._task: asyncio.Task[None] | None = None

    def add_source(self, source: HostedItems) -> None:
        """Pin what `source` hosts, from the next heartbeat on."""
        self.sources.append(source)

    async def start(self) -> None:
        await self.db.execute(
            "INSERT INTO rpc_nodes (node_id, role, base_url) VALUES ($1,$2,$3) ON CONFLICT (node_id) DO UPDATE "
            "SET role = EXCLUDED.role, base_url = EXCLUDED.base_url, last_seen = now(), stopped = false",
            self.node_id, self.role, self.base_url)
        if self.predecessor is not None:
            await self.db.execute("UPDATE rpc_nodes SET stopped = true WHERE node_id = $1", self.predecessor)
        self._task = asyncio.create_task(self._beat_loop(), name="noderpc-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):  # the database may be gone already
            await self.db.execute("DELETE FROM rpc_pins WHERE node_id = $1", self.node_id)
            await self.db.execute("UPDATE rpc_nodes SET stopped = true WHERE node_id = $1", self.node_id)

    async def _beat_loop(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:  # noqa: BLE001 - a failed beat (database failover) must not end the loop
                log.warning("node heartbeat failed", exc_info=True)
            await asyncio.sleep(self.rule.heartbeat_s)

    async def beat(self) -> None:
        """Touch ``last_seen`` and bring the pins in line with what this node hosts."""
        await self.db.execute("UPDATE rpc_nodes SET last_seen = now(), stopped = false WHERE node_id = $1",
                              self.node_id)
        hosted: dict[str, set[str]] = {kind: set() for kind in KINDS}
        for source in self.sources:
            for kind, items in source.hosted().items():
                hosted.setdefault(kind, set()).update(items)
        rows = await self.db.fetch("SELECT kind, key FROM rpc_pins WHERE node_id = $1", self.node_id)
        for kind, wanted in hosted.items():
            add, drop = pin_changes(wanted, [r["key"] for r in rows if r["kind"] == kind])
            for key in sorted(add):
                await self.pin(kind, key)
            if drop:
                await self.db.execute("DELETE FROM rpc_pins WHERE node_id = $1 AND kind = $2 AND key = ANY($3)",
                                      self.node_id, kind, sorted(drop))
        await self.db.execute("DELETE FROM rpc_requests WHERE sender = $1 AND created_at < now() - make_interval("
                              "secs => $2)", self.node_id, KEEP_REQUESTS_S)

    async def pin(self, kind: str, key: str) -> bool:
        """Pin (kind, key) to this node unless a live node holds it; True when this node holds it now."""
        async with self.db.transaction() as conn:
            now = float(await conn.fetchval("SELECT extract(epoch FROM now())"))
            row = await conn.fetchrow(
                "SELECT n.node_id, n.role, n.base_url, extract(epoch FROM n.last_seen) AS last_seen, n.stopped "
                "FROM rpc_pins p JOIN rpc_nodes n USING (node_id) WHERE p.kind = $1 AND p.key = $2 FOR UPDATE OF p",
                kind, key)
            current = _node(row) if row is not None else None
            if not may_take_over(current, self.node_id, now, self.rule):
                log.warning("%s %s is hosted by live node %s; not pinned here", kind, key,
                            current.node_id if current else "?")
                return False
            await conn.execute(
                "INSERT INTO rpc_pins (kind, key, node_id) VALUES ($1,$2,$3) ON CONFLICT (kind, key) "
                "DO UPDATE SET node_id = EXCLUDED.node_id, pinned_at = now()", kind, key, self.node_id)
        return True

    async def now(self) -> float:
        """The database's clock, the one every node's liveness is judged on."""
        return float(await self.db.fetchval("SELECT extract(epoch FROM now())"))

    async def nodes(self) -> list[NodeInfo]:
        rows = await self.db.fetch("SELECT node_id, role, base_url, extract(epoch FROM last_seen) AS last_seen, "
                                   "stopped FROM rpc_nodes")
        return [_node(r) for r in rows]

    async def owner(self, kind: str, key: str) -> Owner:
        """Who hosts (kind, key), and whether that node is alive."""
        rows = await self.db.fetch(
            "SELECT n.node_id, n.role, n.base_url, extract(epoch FROM n.last_seen) AS last_seen, n.stopped "
            "FROM rpc_pins p JOIN rpc_nodes n USING (node_id) WHERE p.kind = $1 AND p.key = $2", kind, key)
        nodes = {r["node_id"]: _node(r) for r in rows}
        pins = {(kind, key): str(rows[0]["node_id"])} if rows else {}
        return owner_of(kind, key, pins, nodes, await self.now(), self.rule)

    async def alive(self, role: str | None = None) -> list[NodeInfo]:
        return live_nodes(await self.nodes(), await self.now(), self.rule, role)
