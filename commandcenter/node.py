"""The typed composition root: what one node runs, built in dependency order for its role.

A `Node` holds the core services (database, bus, identity, audit) and one typed, optional
attribute per capability; None means "not running in this process" (another role, switched off
in the settings, or its port was taken). `start_node(core, role)` builds them top to bottom, each
given its collaborators as arguments typed by the `Protocol`s the consumer declares:

    mcu                   conferences, WebRTC legs, demo sites           (roles all, mcu)
    sip, h323             the SIP and H.323 ways into the conferences    (all, mcu)
    cascade               the cascade links' failover, over SIP          (all, mcu)
    recorder              camera recording                               (all, recorder)
    conference_recording  MCU rooms into the recorder's store            (all; mcu and recorder both here)
    dispatch              incidents and units; the MCU as its ConferenceStarter   (all, web)
    desk                  call-taking; the MCU as its CallBridge, the recorder's log  (all, web, desk)
                          (a web node with `emergency.remote_desk` runs none: it reaches the desk node)
    cascade_control       control channels to the cascade neighbours; tells `cascade`  (all, mcu)
    alerts                public warnings (CAP); the MCU as its WarningRooms, when here  (all, web)
    monitoring            gauges, MQTT ingest, alarms; dispatch + plans as its FloodResponse  (all, web)

Before them all, `rpc` (noderpc/): this node's heartbeat, the pins of the rooms, calls and
recordings it hosts, and node RPC (serving the others, and calling the node that hosts a room).

`Node.stop()` stops them in reverse, then the core services; a failing start stops what was
started before the error propagates. Routes read the running node from ``app.state.node``.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from core.runtime import CoreServices

if TYPE_CHECKING:
    from alerts.capability import AlertsCapability
    from alerts.channels import WarningRooms
    from dispatch.calltaking.capability import DeskCapability
    from dispatch.calltaking.recordings import CallRecordingLog
    from dispatch.capability import DispatchCapability
    from mcu.call_rooms import CallRooms
    from mcu.capability import McuCapability
    from mcu.cascade.control_service import ControlService
    from mcu.cascade.service import CascadeService
    from mcu.conferences import ConferenceService
    from mcu.legs.h323_bridge import H323Capability
    from mcu.legs.sip_bridge import SipBridge
    from monitoring.capability import MonitoringCapability
    from monitoring.response import AlarmNotice, FloodResponse
    from noderpc.lease import Lease
    from noderpc.service import RpcCapability
    from recorder.capability import RecorderRole
    from recorder.conference_recording import ConferenceRecordingRole
    from recorder.live_source import LiveSource
    from sms.capability import SmsCapability

log = logging.getLogger(__name__)

ROLES = ("all", "web", "mcu", "recorder", "desk")
DESK_LEASE = "desk"  # the lease the `--role desk` nodes hold in turn (noderpc/lease.py)


class Capability(Protocol):
    """What every running capability offers the root: a way to stop."""

    async def stop(self) -> None: ...


T = TypeVar("T")


@dataclass
class Node:
    """The running node: core services plus its capabilities (fields in start order)."""

    core: CoreServices
    rpc: RpcCapability | None = None
    mcu: McuCapability | None = None
    sip: SipBridge | None = None
    h323: H323Capability | None = None
    cascade: CascadeService | None = None
    recorder: RecorderRole | None = None
    conference_recording: ConferenceRecordingRole | None = None
    sms: SmsCapability | None = None
    dispatch: DispatchCapability | None = None
    desk: DeskCapability | None = None
    cascade_control: ControlService | None = None
    alerts: AlertsCapability | None = None
    monitoring: MonitoringCapability | None = None

    def running(self) -> list[str]:
        """The names of the running capabilities, in start order."""
        return [f.name for f in fields(self) if f.name != "core" and getattr(self, f.name) is not None]

    async def stop_capabilities(self) -> None:
        """Stop the running capabilities in reverse start order; one failing stop does not block the rest."""
        for name in reversed(self.running()):
            capability: Capability = getattr(self, name)
            setattr(self, name, None)
            try:
                await capability.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                log.exception("stopping %s failed", name)

    async def stop(self) -> None:
        """Stop the capabilities, then the core services. Safe to call twice."""
        await self.stop_capabilities()
        await self.core.stop()


def _note(name: str, capability: T) -> T:
    if capability is not None:
        log.info("started %s", name)
    return capability


async def start_node(core: CoreServices, role: str) -> Node:
    """The node of `role` (one of ROLES) on running `core`; if a start fails, those started are stopped."""
    node = Node(core)
    try:
        await _start_capabilities(node, role)
    except BaseException:
        await node.stop_capabilities()
        raise
    return node


def _runs(role: str, *roles: str) -> bool:
    return role == "all" or role in roles


async def _start_capabilities(node: Node, role: str) -> None:
    """Start `role`'s capabilities into `node`, each after everything it uses."""
    from dispatch import capability as dispatch_capability
    from dispatch.calltaking import capability as desk_capability
    from mcu import capability as mcu_capability
    from noderpc import service as rpc_capability
    from recorder import capability as recorder_capability

    core = node.core
    node.rpc = _note("rpc", await rpc_capability.start(core, role))
    if role == "desk":  # the desk's call rooms (the softphone): an MCU engine without the plan's rooms
        node.mcu = _note("mcu", await mcu_capability.start_mcu(core, plan_rooms=False))
        node.sip = _note("sip", await mcu_capability.start_sip(core, node.mcu.conferences, node.mcu.content))

    if _runs(role, "mcu"):
        node.mcu = _note("mcu", await mcu_capability.start_mcu(core))
        conferences = node.mcu.conferences
        node.sip = _note("sip", await mcu_capability.start_sip(core, conferences, node.mcu.content))
        node.h323 = _note("h323", await mcu_capability.start_h323(core, conferences, node.mcu.content))
        node.cascade = _note("cascade", await mcu_capability.start_cascade(core, node.sip, node.mcu.content))
        node.rpc.host(_HostedRooms(conferences, node.cascade))  # pinned to this node while they run here

    if _runs(role, "recorder"):
        node.recorder = _note("recorder", await recorder_capability.start(core))

    if _runs(role, "mcu", "recorder"):  # needs both in this process; says so otherwise
        node.conference_recording = _note("conference_recording", await recorder_capability.start_conference_recording(
            core.bus, core.audit, _recording_tap(node), node.recorder.service if node.recorder is not None else None))

    if node.conference_recording is not None:
        node.rpc.host(_HostedRecordings(node.conference_recording))

    runs_desk = role == "desk" or (_runs(role, "web") and not (role == "web" and core.settings.emergency.remote_desk))
    if _runs(role, "web", "desk"):
        from dispatch.conference import McuConferenceStarter

        # dispatch reaches the MCU only through the ConferenceStarter and CallBridge it declares; a desk
        # node's MCU engine holds only call rooms, so its dispatch opens no command conference
        starter = McuConferenceStarter(core.bus, node.mcu.conferences) if node.mcu is not None and role != "desk" \
            else None
        from sms import capability as sms_capability

        # SMS (off unless sms.enabled): duty posts resolve through the dispatch duty roster; the plans
        # send their activation notice through it (the SmsNotifier they declare). Not on a desk node.
        if role != "desk":
            node.sms = _note("sms", await sms_capability.start(core, _DutyPosts(core)))
        if node.sms is not None and node.mcu is not None:
            # meeting notices: the schedule reaches SMS only through the MeetingNotifier it declares
            node.mcu.conferences.notifier = node.sms.meetings
        node.dispatch = _note("dispatch", await dispatch_capability.start(
            core, starter, sms=node.sms.service if node.sms is not None else None))
    if runs_desk:
        assert node.dispatch is not None
        rooms = _call_rooms(node)
        node.desk = _note("desk", await desk_capability.start(
            core, node.dispatch, recording_log=_call_recording_log(node) or await _desk_recording_log(node, role),
            callers=rooms,
            bridge=rooms if node.mcu is not None and node.mcu.webrtc is not None else None,
            sip_endpoint=node.sip.endpoint if node.sip is not None else None,
            calls_held=_CallsHeldElsewhere(node.rpc), lease=_desk_lease(node) if role == "desk" else None))
        if node.desk is not None:
            node.rpc.host(node.desk.service)  # its live calls are pinned to this node

    # SIP INVITE routing: the conferences' gateway (`sip`), cascade admission (`cascade`) and the
    # emergency trunk (`desk`) each add their route to the endpoint's InviteRouter as they start;
    # the router keeps the one order of sip_gateway/sip/invite_router.py (emergency numbers →
    # cascade children → conferences) whichever starts first.

    if _runs(role, "mcu"):
        assert node.mcu is not None
        # after `cascade`: the control channels tell the failover when they come and go
        node.cascade_control = _note("cascade_control", await mcu_capability.start_cascade_control(
            core, node.mcu.conferences, failover=node.cascade, contents=node.mcu.content))
        if node.cascade is not None and node.cascade_control is not None:
            node.cascade.attach_content(node.cascade_control)  # the links' content follows the tree
            node.cascade.attach_control(node.cascade_control)  # the control channel follows the parent

    if _runs(role, "web"):
        from alerts import capability as alerts_capability

        # alerts reaches the meeting rooms and SMS only through the WarningRooms and WarningSms it declares
        node.alerts = _note("alerts", await alerts_capability.start(
            core, _warning_rooms(node), sms=node.sms.service if node.sms is not None else None))

        from monitoring import capability as monitoring_capability

        # after dispatch: an alarm opens a 三防 incident or proposes a plan through the FloodResponse
        node.monitoring = _note("monitoring", await monitoring_capability.start(core, _flood_response(node)))


class _UpLinks(Protocol):
    def joined_up(self, conference_id: str) -> bool: ...


class _HostedRooms:
    """The rooms this node hosts (its running conferences), for the pins. A conference this node
    has joined into its parent's instance (cascade) is not claimed: the parent's instance is the one
    the chair runs. So a standby city node takes the room over only once its link to the city is
    down (and the city's heartbeat stale), and gives it back when it joins the city again."""

    def __init__(self, conferences: ConferenceService, cascade: _UpLinks | None = None) -> None:
        self.conferences = conferences
        self.cascade = cascade

    def hosted(self) -> dict[str, list[str]]:
        return {"room": [c.id for c in self.conferences.running_conferences()
                         if self.cascade is None or not self.cascade.joined_up(c.id)]}


class _DutyPosts:
    """Who holds a duty post now, from the dispatch duty roster (sms.service.DutyDirectory)."""

    def __init__(self, core: CoreServices) -> None:
        from dispatch.plans.duty import DutyRoster

        self.roster = DutyRoster(core)

    async def on_duty(self, post: str) -> Sequence[str]:
        shift = await self.roster.shift_at()
        return shift.posts.get(post, ()) if shift is not None else ()


class _HostedRecordings:
    """The conference recordings running on this node, for the pins."""

    def __init__(self, role: ConferenceRecordingRole) -> None:
        self.role = role

    def hosted(self) -> dict[str, list[str]]:
        return {"recording": [h.conference_id for h in self.role.recorder.recordings()]}


class _CallsHeldElsewhere:
    """The desk among the other nodes: calls pinned to another live node, and which desk nodes are dead."""

    def __init__(self, rpc: RpcCapability) -> None:
        self.rpc = rpc

    @property
    def node_id(self) -> str:
        return self.rpc.node_id

    async def dead(self, node_ids: list[str]) -> set[str]:
        from noderpc.pinning import is_alive

        registry = self.rpc.registry
        nodes = {n.node_id: n for n in await registry.nodes()}
        now = await registry.now()
        return {n for n in node_ids if n not in nodes or not is_alive(nodes[n], now, registry.rule)}

    async def held_elsewhere(self, call_ids: list[str]) -> set[str]:
        from noderpc.pinning import OwnerState

        held = set()
        for call_id in call_ids:
            owner = await self.rpc.registry.owner("call", call_id)
            if owner.state is OwnerState.ALIVE and owner.node is not None and owner.node.node_id != self.rpc.node_id:
                held.add(call_id)
        return held


def _desk_lease(node: Node) -> Lease:
    """The desk's leadership among the `--role desk` nodes: the lease "desk" in PostgreSQL
    (time to live `dead_after_seconds`, renewed every `heartbeat_seconds`)."""
    from noderpc.lease import Lease, LeaseRule

    assert node.rpc is not None
    nodes = node.core.settings.nodes
    return Lease(node.core.db, DESK_LEASE, node.rpc.node_id, LeaseRule(nodes.dead_after_seconds, nodes.heartbeat_seconds))


def _call_recording_log(node: Node) -> CallRecordingLog | None:
    """The recorder's transparency log for call recordings, when a recorder runs here."""
    if node.recorder is None:
        return None
    from recorder.call_recordings import CallRecordingLogService

    return CallRecordingLogService(node.recorder.service.log)


async def _desk_recording_log(node: Node, role: str) -> CallRecordingLog | None:
    """A `--role desk` node runs no recorder: it keeps its own transparency log for the calls it records,
    ``desk-<node name>-<random>``, named once per var dir (``desk-log-id``: two live processes never share
    a var dir, so each log has one writer), signed with a key under its var dir (``keys``). Its recordings
    are exported by this node (a web node routes the export here), so the export's proofs lead to this
    log's signed head and public key."""
    if role != "desk":
        return None
    from recorder.call_recordings import CallRecordingLogService
    from recorder.pg_storage import PgLogStorage
    from recorder.signing import KeyStore
    from recorder.transparency_log import TransparencyLog

    core = node.core
    var = core.settings.var_dir
    log_id = await asyncio.to_thread(_desk_log_id, var / "desk-log-id", f"desk-{core.settings.node_name}")
    log = TransparencyLog(PgLogStorage(core.db), KeyStore(var / "keys"), log_id)
    await log.open()
    return CallRecordingLogService(log)


def _desk_log_id(record: Path, prefix: str) -> str:
    """The log id this var dir's desk node writes (created on first use, kept across restarts)."""
    try:
        found = record.read_text().strip()
    except FileNotFoundError:
        found = ""
    if not found:
        found = f"{prefix[:40]}-{secrets.token_hex(4)}"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(found + "\n")
    return found


def _call_rooms(node: Node) -> CallRooms:
    """The callers' audio and, when an MCU with WebRTC runs here, the desk softphone's MCU rooms."""
    from mcu.call_rooms import CallRooms

    if node.mcu is None or node.mcu.webrtc is None:
        return CallRooms()
    return CallRooms(node.mcu, node.sip)


def _warning_rooms(node: Node) -> WarningRooms | None:
    """The MCU's side of warnings in meeting rooms (banner, broadcast call), when an MCU runs here."""
    if node.mcu is None:
        return None
    from mcu.warning_rooms import McuWarningRooms

    return McuWarningRooms(node.mcu.conferences)


class _DispatchFloodResponse:
    """monitoring's `FloodResponse` over the dispatch and plans services of this node."""

    def __init__(self, dispatch: DispatchCapability) -> None:
        self.dispatch = dispatch

    async def open_incident(self, notice: AlarmNotice) -> str:
        incident = await self.dispatch.service.create_incident(
            category="flood_control", subtype="flood", priority=1 if notice.severity == "critical" else 2,
            lon=notice.lon, lat=notice.lat, actor="monitoring", description=notice.description(),
            location_source="gauge")
        return str(incident.id)

    async def plan_keys(self) -> set[str]:
        return {str(p["key"]) for p in await self.dispatch.plans.plans()}

    async def propose_plan(self, incident_id: str, plan_key: str, level: str, notice: AlarmNotice) -> dict[str, Any]:
        names = {p["key"]: p["name"] for p in await self.dispatch.plans.plans()}
        return {"plan": plan_key, "plan_name": names.get(plan_key, plan_key), "level": level,
                "incident": incident_id, "status": "proposed"}


def _flood_response(node: Node) -> FloodResponse | None:
    """Dispatch and plans as monitoring's responder, when dispatch runs here."""
    return _DispatchFloodResponse(node.dispatch) if node.dispatch is not None else None


class _RoomCalls:
    """The recorder's `TapCalls`: node RPC to the node hosting a conference (else any live MCU node)."""

    def __init__(self, rpc: RpcCapability) -> None:
        self.rpc = rpc

    async def call_room(self, conference_id: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        from noderpc.transport import RpcError
        from recorder.remote_tap import RemoteTapError

        try:
            try:
                return await self.rpc.rpc.call_owner("room", conference_id, method, args)
            except RpcError as exc:
                if exc.code != "unpinned":
                    raise
                nodes = await self.rpc.registry.alive("mcu")
                if not nodes:
                    raise RemoteTapError("unavailable", "当前没有运行中的 MCU 节点") from None
                return await self.rpc.rpc.call(nodes[0].node_id, method, args)
        except RpcError as exc:
            code = {"tap.not_running": "not_running"}.get(exc.code, "unavailable")
            raise RemoteTapError(code, exc.message if code != "unavailable" else
                                 f"会议所在节点无法提供录制流（{exc.code}）") from None


def _recording_tap(node: Node) -> LiveSource | None:
    """What conference recording reads from the MCU: the MCU of this process, or on a `--role recorder`
    node the conferences of the MCU nodes through their recording tap streams (recorder/remote_tap.py)."""
    if node.mcu is None:
        if node.recorder is None or node.rpc is None or not node.rpc.enabled:
            return None
        from recorder.remote_tap import RemoteLiveSource

        return RemoteLiveSource(_RoomCalls(node.rpc))
    from mcu.recording_tap import RecordingTap

    return RecordingTap(node.mcu.conferences)


__all__ = ["ROLES", "Capability", "Node", "start_node"]
