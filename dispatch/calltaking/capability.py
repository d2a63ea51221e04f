"""The call-taking desk capability (started by commandcenter/node.py): ``DeskService`` plus the
emergency-number trunk on a SIP endpoint. Routes reach it as ``Node.desk.service``.

SIP: when the composition root passes the conference gateway's endpoint (the ``sip`` capability
runs here), the emergency trunk is the ``emergency`` route of its INVITE router (other numbers still
reach the gateway); otherwise the desk starts its own endpoint on ``settings.sip`` ports. ``emergency.desk_sip = false`` disables
SIP (the desk then only takes AML and typed locations). The trunk toward the operator (optional) is
``[emergency.trunk]``: registrar/aor/username/password for a registration, or a static peer; only
``[emergency.trunk].peers`` may deliver emergency calls (default loopback; empty = refuse all).

Call recordings are hashed into the recorder's transparency log when the composition root
passes a ``CallRecordingLog`` (a recorder runs in this process). The root also passes the callers'
audio (``CallerMediaSource``) and, where an MCU runs here, the ``CallBridge`` that puts calls into
MCU rooms (both ``mcu.call_rooms.CallRooms``): dispatch never imports mcu.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from core.runtime import CoreServices
from dispatch.calltaking.trunk_trust import TrunkPeer
from dispatch.capability import DispatchCapability
from dispatch.training_runner import TrainingDesk
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.sip.invite_router import with_route
from sip_gateway.sip.useragent import UserAgentConfig

from .recordings import CallRecordingLog
from .service import CallBridge, CallsHeld, DeskService
from .trunk import CallerMediaSource, EmergencyTrunk, TrunkConfig

log = logging.getLogger(__name__)


class DrillHost(Protocol):
    """The dispatch capability's side of training calls (``dispatch.capability.DispatchCapability``)."""

    def attach_desk(self, desk: TrainingDesk | None) -> None: ...


class DeskLease(Protocol):
    """The desk's leadership (``noderpc.lease.Lease``): held now, told when it changes, started and stopped."""

    listeners: list[Callable[[bool], Awaitable[None]]]

    def held(self) -> bool: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class DeskCapability:
    def __init__(self, service: DeskService, trunk: EmergencyTrunk | None, endpoint: SipEndpoint | None,
                 drill: DrillHost | None = None, lease: DeskLease | None = None) -> None:
        self.service = service
        self.trunk = trunk
        self._own_endpoint = endpoint
        self._drill = drill
        self.lease = lease

    async def stop(self) -> None:
        if self.lease is not None:
            await self.lease.stop()  # released: the standby takes over at its next attempt
        if self._drill is not None:
            self._drill.attach_desk(None)
        if self.trunk is not None:
            await self.trunk.close()
        if self._own_endpoint is not None:
            await self._own_endpoint.close()
        await self.service.stop()


def trunk_config(core: CoreServices) -> TrunkConfig:
    """The trunk's configuration from the ``emergency`` settings section."""
    emergency = core.settings.emergency
    trunk = emergency.trunk
    return TrunkConfig(
        numbers=tuple(emergency.numbers), registrar=trunk.registrar, aor=trunk.aor, username=trunk.username,
        password=trunk.password.get_secret_value() if trunk.password else "", peer=trunk.peer,
        recordings_dir=core.settings.var_dir / "recordings" / "calls",
        port_range=(core.settings.rtp.port_min, core.settings.rtp.port_max),
        peers=tuple(TrunkPeer(p.address, p.tls_identity, p.trust_identity, p.name) for p in trunk.peers))


async def start(core: CoreServices, dispatch: DispatchCapability, *, recording_log: CallRecordingLog | None = None,
                callers: CallerMediaSource | None = None, bridge: CallBridge | None = None,
                sip_endpoint: SipEndpoint | None = None, calls_held: CallsHeld | None = None,
                lease: DeskLease | None = None) -> DeskCapability:
    """The desk on `dispatch`; `recording_log`: the recorder's transparency log for call recordings;
    `callers`: the emergency calls' audio (no SIP without it); `bridge`: the MCU's call rooms (the
    browser softphone); `sip_endpoint`: the conference gateway's endpoint whose INVITE router gets the
    emergency route (else the desk opens its own, unless SIP is off); `calls_held`: the calls another
    live desk node holds, which the start-up recovery (``recovery.py``) leaves alone; `lease`: the desk
    leadership (a `--role desk` node): without it this desk neither answers calls nor OPTIONS (503),
    and losing it fences the desk (``DeskService.fence``); gaining it takes over the others' callers."""
    service = DeskService(core, dispatch.service)
    service.calls_held = calls_held
    service.recording_log = recording_log
    if recording_log is None and core.settings.emergency.desk_sip:
        log.warning("desk: no recorder in this process; call recordings are hashed but not in the transparency log")
    service.bridge = bridge  # the browser softphone: each call is an MCU audio room
    service.leadership = lease
    await service.start()
    drill: DrillHost = dispatch
    drill.attach_desk(service)  # the drill rings training calls to training positions only
    trunk: EmergencyTrunk | None = None
    own: SipEndpoint | None = None
    if core.settings.emergency.desk_sip and callers is not None:
        endpoint = sip_endpoint
        if endpoint is None:
            own = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=core.settings.sip.udp_port,
                                              rate=core.settings.sip.invite_rate_per_source,
                                              burst=core.settings.sip.invite_burst_per_source))
            try:
                await own.start()
            except OSError as exc:
                log.warning("desk: SIP port %s unavailable (%s); emergency calls not taken here",
                            core.settings.sip.udp_port, exc)
                own = None
            endpoint = own
        if endpoint is not None:
            trunk = EmergencyTrunk(endpoint, service, trunk_config(core), media=callers, audit=core.audit)
            endpoint.router = with_route(endpoint.router, trunk.route)  # before cascade and conferences
            if lease is not None:
                trunk.active = lease.held
                endpoint.ua.available = lease.held
            trunk.start()
            log.info("desk: emergency numbers %s on SIP port %s", ",".join(trunk.config.numbers),
                     endpoint.config.port)
    if lease is not None:
        async def changed(held: bool) -> None:
            if held:
                await service.take_over()  # the callers the previous holder left: on the callback list now
            else:
                await service.fence()

        lease.listeners.append(changed)
        lease.start()
    return DeskCapability(service, trunk, own, drill, lease)
