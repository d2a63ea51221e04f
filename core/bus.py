"""The event bus: typed events, in-process publish/subscribe, and delivery across processes.

In one process, `publish` hands the event to every matching subscriber at once. When the bus is
attached to the database, the event is also inserted into `events` and a NOTIFY on channel
`cc_events` carries its id; every other process LISTENs, reads the row (the row is the payload)
and delivers it to its own subscribers. A slow subscriber loses its oldest events rather than
slowing the publisher down (its `dropped` counter says how many).

Across a database failover (issue 17) no event is lost or doubled:
- `publish` carries a random key, so re-running it after a lost connection inserts the row once
  (the pool retries it as an idempotent write); its id comes from the events sequence, which only
  increases, also on a promoted standby.
- The LISTEN connection is supervised: when it dies (or stops answering its keep-alive), the bus
  connects again through the multi-host URL (so to the new primary), LISTENs, and replays from the
  events table every id above its `EventCursor` horizon; it also replays every `replay_every`
  seconds, which catches ids that committed out of order. The cursor (core/event_cursor.py)
  delivers each id once, whichever path (publish, NOTIFY, replay) brings it first.

The outbox (`publish_in`): a write whose event must not be lost (an incident created, units sent)
inserts the event row and its NOTIFY inside the caller's own transaction, so a failover between the
write and the event cannot leave one without the other: both commit or neither does (NOTIFY is sent
only at commit). After the commit the caller hands the event to `deliver_committed` for local
subscribers at once; if it never does (the commit's outcome was unknown), the NOTIFY or the next
replay delivers it, once.
"""
from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import asyncpg

from config.roles import Role
from core.db import Database, DatabaseUnavailable
from core.event_cursor import EventCursor
from core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL = "cc_events"
# What ends a LISTEN connection or a replay during a failover (anything else is a bug and is logged).
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, DatabaseUnavailable)

# Which roles may see events of a topic family (the part before the first dot). Admins see all.
TOPIC_AUDIENCE: dict[str, frozenset[Role]] = {
    "conference": frozenset({Role.CHAIR, Role.OPERATOR, Role.VIEWER, Role.LEADER}),
    "cascade": frozenset({Role.CHAIR, Role.OPERATOR, Role.VIEWER}),  # path switches of cascade links
    "call": frozenset({Role.CALLTAKER, Role.DISPATCHER}),  # callers' numbers and places: not the leader
    "incident": frozenset({Role.CALLTAKER, Role.DISPATCHER, Role.CHAIR, Role.LEADER}),
    "unit": frozenset({Role.CALLTAKER, Role.DISPATCHER, Role.CHAIR, Role.LEADER}),
    "resource": frozenset({Role.CALLTAKER, Role.DISPATCHER, Role.CHAIR, Role.LEADER}),  # allocations and stock
    "plan": frozenset({Role.DISPATCHER, Role.CHAIR, Role.LEADER}),  # response plans: activations, levels, tasks
    "recording": frozenset({Role.INSPECTOR}),
    "warning": frozenset({Role.DISPATCHER, Role.CHAIR, Role.LEADER}),  # public warnings (issue 20)
    "monitoring": frozenset({Role.DISPATCHER, Role.CHAIR, Role.LEADER}),  # gauges, alarms (the flood desk is a dispatcher)
    "sms": frozenset({Role.DISPATCHER, Role.CHAIR, Role.LEADER}),  # SMS queued/status (issue 20: the /sms console)
    "user": frozenset(),
    "system": frozenset({Role.CHAIR, Role.OPERATOR, Role.CALLTAKER, Role.DISPATCHER, Role.INSPECTOR, Role.VIEWER,
                         Role.LEADER}),
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


def _setter(flag: asyncio.Event) -> Any:
    """A termination listener that sets `flag`."""
    return lambda _conn: flag.set()


class Bus:
    """Publish/subscribe within a process, and across processes once `attach`ed to a database."""

    def __init__(self, node_id: str | None = None) -> None:
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._subscriptions: set[Subscription] = set()
        self._db: Database | None = None
        self._listener: asyncpg.Connection | None = None
        self._incoming: asyncio.Queue[int] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._cursor: EventCursor | None = None
        self._clock = time.monotonic
        self.listening = asyncio.Event()  # set while a LISTEN connection is up
        self.resubscriptions = 0  # LISTEN connections made after the first (failovers survived)
        self.replayed = 0  # events delivered by a replay rather than by their NOTIFY

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

    def _deliver_once(self, event: Event) -> bool:
        """Deliver a persisted event unless this process already did (publish, NOTIFY or replay)."""
        assert event.id is not None
        if self._cursor is not None and not self._cursor.accept(event.id, self._clock()):
            return False
        self._deliver(event)
        return True

    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> Event:
        """Deliver an event here, and (when attached) persist it and notify other processes.

        Attached, it is retried across a failover (keyed, so stored once) and raises
        `DatabaseUnavailable` when no database node takes it within the failover bound."""
        payload = payload or {}
        event = Event(topic, payload, origin=self.node_id)
        if self._db is not None:
            row = await self._db.fetchrow(
                "WITH e AS (INSERT INTO events (topic, origin, payload, key) VALUES ($1, $2, $3, $5) "
                "ON CONFLICT (key) WHERE key IS NOT NULL DO UPDATE SET key = EXCLUDED.key RETURNING id, at) "
                "SELECT id, at, pg_notify($4, id::text) FROM e",
                topic, self.node_id, payload, CHANNEL, uuid.uuid4(), idempotent=True)
            assert row is not None
            event = Event(topic, payload, row["id"], row["at"], self.node_id)
            self._deliver_once(event)
            return event
        self._deliver(event)
        return event

    async def publish_in(self, conn: asyncpg.Connection, topic: str, payload: dict[str, Any] | None = None) -> Event:
        """Store the event (and its NOTIFY) inside the caller's open transaction on `conn` (the outbox).

        Nothing is delivered yet: after the transaction commits, pass the returned event to
        `deliver_committed`. A rolled-back transaction leaves no event behind."""
        payload = payload or {}
        row = await conn.fetchrow(
            "WITH e AS (INSERT INTO events (topic, origin, payload) VALUES ($1, $2, $3) RETURNING id, at) "
            "SELECT id, at, pg_notify($4, id::text) FROM e", topic, self.node_id, payload, CHANNEL)
        assert row is not None
        return Event(topic, payload, row["id"], row["at"], self.node_id)

    def deliver_committed(self, *events: Event) -> None:
        """Deliver events stored by `publish_in` to this process, once their transaction committed
        (an event the NOTIFY or a replay already brought is not delivered again)."""
        for event in events:
            self._deliver_once(event)

    async def attach(self, db: Database, keep_hours: float = 72.0, prune_every: float = 300.0, *,
                     replay_every: float = 2.0, keepalive_every: float = 5.0, gap_grace: float = 10.0) -> None:
        """Persist events in `db`, receive those published by other processes, prune old rows.

        Events are a transport, not the record (that is the audit log and each capability's own
        tables), so rows older than `keep_hours` are deleted every `prune_every` seconds (0: only
        when `prune` is called). Delivery starts after the newest event already stored.
        """
        self._db = db
        start = await db.fetchval("SELECT coalesce(max(id), 0) FROM events")
        self._cursor = EventCursor(int(start), gap_grace=gap_grace)
        self._reader = asyncio.create_task(self._read_incoming(), name="bus-reader")
        self._supervisor = asyncio.create_task(
            self._listen_forever(replay_every, keepalive_every), name="bus-listener")
        try:
            await asyncio.wait_for(self.listening.wait(), timeout=db.connect_timeout * 2 + 5)
        except TimeoutError:
            await self.detach()
            raise DatabaseUnavailable("the event bus could not LISTEN on the database") from None
        if prune_every > 0:
            self._pruner = asyncio.create_task(self._prune_loop(keep_hours, prune_every), name="bus-pruner")

    async def prune(self, keep_hours: float) -> int:
        """Delete persisted events older than `keep_hours`; returns how many."""
        assert self._db is not None
        status = await self._db.execute(
            "DELETE FROM events WHERE at < now() - make_interval(secs => $1)", keep_hours * 3600.0, idempotent=True)
        return int(status.split()[-1])

    async def _prune_loop(self, keep_hours: float, every: float) -> None:
        while True:
            try:
                await self.prune(keep_hours)
            except _CONNECTION_ERRORS as exc:
                log.warning("bus: pruning events failed: %s", exc)
            await asyncio.sleep(every)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._incoming.put_nowait(int(payload))

    async def _listen_forever(self, replay_every: float, keepalive_every: float) -> None:
        """Keep one LISTEN connection up; after each (re)connect, replay what was missed."""
        assert self._db is not None
        backoff = 0.1
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._db.dedicated_connection()
                closed = asyncio.Event()
                conn.add_termination_listener(_setter(closed))
                await conn.add_listener(CHANNEL, self._on_notify)
                self._listener = conn
                # LISTEN first, then replay: an event committed in between arrives by both; delivered once
                await self.replay()
                self.listening.set()
                if not first:
                    self.resubscriptions += 1
                    log.info("bus: listening again after a lost connection (%d)", self.resubscriptions)
                first, backoff = False, 0.1
                last_ping = self._clock()
                while not closed.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), timeout=replay_every)
                    if closed.is_set():
                        break
                    await self.replay()
                    if self._clock() - last_ping >= keepalive_every:
                        # a dead host does not close the socket: ask, with a deadline
                        await conn.fetchval("SELECT 1", timeout=keepalive_every)
                        last_ping = self._clock()
                log.warning("bus: LISTEN connection lost; reconnecting")
            except _CONNECTION_ERRORS as exc:
                log.warning("bus: LISTEN connection failed (%s: %s); reconnecting", type(exc).__name__, exc)
            except Exception:  # noqa: BLE001 - a bug must not end event delivery for good
                log.exception("bus: LISTEN loop failed; reconnecting")
            finally:
                self.listening.clear()
                self._listener = None
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)

    async def replay(self) -> int:
        """Deliver every stored event above the cursor's horizon not delivered yet; returns how many."""
        assert self._db is not None and self._cursor is not None
        delivered = 0
        after = self._cursor.horizon
        while True:
            rows = await self._db.fetch(
                "SELECT id, at, topic, origin, payload FROM events WHERE id > $1 ORDER BY id LIMIT 500", after)
            for row in rows:
                if self._deliver_once(Event(row["topic"], row["payload"], row["id"], row["at"], row["origin"])):
                    delivered += 1
            if len(rows) < 500:
                break
            after = rows[-1]["id"]
        self._cursor.advance(self._clock())
        self.replayed += delivered
        return delivered

    async def stored_since(self, after: int, pattern: str = "*", limit: int = 1000) -> list[Event]:
        """Persisted events with an id above `after` matching `pattern`, oldest first, at most `limit`
        rows read: what a console that reconnects (to this or another node) missed."""
        if self._db is None:
            return []
        rows = await self._db.fetch(
            "SELECT id, at, topic, origin, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2", after, limit)
        return [Event(r["topic"], r["payload"], r["id"], r["at"], r["origin"]) for r in rows
                if fnmatch.fnmatchcase(r["topic"], pattern)]

    async def _read_incoming(self) -> None:
        assert self._db is not None
        while True:
            event_id = await self._incoming.get()
            if self._cursor is not None and (event_id <= self._cursor.horizon):
                continue  # delivered already (by publish or a replay)
            try:
                row = await self._db.fetchrow(
                    "SELECT id, at, topic, origin, payload FROM events WHERE id = $1", event_id)
            except _CONNECTION_ERRORS as exc:
                log.warning("bus: could not read event %s (the next replay will): %s", event_id, exc)
                continue
            except Exception:  # noqa: BLE001 - the next replay delivers it; keep reading
                log.exception("bus: reading event %s failed", event_id)
                continue
            if row is None:
                continue  # pruned
            self._deliver_once(Event(row["topic"], row["payload"], row["id"], row["at"], row["origin"]))

    async def detach(self) -> None:
        # a task cancelled in the middle of a database call may end with that call's error
        await cancel_and_wait([t for t in (self._supervisor, self._reader, self._pruner) if t is not None],
                              swallow_errors=True)
        self._reader = self._pruner = self._supervisor = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        self._db = None
