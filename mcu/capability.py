"""The MCU's start code: the conference service and each way into it, started by the composition root.

`commandcenter/node.py` calls these in dependency order for the ``mcu`` role and hands each one
the collaborators it needs as arguments (no lookup by name):

* `start_mcu(core)` → `McuCapability`: conferences (standing ones, scheduler), WebRTC legs, demo sites;
* `start_sip(core, conferences)` → `SipBridge` (None: switched off, or its port is taken);
* `start_h323(core, conferences)` → `H323Capability` (None: switched off, or its port is taken);
* `start_cascade(core, sip)` → `CascadeService`, the failover (None: the plan cascades nothing);
* `start_cascade_control(core, conferences, failover)` → `ControlService` (None: no cascade neighbour).

A bad configuration raises `ConfigError` (the node does not start); a taken port only switches
that protocol off, loudly, so the rest of the node runs.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from config.errors import ConfigError
from core.runtime import CoreServices
from mcu.conferences import ConferenceService

if TYPE_CHECKING:
    from mcu.cascade.control_service import ControlService, ControlStateListener
    from mcu.cascade.service import CascadeService
    from mcu.demo_sites import DemoSites
    from mcu.legs.h323_bridge import H323Capability
    from mcu.legs.sip_bridge import SipBridge
    from mcu.legs.webrtc import WebRtcLegs

log = logging.getLogger(__name__)


@dataclass
class McuCapability:
    """The running MCU of a node (`Node.mcu`): conferences, WebRTC legs, demo sites."""

    conferences: ConferenceService
    webrtc: WebRtcLegs | None = None
    demo: list[DemoSites] = field(default_factory=list)

    async def stop(self) -> None:
        for demo in self.demo:
            await demo.stop()
        if self.webrtc is not None:
            await self.webrtc.stop()
        await self.conferences.stop()


async def start_mcu(core: CoreServices) -> McuCapability:
    """Conferences (standing ones, scheduler), WebRTC legs and, in the demo, the synthetic sites."""
    from mcu.demo_sites import DemoSites, demo_site_ids
    from mcu.legs.webrtc import WebRtcLegs, webrtc_config

    node = core.plan.node(core.settings.node_name)
    service = ConferenceService(core, bridge=node is not None and node.kind == "bridge")
    await service.start()
    role = McuCapability(service, WebRtcLegs(webrtc_config(core)))
    if core.settings.demo.enabled and core.settings.demo.demo_sites and not service.bridge:
        for conf in service.running_conferences():
            if conf.record.standing and demo_site_ids(core.plan, conf.record.sites):
                demo = DemoSites(conf, core.plan)
                await demo.start()
                role.demo.append(demo)
    return role


async def start_sip(core: CoreServices, conferences: ConferenceService) -> SipBridge | None:
    """SIP dial-in/dial-out for this node's conferences.

    A bad TLS certificate/key is a configuration error (the node does not start); a taken port
    only disables SIP (or its TLS listener) with a logged error, so the rest of the node runs.
    """
    from mcu.legs.prompts import PromptLibrary
    from mcu.legs.sip_bridge import SipBridge, SipSiteDialer
    from mcu.legs.sip_config import client_tls_context, tls_context, user_agent_config
    from sip_gateway.aio.sip_endpoint import SipEndpoint
    from sip_gateway.aio.tls import fingerprint

    settings = core.settings.sip
    if not settings.enabled:
        return None
    context = (tls_context(settings, core.settings.var_dir, core.settings.emergency.trunk.tls_ca)
               if settings.tls_port else None)
    endpoint = SipEndpoint(user_agent_config(settings), client_tls_context=client_tls_context(settings))
    # Spoken IVR prompts (espeak-ng renders them once into var/prompts; beeps alone without it).
    library = PromptLibrary(core.settings.var_dir / "prompts", core.settings.http.default_language)
    prompts = await asyncio.to_thread(library.all)
    bridge = SipBridge(core, conferences, endpoint, settings, media_host=settings.media_host or settings.host,
                       port_range=(core.settings.rtp.port_min, core.settings.rtp.port_max), prompts=prompts)
    try:
        await endpoint.start()
    except OSError as exc:
        # Another process holds the port: the rest of the node still runs, loudly without SIP.
        log.error("SIP disabled: cannot listen on %s:%s (%s); set sip.udp_port", settings.host,
                  settings.udp_port, exc)
        await endpoint.close()
        return None
    transports = "UDP+TCP"
    if context is not None:
        try:
            await endpoint.start_tls(context[0], settings.tls_port)
            transports += f", TLS {endpoint.tls_port}"
            log.info("SIP TLS certificate %s, SHA-256 %s", context[1], fingerprint(context[1]))
        except OSError as exc:
            log.error("SIP over TLS disabled: cannot listen on %s:%s (%s); set sip.tls_port", settings.host,
                      settings.tls_port, exc)
    conferences.register_dialer("sip", SipSiteDialer(bridge))
    log.info("SIP listening on %s:%s (%s)", settings.host, endpoint.config.port, transports)
    print(f"SIP: sip:<会议号>@{settings.host}:{endpoint.config.port}", flush=True)
    if endpoint.tls_context is not None:
        print(f"SIP TLS: sips:<会议号>@{settings.host}:{endpoint.tls_port}", flush=True)
    return bridge


async def start_h323(core: CoreServices, conferences: ConferenceService) -> H323Capability | None:
    """Listen for H.323 calls for the MCU's conferences."""
    from mcu.legs.h323_bridge import H323Bridge, H323Capability, H323SiteDialer
    from mcu.legs.h323_settings import bridge_settings
    from mcu.legs.prompts import PromptLibrary

    h323 = core.settings.h323
    if not getattr(h323, "enabled", True):
        return None
    settings = bridge_settings(core.settings)
    library = PromptLibrary(core.settings.var_dir / "prompts", core.settings.http.default_language)
    bridge = H323Bridge(conferences, settings, prompts=await asyncio.to_thread(library.all))
    try:
        await bridge.start()
    except OSError as exc:
        # Another process holds the port: the rest of the node still runs, loudly without H.323.
        log.error("H.323 disabled: cannot listen on %s (TCP %d, RAS UDP %d in gatekeeper mode %s): %s; "
                  "set h323.signalling_port / h323.ras_port", settings.host, settings.port, settings.ras_port,
                  settings.gatekeeper, exc)
        with contextlib.suppress(Exception):
            await bridge.stop()
        return None
    conferences.register_dialer("h323", H323SiteDialer(bridge))
    log.info("H.323 listening on %s:%d (gatekeeper: %s)", settings.host, settings.port, settings.gatekeeper)
    return H323Capability(bridge)


async def start_cascade(core: CoreServices, sip: SipBridge | None) -> CascadeService | None:
    """The cascade links and their failover (after SIP, which carries them): None when the plan
    cascades nothing; a ConfigError when it does and SIP does not run here."""
    from mcu.cascade.node_check import cascade_problems
    from mcu.cascade.service import CascadeService

    plan = core.plan
    if not plan.nodes:
        return None
    problems = cascade_problems(core.settings, plan)
    if problems:
        raise ConfigError(None, problems)
    node = plan.node(core.settings.node_name)
    assert node is not None
    if sip is None:
        raise ConfigError(None, ["sip: 级联需要 SIP 能力（端口被占用或未启用）"])
    service = CascadeService(core, sip, node, plan, core.settings.cascade)
    await service.start()
    print(f"cascade: node {node.name} ({node.kind})", flush=True)
    return service


def cascade_token(core: CoreServices) -> bytes:
    """The shared secret of the cascade control channels; a ConfigError when it is too short."""
    secret = core.settings.cascade.token
    value = secret.get_secret_value().encode() if secret is not None else b""
    if len(value) < 16:
        raise ConfigError(None, ["cascade.token: 本节点参与级联，须设置至少 16 字节的级联控制口令 "
                                 "(CC_CASCADE__TOKEN)"])
    return value


async def start_cascade_control(core: CoreServices, conferences: ConferenceService,
                                failover: ControlStateListener | None = None) -> ControlService | None:
    """The control channels to this node's cascade neighbours (remote sites, chair commands);
    None when the site plan gives it none. `failover` hears when a channel comes and goes."""
    from mcu.cascade.control_service import ControlService
    from mcu.cascade.control_tls import contexts

    plan = core.plan
    me = plan.node(core.settings.node_name)
    if me is None or me.kind != "mcu":
        return None
    children = frozenset(n.name for n in plan.nodes if n.parent == me.name and n.kind == "mcu")
    parent = plan.node(me.parent) if me.parent else None
    if not children and parent is None:
        return None
    if children and not me.control:
        raise ConfigError(plan.source_path, [f"nodes: node {me.name!r} has children but no control address"])
    tls = contexts(core.settings.cascade, serves=bool(children), connects=parent is not None)
    service = ControlService(core, conferences, me.name, cascade_token(core), listen=me.control if children else "",
                             parent=parent, children=children,
                             reconnect_interval=2.0, auth_timeout=5.0, command_timeout=10.0,
                             keepalive=core.settings.cascade.control_timeout_seconds,
                             server_ssl=tls.server, client_ssl=tls.client, failover=failover)
    await service.start()
    return service
