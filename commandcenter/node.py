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
    desk                  call-taking; the MCU as its CallBridge, the recorder's log  (all, web)
    cascade_control       control channels to the cascade neighbours; tells `cascade`  (all, mcu)

`Node.stop()` stops them in reverse, then the core services; a failing start stops what was
started before the error propagates. Routes read the running node from ``app.state.node``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol, TypeVar

from core.runtime import CoreServices

if TYPE_CHECKING:
    from dispatch.calltaking.capability import DeskCapability
    from dispatch.calltaking.recordings import CallRecordingLog
    from dispatch.capability import DispatchCapability
    from mcu.call_rooms import CallRooms
    from mcu.capability import McuCapability
    from mcu.cascade.control_service import ControlService
    from mcu.cascade.service import CascadeService
    from mcu.legs.h323_bridge import H323Capability
    from mcu.legs.sip_bridge import SipBridge
    from recorder.capability import RecorderRole
    from recorder.conference_recording import ConferenceRecordingRole
    from recorder.live_source import LiveSource

log = logging.getLogger(__name__)

ROLES = ("all", "web", "mcu", "recorder")


class Capability(Protocol):
    """What every running capability offers the root: a way to stop."""

    async def stop(self) -> None: ...


T = TypeVar("T")


@dataclass
class Node:
    """The running node: core services plus its capabilities (fields in start order)."""

    core: CoreServices
    mcu: McuCapability | None = None
    sip: SipBridge | None = None
    h323: H323Capability | None = None
    cascade: CascadeService | None = None
    recorder: RecorderRole | None = None
    conference_recording: ConferenceRecordingRole | None = None
    dispatch: DispatchCapability | None = None
    desk: DeskCapability | None = None
    cascade_control: ControlService | None = None

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
    from recorder import capability as recorder_capability

    core = node.core
    if _runs(role, "mcu"):
        node.mcu = _note("mcu", await mcu_capability.start_mcu(core))
        conferences = node.mcu.conferences
        node.sip = _note("sip", await mcu_capability.start_sip(core, conferences))
        node.h323 = _note("h323", await mcu_capability.start_h323(core, conferences))
        node.cascade = _note("cascade", await mcu_capability.start_cascade(core, node.sip))

    if _runs(role, "recorder"):
        node.recorder = _note("recorder", await recorder_capability.start(core))

    if _runs(role, "mcu", "recorder"):  # needs both in this process; says so otherwise
        node.conference_recording = _note("conference_recording", await recorder_capability.start_conference_recording(
            core.bus, core.audit, _recording_tap(node), node.recorder.service if node.recorder is not None else None))

    if _runs(role, "web"):
        from dispatch.conference import McuConferenceStarter

        # dispatch reaches the MCU only through the ConferenceStarter and CallBridge it declares
        starter = McuConferenceStarter(core.bus, node.mcu.conferences) if node.mcu is not None else None
        node.dispatch = _note("dispatch", await dispatch_capability.start(core, starter))
        rooms = _call_rooms(node)
        node.desk = _note("desk", await desk_capability.start(
            core, node.dispatch, recording_log=_call_recording_log(node), callers=rooms,
            bridge=rooms if node.mcu is not None and node.mcu.webrtc is not None else None,
            sip_endpoint=node.sip.endpoint if node.sip is not None else None))

    # SIP INVITE routing: the conferences' gateway (`sip`), cascade admission (`cascade`) and the
    # emergency trunk (`desk`) each add their route to the endpoint's InviteRouter as they start;
    # the router keeps the one order of sip_gateway/sip/invite_router.py (emergency numbers →
    # cascade children → conferences) whichever starts first.

    if _runs(role, "mcu"):
        assert node.mcu is not None
        # after `cascade`: the control channels tell the failover when they come and go
        node.cascade_control = _note("cascade_control", await mcu_capability.start_cascade_control(
            core, node.mcu.conferences, failover=node.cascade))


def _call_recording_log(node: Node) -> CallRecordingLog | None:
    """The recorder's transparency log for call recordings, when a recorder runs here."""
    if node.recorder is None:
        return None
    from recorder.call_recordings import CallRecordingLogService

    return CallRecordingLogService(node.recorder.service.log)


def _call_rooms(node: Node) -> CallRooms:
    """The callers' audio and, when an MCU with WebRTC runs here, the desk softphone's MCU rooms."""
    from mcu.call_rooms import CallRooms

    if node.mcu is None or node.mcu.webrtc is None:
        return CallRooms()
    return CallRooms(node.mcu, node.sip)


def _recording_tap(node: Node) -> LiveSource | None:
    """What conference recording reads from the MCU, when one runs here."""
    if node.mcu is None:
        return None
    from mcu.recording_tap import RecordingTap

    return RecordingTap(node.mcu.conferences)


__all__ = ["ROLES", "Capability", "Node", "start_node"]
