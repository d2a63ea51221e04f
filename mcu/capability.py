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
from mcu.streaming.service import StreamingService, load_secret
from sip_gateway.aio.rtp_leg import DscpMarking

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from mcu.cascade.control_service import ConferenceContents, ControlService, ControlStateListener
    from mcu.cascade.service import CascadeService
    from mcu.content.deck import DeckManager
    from mcu.content.service import ContentService
    from mcu.demo_sites import DemoSites
    from mcu.legs.h323_bridge import H323Capability
    from mcu.legs.sip_bfcp import Contents, SipFloors
    from mcu.legs.sip_bridge import SipBridge
    from mcu.legs.webrtc import WebRtcLegs

log = logging.getLogger(__name__)


@dataclass
class McuCapability:
    """The running MCU of a node (`Node.mcu`): conferences, WebRTC legs, demo sites."""

    conferences: ConferenceService
    webrtc: WebRtcLegs | None = None
    demo: list[DemoSites] = field(default_factory=list)
    content: ContentService | None = None  # content token, screen share, request to speak
    decks: DeckManager | None = None  # the chair's slide decks as content (mcu/content/deck.py)
    streaming: StreamingService | None = None  # live HLS for viewers (mcu/streaming/)

    async def stop(self) -> None:
        if self.streaming is not None:
            await self.streaming.close()
        if self.content is not None:
            await self.content.stop()
        for demo in self.demo:
            await demo.stop()
        if self.webrtc is not None:
            await self.webrtc.stop()
        await self.conferences.stop()


async def start_mcu(core: CoreServices, *, plan_rooms: bool = True) -> McuCapability:
    """Conferences (standing ones, scheduler), WebRTC legs and, in the demo, the synthetic sites.

    `plan_rooms` False (a `--role desk` node): only the rooms made at run time (the desk's call rooms)."""
    from mcu.demo_sites import DemoSites, demo_site_ids
    from mcu.legs.webrtc import WebRtcLegs, webrtc_config

    node = core.plan.node(core.settings.node_name)
    service = ConferenceService(core, bridge=node is not None and node.kind == "bridge", plan_rooms=plan_rooms)
    await service.start()
    from mcu.content.service import ContentService

    webrtc = webrtc_config(core)
    content = ContentService(service, webrtc.rtc_configuration())
    role = McuCapability(service, WebRtcLegs(webrtc), content=content)
    role.streaming = StreamingService(service, core.bus, core.audit,
                                      load_secret(core.settings.var_dir / "keys" / "watch-links.key"))
    await content.start()
    from mcu.content.deck import DeckManager
    from mcu.content.deck_render import DeckLimits, DeckRenderer

    deck = core.settings.deck
    role.decks = DeckManager(content, core.settings.var_dir / "decks", DeckRenderer(DeckLimits(
        max_bytes=deck.max_mb * 1024 * 1024, max_pages=deck.max_pages, render_seconds=deck.render_seconds,
        memory_bytes=deck.render_memory_mb * 1024 * 1024, concurrency=deck.concurrency)))
    await role.decks.start()
    if core.settings.demo.enabled and core.settings.demo.demo_sites and not service.bridge:
        for conf in service.running_conferences():
            if conf.record.standing and demo_site_ids(core.plan, conf.record.sites):
                demo = DemoSites(conf, core.plan)
                await demo.start()
                role.demo.append(demo)
    return role


async def start_sip(core: CoreServices, conferences: ConferenceService,
                    content: Contents | None = None) -> SipBridge | None:
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
    floors = await start_floors(settings.media_host or settings.host,
                                (core.settings.rtp.port_min, core.settings.rtp.port_max), content, tls=context)
    bridge = SipBridge(core, conferences, endpoint, settings, media_host=settings.media_host or settings.host,
                       port_range=(core.settings.rtp.port_min, core.settings.rtp.port_max), prompts=prompts,
                       dscp=DscpMarking(core.settings.rtp.dscp_audio, core.settings.rtp.dscp_video),
                       pace_video=core.settings.rtp.pace_video, floors=floors)
    try:
        await endpoint.start()
    except OSError as exc:
        # Another process holds the port: the rest of the node still runs, loudly without SIP.
        log.error("SIP disabled: cannot listen on %s:%s (%s); set sip.udp_port", settings.host,
                  settings.udp_port, exc)
        await endpoint.close()
        if floors is not None:
            await floors.close()
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


async def start_floors(host: str, port_range: tuple[int, int], content: Contents | None, *,
                       listen_range: tuple[int, int] | None = None,
                       tls: tuple[ssl.SSLContext, Path] | None = None) -> SipFloors | None:
    """BFCP for SIP room systems (the node's one BFCP listener, a TCP+UDP port of the RTP range, or of
    ``listen_range``, and with ``tls`` (the SIP TLS context and its certificate) a TLS port; slides
    streams get RTP pairs of ``port_range``); None without content or when no port is free (logged:
    BFCP streams are then refused in SDP)."""
    from mcu.legs.sip_bfcp import SipFloors
    from sip_gateway.aio.bfcp_listener import BfcpListener
    from sip_gateway.aio.tls import fingerprint

    if content is None:
        return None
    listener = BfcpListener(host, listen_range or port_range, tls=tls[0] if tls else None,
                            fingerprint=f"SHA-256 {fingerprint(tls[1])}" if tls else "")
    try:
        await listener.start()
    except OSError as exc:
        log.error("BFCP disabled: %s", exc)
        return None
    return SipFloors(listener, content, host, port_range)


async def start_h323(core: CoreServices, conferences: ConferenceService,
                     content: ContentService | None = None) -> H323Capability | None:
    """Listen for H.323 calls for the MCU's conferences."""
    from mcu.legs.h323_bridge import H323Bridge, H323Capability, H323SiteDialer
    from mcu.legs.h323_settings import bridge_settings
    from mcu.legs.prompts import PromptLibrary

    h323 = core.settings.h323
    if not getattr(h323, "enabled", True):
        return None
    settings = bridge_settings(core.settings)
    library = PromptLibrary(core.settings.var_dir / "prompts", core.settings.http.default_language)
    bridge = H323Bridge(conferences, settings, prompts=await asyncio.to_thread(library.all), content=content)
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


async def start_cascade(core: CoreServices, sip: SipBridge | None,
                        contents: Contents | None = None) -> CascadeService | None:
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
    service.contents = contents  # a bridge node forwards its callers' slides streams
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
                                failover: ControlStateListener | None = None,
                                contents: ConferenceContents | None = None) -> ControlService | None:
    """The control channels to this node's cascade neighbours (remote sites, chair commands, the
    content token across the tree); None when the site plan gives it none. `failover` hears when a
    channel comes and goes; `contents` (the node's content service) makes cascaded conferences share
    one content token."""
    from mcu.cascade.control_service import ControlService
    from mcu.cascade.control_tls import contexts

    plan = core.plan
    me = plan.node(core.settings.node_name)
    if me is None or me.kind != "mcu":
        return None
    children = frozenset(n.name for n in plan.nodes if n.parent == me.name and n.kind == "mcu")
    # a standby city node also serves the counties listing it among their standby_parents, while they
    # cascade into it (their channel follows their links); only with a control address of its own
    standby_children = frozenset(n.name for n in plan.nodes if me.name in n.standby_parents and n.kind == "mcu"
                                 and n.parent != me.name) if me.control else frozenset()
    children |= standby_children
    parent = plan.node(me.parent) if me.parent else None
    if not children and parent is None:
        return None
    if children and not me.control:
        raise ConfigError(plan.source_path, [f"nodes: node {me.name!r} has children but no control address"])
    tls = contexts(core.settings.cascade, serves=bool(children), connects=parent is not None)
    service = ControlService(core, conferences, me.name, cascade_token(core), listen=me.control if children else "",
                             parent=parent, children=children, standby_children=standby_children,
                             reconnect_interval=2.0, auth_timeout=5.0, command_timeout=10.0,
                             keepalive=core.settings.cascade.control_timeout_seconds,
                             server_ssl=tls.server, client_ssl=tls.client, failover=failover, contents=contents)
    await service.start()
    return service
