"""Conferences: the schedule in PostgreSQL and the rooms running on this node.

`ConferenceService` is what legs (WebRTC, SIP, H.323), the chair console and the dispatch desk
use; they never build `Room`s themselves:

- schedule: `create`, `start`, `extend`, `end`, `list`, `get` (rows in `conferences`);
- admission: `admit(conference_id, caller)` asks the one admission policy of every way in
  (`mcu.admission`: the room of an emergency call is never reachable, the conference runs and is
  not locked, the guest flag, the PIN with its per-source back-off), raising `JoinRefused` with
  the policy's reason code and a Chinese message;
- a running conference (`running(conference_id)`) holds its `Room` and `MediaRunner`; legs call
  `RunningConference.join/leave`, which also keep the site status list the console shows and
  write attendance history;
- every room event is published on the core bus as ``conference.<kind>`` with the conference id.

Standing conferences of the site plan (the demo's 80000001) are created on first start and run
whenever the node runs. A scheduler starts conferences at `starts_at` and ends them at `ends_at`.

Size: about 620 lines: the conference records, their lifecycle and the running-conference
book-keeping the consoles read are one service; the start code is in :mod:`mcu.capability`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from core.runtime import CoreServices
from mcu import events as ev
from mcu.admission import AdmissionPolicy, Admit, Caller, ConferenceFacts, ConferenceKind, PinGuard
from mcu.meeting_notice import Change, MeetingNotice, MeetingNotifier
from mcu.participant import Participant
from mcu.room import Room, RoomError, RoomSettings
from mcu.runner import MediaRunner
from mcu.tiers import TierMachine

log = logging.getLogger(__name__)

SiteStatus = Literal["idle", "calling", "joined", "failed", "left"]
Protocol = Literal["webrtc", "sip", "h323", "demo", "cascade"]

# Events too frequent to persist: delivered to this node's subscribers only.
EPHEMERAL_KINDS = frozenset({"audio_levels"})


class ConferenceError(ValueError):
    """A schedule request that cannot be honoured (bad field, unknown id, wrong state)."""


class JoinRefused(Exception):
    """A join was refused. `code` is stable (for pages and tests), `message` is for people."""

    def __init__(self, code: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class ConferenceRecord:
    id: str
    name: str
    pin: str
    guests: bool
    standing: bool
    sites: list[str]
    starts_at: datetime | None
    ends_at: datetime | None
    status: str
    created_by: str
    kind: ConferenceKind = "meeting"  # "emergency_call": no dial-in path ever reaches it

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ConferenceRecord:
        return cls(row["id"], row["name"], row["pin"], row["guests"], row["standing"], list(row["sites"]),
                   row["starts_at"], row["ends_at"], row["status"], row["created_by"], row["kind"])

    @property
    def dial_in(self) -> bool:
        """Whether dial-in paths (SIP, H.323, WebRTC join, cascade) may reach this conference at all."""
        return self.kind != "emergency_call"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "has_pin": bool(self.pin), "guests": self.guests,
                "standing": self.standing, "sites": self.sites, "status": self.status,
                "starts_at": self.starts_at.isoformat() if self.starts_at else None,
                "ends_at": self.ends_at.isoformat() if self.ends_at else None, "created_by": self.created_by,
                "kind": self.kind}


@dataclass
class SiteState:
    """One line of the console's site list."""

    site_id: str
    name: str
    protocol: str
    status: SiteStatus = "idle"
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "name": self.name, "protocol": self.protocol, "status": self.status,
                "detail": self.detail, "stats": self.stats}


DialAction = Literal["invite", "redial", "hangup"]
DIAL_ACTIONS: tuple[DialAction, ...] = ("invite", "redial", "hangup")


class DialError(ConferenceError):
    """An invite/redial/hang-up/add-by-address that cannot be carried out (nothing was changed).

    `code` is stable (tests, audit), `message` zh-CN; `status` is the console's HTTP answer.
    """

    HTTP_STATUS = {"not_running": 404, "unknown_site": 404, "busy": 409, "not_connected": 409,
                   "no_dialer": 501, "no_ports": 503, "unavailable": 503}

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # 404 unknown conference/site, 409 busy/not connected, 501 no dialer, 503 no ports; else 400.
        self.status = self.HTTP_STATUS.get(code, 400)


_ADDRESS = re.compile(r"[!-~\u00a0-\U0010ffff]{1,256}")  # printable, no spaces or control characters


def protocol_for_address(address: str) -> tuple[str, str]:
    """(protocol, address for its dialer) of a site address typed by the chair.

    ``sip:``/``sips:`` URIs go to the SIP dialer as they are; ``h323:`` addresses and anything
    else (an alias, an E.164 number, an IP or host with optional port, ``alias@host``) to H.323.
    DialError("bad_address") for an empty or unprintable address.
    """
    address = address.strip()
    if not _ADDRESS.fullmatch(address):
        raise DialError("bad_address", f"无效的会场地址：{address[:80]!r}")
    scheme, colon, rest = address.partition(":")
    if colon and scheme.lower() in ("sip", "sips"):
        return "sip", address
    if colon and scheme.lower() == "h323":
        if not rest:
            raise DialError("bad_address", f"无效的会场地址：{address!r}")
        return "h323", rest
    return "h323", address


@typing.runtime_checkable
class AddressDialer(typing.Protocol):
    """A dialer that can also call an address that is not a site of the plan (the console's
    "add a site by address"). Returns the site id the call shows under in the site list."""

    async def invite_address(self, conference: RunningConference, address: str, name: str, actor: str) -> str: ...


class SiteDialer(typing.Protocol):
    """What a SIP/H.323 leg registers so the console's invite/redial/hang-up buttons work.

    `ConferenceService.register_dialer("sip", dialer)`; each method gets the running conference
    and the site id (a meeting room of the plan, its endpoint address is in the plan) and should
    report progress with `conference.set_site_status(site_id, "calling" | "failed", ...)` and
    `conference.join(...)`/`leave(...)` as the call connects or ends. Raise ConferenceError
    (with a Chinese message) to refuse.
    """

    async def invite(self, conference: RunningConference, site_id: str, actor: str) -> None: ...

    async def redial(self, conference: RunningConference, site_id: str, actor: str) -> None: ...

    async def hangup(self, conference: RunningConference, site_id: str, actor: str) -> None: ...


class RemoteSiteProvider(typing.Protocol):
    """Sites of a conference that live on other nodes (the cascade control channel registers one).

    `sites` gives console entries shaped like `site_list()`'s (plus `remote`, `via`, `link`);
    `command` applies a chair command (mute, unmute, roll_call, broadcast, select_view, banner)
    to one of them and returns once the remote node honoured it, or raises RemoteCommandError.
    """

    def sites(self, conference_id: str) -> list[dict[str, Any]]: ...

    async def command(self, conference_id: str, site_id: str, command: str, args: dict[str, Any]) -> None: ...


class RemoteCommandError(ConferenceError):
    """A command for a remote site that was not honoured: `code` is stable, `message` zh-CN."""

    HTTP_STATUS = {"bad_request": 400, "unreachable": 503, "timeout": 504, "unknown_site": 404}

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        """The console's HTTP answer: 400 bad arguments, 503 unreachable, 504 timeout, 404 unknown site,
        else 409 (the remote node refused)."""
        return self.HTTP_STATUS.get(self.code, 409)


class RunningConference:
    """A conference live on this node: its room, media runner and site list."""

    def __init__(self, service: ConferenceService, record: ConferenceRecord, room: Room,
                 runner: MediaRunner) -> None:
        self.service = service
        self.record = record
        self.room = room
        self.runner = runner
        self.tiers = TierMachine()  # its receivers' encoder tiers (WebRTC legs and RTP sites)
        self.sites: dict[str, SiteState] = {}
        self._attendance: dict[str, int] = {}
        plan = service.core.plan
        for room_id in record.sites:
            meeting_room = next((r for r in plan.meeting_rooms if r.id == room_id), None)
            if meeting_room is not None:
                protocol = meeting_room.endpoints[0].protocol if meeting_room.endpoints else "webrtc"
                self.sites[room_id] = SiteState(room_id, meeting_room.name, protocol)

    @property
    def id(self) -> str:
        return self.record.id

    async def join(self, participant_id: str, name: str, protocol: str, *, chair: bool = False) -> Participant:
        """Add a site to the room (RoomError when locked/ended/full/duplicate) and record it."""
        participant = self.room.join(participant_id, name, chair=chair)
        state = self.sites.get(participant_id)
        if state is None:
            state = self.sites[participant_id] = SiteState(participant_id, participant.name, protocol)
        state.status, state.detail, state.protocol = "joined", "", protocol
        self._attendance[participant_id] = await self.service.core.db.fetchval(
            "INSERT INTO conference_attendance (conference_id, participant_id, name, protocol) "
            "VALUES ($1, $2, $3, $4) RETURNING id", self.id, participant_id, participant.name, protocol)
        await self.service.publish_site(self, state)
        return participant

    async def leave(self, participant_id: str, reason: str = "left", detail: str | None = None) -> None:
        """Remove a site (idempotent) and close its attendance record.

        ``detail`` is the text the console shows (default: the reason code); it is set in the
        same step as the status so nobody sees "left" with a stale detail.
        """
        if participant_id in self.room.participants:
            self.room.leave(participant_id, reason)
        state = self.sites.get(participant_id)
        if state is not None and state.status == "joined":
            state.status = "failed" if reason == "failed" else "left"
            state.detail = reason if detail is None else detail
            await self.service.publish_site(self, state)
        row_id = self._attendance.pop(participant_id, None)
        if row_id is not None:
            await self.service.core.db.execute(
                "UPDATE conference_attendance SET left_at = now(), reason = $2 WHERE id = $1", row_id, reason)
        if self.service.bridge and not self.room.participants and self.service.running(self.id) is self:
            await self.service.end(self.id, actor="bridge")  # a bridge room ends when empty

    async def set_site_status(self, site_id: str, status: SiteStatus, detail: str = "",
                              name: str = "", protocol: str = "") -> None:
        """For dial-out legs: calling/failed before a site has joined."""
        state = self.sites.get(site_id) or SiteState(site_id, name or site_id, protocol or "sip")
        self.sites[site_id] = state
        state.status, state.detail = status, detail
        await self.service.publish_site(self, state)

    def site_dtmf(self, participant_id: str, digit: str) -> None:
        """A digit a site pressed in the room (after the IVR): to the service's DTMF listeners."""
        for listener in list(self.service.dtmf_listeners):
            try:
                listener(self, participant_id, digit)
            except Exception:
                log.exception("conference %s: DTMF listener failed", self.id)

    def site_list(self) -> list[dict[str, Any]]:
        """The console's site list: this node's sites, then the remote ones behind cascade links."""
        return self.local_site_list() + self.remote_site_list()

    def remote_site_list(self) -> list[dict[str, Any]]:
        provider = self.service.remote_sites
        return [s for s in provider.sites(self.id) if s["site_id"] not in self.sites] if provider else []

    def is_remote(self, site_id: str | None) -> bool:
        """Whether `site_id` is a site on another node (not one of this node's)."""
        return site_id is not None and site_id not in self.sites and any(
            s["site_id"] == site_id for s in self.remote_site_list())

    async def remote_command(self, site_id: str, command: str, args: dict[str, Any] | None = None) -> None:
        """Send a chair command to a remote site; RemoteCommandError when it is not honoured."""
        provider = self.service.remote_sites
        if provider is None:
            raise RemoteCommandError("unknown_site", f"会场不在本会议中：{site_id}")
        await provider.command(self.id, site_id, command, args or {})

    def local_site_list(self) -> list[dict[str, Any]]:
        """The sites of this node (meeting rooms of the plan and whoever joined here)."""
        room = self.room
        out = []
        for state in self.sites.values():
            item = state.to_json()
            p = room.participants.get(state.site_id)
            item.update(muted=bool(p and p.muted), deaf=bool(p and p.deaf),
                        dial=state.protocol in self.service.dialers,
                        chair=room.chair_id == state.site_id, speaking=bool(room.speakers) and
                        room.speakers[0] == state.site_id)
            out.append(item)
        return out


DtmfListener = typing.Callable[[RunningConference, str, str], None]  # (conference, site, digit)


class ConferenceService:
    """The schedule and the running conferences of this node."""

    def __init__(self, core: CoreServices, room_settings: RoomSettings | None = None,
                 pin_guard: PinGuard | None = None, *, bridge: bool = False, plan_rooms: bool = True) -> None:
        self.core = core
        # Bridge mode (the telecom stand-in): no plan conferences; rooms open on the first
        # dial-in (`open_bridge_room`), mix everyone loop-free and end when the last caller leaves.
        self.bridge = bridge
        self.plan_rooms = plan_rooms  # False: no standing conferences, no scheduler (a desk node's call rooms)
        self.room_settings = room_settings or RoomSettings()
        self.pin_guard = pin_guard or PinGuard()
        self.policy = AdmissionPolicy(self.pin_guard)
        self._running: dict[str, RunningConference] = {}
        self._scheduler: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._publishing: set[asyncio.Task[Any]] = set()
        self.dialers: dict[str, SiteDialer] = {}
        self.remote_sites: RemoteSiteProvider | None = None
        # Who hears the digits sites press once in a room (mcu.content: request to speak by DTMF).
        self.dtmf_listeners: list[DtmfListener] = []
        # Who tells the rooms' contacts of scheduling changes (mcu.meeting_notice; SMS when it runs).
        self.notifier: MeetingNotifier | None = None

    def register_dialer(self, protocol: str, dialer: SiteDialer) -> None:
        """Wire the console's invite/redial/hang-up for sites reached by `protocol` ("sip", "h323")."""
        self.dialers[protocol] = dialer

    def register_remote_sites(self, provider: RemoteSiteProvider | None) -> None:
        """Wire (or with None, unwire) the cascade's remote sites into site lists and chair commands."""
        self.remote_sites = provider

    async def dial(self, conference_id: str, site_id: str, action: DialAction, actor: str) -> None:
        """Invite, redial or hang up a site through its protocol's dialer; ConferenceError if impossible."""
        conf = self._running.get(conference_id)
        if conf is None:
            raise DialError("not_running", f"id: 会议未在进行 {conference_id}")
        state = conf.sites.get(site_id)
        if state is None:
            raise DialError("unknown_site", f"site: 会场不在本会议中 {site_id}")
        if action not in DIAL_ACTIONS:
            raise DialError("bad_action", f"action: 未知操作 {action}")
        dialer = self.dialers.get(state.protocol)
        if dialer is None:
            raise DialError("no_dialer", f"protocol: {state.protocol} 会场暂不支持呼叫控制")
        await getattr(dialer, action)(conf, site_id, actor)

    async def dial_address(self, conference_id: str, address: str, name: str, actor: str) -> tuple[str, str]:
        """Call a site by address into a running conference: (site id, protocol). DialError if impossible.

        The protocol comes from the address (`protocol_for_address`); the call then goes through
        that protocol's dialer like the plan sites' invite, and shows in the site list.
        """
        conf = self._running.get(conference_id)
        if conf is None:
            raise DialError("not_running", f"会议未在进行：{conference_id}")
        protocol, target = protocol_for_address(address)
        dialer = self.dialers.get(protocol)
        if not isinstance(dialer, AddressDialer):
            raise DialError("no_dialer", f"本节点暂不支持按地址呼叫 {protocol.upper()} 会场")
        return await dialer.invite_address(conf, target, name, actor), protocol

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the plan's standing conferences if missing, start them, start the scheduler."""
        if not self.plan_rooms and not self.bridge:
            return
        if self.bridge:
            await self.core.db.execute(
                "UPDATE conferences SET status = 'ended', ended_at = now() WHERE status = 'running' AND node = $1",
                self.core.settings.node_name)
            return
        for plan_conf in self.core.plan.conferences:
            await self.core.db.execute(
                "INSERT INTO conferences (id, name, pin, guests, standing, sites, node) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                plan_conf.id, plan_conf.name, plan_conf.pin, plan_conf.guests, plan_conf.standing,
                plan_conf.sites, self.core.settings.node_name)
        # A node that stopped uncleanly left rows 'running'; standing ones restart below.
        await self.core.db.execute(
            "UPDATE conferences SET status = 'ended', ended_at = now() "
            "WHERE status = 'running' AND NOT standing AND node = $1", self.core.settings.node_name)
        for record in await self.list_conferences():
            if record.standing and record.status != "ended":
                await self.start_conference(record.id, actor="system")
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="conference-scheduler")

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        for conf in list(self._running.values()):
            await self._shut_down(conf, persist_end=not conf.record.standing)
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)

    async def _schedule_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.run_schedule(datetime.now(UTC))
            except (OSError, asyncpg.PostgresError):
                log.exception("conference scheduler")

    async def run_schedule(self, now: datetime) -> None:
        """Start conferences whose time has come; end those past their end time."""
        due = await self.core.db.fetch(
            "SELECT id FROM conferences WHERE status = 'scheduled' AND starts_at <= $1 "
            "AND (ends_at IS NULL OR ends_at > $1)", now)
        for row in due:
            await self.start_conference(row["id"], actor="scheduler")
        over = await self.core.db.fetch(
            "SELECT id FROM conferences WHERE status = 'running' AND ends_at <= $1", now)
        for row in over:
            await self.end(row["id"], actor="scheduler")

    # -- schedule --------------------------------------------------------------------------
    async def list_conferences(self, include_ended: bool = True) -> list[ConferenceRecord]:
        rows = await self.core.db.fetch(
            "SELECT * FROM conferences WHERE $1 OR status <> 'ended' "
            "ORDER BY (status = 'running') DESC, starts_at NULLS FIRST, id", include_ended)
        return [ConferenceRecord.from_row(r) for r in rows]

    async def get(self, conference_id: str) -> ConferenceRecord | None:
        row = await self.core.db.fetchrow("SELECT * FROM conferences WHERE id = $1", conference_id)
        return ConferenceRecord.from_row(row) if row else None

    async def create(self, *, name: str, actor: str, pin: str = "", guests: bool = False,
                     sites: list[str] | None = None, starts_at: datetime | None = None,
                     ends_at: datetime | None = None, conference_id: str | None = None,
                     kind: ConferenceKind = "meeting", notify: bool = False) -> ConferenceRecord:
        """Schedule a conference; ConferenceError names the bad field, nothing is written then.

        ``kind="emergency_call"`` marks the room of an emergency call: no dial-in path reaches it.
        """
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise ConferenceError("name: 会议名称须为 1–100 个字符")
        if pin and not (pin.isdigit() and 4 <= len(pin) <= 12):
            raise ConferenceError("pin: 会议密码须为 4–12 位数字")
        known = {r.id for r in self.core.plan.meeting_rooms}
        unknown = [s for s in sites or [] if s not in known]
        if unknown:
            raise ConferenceError(f"sites: 未知会场 {', '.join(unknown)}")
        if starts_at and ends_at and ends_at <= starts_at:
            raise ConferenceError("ends_at: 结束时间须晚于开始时间")
        if conference_id is not None and not (conference_id.isdigit() and 4 <= len(conference_id) <= 12):
            raise ConferenceError("id: 会议号须为 4–12 位数字")
        if kind not in ("meeting", "emergency_call"):
            raise ConferenceError(f"kind: 未知会议类型 {kind}")
        for _ in range(20):
            new_id = conference_id or f"8{secrets.randbelow(10**7):07d}"
            try:
                row = await self.core.db.fetchrow(
                    "INSERT INTO conferences (id, name, pin, guests, sites, starts_at, ends_at, node, created_by, kind) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
                    new_id, name, pin, guests, sites or [], starts_at, ends_at, self.core.settings.node_name, actor,
                    kind)
            except asyncpg.UniqueViolationError:
                if conference_id is not None:
                    raise ConferenceError(f"id: 会议号 {conference_id} 已存在") from None
                continue
            assert row is not None
            record = ConferenceRecord.from_row(row)
            await self.core.bus.publish("conference.scheduled", {"conference_id": record.id, **record.to_json()})
            await self._notice("created", record, actor, notify)
            return record
        raise ConferenceError("id: 无法分配会议号")

    async def start_conference(self, conference_id: str, actor: str) -> RunningConference:
        """Start now (idempotent for a running conference)."""
        async with self._lock:
            if conference_id in self._running:
                return self._running[conference_id]
            record = await self.get(conference_id)
            if record is None:
                raise ConferenceError(f"id: 会议不存在 {conference_id}")
            if record.status == "ended":
                raise ConferenceError("status: 会议已结束")
            room = Room(record.id, record.name, settings=self.room_settings,
                        on_event=lambda event: self._on_room_event(record.id, event))
            runner = MediaRunner(room)
            await runner.start()
            row = await self.core.db.fetchrow(
                "UPDATE conferences SET status = 'running', started_at = COALESCE(started_at, now()), node = $2 "
                "WHERE id = $1 RETURNING *", record.id, self.core.settings.node_name)
            assert row is not None
            conf = RunningConference(self, ConferenceRecord.from_row(row), room, runner)
            self._running[record.id] = conf
        await self.core.bus.publish("conference.started", {"conference_id": record.id, "by": actor})
        return conf

    async def extend(self, conference_id: str, minutes: int, actor: str) -> ConferenceRecord:
        """Move the end `minutes` later: from the planned end, or from now when that has passed; an
        open-ended conference that has not started yet ends `minutes` after its start."""
        if not 1 <= minutes <= 24 * 60:
            raise ConferenceError("minutes: 延长时间须为 1–1440 分钟")
        row = await self.core.db.fetchrow(
            "UPDATE conferences SET ends_at = GREATEST(COALESCE(ends_at, starts_at, now()), now(), "
            "COALESCE(starts_at, now())) + make_interval(mins => $2) "
            "WHERE id = $1 AND status <> 'ended' RETURNING *", conference_id, minutes)
        if row is None:
            raise ConferenceError(f"id: 会议不存在或已结束 {conference_id}")
        record = ConferenceRecord.from_row(row)
        if conference_id in self._running:
            self._running[conference_id].record = record
        await self.core.bus.publish("conference.extended", {"conference_id": conference_id, "by": actor,
                                                            "ends_at": record.ends_at.isoformat()
                                                            if record.ends_at else None})
        await self._notice("changed", record, actor)
        return record

    async def end(self, conference_id: str, actor: str) -> None:
        """End a conference: every site leaves, the room closes, the row says ended."""
        record = await self.get(conference_id)
        if record is None:
            raise ConferenceError(f"id: 会议不存在 {conference_id}")
        conf = self._running.get(conference_id)
        if conf is not None:
            await self._shut_down(conf, persist_end=True)
        else:
            await self.core.db.execute(
                "UPDATE conferences SET status = 'ended', ended_at = now() WHERE id = $1", conference_id)
        await self.core.bus.publish("conference.ended", {"conference_id": conference_id, "by": actor})
        if record.status == "scheduled":  # ended before it started: cancelled
            await self._notice("cancelled", record, actor)

    async def _notice(self, change: Change, record: ConferenceRecord, actor: str, notify: bool = False) -> None:
        """Tell the notifier (meeting notices by SMS); its failure never fails the scheduling."""
        if self.notifier is None or record.standing or record.kind != "meeting":
            return
        try:
            await self.notifier.meeting_notice(MeetingNotice(change, record.id, record.name, record.starts_at,
                                                             record.ends_at, tuple(record.sites), actor, notify))
        except Exception:  # noqa: BLE001 - a notice that cannot go out is logged, the schedule stands
            log.exception("conference %s: the %s meeting notice failed", record.id, change)

    async def _shut_down(self, conf: RunningConference, persist_end: bool) -> None:
        self._running.pop(conf.id, None)
        for participant_id in list(conf.room.participants):
            await conf.leave(participant_id, "ended")
        if not conf.room.ended:
            conf.room.end()
        await conf.runner.stop()
        if persist_end:
            await self.core.db.execute(
                "UPDATE conferences SET status = 'ended', ended_at = now() WHERE id = $1", conf.id)

    async def open_bridge_room(self, conference_id: str) -> RunningConference:
        """Bridge mode: the room of a dialled number, created (or reopened) on demand."""
        if not self.bridge:
            raise ConferenceError("bridge: 本节点不是桥接节点")
        if not (conference_id.isdigit() and 4 <= len(conference_id) <= 12):
            raise ConferenceError("id: 会议号须为 4–12 位数字")
        conf = self._running.get(conference_id)
        if conf is not None and not conf.room.ended:
            return conf
        await self.core.db.execute(
            "INSERT INTO conferences (id, name, pin, guests, standing, sites, node, created_by) "
            "VALUES ($1, $2, '', true, false, '{}', $3, 'bridge') ON CONFLICT (id) DO UPDATE "
            "SET status = 'scheduled', ended_at = NULL, started_at = NULL",
            conference_id, f"桥接会议 {conference_id}", self.core.settings.node_name)
        conf = await self.start_conference(conference_id, actor="bridge")
        conf.room.all_loop_free = True  # a bridge caller never gets its own picture back
        return conf

    # -- joining ---------------------------------------------------------------------------
    def running(self, conference_id: str) -> RunningConference | None:
        return self._running.get(conference_id)

    def running_conferences(self) -> list[RunningConference]:
        return list(self._running.values())

    async def facts(self, conference_id: str) -> ConferenceFacts:
        """What the admission policy needs to know about a conference (schedule + running room)."""
        record = await self.get(conference_id) if conference_id.isdigit() and len(conference_id) <= 12 else None
        if record is None:
            return ConferenceFacts(conference_id, exists=False)
        conf = self._running.get(conference_id)
        return ConferenceFacts(conference_id, status=record.status, running=conf is not None,
                               locked=conf is not None and conf.room.locked, guests=record.guests, pin=record.pin,
                               kind=record.kind)

    def running_facts(self, conference_id: str) -> ConferenceFacts:
        """`facts` of a conference running on this node, without a database round trip (the SIP
        gateway asks synchronously); an unknown or not running id is ``exists=False``."""
        conf = self._running.get(conference_id)
        if conf is None:
            return ConferenceFacts(conference_id, exists=False)
        record = conf.record
        return ConferenceFacts(conference_id, status=record.status, running=True, locked=conf.room.locked,
                               guests=record.guests, pin=record.pin, kind=record.kind)

    def decide(self, facts: ConferenceFacts, caller: Caller) -> Admit:
        """The policy's verdict (`mcu.admission`); JoinRefused with its code when refused."""
        verdict = self.policy.decide(facts, caller, time.monotonic())
        if not isinstance(verdict, Admit):
            raise JoinRefused(verdict.code, verdict.message, verdict.retry_after)
        return verdict

    async def admit(self, conference_id: str, caller: Caller) -> RunningConference:
        """The running conference ``caller`` may join, or JoinRefused with the policy's reason.

        Every way in (SIP, H.323, WebRTC, cascade links) asks here, with what it knows about the
        caller; the rules are those of `mcu.admission`.
        """
        self.decide(await self.facts(conference_id), caller)
        conf = self._running.get(conference_id)
        if conf is None:  # ended between the two looks
            raise JoinRefused("not_started", "会议尚未开始")
        return conf

    # -- events ----------------------------------------------------------------------------
    def _on_room_event(self, conference_id: str, event: ev.RoomEvent) -> None:
        payload = {"conference_id": conference_id, **ev.event_to_dict(event)}
        kind = payload["kind"]
        if kind in EPHEMERAL_KINDS:
            self.core.bus.deliver_local(f"conference.{kind}", payload)
            return
        self._background(self.core.bus.publish(f"conference.{kind}", payload))
        conf = self._running.get(conference_id)
        if isinstance(event, ev.ParticipantLeft) and conf is not None:
            # A chair's remove() acts on the room directly: keep the site list and history right.
            self._background(conf.leave(event.participant_id, event.reason))

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def publish_site(self, conf: RunningConference, state: SiteState) -> None:
        await self.core.bus.publish("conference.site_status", {"conference_id": conf.id, **state.to_json()})


def utc_in(minutes: float) -> datetime:
    """A UTC time `minutes` from now (scheduling helper for callers and tests)."""
    return datetime.now(UTC) + timedelta(minutes=minutes)


__all__ = ["Caller", "ConferenceError", "ConferenceRecord", "ConferenceService", "JoinRefused", "PinGuard",
           "RemoteCommandError", "RemoteSiteProvider", "RoomError", "RunningConference", "SiteState", "utc_in"]
