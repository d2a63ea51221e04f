"""The call-taking desk service: queue, caller data, AML, incidents from calls, dashboard.

The I/O shell around the sans-I/O parts (``acd.py``, ``aml_match.py``, ``pidf_lo.py``,
``aml.py``): it keeps calls in PostgreSQL (``emergency_calls``, ``aml_reports``,
``desk_callbacks``), runs the ACD's timers, publishes ``call.*`` bus events for the desk
consoles, and creates incidents through the dispatch service. It implements
``trunk.EmergencyDesk`` so the SIP trunk hands it calls.

Real and training (演练) calls: a call from the trunk (the network, an emergency number) is always
real, whatever mode the dispatch consoles are in. Training calls are made only by the training
runner (``offer_training_call``) and are flagged when created; an incident made from a call has
the call's flag, and every figure on the dashboard is counted for real and training calls apart.

Recordings after the call (sealing, retention, listening, export) are :mod:`.call_recordings`.
Size: about 830 lines in one class because the queue, the positions, the live calls and the
softphone all act on one state (the ACD and ``live``) under one lock, and each action writes its
row and its bus event in the same step; the pure rules are in ``acd.py``, ``aml_match.py`` and
``stats.py``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from core.runtime import CoreServices
from dispatch import model as m
from dispatch.service import DispatchService

from . import acd as a
from .aml import AmlMessage, normalize_number, parse_https, parse_sms
from .aml_match import AmlMatcher, PendingAml
from .call_recordings import CallRecordings
from .errors import DeskError
from .location import CallerLocation, check_wgs84
from .recordings import CallRecordingLog
from .recovery import NODE_LOST, LeftCall, LostCall, lost_calls, orphaned_nodes, pending_reports
from .stats import CallTiming, answer_stats
from .trunk import IncomingEmergencyCall

log = logging.getLogger(__name__)

DISPOSITIONS = {"incident": "已立案", "advice": "咨询/指导", "duplicate": "重复报警", "prank": "骚扰/恶作剧",
                "silent": "无声电话", "transferred": "已转接", "other": "其他"}


class CallHandle(Protocol):
    """A caller's call as the desk controls it (``trunk.TrunkCall``)."""

    @property
    def media(self) -> object:
        """The caller's audio (``trunk.CallerMedia``): what :meth:`CallBridge.open` puts in the room."""

    def hangup(self) -> None: ...

    def stop_queue_tone(self) -> None: ...

    def send_dtmf(self, digit: str) -> None: ...


class CallBridge(Protocol):
    """Puts calls into MCU rooms (``mcu.call_rooms.CallRooms``): the desk's only way into the MCU."""

    async def open(self, call_id: str, caller: Any, caller_name: str) -> Any:
        """The call's room with the caller in it; ``caller`` is the call's ``CallHandle.media``."""

    async def join_browser(self, call_id: str, participant_id: str, name: str, offer_sdp: str) -> str: ...

    async def leave(self, call_id: str, participant_id: str) -> None: ...

    async def dial(self, call_id: str, uri: str, name: str) -> str: ...

    def hold(self, call_id: str, on_hold: bool) -> None: ...

    def participants(self, call_id: str) -> list[str]: ...

    def participant_left(self, conference_id: str, participant_id: str) -> str | None: ...

    async def close(self, call_id: str) -> None: ...


class Leadership(Protocol):
    """The desk lease (``noderpc.lease.Lease``): does this node hold it now (checked before each act)."""

    def held(self) -> bool: ...


class CallsHeld(Protocol):
    """This desk node among the others (node RPC's heartbeats and pins), for recovery and takeover."""

    @property
    def node_id(self) -> str:
        """This node's id (written on each call it takes, ``emergency_calls.desk_node``)."""
        ...

    async def held_elsewhere(self, call_ids: list[str]) -> set[str]:
        """Which of these calls a live desk node other than this one holds (their pins)."""
        ...

    async def dead(self, node_ids: list[str]) -> set[str]:
        """Which of these nodes are dead by node RPC's liveness rule (unknown ids are dead)."""
        ...


@dataclass(frozen=True)
class DeskConfig:
    numbers: tuple[str, ...] = ("110", "119", "120", "122")
    answer_thresholds_s: tuple[int, ...] = (10, 15)
    duplicate_radius_m: float = 500.0
    duplicate_window_min: float = 30.0
    aml_window_s: float = 300.0
    acd: a.AcdConfig = field(default_factory=a.AcdConfig)
    recording_retention_days: float | None = None  # settings emergency.recording_retention_days
    retention_interval_s: float = 3600.0


@dataclass
class LiveCall:
    id: str
    sip_key: str
    number: str
    name: str
    dialled: str
    category: str
    offered_at: datetime
    locations: list[CallerLocation] = field(default_factory=list)
    handle: CallHandle | None = None
    recording: str = ""
    incident_id: str | None = None
    answered_at: datetime | None = None
    invited: set[str] = field(default_factory=set)  # agency desks asked to join (three-way)
    on_hold: bool = False
    verified: bool = False  # number (and location) asserted by a trusted trunk peer (RFC 3325)
    training: bool = False  # a training runner's call (演练); set at creation, never changed


def category_for(dialled: str) -> str:
    """The dialled number presets the incident category (110 police, 119 fire, 120 medical, 122 traffic)."""
    return m.NUMBER_CATEGORY.get(dialled, "other")


def best_location(locations: list[CallerLocation]) -> CallerLocation | None:
    """The location to prefill: the call-taker's own entry, else the newest valid network/handset fix."""
    points = [loc for loc in locations if loc.has_point]
    manual = [loc for loc in points if loc.source == "manual"]
    if manual:
        return manual[-1]
    return points[-1] if points else None


class DeskService:
    """Everything the call-taking desk does, for one node."""

    def __init__(self, core: CoreServices, incidents: DispatchService, config: DeskConfig | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.core = core
        self.db = core.db
        self.incidents = incidents
        self.config = config or DeskConfig(numbers=tuple(core.settings.emergency.numbers),
                                           recording_retention_days=core.settings.emergency.recording_retention_days)
        self.clock = clock
        self.acd = a.Acd(self.config.acd)
        self.matcher = AmlMatcher(window_s=self.config.aml_window_s)
        self.live: dict[str, LiveCall] = {}
        self.recordings = CallRecordings(self.db, core.audit, clock=clock, live=self.live,
                                         retention_days=self.config.recording_retention_days,
                                         retention_interval_s=self.config.retention_interval_s)
        self.by_sip: dict[str, str] = {}
        self.bridge: CallBridge | None = None  # set when an MCU runs here (softphone in the browser)
        self.calls_held: CallsHeld | None = None  # calls another live desk node holds (set by the root)
        self.leadership: Leadership | None = None  # the desk lease (a `--role desk` node); None: always active
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._rooms: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._sealer: asyncio.Task[None] | None = None
        self._takeover: asyncio.Task[None] | None = None
        self.takeover_interval_s = core.settings.nodes.heartbeat_seconds
        self._lock = asyncio.Lock()

    @property
    def recording_log(self) -> CallRecordingLog | None:
        """The recorder's transparency log for call recordings (set by the composition root)."""
        return self.recordings.recording_log

    @recording_log.setter
    def recording_log(self, value: CallRecordingLog | None) -> None:
        self.recordings.recording_log = value

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.recover()
        self._timer = asyncio.create_task(self._timer_loop(), name="desk-acd")
        self._follower = asyncio.create_task(self._follow_dispatch(), name="desk-dispatch-times")
        self._rooms = asyncio.create_task(self._follow_rooms(), name="desk-rooms")
        if self.config.recording_retention_days is not None:
            self._retention = asyncio.create_task(self.recordings.retention_loop(), name="desk-recording-retention")
        if self.recordings.recording_log is not None:
            self._sealer = asyncio.create_task(self.recordings.seal_at_start(self.clock()), name="desk-recording-seal")
        if self.calls_held is not None:
            self._takeover = asyncio.create_task(self._takeover_loop(), name="desk-takeover")

    async def recover(self) -> dict[str, int]:
        """Reload what a previous run of this desk left in PostgreSQL (rules in ``recovery.py``):
        its callers on the callback list, its unmatched AML reports waiting for their calls again."""
        async with self._lock:
            now, t = self._now()
            async with self.db.transaction() as conn:
                left = [c for c in await self._left_calls(conn, None) if c.id not in self.live]
                held = await self.calls_held.held_elsewhere([c.id for c in left]) if self.calls_held else set()
                held |= await self._held_by_live_nodes(left)
                lost = lost_calls(left, t, held)
                await self._list_lost(conn, lost, now)
            await self._announce_lost(lost, "desk restarted")
            restored = await self._restore_aml(t)
        return {"lost_calls": len(lost), "aml_restored": restored}

    async def take_over(self) -> int:
        """Put the callers of dead desk nodes on the callback list (rules in ``recovery.py``); how many.

        Run by every live desk node on its heartbeat cadence. The calls are locked
        (``FOR UPDATE SKIP LOCKED``) and listed in one transaction that moves them out of the open
        states, so when two survivors look at once each call is listed exactly once."""
        if self.calls_held is None:
            return 0
        if self.leadership is not None and not self.leadership.held():
            return 0  # a standby (or fenced) desk lists nothing: the holder of the lease does
        me = self.calls_held.node_id
        rows = await self.db.fetch(
            "SELECT DISTINCT desk_node FROM emergency_calls WHERE state IN ('queued', 'offered', 'answered') "
            "AND ended_at IS NULL AND abandoned_at IS NULL AND desk_node IS NOT NULL AND desk_node <> $1", me)
        candidates = [str(r["desk_node"]) for r in rows]
        # with the lease, every other desk node is fenced (it stopped answering when it lost the lease)
        fenced = set(candidates) if self.leadership is not None else set()
        dead = orphaned_nodes(candidates, me, fenced | (await self.calls_held.dead(candidates) if candidates else set()))
        if not dead:
            return 0
        async with self._lock:
            now, t = self._now()
            async with self.db.transaction() as conn:
                lost = lost_calls(await self._left_calls(conn, sorted(dead)), t)
                await self._list_lost(conn, lost, now)
            await self._announce_lost(lost, f"desk node(s) {', '.join(sorted(dead))} dead")
        return len(lost)

    async def fence(self) -> int:
        """The lease was lost: stop answering. Hang up this node's callers and forget its calls and
        positions without writing them (the holder of the lease lists them on the callback list: they
        are its rows now). Returns how many calls were dropped."""
        async with self._lock:
            dropped = list(self.live.values())
            self.live.clear()
            self.by_sip.clear()
            self.acd = a.Acd(self.config.acd)
        for call in dropped:
            if call.handle is not None:
                with contextlib.suppress(Exception):
                    call.handle.hangup()
            if self.bridge is not None:
                with contextlib.suppress(Exception):
                    await self.bridge.close(call.id)
        if dropped:
            log.warning("desk fenced (lease lost): %d call(s) dropped here, left to the lease holder", len(dropped))
        return len(dropped)

    async def _takeover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.takeover_interval_s)
            try:
                await self.take_over()
            except Exception:  # noqa: BLE001 - a failed look (database failover) must not end the watch
                log.warning("desk takeover check failed", exc_info=True)

    async def _left_calls(self, conn: Any, nodes: list[str] | None) -> list[LeftCall]:
        """Open calls (of `nodes`, or all), locked for this transaction; rows another desk locks are skipped."""
        rows = await conn.fetch(
            "SELECT id, number, state, priority, offered_at, answered_at, training, desk_node, "
            "'requeued_after_position_lost' = ANY(flags) AS head FROM emergency_calls "
            "WHERE state IN ('queued', 'offered', 'answered') AND ended_at IS NULL AND abandoned_at IS NULL "
            "AND ($1::text[] IS NULL OR desk_node = ANY($1::text[])) FOR UPDATE SKIP LOCKED", nodes)
        return [LeftCall(r["id"], r["number"], r["state"], r["priority"], r["offered_at"].timestamp(),
                         r["answered_at"].timestamp() if r["answered_at"] else None, bool(r["head"]),
                         bool(r["training"]), r["desk_node"]) for r in rows]

    async def _held_by_live_nodes(self, left: list[LeftCall]) -> set[str]:
        """Calls taken by another desk node that is alive (even before its heartbeat pinned them)."""
        if self.calls_held is None:
            return set()
        me = self.calls_held.node_id
        others = sorted({c.node for c in left if c.node is not None and c.node != me})
        dead = await self.calls_held.dead(others) if others else set()
        return {c.id for c in left if c.node is not None and c.node != me and c.node not in dead}

    async def _list_lost(self, conn: Any, lost: list[LostCall], now: datetime) -> None:
        for call in lost:
            listed = now + timedelta(microseconds=call.order)  # keeps the queue's order on the list
            if call.answered:
                await conn.execute("UPDATE emergency_calls SET state = 'ended', ended_at = $2, "
                                   "flags = flags || $3::text WHERE id = $1", call.call_id, now, NODE_LOST)
            else:
                await conn.execute("UPDATE emergency_calls SET state = 'abandoned', abandoned_at = $2, "
                                   "ended_at = $2, flags = flags || $3::text WHERE id = $1",
                                   call.call_id, now, NODE_LOST)
            await conn.execute(
                "INSERT INTO desk_callbacks (call_id, number, listed_at, waited_s) VALUES ($1,$2,$3,$4) "
                "ON CONFLICT DO NOTHING", call.call_id, call.number, listed, call.waited_s)

    async def _announce_lost(self, lost: list[LostCall], why: str) -> None:
        """After the commit: the bus events and the audit row of the listed calls."""
        for call in lost:
            await self.core.bus.publish("call.callback", {"call_id": call.call_id, "number": call.number,
                                                          "waited_s": round(call.waited_s, 1), "reason": NODE_LOST})
        if lost:
            log.warning("%s: %d call(s) lost with it, on the callback list: %s", why, len(lost),
                        ", ".join(c.number for c in lost))
            await self.core.audit.record("desk", "desk.calls_lost_with_node", "desk",
                                         detail={"calls": [c.call_id for c in lost],
                                                 "nodes": sorted({c.node for c in lost if c.node})})

    def hosted(self) -> dict[str, list[str]]:
        """The calls this desk holds (pinned to this node while they are live)."""
        return {"call": list(self.live)}

    async def _restore_aml(self, t: float) -> int:
        rows = await self.db.fetch("SELECT id, number, fmt, raw, received_at FROM aml_reports WHERE status = 'pending' "
                                   "ORDER BY received_at")
        known = {p.id for p in self.matcher.pending}
        keep, expire = pending_reports([(r["id"], r["received_at"].timestamp()) for r in rows if r["id"] not in known],
                                       t, self.config.aml_window_s)
        by_id = {r["id"]: r for r in rows}
        for rid in keep:
            row = by_id[rid]
            try:
                message = parse_sms(row["raw"], row["number"]) if row["fmt"] == "sms" else parse_https(row["raw"])
            except ValueError:  # stored before a parser change: cannot be matched any more
                expire.append(rid)
                continue
            self.matcher.pending.append(PendingAml(rid, message, row["received_at"].timestamp()))
        if expire:
            await self.db.execute("UPDATE aml_reports SET status = 'expired' WHERE id = ANY($1)", expire)
        if self.matcher.pending:
            log.info("desk: %d unmatched AML report(s) wait for their calls again", len(self.matcher.pending))
        return len(self.matcher.pending)

    async def stop(self) -> None:
        for task in (self._timer, self._follower, self._rooms, self._retention, self._sealer, self._takeover):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _follow_rooms(self) -> None:
        """A SIP extension that owns a call (blind transfer) hung up: the call is over."""
        with self.core.bus.subscribe("conference.participant_left") as events:
            async for event in events:
                if self.bridge is None:
                    continue
                call_id = self.bridge.participant_left(str(event.payload.get("conference_id")),
                                                       str(event.payload.get("participant_id")))
                q = self.acd.calls.get(call_id or "")
                if call_id is not None and q is not None and (q.position_id or "").startswith("sip:"):
                    try:
                        await self.end_call(call_id, q.position_id or "extension", "transferred")
                    except Exception:  # noqa: BLE001
                        log.exception("ending call %s after its extension left failed", call_id)

    async def _follow_dispatch(self) -> None:
        """Record when the first unit was dispatched for each call's incident (from any node)."""
        with self.core.bus.subscribe("incident.updated") as events:
            async for event in events:
                if event.payload.get("action") != "incident.dispatch":
                    continue
                incident_id = (event.payload.get("incident") or {}).get("id")
                try:
                    await self.db.execute(
                        "UPDATE emergency_calls SET first_dispatch_at = $2 "
                        "WHERE incident_id = $1 AND first_dispatch_at IS NULL", incident_id, event.at)
                except Exception:  # noqa: BLE001 - a statistics column must not stop the follower
                    log.exception("first-dispatch time not recorded for %s", incident_id)

    def _now(self) -> tuple[datetime, float]:
        now = self.clock()
        return now, now.timestamp()

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.acd.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock().timestamp())
            if self.matcher.pending:
                timeout = min(timeout if timeout is not None else 5.0, 5.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the queue must keep running
                log.exception("desk tick failed")

    async def tick(self) -> None:
        """Apply due ACD timeouts and expire old AML reports."""
        async with self._lock:
            now, t = self._now()
            await self._apply(self.acd.tick(t), now)
            for old in self.matcher.expire(t):
                await self.db.execute("UPDATE aml_reports SET status = 'expired' WHERE id = $1", old.id)

    # ------------------------------------------------------------------ calls from the trunk

    async def call_arrived(self, incoming: IncomingEmergencyCall, handle: CallHandle | None) -> str:
        """A call to an emergency number reached us (the trunk read its number and location).

        It came from the network on an emergency number, so it is a real call: training mode on the
        consoles never changes that (a drill that swallowed a real emergency would send no unit)."""
        location = incoming.location
        return await self.offer_call(incoming.call_key, incoming.number, incoming.name, incoming.dialled,
                                     [location] if location else [], handle, str(incoming.recording),
                                     incoming.received_at, verified=incoming.caller_verified,
                                     source=incoming.source, trunk_peer=incoming.trunk_peer, training=False)

    async def offer_training_call(self, number: str, dialled: str, lon: float, lat: float,
                                  address: str = "") -> str:
        """A simulated caller made by the training runner: flagged training, offered only to
        positions in training mode, no media. Returns its desk id."""
        if dialled not in self.config.acd.priorities:
            raise DeskError(f"未知报警号码 {dialled}")
        loc = CallerLocation("manual", lon=lon, lat=lat, radius_m=50.0, shape="Circle",
                             civic={"label": address} if address else {})
        return await self.offer_call(f"training-{secrets.token_hex(6)}", number, "【演练】报警人", dialled, [loc],
                                     training=True)

    async def caller_hung_up_training(self, call_id: str) -> None:
        """A training runner's simulated caller gives up (only training calls; real ones hang up by SIP)."""
        call = self.live.get(call_id)
        if call is not None and call.training:
            await self.end_call(call_id, "caller", "")

    def training_positions(self) -> int:
        """Signed-on positions in training mode (the training runner calls only when there is one)."""
        return sum(1 for p in self.acd.positions.values() if p.training and p.state != a.PositionState.LOGGED_OUT)

    def call_state(self, call_id: str) -> str | None:
        """The live call's ACD state (queued/offered/answered), or None when it is over."""
        q = self.acd.calls.get(call_id)
        return q.state.value if q is not None and call_id in self.live else None

    async def offer_call(self, sip_key: str, number: str, name: str, dialled: str,
                         locations: list[CallerLocation], handle: CallHandle | None = None,
                         recording: str = "", arrived_at: datetime | None = None, *, verified: bool = False,
                         source: str = "", trunk_peer: str = "", training: bool = False) -> str:
        """Queue a call; returns its desk id. ``arrived_at``: when the INVITE came (queue order);
        ``training``: the training runner's call (real otherwise), fixed for the call's life.

        ``verified``: the number was asserted by a trusted trunk peer; otherwise the desk marks it
        unverified (未核实)."""
        async with self._lock:
            now, t = self._now()
            if arrived_at is not None and arrived_at < now:
                now, t = arrived_at, arrived_at.timestamp()
            call_id = f"CALL{now:%Y%m%d}-{secrets.token_hex(3)}"
            category = category_for(dialled)
            priority = self.config.acd.priorities.get(dialled, self.config.acd.default_priority)
            call = LiveCall(call_id, sip_key, normalize_number(number) or number, name, dialled, category, now,
                            list(locations), handle, recording, verified=verified, training=training)
            self.live[call_id] = call
            self.by_sip[sip_key] = call_id
            for loc in locations:
                if not loc.valid:
                    log.warning("call %s from %s: invalid %s location: %s", call_id, number, loc.source, loc.reason)
            await self.db.execute(
                "INSERT INTO emergency_calls (id, sip_key, number, caller_name, dialled, category, priority, "
                "offered_at, locations, recording_path, training, caller_verified, caller_source, trunk_peer, desk_node) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
                call_id, sip_key, call.number, name, dialled, category, priority, now,
                [loc.to_json() for loc in locations], recording, training, verified, source, trunk_peer,
                self.calls_held.node_id if self.calls_held is not None else None)
            if not training:  # AML comes from real handsets only
                for pending in self.matcher.call_started(call_id, call.number, t):
                    await self._attach_aml(call, pending)
            events = self.acd.arrive(call_id, call.number, dialled, t, training=training)
            await self._publish("call.queued", call_id)
            await self._apply(events, now)
        self._wake.set()
        return call_id

    async def caller_hung_up(self, sip_key: str) -> None:
        """The caller's side ended (BYE, CANCEL): abandon if unanswered, else end."""
        call_id = self.by_sip.get(sip_key)
        if call_id is None:
            return
        await self.end_call(call_id, "caller", "")

    async def end_call(self, call_id: str, actor: str, disposition: str) -> None:
        """End a call from either side; an unanswered one is abandoned (callback list)."""
        async with self._lock:
            call = self.live.get(call_id)
            if call is None or call_id not in self.acd.calls:
                return
            self.matcher.call_ended(call_id)
            now, t = self._now()
            queued = self.acd.calls[call_id]
            answered = queued.state == a.CallState.ANSWERED
            events = self.acd.end(call_id, t)
            if answered:
                await self.db.execute(
                    "UPDATE emergency_calls SET state = 'ended', ended_at = $2, disposition = $3 WHERE id = $1",
                    call_id, now, disposition)
            else:
                await self.db.execute(
                    "UPDATE emergency_calls SET state = 'abandoned', abandoned_at = $2, ended_at = $2 WHERE id = $1",
                    call_id, now)
            if actor != "caller" and call.handle is not None:
                call.handle.hangup()
            if self.bridge is not None:
                await self.bridge.close(call_id)
            events += self.acd.forget(call_id)  # the database keeps the record; the ACD only live calls
            await self._apply(events, now)
            await self._publish("call.ended", call_id, {"actor": actor, "disposition": disposition,
                                                         "abandoned": not answered})
            self.live.pop(call_id, None)
            self.by_sip.pop(call.sip_key, None)
        self._wake.set()

    # ------------------------------------------------------------------ positions

    async def login(self, position: str, group: str = "primary", training: bool | None = None) -> None:
        """Sign on (available); ``training`` puts the position in training mode (None: keep its mode)."""
        async with self._lock:
            now, t = self._now()
            try:
                events = self.acd.login(position, t, group, training)
            except a.AcdError as exc:
                raise DeskError(str(exc)) from None
            await self._apply(events, now)
            await self._publish_positions()
        self._wake.set()

    async def set_position_training(self, position: str, training: bool) -> None:
        """Training mode for one position: it is then offered training calls only (or real ones only)."""
        async with self._lock:
            now, t = self._now()
            try:
                events = self.acd.set_training(position, training, t)
            except a.AcdError as exc:
                raise DeskError(str(exc)) from None
            await self.core.audit.record(position, "desk.position_training", position, detail={"training": training})
            await self._apply(events, now)
            await self._publish_positions()
        self._wake.set()

    async def set_position_state(self, position: str, state: str) -> None:
        async with self._lock:
            now, t = self._now()
            try:
                events = self.acd.set_state(position, a.PositionState(state), t)
            except ValueError as exc:
                raise DeskError(str(exc)) from None
            await self._apply(events, now)
            await self._publish_positions()
        self._wake.set()

    async def position_lost(self, position: str) -> None:
        """The call-taker's browser went away mid-call: requeue at the head, flagged."""
        async with self._lock:
            now, t = self._now()
            if position in self.acd.positions:
                await self._apply(self.acd.position_lost(position, t), now)
                await self._publish_positions()
        self._wake.set()

    async def answer(self, position: str, call_id: str) -> dict[str, Any]:
        async with self._lock:
            now, t = self._now()
            try:
                self.acd.answer(position, call_id, t)
            except a.AcdError as exc:
                raise DeskError(str(exc)) from None
            call = self.live[call_id]
            call.answered_at = now
            if call.handle is not None:
                call.handle.stop_queue_tone()
            await self.db.execute(
                "UPDATE emergency_calls SET state = 'answered', answered_at = COALESCE(answered_at, $2), "
                "position_id = $3 WHERE id = $1", call_id, now, position)
            await self.core.audit.record(position, "call.answer", call_id)
            await self._publish("call.answered", call_id)
            await self._publish_positions()
            return await self.call_view(call_id)

    # ------------------------------------------------------------------ ACD events → DB + bus

    async def _apply(self, events: list[a.AcdEvent], now: datetime) -> None:
        for e in events:
            if isinstance(e, a.Offer):
                await self.db.execute("UPDATE emergency_calls SET state = 'offered', position_id = $2 WHERE id = $1",
                                      e.call_id, e.position_id)
                await self._publish("call.offer", e.call_id, {"position": e.position_id})
            elif isinstance(e, a.OfferWithdrawn):
                await self.db.execute(
                    "UPDATE emergency_calls SET state = 'queued', position_id = NULL, "
                    "skipped_positions = skipped_positions || $2::text WHERE id = $1 AND state = 'offered'",
                    e.call_id, e.position_id if e.reason == "no answer" else "")
                await self.core.bus.publish("call.offer_withdrawn", {"call_id": e.call_id, "position": e.position_id,
                                                                     "reason": e.reason})
            elif isinstance(e, a.PositionMarked):
                await self.core.audit.record("acd", "desk.position_skipped", e.position_id, detail={"reason": e.reason})
                await self._publish_positions()
            elif isinstance(e, a.CallbackListed):
                await self.db.execute(
                    "INSERT INTO desk_callbacks (call_id, number, listed_at, waited_s) VALUES ($1,$2,$3,$4) "
                    "ON CONFLICT DO NOTHING", e.call_id, e.number, now, e.waited_s)
                log.info("abandoned call %s from %s after %.1f s: on the callback list", e.call_id, e.number,
                         e.waited_s)
                await self.core.bus.publish("call.callback", {"call_id": e.call_id, "number": e.number,
                                                              "waited_s": round(e.waited_s, 1)})
            elif isinstance(e, a.TrainingAlarm):
                payload = {"active": e.active, "waiting": e.waiting, "positions": list(e.training_positions)}
                if e.active:
                    log.warning("ALARM: %d real emergency call(s) waiting and every signed-on position is in "
                                "training mode (%s)", e.waiting, ", ".join(e.training_positions))
                else:
                    log.info("training alarm cleared")
                await self.core.audit.record("acd", "desk.training_alarm", "desk", detail=payload)
                await self.core.bus.publish("call.training_alarm", payload)
            elif isinstance(e, a.Requeued):
                await self.db.execute(
                    "UPDATE emergency_calls SET state = 'queued', position_id = NULL, "
                    "flags = flags || $2::text WHERE id = $1", e.call_id, "requeued_after_position_lost")
                await self._publish("call.requeued", e.call_id)

    async def _publish(self, topic: str, call_id: str, extra: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"call_id": call_id, **(extra or {})}
        if call_id in self.live:
            payload["call"] = self._summary(self.live[call_id])
        await self.core.bus.publish(topic, payload)

    async def _publish_positions(self) -> None:
        await self.core.bus.publish("call.positions", {"positions": self.positions_view()})

    # ------------------------------------------------------------------ views

    def positions_view(self) -> list[dict[str, Any]]:
        return [{"id": p.id, "group": p.group, "state": p.state.value, "call_id": p.call_id, "mark": p.mark,
                 "missed": p.missed, "training": p.training}
                for p in sorted(self.acd.positions.values(), key=lambda p: p.id)]

    def training_alarm_view(self) -> dict[str, Any]:
        """The alarm as the consoles show it: real calls waiting while every position trains."""
        active = self.acd.training_alarm()
        return {"active": active, "waiting": self.acd.real_waiting() if active else 0,
                "positions": sorted(p.id for p in self.acd.positions.values()
                                    if active and p.state != a.PositionState.LOGGED_OUT)}

    def _summary(self, call: LiveCall) -> dict[str, Any]:
        q = self.acd.calls.get(call.id)
        best = best_location(call.locations)
        return {
            "id": call.id, "number": call.number, "name": call.name, "dialled": call.dialled,
            "number_verified": call.verified,
            "category": call.category, "category_name": m.CATEGORIES[call.category].name,
            "priority": q.priority if q else None, "state": q.state.value if q else "ended",
            "position": q.position_id if q else None, "queue_place": self.acd.queue_position(call.id),
            "offered_at": call.offered_at.isoformat(), "flags": list(q.flags) if q else [],
            "location": self._location_view(best) if best else None,
            "incident_id": call.incident_id, "training": call.training,
        }

    def _location_view(self, loc: CallerLocation) -> dict[str, Any]:
        view = loc.to_json()
        if loc.has_point:
            assert loc.lon is not None and loc.lat is not None
            try:
                resolved, _ = self.incidents.resolve_location(loc.lon, loc.lat, loc.radius_m, loc.source)
                view["county_code"] = resolved.county_code
                view["county"] = self.incidents.county_names.get(resolved.county_code or 0, "")
                view["township"] = self.incidents.township_names.get(resolved.township_code or 0, "")
            except m.ValidationError as exc:
                view["county"], view["resolve_error"] = "", str(exc)
        return view

    def _live(self, call_id: str) -> LiveCall:
        try:
            return self.live[call_id]
        except KeyError:
            raise DeskError(f"呼叫 {call_id} 不存在或已结束") from None

    async def call_view(self, call_id: str) -> dict[str, Any]:
        """Everything the desk shows for a live call: caller, all locations, history, duplicates."""
        call = self._live(call_id)
        view = self._summary(call)
        view["locations"] = [self._location_view(loc) for loc in call.locations]
        view["history"] = await self.history(call.number, exclude=call.id)
        best = best_location(call.locations)
        view["duplicates"] = await self.duplicates(best, call.category, call.training) if best else []
        return view

    async def history(self, number: str, exclude: str = "", limit: int = 20) -> dict[str, Any]:
        """Previous calls and incidents from this number (newest first)."""
        calls = await self.db.fetch(
            "SELECT id, dialled, state, offered_at, incident_id, disposition, "
            "recording_path <> '' AND recording_deleted_at IS NULL AS has_recording "
            "FROM emergency_calls "
            "WHERE number = $1 AND id <> $2 ORDER BY offered_at DESC LIMIT $3", number, exclude, limit)
        incidents = await self.db.fetch(
            "SELECT id, category, priority, status, created_at, address FROM incidents "
            "WHERE caller_number = $1 ORDER BY created_at DESC LIMIT $2", number, limit)
        return {
            "calls": [{**dict(r), "offered_at": r["offered_at"].isoformat()} for r in calls],
            "incidents": [{**dict(r), "created_at": r["created_at"].isoformat(),
                           "category_name": m.CATEGORIES[r["category"]].name if r["category"] in m.CATEGORIES else ""}
                          for r in incidents],
        }

    async def duplicates(self, loc: CallerLocation, category: str, training: bool = False) -> list[dict[str, Any]]:
        """Open incidents nearby of a related category (dispatch's 500 m / 30 min rule), of the
        call's kind (a real call is never matched to a drill)."""
        if not loc.has_point:
            return []
        assert loc.lon is not None and loc.lat is not None
        return await self.incidents.possible_duplicates(loc.lon, loc.lat, category, training=training)

    async def queue_view(self) -> dict[str, Any]:
        return {"calls": [self._summary(self.live[c.id]) for c in self.acd.queue() if c.id in self.live],
                "positions": self.positions_view(),
                "active": [self._summary(c) for c in list(self.live.values())
                           if (q := self.acd.calls.get(c.id)) is not None and q.state == a.CallState.ANSWERED]}

    # ------------------------------------------------------------------ locations

    async def set_manual_location(self, call_id: str, lon: float, lat: float, radius_m: float | None,
                                  label: str, actor: str) -> dict[str, Any]:
        """The call-taker typed or picked the location (gazetteer suggestion or map click)."""
        problem = check_wgs84(lat, lon)
        if problem:
            raise DeskError(problem)
        if radius_m is not None and not 0 <= radius_m <= 100_000:
            raise DeskError(f"半径不合理: {radius_m}")
        call = self._live(call_id)
        loc = CallerLocation("manual", lon=lon, lat=lat, radius_m=radius_m, shape="Circle" if radius_m else "Point",
                             civic={"label": label} if label else {})
        call.locations.append(loc)
        await self._save_locations(call)
        await self.core.audit.record(actor, "call.location_manual", call_id, detail={"lon": lon, "lat": lat})
        await self._publish("call.location", call_id)
        return self._location_view(loc)

    async def _save_locations(self, call: LiveCall) -> None:
        await self.db.execute("UPDATE emergency_calls SET locations = $2 WHERE id = $1", call.id,
                              [loc.to_json() for loc in call.locations])

    # ------------------------------------------------------------------ AML

    async def post_aml(self, fmt: str, payload: str, sender: str = "") -> dict[str, Any]:
        """An AML report (SMS text or HTTPS form). AmlFormatError (→ 400) when it is not AML at all."""
        message = parse_sms(payload, sender) if fmt == "sms" else parse_https(payload)
        async with self._lock:
            now, t = self._now()
            call_id, pending = self.matcher.report(message, t)
            row_id = await self.db.fetchval(
                "INSERT INTO aml_reports (number, fmt, received_at, positioned_at, valid, reason, location, raw, "
                "call_id, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING id",
                message.number, message.fmt, now, message.positioned_at, message.location.valid,
                message.location.reason, message.location.to_json(), payload, call_id,
                "matched" if call_id else "pending")
            pending.id = row_id
            if call_id is not None and call_id in self.live:
                await self._attach_aml(self.live[call_id], pending, update_row=False)
        if not message.location.valid:
            log.warning("AML from %s flagged invalid: %s", message.number, message.location.reason)
        return {"id": row_id, "matched_call": call_id, "valid": message.location.valid,
                "reason": message.location.reason}

    async def _attach_aml(self, call: LiveCall, pending: PendingAml, update_row: bool = True) -> None:
        msg: AmlMessage = pending.message
        loc = msg.location
        if msg.positioned_at is not None:
            loc = replace(loc, civic={**loc.civic, "positioned_at": msg.positioned_at.isoformat(),
                                      "method": msg.method})
        call.locations.append(loc)
        if update_row:
            await self.db.execute("UPDATE aml_reports SET call_id = $2, status = 'matched' WHERE id = $1",
                                  pending.id, call.id)
        await self._save_locations(call)
        await self._publish("call.location", call.id)

    # ------------------------------------------------------------------ incidents

    async def create_incident(self, call_id: str, actor: str, *, category: str | None = None,
                              subtype: str = "general", priority: int = 3, description: str = "",
                              address: str = "", lon: float | None = None, lat: float | None = None,
                              radius_m: float | None = None) -> dict[str, Any]:
        """Create the incident from the call in one action (location prefilled from the best fix)."""
        call = self._live(call_id)
        if call.incident_id:
            raise DeskError(f"该呼叫已立案 {call.incident_id}")
        loc = best_location(call.locations)
        source = loc.source if loc else "manual"
        if lon is None or lat is None:
            if loc is None:
                raise DeskError("没有可用的位置，请输入地址或在地图上选点")
            assert loc.lon is not None and loc.lat is not None
            lon, lat, radius_m = loc.lon, loc.lat, loc.radius_m if radius_m is None else radius_m
        else:
            source = "manual"
        if not address and loc is not None and loc.civic:
            address = " ".join(v for k, v in loc.civic.items() if k not in ("positioned_at", "method", "country"))
        try:  # the incident is real or training as its call is, never as the consoles' mode is
            inc = await self.incidents.create_incident(
                category=category or call.category, subtype=subtype, priority=priority, lon=lon, lat=lat,
                actor=actor, uncertainty_m=radius_m, address=address, description=description,
                caller_number=call.number, caller_name=call.name, call_id=call.id, location_source=source,
                source="desk", training=call.training)
        except m.DispatchError as exc:
            raise DeskError(str(exc)) from None
        now = self.clock()
        call.incident_id = inc.id
        await self.db.execute(
            "UPDATE emergency_calls SET incident_id = $2, incident_created_at = $3 WHERE id = $1", call.id, inc.id, now)
        await self._publish("call.incident", call.id, {"incident_id": inc.id})
        return self.incidents.view(inc)

    async def link_to_incident(self, call_id: str, incident_id: str, actor: str) -> dict[str, Any]:
        """One-click merge: this call belongs to an existing incident (a possible duplicate)."""
        call = self._live(call_id)
        try:
            target = await self.incidents.incident(incident_id)
            if target.training != call.training:
                raise DeskError("真实报警不能合并到演练警情" if not call.training else "演练呼叫不能合并到真实警情")
            inc = await self.incidents.link_call(incident_id, call.id, actor)
        except m.DispatchError as exc:
            raise DeskError(str(exc)) from None
        call.incident_id = incident_id
        now = self.clock()
        await self.db.execute(
            "UPDATE emergency_calls SET incident_id = $2, incident_created_at = $3, disposition = 'duplicate' "
            "WHERE id = $1", call.id, incident_id, now)
        await self.core.audit.record(actor, "call.merge_into_incident", call.id, detail={"incident": incident_id})
        await self._publish("call.incident", call.id, {"incident_id": incident_id, "merged": True})
        return self.incidents.view(inc)

    # ------------------------------------------------------------------ softphone (WebRTC in the MCU room)

    def _owner(self, call_id: str, position: str) -> LiveCall:
        call = self._live(call_id)
        q = self.acd.calls.get(call_id)
        if q is None or q.state != a.CallState.ANSWERED or q.position_id != position:
            raise DeskError("该呼叫不在本席位")
        return call

    async def media_offer(self, call_id: str, position: str, offer_sdp: str) -> str:
        """The call-taker's (or an invited agency desk's) browser joins the call's room: SDP answer."""
        if self.bridge is None:
            raise DeskError("本节点未运行 MCU，无法建立浏览器话音")
        call = self._live(call_id)
        q = self.acd.calls.get(call_id)
        owner = q is not None and q.state == a.CallState.ANSWERED and q.position_id == position
        if not owner and position not in call.invited:
            raise DeskError("该呼叫不在本席位，也未邀请本席位加入")
        if call.handle is None:
            raise DeskError("该呼叫没有话音通道")
        await self.bridge.open(call_id, call.handle.media, call.name or call.number)
        try:
            answer = await self.bridge.join_browser(call_id, f"desk-{position}", position, offer_sdp)
        except ValueError as exc:
            raise DeskError(str(exc)) from None
        await self.core.audit.record(position, "call.media_join", call_id, detail={"owner": owner})
        await self._publish("call.participants", call_id, {"participants": self.bridge.participants(call_id)})
        return answer

    async def hold(self, call_id: str, position: str, on_hold: bool) -> None:
        call = self._owner(call_id, position)
        call.on_hold = on_hold
        if self.bridge is not None:
            self.bridge.hold(call_id, on_hold)
        await self.core.audit.record(position, "call.hold" if on_hold else "call.resume", call_id)
        await self._publish("call.hold", call_id, {"on_hold": on_hold})

    async def dtmf(self, call_id: str, position: str, digits: str) -> None:
        """Send digits to the caller's side (e.g. an operator's IVR on a transferred line)."""
        call = self._owner(call_id, position)
        if not digits or any(d not in "0123456789*#ABCD" for d in digits) or len(digits) > 32:
            raise DeskError("DTMF 只能是 0-9 * # A-D，最多 32 位")
        if call.handle is not None:
            for digit in digits:
                call.handle.send_dtmf(digit)

    async def invite(self, call_id: str, position: str, target: str) -> None:
        """Conference an agency desk in (three-way): a WebRTC desk (user name) may join the call's
        room; a SIP extension (``sip:…``) is dialled into it."""
        call = self._owner(call_id, position)
        if not target or target == position:
            raise DeskError("请选择要邀请的席位")
        if target.startswith("sip:"):
            if self.bridge is None:
                raise DeskError("本节点未运行 MCU，无法呼叫分机")
            try:
                site_id = await self.bridge.dial(call_id, target, target)
            except ValueError as exc:
                raise DeskError(str(exc)) from None
            await self._publish("call.participants", call_id, {"participants": self.bridge.participants(call_id),
                                                                "dialled": site_id})
        else:
            call.invited.add(target)
        await self.core.audit.record(position, "call.invite", call_id, detail={"target": target})
        await self._publish("call.invite", call_id, {"target": target, "by": position})

    async def leave_room(self, call_id: str, position: str) -> None:
        """An invited agency desk leaves the three-way call."""
        call = self._live(call_id)
        call.invited.discard(position)
        if self.bridge is not None:
            await self.bridge.leave(call_id, f"desk-{position}")
            await self._publish("call.participants", call_id, {"participants": self.bridge.participants(call_id)})

    async def transfer(self, call_id: str, position: str, target: str, blind: bool = False) -> None:
        """Attended transfer: the consulted desk (already in the room) takes the call and we leave.
        Blind: the target desk is handed the call at once (its desk joins when it opens the call),
        or a SIP extension is dialled into the room, and we leave without waiting."""
        call = self._owner(call_id, position)
        joined = self.bridge.participants(call_id) if self.bridge is not None else []
        if target.startswith("sip:"):
            if not any(p.startswith("sip-") for p in joined):
                if not blind:
                    raise DeskError(f"{target} 尚未加入通话，先三方通话协商（咨询转接）或选择直接转接")
                await self.invite(call_id, position, target)
        elif self.bridge is not None and not blind and f"desk-{target}" not in joined:
            raise DeskError(f"{target} 尚未加入通话，先邀请并与其协商（咨询转接）")
        async with self._lock:
            now, t = self._now()
            try:
                events = self.acd.transfer(call_id, target, t)
            except a.AcdError as exc:
                raise DeskError(str(exc)) from None
            call.invited.discard(target)
            await self.db.execute(
                "UPDATE emergency_calls SET position_id = $2, flags = flags || $3::text WHERE id = $1",
                call_id, target, f"transferred:{position}->{target}")
            await self._apply(events, now)
        if self.bridge is not None:
            await self.bridge.leave(call_id, f"desk-{position}")
        await self.core.audit.record(position, "call.transfer", call_id, detail={"target": target})
        await self._publish("call.transferred", call_id, {"from": position, "to": target})
        await self._publish_positions()
        self._wake.set()

    # ------------------------------------------------------------------ dashboard, callbacks, recordings

    async def _figures(self, since: datetime, training: bool) -> dict[str, Any]:
        """Offered/answered/abandoned since ``since``, answer times, queue and open callbacks, for
        real calls or for training calls (never mixed)."""
        rows = await self.db.fetch(
            "SELECT offered_at, answered_at, abandoned_at FROM emergency_calls WHERE offered_at >= $1 "
            "AND training = $2", since, training)
        stats = answer_stats((CallTiming(r["offered_at"], r["answered_at"], r["abandoned_at"] is not None)
                              for r in rows), self.config.answer_thresholds_s)
        waiting = [c for c in self.acd.queue() if c.training == training]
        return {
            "waiting": sum(1 for c in waiting if c.state == a.CallState.QUEUED),
            "ringing": sum(1 for c in waiting if c.state == a.CallState.OFFERED),
            "offered": stats.offered, "answered": stats.answered, "abandoned": stats.abandoned,
            "within": {str(k): v for k, v in stats.within.items()}, "per_hour": stats.per_hour,
            "callbacks_open": await self.db.fetchval(
                "SELECT count(*) FROM desk_callbacks b JOIN emergency_calls c ON c.id = b.call_id "
                "WHERE b.done_at IS NULL AND c.training = $1", training),
        }

    async def dashboard(self, hours: int = 24) -> dict[str, Any]:
        """Real figures at the top level (what the centre is measured by); training figures under
        ``training``, counted the same way; the training alarm."""
        since = self.clock() - timedelta(hours=hours)
        states: dict[str, int] = {}
        for p in self.acd.positions.values():
            states[p.state.value] = states.get(p.state.value, 0) + 1
        real = await self._figures(since, training=False)
        drill = await self._figures(since, training=True)
        return {
            **real, "positions": states,
            "positions_training": sum(1 for p in self.acd.positions.values()
                                      if p.training and p.state != a.PositionState.LOGGED_OUT),
            "targets": {"10": "NFPA 1225: 90%", "15": "NENA: 90%"},
            "training": drill, "training_alarm": self.training_alarm_view(),
        }

    async def callbacks(self, include_done: bool = False) -> list[dict[str, Any]]:
        """The callback list (real and training entries, each flagged)."""
        rows = await self.db.fetch(
            "SELECT b.call_id, b.number, b.listed_at, b.waited_s, b.done_at, b.done_by, c.training "
            "FROM desk_callbacks b JOIN emergency_calls c ON c.id = b.call_id "
            + ("" if include_done else "WHERE b.done_at IS NULL ") + "ORDER BY c.training, b.listed_at")
        return [{**dict(r), "listed_at": r["listed_at"].isoformat(),
                 "done_at": r["done_at"].isoformat() if r["done_at"] else None} for r in rows]

    async def callback_done(self, call_id: str, actor: str) -> None:
        status = await self.db.execute(
            "UPDATE desk_callbacks SET done_at = $2, done_by = $3 WHERE call_id = $1 AND done_at IS NULL",
            call_id, self.clock(), actor)
        if status.endswith(" 0"):
            raise DeskError(f"回拨记录 {call_id} 不存在或已处理")
        await self.core.audit.record(actor, "call.callback_done", call_id)

    async def calls_for_incident(self, incident_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT id, number, dialled, offered_at, answered_at, ended_at, incident_created_at, first_dispatch_at, "
            "recording_path <> '' AND recording_deleted_at IS NULL "
            "AS has_recording FROM emergency_calls WHERE incident_id = $1 ORDER BY offered_at", incident_id)
        return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(r).items()} for r in rows]

    async def recording_finished(self, sip_key: str, path: Path, started: datetime, ended: datetime) -> int | None:
        """The trunk closed a call's recording (``trunk.EmergencyDesk``): see :class:`CallRecordings`."""
        return await self.recordings.recording_finished(sip_key, path, started, ended)
