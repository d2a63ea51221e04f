"""The event bus: typed events, in-process publish/subscribe, and delivery across processes.

In one process, `publish` hands the event to every matching subscriber at once. When the bus is
attached to the database, the event is also inserted into `events` and a NOTIFY on channel
`cc_events` carries its id; every other process LISTENs, reads the row (the row is the payload)
and delivers it to its own subscribers. A slow subscriber loses its oldest events rather than
slowing the publisher down (its `dropped` counter says how many).
"""
from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import asyncpg

from config.roles import Role
from core.db import Database

log = logging.getLogger(__name__)

CHANNEL = "cc_events"

# Which roles may see events of a topic family (the part before the first dot). Admins see all.
TOPIC_AUDIENCE: dict[str, frozenset[Role]] = {
    "conference": frozenset({Role.CHAIR, Role.OPERATOR, Role.VIEWER}),
    "cascade": frozenset({Role.CHAIR, Role.OPERATOR, Role.VIEWER}),  # path switches of cascade links
    "call": frozenset({Role.CALLTAKER, Role.DISPATCHER}),
    "incident": frozenset({Role.CALLTAKER, Role.DISPATCHER, Role.CHAIR}),
    "unit": frozenset({Role.CALLTAKER, Role.DISPATCHER}),
    "resource": frozenset({Role.CALLTAKER, Role.DISPATCHER, Role.CHAIR}),  # allocations and stock
    "plan": frozenset({Role.DISPATCHER, Role.CHAIR}),  # response plans: activations, levels, tasks
    "recording": frozenset({Role.INSPECTOR}),
    "user": frozenset(),
    "system": frozenset({Role.CHAIR, Role.OPERATOR, Role.CALLTAKER, Role.DISPATCHER, Role.INSPECTOR, Role.VIEWER}),
}


def visible_to(topic: str, role: Role | str) -> bool:
    """Whether a user with `role` may receive events on `topic` (unknown families: admin only)."""
    if Role(role) is Role.ADMIN:
        return True
    return Role(role) in TOPIC_AUDIENCE.get(topic.split(".", 1)[0], frozenset())


@dataclass(frozen=True)
class Event:
    """One thing that happened. `topic` is dotted, e.g. ``conference.layout_changed``."""

    topic: str
    payload: dict[str, Any]
    id: int | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    origin: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "at": self.at.isoformat(), "payload": self.payload}

    @cached_property
    def json_text(self) -> str:
        """The event as JSON text, encoded once however many consoles receive it."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))


class Subscription:
    """A bounded queue of events matching a glob pattern (``conference.*``)."""

    def __init__(self, bus: Bus, pattern: str, maxsize: int) -> None:
        self._bus = bus
        self.pattern = pattern
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def matches(self, topic: str) -> bool:
        return fnmatch.fnmatchcase(topic, self.pattern)

    def _offer(self, event: Event) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def close(self) -> None:
        self._bus._subscriptions.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()


class Bus:
    """Publish/subscribe within a process, and across processes once `attach`ed to a database."""

    def __init__(self, node_id: str | None = None) -> None:
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._subscriptions: set[Subscription] = set()
        self._db: Database | None = None
        self._listener: asyncpg.Connection | None = None
        self._incoming: asyncio.Queue[int] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None

    def subscribe(self, pattern: str = "*", maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, pattern, maxsize)
        self._subscriptions.add(sub)
        return sub

    def deliver_local(self, topic: str, payload: dict[str, Any]) -> Event:
        """Deliver to this process's subscribers only: for frequent, disposable events (audio levels)."""
        event = Event(topic, payload, origin=self.node_id)
        self._deliver(event)
        return event

    def _deliver(self, event: Event) -> None:
        for sub in list(self._subscriptions):
            if sub.matches(event.topic):
                sub._offer(event)

    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> Event:
        """Deliver an event here, and (when attached) persist it and notify other processes."""
        payload = payload or {}
        event = Event(topic, payload, origin=self.node_id)
        if self._db is not None:
            row = await self._db.fetchrow(
                "WITH e AS (INSERT INTO events (topic, origin, payload) VALUES ($1, $2, $3) RETURNING id, at) "
                "SELECT id, at, pg_notify($4, id::text) FROM e",
                topic, self.node_id, payload, CHANNEL)
            assert row is not None
            event = Event(topic, payload, row["id"], row["at"], self.node_id)
        self._deliver(event)
        return event

    async def attach(self, db: Database, keep_hours: float = 72.0, prune_every: float = 300.0) -> None:
        """Persist events in `db`, receive those published by other processes, prune old rows.

        Events are a transport, not the record (that is the audit log and each capability's own
        tables), so rows older than `keep_hours` are deleted every `prune_every` seconds (0: only
        when `prune` is called).
        """
        self._db = db
        self._listener = await db.dedicated_connection()
        await self._listener.add_listener(CHANNEL, self._on_notify)
        self._reader = asyncio.create_task(self._read_incoming(), name="bus-reader")
        if prune_every > 0:
            self._pruner = asyncio.create_task(self._prune_loop(keep_hours, prune_every), name="bus-pruner")

    async def prune(self, keep_hours: float) -> int:
        """Delete persisted events older than `keep_hours`; returns how many."""
        assert self._db is not None
        status = await self._db.execute(
            "DELETE FROM events WHERE at < now() - make_interval(secs => $1)", keep_hours * 3600.0)
        return int(status.split()[-1])

    async def _prune_loop(self, keep_hours: float, every: float) -> None:
        while True:
            try:
                await self.prune(keep_hours)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("bus: pruning events failed: %s", exc)
            await asyncio.sleep(every)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._incoming.put_nowait(int(payload))

    async def _read_incoming(self) -> None:
        assert self._db is not None
        while True:
            event_id = await self._incoming.get()
            try:
                row = await self._db.fetchrow(
                    "SELECT id, at, topic, origin, payload FROM events WHERE id = $1", event_id)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("bus: could not read event %s: %s", event_id, exc)
                continue
            if row is None or row["origin"] == self.node_id:
                continue  # our own events were delivered when published
            self._deliver(Event(row["topic"], row["payload"], row["id"], row["at"], row["origin"]))

    async def detach(self) -> None:
        for task in (self._reader, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reader = self._pruner = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        self._db = None
