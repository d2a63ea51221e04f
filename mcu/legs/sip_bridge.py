"""SIP sites in MCU conferences: the gateway's Directory/Room on the ConferenceService.

`SipBridge` is the ``sip`` capability (``Node.sip``). It runs one
:class:`~sip_gateway.aio.sip_endpoint.SipEndpoint` (UDP+TCP on ``settings.sip``, TLS on
``sip.tls_port`` with the configured or a generated self-signed certificate) and a
:class:`~mcu.legs.sip.SipGateway` whose directory is the set of *running*
conferences; every call's RTP/RTCP ports come from ``settings.rtp`` (503 when none are left):

* dial-in: ``sip:<conference-id>@host`` joins that conference (PIN by DTMF when it has one,
  checked by ``ConferenceService.admit`` with its per-source back-off, see
  :class:`ConferencePins`; conferences that admit no guests digest-challenge the INVITE, so
  only registered accounts get in; the room of an emergency call is refused with 403); any
  other user (``sip:ivr@host``) gets the IVR, which asks for the id and PIN and treats a
  conference the caller may not enter like an unknown one;
* dial-out (:meth:`SipBridge.invite`, :meth:`redial`, :meth:`hangup`, and through
  :class:`SipSiteDialer` the console's site buttons and "add a site by address"): to a site of
  the site plan (its SIP endpoint address, or the registered contact of that user when it
  registered with us) or to any SIP URI;
* every joined call becomes a conference participant through :class:`mcu.legs.site_media.SiteMedia`
  (the same glue H.323 uses), with the leg's negotiated codec, packetization mode and a
  resolution its H.264 level allows;
* site status (calling / joined / failed with the reason / left) and call statistics go to the
  conference's site list and the bus (``conference.site_status``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from config.settings import SipSettings
from core.runtime import CoreServices
from mcu.admission import Caller
from mcu.conferences import ConferenceService, DialError, JoinRefused, RunningConference
from mcu.legs.audio_fec import AudioFec, SipAudioFec, opus_fmtp_uses_fec
from mcu.legs.ivr import PinVerdict
from mcu.legs.sip import Screening, SipGateway, SipSite
from mcu.legs.sip_bfcp import SipFloors
from mcu.legs.site_media import SiteMedia, VideoFormat, size_for_h264_level
from mcu.legs.site_rate import SiteRate, with_line
from mcu.room import RoomError
from mcu.runner import deprioritise_current_thread
from mcu.sip_auth_audit import SipAuthAudit
from sip_gateway.aio.h224_channel import H224Channel
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.rtp_leg import DscpMarking, MediaLeg
from sip_gateway.aio.sip_endpoint import Answer, SipEndpoint
from sip_gateway.rtp.media_description import ExtraMedia, LocalMedia, MediaStream
from sip_gateway.rtp.session import RateFeedback, ReceptionReport
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call
from sip_gateway.sip.digest import Credentials
from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.sdp import offers_h224, placed_extra
from sip_gateway.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)

Direction = Literal["in", "out"]
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")

# Reasons shown on the console (zh-CN; the UI is Chinese by default).
_STATUS_TEXT = {
    404: "号码不存在", 408: "无应答", 480: "暂时无法接通", 486: "对方忙", 487: "呼叫已取消",
    488: "媒体协商失败", 603: "对方拒绝",
}


class DialOutError(DialError):
    """An invite/redial/hang-up request that cannot be carried out (nothing was changed).

    A :class:`~mcu.conferences.DialError`, so the console maps its ``code`` to an HTTP status.
    """


def parse_sip_uri(text: str) -> SipUri:
    """A dialable ``sip:``/``sips:`` URI with a user and host, or DialOutError."""
    try:
        uri = SipUri.parse(text)
    except (SipParseError, ValueError) as exc:
        raise DialOutError("bad_uri", f"无效的 SIP 地址：{text}") from exc
    if uri.password is not None:  # RFC 3261 19.1.1: NOT RECOMMENDED; it would end up in logs and lists
        raise DialOutError("bad_uri", "SIP 地址不得包含密码")
    if not uri.host or not uri.user:
        raise DialOutError("bad_uri", f"SIP 地址须包含用户和主机：{text}")
    return uri


def video_format(streams: list[MediaStream], max_size: tuple[int, int]) -> VideoFormat | None:
    """What to send the site: codec, packetization mode and a size its level can decode."""
    stream = next((s for s in streams if s.kind == "video" and s.remote_port), None)
    if stream is None:
        return None
    codec = stream.codec
    if codec.name == "VP8":
        width, height = size_for_h264_level("42e01f", max_size)
        return VideoFormat("vp8", width, height)
    params = codec.fmtp_params
    width, height = size_for_h264_level(params.get("profile-level-id"), max_size)
    return VideoFormat("h264", width, height, single_nal=params.get("packetization-mode", "0") != "1")


def peer_decodes_opus_fec(streams: list[MediaStream]) -> bool:
    """The negotiated audio is Opus and the peer's fmtp says its decoder uses in-band FEC (RFC 7587)."""
    audio = next((s for s in streams if s.kind == "audio" and s.remote_port), None)
    return audio is not None and audio.codec.name == "OPUS" and opus_fmtp_uses_fec(audio.codec.fmtp)


class SiteFeedback:
    """A SIP leg's RateListener: video feedback to the site's rate budget, audio reports to its audio FEC."""

    def __init__(self, rate: SiteRate, audio_fec: AudioFec) -> None:
        self.rate = rate
        self.audio_fec = audio_fec

    def on_rate_feedback(self, kind: str, feedback: RateFeedback) -> None:
        if kind == "audio":
            if isinstance(feedback, ReceptionReport):
                self.audio_fec.on_reception_report(feedback.packets_lost, feedback.highest_sequence)
            return
        self.rate.on_rate_feedback(kind, feedback)


def failure_text(reason: str, status: int | None) -> str:
    """A console detail for a call that ended before joining."""
    if status is not None:
        return f"呼叫失败：{status} {_STATUS_TEXT.get(status, reason)}"
    return f"呼叫失败：{reason}"


class ConferenceRoom:
    """The gateway's ``Room`` for one running conference."""

    def __init__(self, bridge: SipBridge, conf: RunningConference) -> None:
        self.bridge = bridge
        self.conf = conf
        self.conference_id: str = conf.id
        self.pin: str | None = conf.record.pin or None
        # Conferences that admit no guests: only callers with an account (digest) get in
        # (the gateway asks ConferencePins.screen, which applies mcu.admission; this is informative).
        self.require_auth: bool = not conf.record.guests

    def join(self, site: SipSite) -> None:
        """The site goes in; its SiteMedia becomes the leg's sink once the room has it."""
        self.bridge._joined(self.conf, site)

    def leave(self, site: SipSite) -> None:
        self.bridge._ended(site)


# JoinRefused codes as the IVR's verdicts (anything else: the conference refuses the caller).
_VERDICTS: dict[str, PinVerdict] = {"wrong_pin": "wrong", "too_many_attempts": "locked"}


class ConferencePins:
    """The gateway's PinPolicy on the one admission policy (``mcu.admission``) of every way in.

    The caller is ``Caller("sip", source, identity="sip:<digest user>" or None, pin)``: a conference
    that admits no guests challenges until the caller has a digest account, the room of an
    emergency call is refused (403), a wrong PIN keyed at the SIP IVR counts exactly like one typed
    on the join page (same ``PinGuard``, keyed by the caller's IP address). Each refusal and each
    PIN admission is audited as ``conference.join`` with ``protocol: sip``.
    """

    def __init__(self, core: CoreServices, conferences: ConferenceService) -> None:
        self.core = core
        self.conferences = conferences
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _actor(call: Call) -> str:
        """Who keyed the PIN, for the audit log: the digest user, else the caller's (unverified) user."""
        if call.authenticated_user:
            return f"sip:{call.authenticated_user}"
        try:
            user = NameAddr.parse(call.remote_uri).uri.user or "anonymous"
        except (SipParseError, ValueError):
            user = "anonymous"
        return "sip:" + _SAFE_ID.sub("_", user)[:64]  # a caller chooses its From: keep it short and plain

    @staticmethod
    def caller(call: Call, pin: str | None = None) -> Caller:
        """What the admission policy gets to know about a SIP caller."""
        identity = f"sip:{call.authenticated_user}" if call.authenticated_user else None
        return Caller("sip", call.flow.host, identity=identity, pin=pin)

    async def _audit(self, call: Call, conference_id: str, outcome: str, code: str) -> None:
        await self.core.audit.record(self._actor(call), "conference.join", conference_id, outcome=outcome,
                                     source=call.flow.host, detail={"protocol": "sip", "code": code})

    def screen(self, conference_id: str, call: Call) -> Screening:
        """The policy before any PIN: "ok", "challenge" (no digest yet), "locked" (back-off) or "refused"."""
        try:
            self.conferences.decide(self.conferences.running_facts(conference_id), self.caller(call))
        except JoinRefused as exc:
            if exc.code in ("pin_required", "locked", "not_started", "ended"):
                # The PIN is the IVR's to ask; a locked room refuses the join itself, which the
                # console's site list shows (as before). Nothing here is about who calls.
                return "ok"
            if exc.code == "auth_required" and call.authenticated_user is None:
                return "challenge"  # not audited: every digest call starts with this round
            log.warning("SIP caller %s (%s) refused for conference %s: %s", self._actor(call), call.flow.host,
                        conference_id, exc.code)
            task = asyncio.get_running_loop().create_task(self._audit(call, conference_id, "denied", exc.code))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return "locked" if exc.code == "too_many_attempts" else "refused"
        return "ok"

    async def check_pin(self, conference_id: str, pin: str, call: Call) -> PinVerdict:
        """Admit with the PIN: "ok", "wrong", "locked" (back-off) or "refused" (ended/locked room)."""
        try:
            await self.conferences.admit(conference_id, self.caller(call, pin))
        except JoinRefused as exc:
            log.warning("SIP caller %s (%s) refused for conference %s: %s", self._actor(call), call.flow.host,
                        conference_id, exc.code)
            await self._audit(call, conference_id, "denied", exc.code)
            return _VERDICTS.get(exc.code, "refused")
        log.info("SIP caller %s (%s) admitted to conference %s by PIN", self._actor(call), call.flow.host,
                 conference_id)
        await self._audit(call, conference_id, "ok", "pin")
        return "ok"


@dataclass
class SipBridge:
    """The ``sip`` capability: SIP endpoint + gateway on the node's conferences."""

    core: CoreServices
    conferences: ConferenceService
    endpoint: SipEndpoint
    settings: SipSettings
    media_host: str = "127.0.0.1"
    port_range: tuple[int, int] = RTP_PORT_RANGE  # settings.rtp: RTP/RTCP ports of every SIP leg
    prompts: Mapping[str, np.ndarray] | None = None  # IVR prompts (PromptLibrary); None: the beeps
    dscp: DscpMarking = field(default_factory=DscpMarking)  # settings.rtp.dscp_*: every leg's RTP/RTCP marking
    pace_video: bool = True  # settings.rtp.pace_video: each site's video paced to its rate budget
    floors: SipFloors | None = None  # BFCP for room systems (mcu.legs.sip_bfcp); None: BFCP streams refused
    gateway: SipGateway = field(init=False)
    auth_audit: SipAuthAudit = field(init=False)
    sites: dict[tuple[str, str], SipSite] = field(default_factory=dict)  # (conference, site id): the latest call
    _by_call: dict[str, SipSite] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.gateway = SipGateway(self.endpoint, self, self.media_host, self.port_range,
                                  pins=ConferencePins(self.core, self.conferences), prompts=self.prompts,
                                  lines=self, dscp=self.dscp)
        self.gateway.floors = self.floors
        # Before the gateway's listener: the end reason must be known when it calls Room.leave.
        self.endpoint.listeners.insert(0, self._on_event)
        self.auth_audit = SipAuthAudit(self.core.audit)  # registrar throttle blocks -> audit log
        self.endpoint.listeners.append(self.auth_audit.on_event)

    # ------------------------------------------------------------------ Directory
    def find(self, conference_id: str) -> ConferenceRoom | None:
        """A running, joinable conference (the gateway answers 404 otherwise)."""
        conf = self.conferences.running(conference_id)
        if conf is None or conf.room.ended:
            return None
        return ConferenceRoom(self, conf)

    @property
    def max_video_size(self) -> tuple[int, int]:
        width, _, height = self.settings.max_video_size.partition("x")
        return int(width), int(height)

    # ------------------------------------------------------------------ lines (rate budget)
    def line_kbps(self, site_id: str) -> int:
        """The line of a site: its plan meeting room's SIP endpoint, else ``lines.sip``."""
        return self.core.plan.line_kbps("sip", room_id=site_id)

    def site_rate(self, site_id: str, line_kbps: int | None = None) -> SiteRate:
        """A site's rate budget: ``line_kbps`` (a cascade link's) or its plan line; with neither,
        the protocol's default is an unknown line (its video starts low and probes up)."""
        known = bool(line_kbps) or self.core.plan.configured_line_kbps("sip", room_id=site_id) is not None
        return SiteRate(line_kbps or self.line_kbps(site_id), name=site_id, line_known=known)

    def local_media_for(self, call: Call, local: LocalMedia) -> LocalMedia:
        """The gateway's SiteLines: our SDP for a dial-in carries the caller's line (plan or default)."""
        return with_line(local, self.line_kbps(self._call_identity(call)[0]))

    # ------------------------------------------------------------------ dial-out
    def _plan_site(self, site_id: str) -> tuple[str, str] | None:
        """(name, SIP address) of a meeting room of the site plan."""
        for room in self.core.plan.meeting_rooms:
            if room.id == site_id:
                ep = next((e for e in room.endpoints if e.protocol == "sip" and e.address), None)
                return (room.name, ep.address) if ep else (room.name, "")
        return None

    def _site_for_uri(self, uri: SipUri) -> tuple[str, str]:
        """(site id, name) for a SIP address: the plan's meeting room when it is one."""
        for room in self.core.plan.meeting_rooms:
            for ep in room.endpoints:
                if ep.protocol != "sip" or not ep.address:
                    continue
                with contextlib.suppress(DialOutError):
                    if parse_sip_uri(ep.address).user == uri.user:
                        return room.id, room.name
        return "sip-" + _SAFE_ID.sub("_", uri.user or "anon")[:40], uri.user or "SIP"

    async def invite(self, conference_id: str, site_id: str | None = None, uri: str | None = None,
                     name: str = "", *, credentials: Credentials | None = None,
                     from_user: str | None = None, line_kbps: int | None = None,
                     extra: tuple[ExtraMedia, ...] = ()) -> SipSite:
        """Call a site into a conference (console invite). DialOutError says why not.

        ``credentials``/``from_user``: a cascade link calls its parent as its node name and
        answers the parent's digest challenge with them. ``line_kbps``: the line's rate when the
        site plan's meeting room does not say it (a cascade link's). ``extra``: m-lines offered
        beside ours, carried by their owner (a cascade link's slides stream).
        """
        conf = self.conferences.running(conference_id)
        if conf is None:
            raise DialOutError("not_running", f"会议未在运行：{conference_id}")
        if site_id is None and not uri:
            raise DialOutError("bad_request", "须指定会场或 SIP 地址")
        if site_id is not None and (not site_id or len(site_id) > 64 or _SAFE_ID.search(site_id)):
            raise DialOutError("bad_site", f"无效的会场标识：{site_id}")
        plan_name = ""
        if site_id is not None and not uri:
            found = self._plan_site(site_id)
            previous = self.sites.get((conference_id, site_id))
            if found is not None and found[1]:
                plan_name, uri = found
            elif previous is not None:
                plan_name, uri = previous.name, previous.uri
            else:
                raise DialOutError("unknown_site", f"会场没有 SIP 地址：{site_id}")
        assert uri is not None
        target = parse_sip_uri(uri)
        if site_id is None:
            site_id, plan_name = self._site_for_uri(target)
        existing = self.sites.get((conference_id, site_id))
        if (existing is not None and existing.connected) or site_id in conf.room.participants:
            raise DialOutError("busy", f"会场已在会议中或正在呼叫：{site_id}")
        try:
            leg = await MediaLeg.allocate(self.media_host, video=True, port_range=self.port_range, dscp=self.dscp,
                                          h224=True)
        except OSError:
            log.error("conference %s: no free RTP ports in %s-%s to call %s", conference_id, *self.port_range, uri)
            raise DialOutError("no_ports", "媒体端口已用尽，请稍后再试") from None
        name = name or plan_name or site_id
        await conf.set_site_status(site_id, "calling", uri, name=name, protocol="sip")
        registered = self._registered_user(target)
        line = line_kbps or self.line_kbps(site_id)
        local, placeholder = with_line(leg.local_media, line), ""
        if extra:  # a cascade link's slides stream (mcu.cascade.link_content), at its real m-line index
            local = placed_extra(self.endpoint.config.policy, replace(local, extra=extra))
        if credentials is None and from_user is None and self.settings.content_on_dial_out:
            # a room system (not a cascade link) that may present: offer it slides and BFCP
            local, placeholder = await self.gateway.offer_floors(conference_id, local)
        if registered is not None:
            call = self.endpoint.invite_registered(registered, local)
            assert call is not None
        else:
            call = self.endpoint.invite(str(target), local, credentials, from_user=from_user)
        self.gateway.bind_floors(placeholder, call)
        site = SipSite(call, leg, self.gateway, room=ConferenceRoom(self, conf), site_id=site_id, name=name,
                       conference_id=conference_id, uri=uri, direction="out", registered_user=registered,
                       rate=self.site_rate(site_id, line_kbps))
        self.sites[(conference_id, site_id)] = site
        self.gateway.add(site)
        self._by_call[call.key] = site
        log.info("conference %s: dialling %s (%s)", conference_id, site_id, uri)
        return site

    async def admit(self, conf: RunningConference, call: Call, site_id: str, name: str,
                    line_kbps: int | None = None, extra: tuple[ExtraMedia, ...] = ()) -> Answer:
        """Answer an incoming call straight into ``conf`` as ``site_id`` (no IVR, no PIN).

        For callers the application has already authenticated (a cascade node) or that need
        no PIN (a bridge); the caller decides, this only wires the call like a dial-out.
        ``line_kbps``: the line's rate when the plan's meeting room does not say it.
        """
        wants_video = call.offer is None or any(m.kind == "video" and m.port for m in call.offer.media)
        leg = await MediaLeg.allocate(self.media_host, video=wants_video, dscp=self.dscp, h224=offers_h224(call.offer))
        line = line_kbps or self.line_kbps(site_id)
        site = SipSite(call, leg, self.gateway, room=ConferenceRoom(self, conf), site_id=site_id, name=name,
                       conference_id=conf.id, uri=call.remote_uri, direction="in", rate=self.site_rate(site_id, line_kbps))
        self.sites[(conf.id, site_id)] = site
        self._by_call[call.key] = site
        self.gateway.add(site)
        local = with_line(leg.local_media, line)
        return Answer(replace(local, extra=extra) if extra else local)

    def _registered_user(self, target: SipUri) -> str | None:
        """The user, when ``target`` is one of our registrar's users with a live binding."""
        own_hosts = {self.endpoint.config.host, self.settings.host, "localhost"}
        if target.host not in own_hosts or target.port not in (None, self.endpoint.config.port):
            return None
        user = target.user or ""
        bindings = self.endpoint.ua.bindings.lookup_user(user, self.endpoint.now())
        return user if bindings else None

    def camera(self, conference_id: str, site_id: str) -> H224Channel | None:
        """The site's far-end camera control (mcu.legs.fecc.CameraProvider), when it negotiated H.224."""
        site = self.sites.get((conference_id, site_id))
        return site.camera if site is not None else None

    async def hangup(self, conference_id: str, site_id: str) -> SipSite:
        """End a site's call (console hang-up); the site stays on the list as left."""
        site = self.sites.get((conference_id, site_id))
        if site is None or not site.connected:
            raise DialOutError("not_connected", f"会场不在通话中：{site_id}")
        site.hung_up_by_chair = True
        site.hangup()
        return site

    async def redial(self, conference_id: str, site_id: str) -> SipSite:
        """Hang up (if still connected) and call the site's last address again."""
        site = self.sites.get((conference_id, site_id))
        if site is None and self._plan_site(site_id) is None:
            raise DialOutError("unknown_site", f"会场没有可重拨的地址：{site_id}")
        if site is not None and site.connected:
            await self.hangup(conference_id, site_id)
            await self._wait_gone(conference_id, site_id)
        uri = site.uri if site is not None else None
        return await self.invite(conference_id, site_id, uri, site.name if site is not None else "")

    async def _wait_gone(self, conference_id: str, site_id: str, within: float = 5.0) -> None:
        conf = self.conferences.running(conference_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            site = self.sites.get((conference_id, site_id))
            joining = site.joining if site is not None else None
            if (conf is None or site_id not in conf.room.participants) and (joining is None or joining.done()):
                media = site.media if site is not None else None
                if media is None or media.closed:
                    return
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ room glue
    def _call_identity(self, call: Call) -> tuple[str, str]:
        try:
            addr = NameAddr.parse(call.remote_uri)
            user = call.authenticated_user or addr.uri.user or "anon"
            display = addr.display or ""
        except (SipParseError, ValueError):
            user, display = call.authenticated_user or "anon", ""
        site_id, name = self._site_for_uri(SipUri(host="", user=user))
        return site_id, display or name

    def _dial_in_identity(self, site: SipSite) -> tuple[str, str]:
        return self._call_identity(site.call)

    def _joined(self, conf: RunningConference, site: SipSite) -> None:
        """The gateway connected a site to ``conf`` (after the IVR, or a dial-out answered)."""
        if site.call.key not in self._by_call:  # dial-in
            base_id, name = self._dial_in_identity(site)
            site_id, n = base_id, 1
            while site_id in conf.room.participants or (
                    (conf.id, site_id) in self.sites and self.sites[(conf.id, site_id)].connected):
                n += 1
                site_id = f"{base_id}-{n}"
            site.site_id, site.name, site.conference_id = site_id, name, conf.id
            site.uri, site.direction = site.remote_uri, "in"
            self.sites[(conf.id, site_id)] = site
            self._by_call[site.call.key] = site
        site.end_reason, site.end_status, site.hung_up_by_chair = "", None, False
        site.joining = asyncio.get_running_loop().create_task(self._join(conf, site))
        self._tasks.add(site.joining)
        site.joining.add_done_callback(self._tasks.discard)

    async def _join(self, conf: RunningConference, site: SipSite) -> None:
        if site.rate is None:  # a dial-in: its line from the plan room it turned out to be
            site.rate = self.site_rate(site.site_id)
        rate = site.rate
        rate.apply_streams(site.call.streams)
        ceiling = video_format(site.call.streams, self.max_video_size)
        # H.264 sites move between the tiers with the budget (SiteMedia's seat); other codecs
        # have their few sizes, chosen here and again whenever the budget moves.
        tiered = ceiling is not None and ceiling.codec == "h264"
        fmt = ceiling if tiered or ceiling is None else rate.fit(ceiling)
        leg = site.leg
        audio_fec = AudioFec(encoder=SipAudioFec(leg))  # Opus in-band FEC from its audio reports
        audio_fec.peer_decodes = peer_decodes_opus_fec(site.call.streams)
        site.audio_fec = audio_fec
        leg.rate_listener = SiteFeedback(rate, audio_fec)  # TMMBR, REMB and video reports move the budget
        if self.pace_video:
            leg.send_budget = rate  # and the pacer keeps the video within it (key frames spread out)
        leg._executor.submit(deprioritise_current_thread)  # decoding yields to the shared encoders
        try:
            media = await SiteMedia.join(
                conf, site.site_id, site.name, "sip", site, video=fmt,
                leg_statistics=leg.statistics, stats_interval=self.settings.stats_interval_seconds,
                extra_stats=lambda: {"sip": {"uri": site.uri, "direction": site.direction},
                                     "budget": rate.statistics(), "audio": audio_fec.describe()}, budget=rate)
        except RoomError as exc:
            log.info("conference %s refused SIP site %s: %s", conf.id, site.site_id, exc)
            await conf.set_site_status(site.site_id, "failed", f"加入失败：{exc}", name=site.name, protocol="sip")
            site.hangup()
            return
        media.on_removed = site.hangup  # the chair removed the site: end its call
        media.on_pane_size = site.ask_pane_size  # imageattr re-INVITE + TMMBR (mcu.pane_size)
        rate.on_lossy = media.set_intra_refresh  # a lossy line: periodic intra refresh instead of IDRs
        if not site.connected:  # hung up while joining
            await media.close("hangup")
            return
        site.media = media
        leg.sink = media  # from now on decoded media, digits and PLI/FIR go to the room
        if ceiling is not None and not tiered:
            rate.on_change = lambda change: media.change_video_format(rate.fit(ceiling))
        elif tiered:
            rate.on_change = lambda change: media.budget_moved()  # the seat reads it now, not at its next tick
        await media.publish_statistics()

    def _ended(self, sip_site: SipSite) -> None:
        """The gateway's Room.leave: every end of a joined or dialled call."""
        site = self._by_call.pop(sip_site.call.key, None)
        if site is None:
            return
        self._background(self._finish(site))

    async def _finish(self, site: SipSite) -> None:
        if site.joining is not None and not site.joining.done():
            with contextlib.suppress(Exception):
                await site.joining
        conf = self.conferences.running(site.conference_id)
        if site.media is not None:
            media, site.media = site.media, None
            reason = "hangup" if site.hung_up_by_chair else (site.end_reason or "left")
            await media.close(reason, "已挂断" if site.hung_up_by_chair else None)
        elif conf is not None and site.direction == "out":
            if site.hung_up_by_chair:
                await conf.set_site_status(site.site_id, "idle", "已取消呼叫", name=site.name, protocol="sip")
            else:
                await conf.set_site_status(site.site_id, "failed", failure_text(site.end_reason, site.end_status),
                                           name=site.name, protocol="sip")

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.CallEnded):
            site = self._by_call.get(event.call.key)
            if site is not None:
                site.end_reason, site.end_status = event.reason, event.status
        elif isinstance(event, ev.MediaUpdated):  # a re-INVITE may bring other b= lines
            site = self._by_call.get(event.call.key)
            if site is not None and site.rate is not None and site.media is not None:
                site.rate.apply_streams(event.call.streams)

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ lifecycle
    async def stop(self) -> None:
        """Hang up every call, close media and the endpoint."""
        for site in list(self.sites.values()):
            if site.connected:
                site.hung_up_by_chair = True
                site.hangup()
        await asyncio.sleep(0.2)  # let BYEs go out
        for sip_site in list(self.gateway.sites.values()):
            self.gateway._on_event(ev.CallEnded(sip_site.call, "shutdown"))
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.floors is not None:
            await self.floors.close()
        await self.endpoint.close()


class SipSiteDialer:
    """The chair console's invite/redial/hang-up buttons (`ConferenceService.dial`) and its
    "add a site by address" (`ConferenceService.dial_address`) for SIP sites.

    DialOutError is a ConferenceError (DialError), so refusals reach the console with their code.
    """

    def __init__(self, bridge: SipBridge) -> None:
        self.bridge = bridge

    async def invite(self, conference: RunningConference, site_id: str, actor: str) -> None:
        await self.bridge.invite(conference.id, site_id)

    async def redial(self, conference: RunningConference, site_id: str, actor: str) -> None:
        await self.bridge.redial(conference.id, site_id)

    async def hangup(self, conference: RunningConference, site_id: str, actor: str) -> None:
        await self.bridge.hangup(conference.id, site_id)

    async def invite_address(self, conference: RunningConference, address: str, name: str, actor: str) -> str:
        """Call any SIP URI into the conference; the site id is the plan's room for that address
        (same user part) or ``sip-<user>``."""
        site = await self.bridge.invite(conference.id, uri=address, name=name)
        return site.site_id


__all__ = ["ConferencePins", "ConferenceRoom", "DialOutError", "SipBridge", "SipSiteDialer", "failure_text",
           "parse_sip_uri", "video_format"]
