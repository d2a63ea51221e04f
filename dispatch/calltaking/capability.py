"""The call-taking desk capability (see commandcenter/capabilities.py): ``DeskService`` plus the
emergency-number trunk on a SIP endpoint. Routes reach it as ``core.capabilities["desk"].service``.

SIP: when a capability named ``sip`` runs and exposes ``endpoint`` (the conference gateway), the
emergency trunk installs itself in front of it (other numbers still reach the gateway); otherwise
the desk starts its own endpoint on ``settings.sip`` ports. ``CC_DESK_SIP=off`` disables SIP
(the desk then only takes AML and typed locations). Trunk toward the operator (optional):
``CC_EMERGENCY_TRUNK_REGISTRAR``, ``_AOR``, ``_USERNAME``, ``_PASSWORD`` for a registration,
``CC_EMERGENCY_TRUNK_PEER`` for a static peer.
"""
from __future__ import annotations

import logging
import os

from core.runtime import CoreServices
from mcu.emergency_trunk import EmergencyBridge, EmergencyTrunk, TrunkConfig
from sip_gateway.sip.endpoint import SipEndpoint
from sip_gateway.sip.useragent import UserAgentConfig

from .service import DeskService

log = logging.getLogger(__name__)


class DeskCapability:
    def __init__(self, service: DeskService, trunk: EmergencyTrunk | None, endpoint: SipEndpoint | None) -> None:
        self.service = service
        self.trunk = trunk
        self._own_endpoint = endpoint

    async def stop(self) -> None:
        if self.trunk is not None:
            await self.trunk.close()
        if self._own_endpoint is not None:
            await self._own_endpoint.close()
        await self.service.stop()


def trunk_config(core: CoreServices) -> TrunkConfig:
    env = os.environ.get
    return TrunkConfig(
        numbers=tuple(core.settings.emergency.numbers),
        registrar=env("CC_EMERGENCY_TRUNK_REGISTRAR", ""), aor=env("CC_EMERGENCY_TRUNK_AOR", ""),
        username=env("CC_EMERGENCY_TRUNK_USERNAME", ""), password=env("CC_EMERGENCY_TRUNK_PASSWORD", ""),
        peer=env("CC_EMERGENCY_TRUNK_PEER", ""), recordings_dir=core.settings.var_dir / "recordings" / "calls")


async def start(core: CoreServices) -> DeskCapability | None:
    dispatch = core.capabilities.get("dispatch")
    if dispatch is None:
        log.warning("desk: the dispatch capability is not running here; no call-taking desk")
        return None
    service = DeskService(core, dispatch.service)
    mcu = core.capabilities.get("mcu")
    if mcu is not None and getattr(mcu, "webrtc", None) is not None:
        service.bridge = EmergencyBridge(mcu, core.capabilities.get("sip"))  # the browser softphone: each call is an MCU audio room
    await service.start()
    trunk: EmergencyTrunk | None = None
    own: SipEndpoint | None = None
    if os.environ.get("CC_DESK_SIP", "on").lower() not in ("off", "0", "false", "no"):
        sip = core.capabilities.get("sip")
        endpoint = getattr(sip, "endpoint", None)
        if endpoint is None:
            own = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=core.settings.sip.udp_port))
            try:
                await own.start()
            except OSError as exc:
                log.warning("desk: SIP port %s unavailable (%s); emergency calls not taken here",
                            core.settings.sip.udp_port, exc)
                own = None
            endpoint = own
        if endpoint is not None:
            trunk = EmergencyTrunk(endpoint, service, trunk_config(core))
            trunk.start()
            log.info("desk: emergency numbers %s on SIP port %s", ",".join(trunk.config.numbers),
                     endpoint.config.port)
    return DeskCapability(service, trunk, own)
