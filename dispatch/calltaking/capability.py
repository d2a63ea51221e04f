"""The call-taking desk capability (see commandcenter/capabilities.py): ``DeskService`` plus the
emergency-number trunk on a SIP endpoint. Routes reach it as ``core.capabilities["desk"].service``.

SIP: when a capability named ``sip`` runs and exposes ``endpoint`` (the conference gateway), the
emergency trunk installs itself in front of it (other numbers still reach the gateway); otherwise
the desk starts its own endpoint on ``settings.sip`` ports. ``emergency.desk_sip = false`` disables
SIP (the desk then only takes AML and typed locations). The trunk toward the operator (optional) is
``[emergency.trunk]``: registrar/aor/username/password for a registration, or a static peer; only
``[emergency.trunk].peers`` may deliver emergency calls (default loopback; empty = refuse all).

Call recordings are hashed into the recorder's transparency log when the composition root
(``commandcenter.wiring``) passes a ``CallRecordingLog`` (a recorder runs in this process).
"""
from __future__ import annotations

import logging
from typing import Protocol

from core.runtime import CoreServices
from dispatch.training_runner import TrainingDesk
from mcu.emergency_trunk import EmergencyBridge, EmergencyTrunk, TrunkConfig
from mcu.trunk_trust import TrunkPeer
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.sip.useragent import UserAgentConfig

from .recordings import CallRecordingLog
from .service import DeskService

log = logging.getLogger(__name__)


class DrillHost(Protocol):
    """The dispatch capability's side of training calls (``dispatch.capability.DispatchCapability``)."""

    def attach_desk(self, desk: TrainingDesk | None) -> None: ...


class DeskCapability:
    def __init__(self, service: DeskService, trunk: EmergencyTrunk | None, endpoint: SipEndpoint | None,
                 drill: DrillHost | None = None) -> None:
        self.service = service
        self.trunk = trunk
        self._own_endpoint = endpoint
        self._drill = drill

    async def stop(self) -> None:
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


async def start(core: CoreServices, recording_log: CallRecordingLog | None = None) -> DeskCapability | None:
    dispatch = core.capabilities.get("dispatch")
    if dispatch is None:
        log.warning("desk: the dispatch capability is not running here; no call-taking desk")
        return None
    service = DeskService(core, dispatch.service)
    service.recording_log = recording_log
    if recording_log is None and core.settings.emergency.desk_sip:
        log.warning("desk: no recorder in this process; call recordings are hashed but not in the transparency log")
    mcu = core.capabilities.get("mcu")
    if mcu is not None and getattr(mcu, "webrtc", None) is not None:
        service.bridge = EmergencyBridge(mcu, core.capabilities.get("sip"))  # the browser softphone: each call is an MCU audio room
    await service.start()
    drill: DrillHost | None = dispatch if hasattr(dispatch, "attach_desk") else None
    if drill is not None:
        drill.attach_desk(service)  # the drill rings training calls to training positions only
    trunk: EmergencyTrunk | None = None
    own: SipEndpoint | None = None
    if core.settings.emergency.desk_sip:
        sip = core.capabilities.get("sip")
        endpoint = getattr(sip, "endpoint", None)
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
            trunk = EmergencyTrunk(endpoint, service, trunk_config(core), audit=core.audit)
            trunk.start()
            log.info("desk: emergency numbers %s on SIP port %s", ",".join(trunk.config.numbers),
                     endpoint.config.port)
    return DeskCapability(service, trunk, own, drill)
