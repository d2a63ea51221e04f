"""H.323 room systems in MCU conferences: dial-in, dial-out, media, chair control.

The bridge owns one :class:`~sip_gateway.aio.h323_endpoint.H323Endpoint` (TCP 1720 by default) and
turns its calls into conference sites:

* **dial-in by number/alias**: a Setup whose called party number or a destination alias is the
  id of a running conference joins it (its PIN, if any, is asked for by DTMF);
* **dial-in by IP** (no known number): the call is answered and an IVR collects the conference
  id and then the PIN as H.245 userInputIndication digits, each ended by ``#``;
* **who may enter** is the one admission policy's (:mod:`mcu.admission`): a conference without
  guests takes a site-plan endpoint (``alias@host`` matched by alias and source address), a
  terminal whose call our gatekeeper admitted after an H.235.1-authenticated registration, or
  the PIN keyed at the IVR; others, and every caller of an emergency-call room, get Release
  Complete ``securityDenied``;
* **dial-out**: :meth:`H323Bridge.invite` calls a site for the console's invite/redial button,
  :meth:`H323Bridge.hangup` releases it.

Media goes through :mod:`sip_gateway.aio.h323_media` (RTP on ports really bound at call creation)
and :class:`mcu.site_media.SiteMedia` (decoded media into the room, the room's shared encoder
out with the negotiated codec: H.264, H.263 or H.261). H.245 videoFastUpdatePicture from the
terminal asks the shared encoder for a key frame; the room's key-frame requests go to the
terminal as videoFastUpdatePicture. flowControlCommand caps what we send: below the shared
encoder's rate for the current size the site is moved to the CIF encoder. Site status
(calling/joined/failed/left) and statistics (streams, round-trip delay, flow-control cap) go
to the console like SIP sites.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from mcu.admission import Caller
from mcu.conferences import ConferenceError, ConferenceService, DialError, JoinRefused, RunningConference
from mcu.encoder import DEFAULT_BITRATE
from mcu.room import RoomError
from mcu.site_media import SiteMedia, VideoFormat
from sip_gateway.aio.h323_endpoint import AdmissionRefused, CallHandle, H323Endpoint
from sip_gateway.aio.h323_gatekeeping import LocalGatekeeper, RegistrationKeeper
from sip_gateway.aio.h323_media import IVR_PROMPTS, H323MediaLeg, sent_formats, site_video_codec
from sip_gateway.aio.ports import RtpPortManager
from sip_gateway.h323.call import EndpointConfig
from sip_gateway.h323.capabilities import AUDIO_SESSION, DEFAULT_FORMATS, VIDEO_SESSION
from sip_gateway.h323.events import (
    CallConnected,
    CallIncoming,
    CallReleased,
    CapabilityMismatch,
    ChannelClosed,
    ChannelOpened,
    ChannelRejected,
    Event,
    FlowControlRequested,
    MediaAddress,
    RoundTripDelayMeasured,
    UserInputReceived,
    VideoFastUpdateRequested,
)
from sip_gateway.h323.q931 import Cause
from sip_gateway.h323.ras import RAS_PORT, Gatekeeper
from sip_gateway.rtp.codecs import SAMPLES_PER_FRAME
from sip_gateway.rtp.prompts import PromptLibrary

if TYPE_CHECKING:
    from config.settings import Settings
    from core.runtime import CoreServices

__all__ = ["BridgeSettings", "H323Bridge", "bridge_settings", "H323Site", "bitrate_for_pane", "parse_address", "parse_target", "start"]

log = logging.getLogger(__name__)

# Refusals of the admission policy that are about who calls (not about the conference's state):
# Release Complete with reason securityDenied.
SECURITY_REFUSALS = frozenset({"auth_required", "protected", "wrong_pin", "too_many_attempts"})


@dataclass(frozen=True)
class BridgeSettings:
    """Knobs of the bridge (the capability fills them from ``settings.h323``)."""

    host: str = "127.0.0.1"
    port: int = 1720
    rtp_first: int = 20000
    rtp_last: int = 29999
    ivr_digit_timeout: float = 20.0  # seconds for each IVR entry (conference id, PIN)
    ivr_attempts: int = 3
    media_settle: float = 3.0  # wait this long for the video channels after the audio ones
    round_trip_interval: float = 10.0  # H.245 roundTripDelay keep-alive (0: off)
    answer_timeout: float = 30.0  # dial-out: no Connect within this: failed
    pane_check_interval: float = 5.0  # how often the terminal's video rate is matched to its pane
    gatekeeper: str = "none"  # "none", "client" (register to gatekeeper_address) or "server" (built-in)
    gatekeeper_address: str = ""  # host[:port] (client mode)
    aliases: tuple[str, ...] = ("commandcenter-mcu",)  # registered besides the conference ids
    ras_host: str = ""  # RAS (UDP) address; empty: ``host``
    ras_port: int = 1719  # the built-in gatekeeper's port; the client's own RAS port (0: any)
    time_to_live: int = 300  # RAS registration time to live (seconds)
    gatekeeper_retry: float = 5.0  # client: wait this long after a failed registration
    alias_check_interval: float = 30.0  # client: re-register when the conference ids changed
    gatekeeper_accounts: tuple[tuple[str, str], ...] = ()  # server: H.235.1 (alias, password) of terminals


def bitrate_for_pane(size: tuple[int, int] | None, offered_bps: int) -> int | None:
    """Video rate to ask of a terminal shown at ``size`` (None: unseen → the CIF rate; no cap
    when the pane is larger than 640x360 or the terminal offers no more than the cap)."""
    area = size[0] * size[1] if size is not None else 0
    if area > 640 * 360:
        return None
    cap = DEFAULT_BITRATE[(352, 288)] if area <= 352 * 288 else DEFAULT_BITRATE[(640, 360)]
    return cap if not offered_bps or offered_bps > cap else None


def parse_target(text: str, default_port: int = 1720) -> tuple[str | None, MediaAddress | None]:
    """What the console dials: ``(alias, address)``; ValueError (zh-CN) for anything else.

    ``host[:port]`` → ``(None, address)``; ``alias@host[:port]`` → both; ``alias:NAME`` or a bare
    E.164 number (digits, ``*``, ``#``) → ``(alias, None)``: resolved by the gatekeeper.
    """
    text = text.strip()
    if text.startswith("alias:"):
        alias = text[len("alias:"):].strip()
        if not alias or any(ord(c) < 32 for c in alias) or len(alias) > 128:
            raise ValueError(f"无效的 H.323 别名: {text!r}")
        return alias, None
    if re.fullmatch(r"[0-9*#]{1,32}", text):
        return text, None
    if "@" in text:
        alias, _, host = text.partition("@")
        if not alias.strip():
            raise ValueError(f"无效的 H.323 地址: {text!r}")
        return alias.strip(), parse_address(host, default_port)
    return None, parse_address(text, default_port)


def parse_address(address: str, default_port: int = 1720) -> MediaAddress:
    """``host`` or ``host:port`` (ValueError with a clear message otherwise)."""
    match = re.fullmatch(r"\s*([0-9A-Za-z.\-]+)(?::(\d{1,5}))?\s*", address)
    if match is None:
        raise ValueError(f"无效的 H.323 地址: {address!r}")
    port = int(match.group(2) or default_port)
    if not 0 < port < 65536:
        raise ValueError(f"无效的端口: {port}")
    return MediaAddress(match.group(1), port)


@dataclass(eq=False)
class H323Site:
    """One H.323 call and, once admitted, its conference site."""

    bridge: H323Bridge
    handle: CallHandle
    media: H323MediaLeg
    site_id: str = ""
    conference: RunningConference | None = None
    site: SiteMedia | None = None
    dial_out: bool = False
    round_trip_ms: float | None = None
    flow_cap_bps: int | None = None
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # connected or released
    seen_setup: asyncio.Event = field(default_factory=asyncio.Event)  # CallIncoming or released
    released: asyncio.Future[CallReleased] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    channel_change: asyncio.Event = field(default_factory=asyncio.Event)
    video_mismatch: bool = False
    requested_video_bps: int | None = None  # our flowControlCommand towards the terminal
    rejected: list[str] = field(default_factory=list)  # our OLCs the terminal refused: "session:cause"
    incoming: CallIncoming | None = None
    joining: bool = False  # SiteMedia.join in progress
    join_finished: asyncio.Event = field(default_factory=asyncio.Event)
    prompts: collections.deque[np.ndarray] = field(default_factory=collections.deque)  # IVR audio to play
    prompts_played: asyncio.Event = field(default_factory=asyncio.Event)
    _prompter: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ events
    async def pump(self) -> None:
        """Consume the call's events until it is released."""
        while True:
            event = await self.handle.events.get()
            self.on_event(event)
            if isinstance(event, CallReleased):
                await self.finish(event)
                return

    def on_event(self, event: Event) -> None:
        if isinstance(event, CallIncoming):
            self.incoming = event
            self.seen_setup.set()
        elif isinstance(event, CallConnected):
            self.connected.set()
            self.settled.set()
        elif isinstance(event, ChannelOpened):
            self.media.apply(event.channel)
            self.channel_change.set()
        elif isinstance(event, ChannelClosed):
            self.media.close_channel(event.number, event.outgoing)
        elif isinstance(event, ChannelRejected):
            self.rejected.append(f"{event.session_id}:{event.cause}")
            if event.session_id == VIDEO_SESSION:
                self.video_mismatch = True  # no video towards this terminal: join audio-only
            self.channel_change.set()
        elif isinstance(event, CapabilityMismatch):
            self.video_mismatch = self.video_mismatch or event.video
            self.channel_change.set()
        elif isinstance(event, UserInputReceived):
            for char in event.text:
                self.digits.put_nowait(char)
                if self.site is not None:
                    self.site.on_dtmf(char)
        elif isinstance(event, VideoFastUpdateRequested):
            if self.site is not None:
                self.site.on_keyframe_request()
        elif isinstance(event, FlowControlRequested):
            self.apply_flow_control(event.bitrate_bps)
        elif isinstance(event, RoundTripDelayMeasured):
            self.round_trip_ms = round(event.seconds * 1000, 1)
        elif isinstance(event, CallReleased):
            self.settled.set()
            self.seen_setup.set()
            if not self.released.done():
                self.released.set_result(event)

    def apply_flow_control(self, bitrate_bps: int | None) -> None:
        """flowControlCommand: drop to the CIF shared encoder when the cap is below our rate."""
        self.flow_cap_bps = bitrate_bps
        site = self.site
        if site is None or site.video is None or site.subscription is None or bitrate_bps is None:
            return
        current = DEFAULT_BITRATE.get((site.video.width, site.video.height), 0)
        if bitrate_bps < current and (site.video.width, site.video.height) != (352, 288):
            fmt = VideoFormat(site.video.codec, 352, 288, site.video.single_nal)
            site.subscription.close()
            site.video = fmt
            site.subscription = site.conf.room.subscribe_video(
                site.participant_id, site._on_packet, codec=fmt.codec, width=fmt.width, height=fmt.height,
                single_nal=fmt.single_nal)

    def extra_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol_detail": "H.323", "round_trip_ms": self.round_trip_ms,
                               "requested_video_bps": self.requested_video_bps,
                               "flow_control_bps": self.flow_cap_bps, "rejected_channels": list(self.rejected)}
        # Each direction is its own logical channel and may use another codec (a terminal
        # sending H.263 while receiving H.261): "audio"/"video" are what we send.
        codecs: dict[str, str | None] = {}
        for session_id, kind in ((AUDIO_SESSION, "audio"), (VIDEO_SESSION, "video")):
            sent = self.media.channels.get((session_id, True))
            received = self.media.channels.get((session_id, False))
            codecs[kind] = sent.format.codec.value if sent else None
            codecs[f"{kind}_received"] = received.format.codec.value if received else None
        out["h323_codecs"] = codecs
        return out

    # ------------------------------------------------------------------ joining
    async def wait_for_media(self) -> None:
        """Until audio flows both ways and video is open (or clearly not coming)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bridge.settings.media_settle * 3
        video_deadline: float | None = None
        while not self.released.done():
            have_audio = (AUDIO_SESSION, True) in self.media.channels
            have_video = (VIDEO_SESSION, True) in self.media.channels and (VIDEO_SESSION, False) in self.media.channels
            if have_audio and (have_video or self.video_mismatch):
                return
            now = loop.time()
            if have_audio and video_deadline is None:
                video_deadline = now + self.bridge.settings.media_settle
            limit = min(deadline, video_deadline) if video_deadline is not None else deadline
            if now >= limit:
                if have_audio or (VIDEO_SESSION, True) in self.media.channels:
                    return
                raise TimeoutError("no media channels opened")
            self.channel_change.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit - now):
                    await self.channel_change.wait()

    async def join(self, conf: RunningConference, site_id: str, name: str) -> None:
        """Join the room with the negotiated media."""
        await self.wait_for_media()
        if self.released.done():
            return
        video_out = self.media.outgoing_video
        video: VideoFormat | None = None
        if video_out is not None:
            codec, (width, height), single_nal = site_video_codec(video_out.format)
            video = VideoFormat(codec, width, height, single_nal)
        self.conference = conf
        self.site_id = site_id
        self.joining = True
        try:
            self.site = await SiteMedia.join(conf, site_id, name, "h323", self.media, video=video,
                                             leg_statistics=self.media.statistics, extra_stats=self.extra_stats)
        finally:
            self.joining = False
            self.join_finished.set()
        if self.released.done():  # hung up while joining: finish() found no site to close
            await self.site.close("hangup")
            return
        self.media.on_audio = self.site.on_audio
        self.media.on_video = self.site.on_video
        self.media.on_keyframe_request = self.site.on_keyframe_request  # RTCP PLI/FIR, if the terminal sends one
        # The chair removed the site (or ended the conference): hang up the call.
        self.site.on_removed = lambda: self.handle.release(Cause.NORMAL_CALL_CLEARING)
        self.bridge._spawn(self._limit_incoming_video())

    async def _limit_incoming_video(self) -> None:
        """Ask the terminal (H.245 flowControlCommand) for no more video than its largest pane
        needs: decoding full-rate 720p only to shrink it into a small pane is wasted CPU."""
        while self.site is not None and not self.site.closed and not self.released.done():
            incoming = self.media.incoming_video
            if incoming is not None and self.conference is not None:
                with contextlib.suppress(RoomError):
                    wanted = self.conference.room.wanted_video_size(self.site_id)
                    limit = bitrate_for_pane(wanted, incoming.format.bitrate_bps)
                    if limit != self.requested_video_bps:
                        self.requested_video_bps = limit
                        self.handle.flow_control(incoming.number, limit)
            await asyncio.sleep(self.bridge.settings.pane_check_interval)

    async def finish(self, event: CallReleased) -> None:
        """The call is over: leave the room, close media, tell the console."""
        reason = "hangup" if event.cause == Cause.NORMAL_CALL_CLEARING else "failed"
        if self.joining:  # released while entering the room: leave it once in, not before
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.join_finished.wait(), 10)
        if self.site is not None:
            await self.site.close(reason)
        elif self.dial_out and self.conference is not None and self.site_id:
            # Hung up by the console while calling: back to idle; anything else failed, with the cause.
            cancelled = event.cause == Cause.NORMAL_CALL_CLEARING and not event.by_remote
            with contextlib.suppress(Exception):
                await self.conference.set_site_status(
                    self.site_id, "idle" if cancelled else "failed",
                    "已挂断" if cancelled else f"呼叫失败（Q.850 原因 {event.cause}）", protocol="h323")
        await self.media.close()
        self.bridge.ports.release(self.handle.call.media_ports)
        self.bridge.sites.discard(self)

    def prompt(self, name: str) -> None:
        """Queue an IVR prompt (the bridge's prompts: spoken, or the beeps) towards the terminal."""
        self.prompts.append(self.bridge.prompts[name])
        if self._prompter is None:
            self._prompter = asyncio.get_running_loop().create_task(self._play_prompts())
            self.bridge._tasks.add(self._prompter)
            self._prompter.add_done_callback(self.bridge._tasks.discard)

    async def _play_prompts(self) -> None:
        """20 ms frames of the queued prompts (silence between them) until the site joins the
        room (whose mix then feeds the terminal) or the call ends."""
        loop = asyncio.get_running_loop()
        silence = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        pending = silence[:0]
        tick = loop.time()
        while self.site is None and not self.released.done():
            if (AUDIO_SESSION, True) in self.media.channels:  # hold the prompts until audio is open
                if len(pending) < SAMPLES_PER_FRAME and self.prompts:
                    pending = np.concatenate([pending, self.prompts.popleft()])
                frame, pending = pending[:SAMPLES_PER_FRAME], pending[SAMPLES_PER_FRAME:]
                if len(frame) < SAMPLES_PER_FRAME:
                    frame = np.concatenate([frame, silence[len(frame):]])
                self.media.send_audio(frame)
                if not len(pending) and not self.prompts:
                    self.prompts_played.set()
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - loop.time()))

    async def finish_prompts(self, seconds: float = 2.0) -> None:
        """Until the queued prompts are played, the call ends or ``seconds`` pass."""
        if self._prompter is None or self._prompter.done():
            return
        self.prompts_played.clear()
        played = asyncio.ensure_future(self.prompts_played.wait())
        await asyncio.wait([played, self._prompter], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        played.cancel()

    async def read_entry(self) -> str:
        """Digits up to ``#`` (IVR), within the entry timeout."""
        text = ""
        async with asyncio.timeout(self.bridge.settings.ivr_digit_timeout):
            while True:
                char = await self.digits.get()
                if char == "#":
                    return text
                if char == "*":
                    text = ""
                elif char.isdigit():
                    text += char


class H323Bridge:
    """H.323 calls ↔ conference sites. Python API for the console: :meth:`invite`, :meth:`hangup`."""

    def __init__(self, conferences: ConferenceService, settings: BridgeSettings | None = None,
                 config: EndpointConfig | None = None, prompts: Mapping[str, np.ndarray] | None = None) -> None:
        self.conferences = conferences
        self.prompts: Mapping[str, np.ndarray] = prompts or IVR_PROMPTS  # spoken (PromptLibrary) or beeps
        self.settings = settings or BridgeSettings()
        self.config = config or EndpointConfig(
            h323_id="commandcenter MCU", display="commandcenter MCU", is_mcu=True,
            signalling_host=self.settings.host, media_host=self.settings.host,
            round_trip_interval=self.settings.round_trip_interval, transmit_formats=sent_formats(DEFAULT_FORMATS))
        self.ports = RtpPortManager(self.config.media_host, self.settings.rtp_first, self.settings.rtp_last)
        self.endpoint = H323Endpoint(self.config, on_incoming=self._on_incoming, ports=self.ports)
        self.sites: set[H323Site] = set()
        self._last_call: dict[tuple[str, str], tuple[str, str | None, str]] = {}  # for redial
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: MediaAddress | None = None
        self.registration: RegistrationKeeper | None = None  # gatekeeper = "client"
        self.local_gatekeeper: LocalGatekeeper | None = None  # gatekeeper = "server"
        self._conference_ids: frozenset[str] = frozenset()  # known conference ids (server mode lookups)

    async def start(self) -> MediaAddress:
        """Listen for calls and start the gatekeeper mode; returns the bound address."""
        self.address = await self.endpoint.listen(self.settings.host, self.settings.port)
        mode = self.settings.gatekeeper
        ras_host = self.settings.ras_host or self.settings.host
        if mode == "client":
            self.registration = RegistrationKeeper(
                self.endpoint, parse_address(self.settings.gatekeeper_address, RAS_PORT), self._registered_aliases,
                ras_host=ras_host, ras_port=self.settings.ras_port, time_to_live=self.settings.time_to_live,
                retry_delay=self.settings.gatekeeper_retry, alias_check_interval=self.settings.alias_check_interval)
            await self.registration.start()
        elif mode == "server":
            await self._registered_aliases()  # fills the conference ids the gatekeeper answers for
            gatekeeper = Gatekeeper(identifier="commandcenter-gk", time_to_live=self.settings.time_to_live,
                                    local_aliases=self._local_alias, accounts=dict(self.settings.gatekeeper_accounts))
            self.local_gatekeeper = LocalGatekeeper(gatekeeper, ras_host, self.settings.ras_port)
            await self.local_gatekeeper.start()
        elif mode != "none":
            raise ValueError(f"unknown gatekeeper mode {mode!r}")
        return self.address

    async def _registered_aliases(self) -> tuple[str, ...]:
        """Our aliases: the configured ones plus every scheduled or running conference id
        (E.164 digits), so terminals can dial a conference by number through the gatekeeper."""
        # Never the room of an emergency call: no dial-in reaches it, so no gatekeeper knows it.
        ids = [r.id for r in await self.conferences.list_conferences(include_ended=False) if r.dial_in]
        ids += [c.id for c in self.conferences.running_conferences() if c.record.dial_in]
        self._conference_ids = frozenset(ids)
        return tuple(dict.fromkeys([*self.settings.aliases, *sorted(set(ids))]))

    def _local_alias(self, alias: str) -> MediaAddress | None:
        """Server mode: aliases our own call-signalling address answers (ARQ from a terminal)."""
        running = self.conferences.running(alias)
        if alias in self.settings.aliases or alias in self._conference_ids or (
                running is not None and running.record.dial_in):
            return self.address
        return None

    async def stop(self) -> None:
        """Hang up every call, unregister from the gatekeeper and stop listening."""
        for site in list(self.sites):
            site.handle.release(Cause.NORMAL_CALL_CLEARING)
        for site in list(self.sites):  # DRQs go out while still registered
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(site.released), 2)
        if self.registration is not None:
            await self.registration.stop()
        if self.local_gatekeeper is not None:
            self.local_gatekeeper.close()
        await self.endpoint.close()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 3)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _new_site(self, handle: CallHandle, dial_out: bool) -> H323Site:
        media = await H323MediaLeg.adopt(self.ports, handle.call.media_ports, self.config.media_host,
                                         fast_update=handle.request_fast_update)
        site = H323Site(self, handle, media, dial_out=dial_out)
        self.sites.add(site)
        self._spawn(site.pump())
        return site

    def find(self, conference_id: str, site_id: str) -> H323Site | None:
        """The live (not yet released) call of a site."""
        return next((s for s in self.sites if s.site_id == site_id and s.conference is not None
                     and s.conference.id == conference_id and not s.released.done()), None)

    # ------------------------------------------------------------------ dial-in
    def _on_incoming(self, handle: CallHandle) -> None:
        self._spawn(self._incoming(handle))

    async def _incoming(self, handle: CallHandle) -> None:
        site = await self._new_site(handle, dial_out=False)
        try:
            async with asyncio.timeout(10):
                await site.seen_setup.wait()
            if site.incoming is None:
                return
            await self._admit_incoming(site, site.incoming)
        except (TimeoutError, ConnectionError) as exc:
            log.info("H.323 call %s not admitted: %s", handle.call.call_id.hex(), exc)
            handle.release(Cause.RECOVERY_ON_TIMER_EXPIRY if isinstance(exc, TimeoutError)
                           else Cause.NORMAL_CALL_CLEARING)
        except RoomError as exc:
            log.info("H.323 call refused by the room: %s", exc)
            handle.release(Cause.CALL_REJECTED)
        except Exception:  # a bug or the database: log it, release the call, keep serving others
            log.exception("H.323 call %s failed while joining", handle.call.call_id.hex())
            handle.release(Cause.TEMPORARY_FAILURE)

    def _plan_site_of(self, incoming: CallIncoming, source: str) -> str | None:
        """The site-plan meeting room whose H.323 endpoint is this caller: the plan gives it as
        ``alias@host[:port]``, the Setup names that alias (h323-ID or E.164) and the call comes
        from that host. An endpoint given only by address or only by alias identifies nobody."""
        aliases = {a for a in (*incoming.source_aliases, incoming.calling_number or "") if a}
        plan = getattr(self.conferences.core, "plan", None)
        for room in getattr(plan, "meeting_rooms", ()):
            for ep in room.endpoints:
                if ep.protocol != "h323" or not ep.address:
                    continue
                with contextlib.suppress(ValueError):
                    alias, target = parse_target(ep.address)
                    if alias and target is not None and alias in aliases and target.host == source:
                        return str(room.id)
        return None

    def _gatekeeper_identity(self, incoming: CallIncoming, source: str) -> str | None:
        """``h235:<alias>`` when our gatekeeper admitted this call (ARQ, same callIdentifier) for a
        registration authenticated by H.235.1 from this host; None otherwise."""
        if self.local_gatekeeper is None:
            return None
        account = self.local_gatekeeper.gatekeeper.authenticated_call(
            incoming.call_id, source, asyncio.get_running_loop().time())
        return f"h235:{account}" if account else None

    async def _audit(self, caller: Caller, incoming: CallIncoming, conference_id: str, outcome: str,
                     code: str) -> None:
        """``conference.join`` with ``protocol: h323`` for every admission and refusal."""
        audit = getattr(self.conferences.core, "audit", None)
        if audit is None:
            return
        claimed = next(iter(incoming.source_aliases), "") or incoming.calling_number or "anonymous"
        actor = caller.identity or (f"site:{caller.site}" if caller.site else
                                    "h323:" + re.sub(r"[^0-9A-Za-z_.@-]", "_", claimed)[:64])
        with contextlib.suppress(Exception):  # the audit database must not decide a call
            await audit.record(actor, "conference.join", conference_id, outcome=outcome, source=caller.source,
                               detail={"protocol": "h323", "code": code})

    @staticmethod
    def _refusal(exc: JoinRefused) -> tuple[int, str | None]:
        """(Q.850 cause, H.225.0 ReleaseCompleteReason) for a refused caller: who may not come in
        gets ``securityDenied``; a conference that cannot take anybody, the usual rejection."""
        if exc.code in SECURITY_REFUSALS:
            return Cause.CALL_REJECTED, "securityDenied"
        return Cause.CALL_REJECTED, None

    async def _admit_incoming(self, site: H323Site, incoming: CallIncoming) -> None:
        handle = site.handle
        source = handle.call.config.signalling_host
        peer = handle._writer.get_extra_info("peername")
        if peer:
            source = str(peer[0])
        caller = Caller("h323", source, identity=self._gatekeeper_identity(incoming, source),
                        site=self._plan_site_of(incoming, source))
        candidates = [x for x in (incoming.called_number, *incoming.destination_aliases) if x]
        conference_id = None
        for candidate in candidates:
            if (await self.conferences.facts(candidate)).exists:
                conference_id = candidate
                break
        handle.alert()
        conf: RunningConference | None = None
        if conference_id is not None:
            try:
                conf = await self.conferences.admit(conference_id, caller)
            except JoinRefused as exc:
                if exc.code != "pin_required":
                    log.info("H.323 dial-in from %s to %s refused: %s", source, conference_id, exc.code)
                    await self._audit(caller, incoming, conference_id, "denied", exc.code)
                    handle.release(*self._refusal(exc))
                    return
        await handle.answer()
        async with asyncio.timeout(10):
            await site.settled.wait()
        if site.released.done():
            return
        attempts = self.settings.ivr_attempts
        prompted = conf is None

        async def goodbye(cause: int, reason: str | None = None) -> None:
            site.prompt("goodbye")
            await site.finish_prompts()
            handle.release(cause, reason)

        async def refused(conference_id: str, exc: JoinRefused) -> None:
            log.info("H.323 dial-in from %s to %s refused: %s", source, conference_id, exc.code)
            await self._audit(caller, incoming, conference_id, "denied", exc.code)
            await goodbye(*self._refusal(exc))

        while conf is None:
            if conference_id is None:
                site.prompt("enter_conference_id")
                entered = await site.read_entry()
                if not (await self.conferences.facts(entered)).exists:
                    attempts -= 1
                    if attempts <= 0:
                        await goodbye(Cause.NO_ROUTE_TO_DESTINATION)
                        return
                    site.prompt("invalid")
                    continue
                conference_id = entered
            try:
                conf = await self.conferences.admit(conference_id, caller)
            except JoinRefused as exc:
                if exc.code != "pin_required":
                    await refused(conference_id, exc)
                    return
            if conf is None:
                site.prompt("enter_pin")
                pin = await site.read_entry()
                try:
                    conf = await self.conferences.admit(conference_id, replace(caller, pin=pin))
                except JoinRefused as exc:
                    attempts -= 1
                    if exc.code != "wrong_pin" or attempts <= 0:
                        await refused(conference_id, exc)
                        return
                    await self._audit(caller, incoming, conference_id, "denied", exc.code)
                    site.prompt("invalid")
        await self._audit(caller, incoming, conference_id or conf.id, "ok", "admitted")
        if prompted:
            site.prompt("joining")
            await site.finish_prompts()
        # The h323-ID (BMPString: Chinese survives) names the site; the Q.931 Display IE is IA5.
        h323_id = next((a for a in incoming.source_aliases if not a.isdigit()), "")
        display = incoming.display if incoming.display and "?" not in incoming.display else ""
        name = h323_id or display or incoming.calling_number or source
        base = "h323-" + re.sub(r"[^0-9A-Za-z_.-]", "_", h323_id or incoming.calling_number or source)
        site_id, n = base, 2
        while site_id in conf.room.participants:
            site_id, n = f"{base}-{n}", n + 1
        await site.join(conf, site_id, name)

    # ------------------------------------------------------------------ dial-out (console)
    async def invite(self, conference_id: str, site_id: str, address: str | None = None, alias: str | None = None,
                     name: str = "") -> H323Site:
        """Call a site into a running conference (invite and redial). ValueError for bad input.

        ``address`` is ``[alias@]host[:port]`` (None: the site plan's H.323 endpoint of the
        meeting room ``site_id``); ``alias`` the E.164 number or H.323 alias to call there.
        Returns at once; the site list shows calling → joined (or failed with the cause).
        """
        conf = self.conferences.running(conference_id)
        if conf is None:
            raise ValueError(f"会议未在进行: {conference_id}")
        if not site_id or not re.fullmatch(r"[0-9A-Za-z_.\-]{1,64}", site_id):
            raise ValueError(f"无效的会场标识: {site_id!r}")
        if site_id in conf.room.participants or self.find(conference_id, site_id) is not None:
            raise ValueError(f"会场已在会议中: {site_id}")
        if not address:
            planned = self.plan_address(site_id)
            if planned is None:
                raise ValueError("缺少 H.323 地址")
            address, name = planned[1], name or planned[0]
        target_alias, target = parse_target(address)
        alias = alias or target_alias
        display = name or (conf.sites[site_id].name if site_id in conf.sites else site_id)
        self._last_call[(conference_id, site_id)] = (address, alias, display)
        where = f"{target.host}:{target.port}" if target is not None else "网守"
        await conf.set_site_status(site_id, "calling", f"h323:{alias or ''}@{where}", name=display, protocol="h323")
        try:
            target = self._resolve(alias, target)
            handle = await self.endpoint.dial(target, alias)
        except AdmissionRefused as exc:
            text = (f"别名 {alias} 未在网守注册" if exc.reason == "calledPartyNotRegistered"
                    else f"网守拒绝呼叫（{exc.reason}）")
            if exc.reason == "callerNotRegistered" and self.registration is not None:
                self.registration.forget("ARJ callerNotRegistered")
            await conf.set_site_status(site_id, "failed", text, name=display, protocol="h323")
            raise ConnectionError(text) from exc
        except LookupError as exc:
            await conf.set_site_status(site_id, "failed", str(exc.args[0]), name=display, protocol="h323")
            raise ConnectionError(str(exc.args[0])) from exc
        except (OSError, TimeoutError) as exc:
            await conf.set_site_status(site_id, "failed", f"连接失败: {exc}", name=display, protocol="h323")
            raise ConnectionError(f"无法连接 {where}: {exc}") from exc
        site = await self._new_site(handle, dial_out=True)
        site.conference, site.site_id = conf, site_id
        self._spawn(self._outgoing(site, conf, site_id, display))
        return site

    def _resolve(self, alias: str | None, target: MediaAddress | None) -> MediaAddress | None:
        """Where to call: the address, or the alias's registration in our gatekeeper (server
        mode). None: the registered client asks its gatekeeper (ARQ). LookupError (zh-CN) when
        the alias cannot be resolved."""
        if target is not None:
            return target
        if self.local_gatekeeper is not None:
            found = self.local_gatekeeper.lookup(alias or "")
            if found is None:
                raise LookupError(f"别名 {alias} 未在本机网守注册")
            return found
        if self.registration is not None:
            if self.endpoint.gatekeeper is None:
                raise LookupError(f"尚未注册到网守，无法按别名 {alias} 呼叫")
            return None
        raise LookupError(f"未配置网守，无法按别名 {alias} 呼叫（请填写 IP 地址）")

    async def _outgoing(self, site: H323Site, conf: RunningConference, site_id: str, name: str) -> None:
        try:
            async with asyncio.timeout(self.settings.answer_timeout):
                await site.settled.wait()
            if site.released.done():
                return  # finish() reported the failure
            await site.join(conf, site_id, name)
        except TimeoutError:
            site.handle.release(Cause.NO_ANSWER)
        except RoomError as exc:
            log.info("H.323 site %s refused by the room: %s", site_id, exc)
            site.handle.release(Cause.CALL_REJECTED)
        except Exception:  # a bug or the database: log it, release the call, keep serving others
            log.exception("H.323 site %s failed while joining", site_id)
            site.handle.release(Cause.TEMPORARY_FAILURE)

    def plan_address(self, site_id: str) -> tuple[str, str] | None:
        """(name, ``[alias@]host[:port]``) of a site-plan meeting room's H.323 endpoint."""
        plan = getattr(self.conferences.core, "plan", None)
        for room in getattr(plan, "meeting_rooms", ()):
            if room.id == site_id:
                ep = next((e for e in room.endpoints if e.protocol == "h323" and e.address), None)
                return (room.name, ep.address) if ep is not None else None
        return None

    async def redial(self, conference_id: str, site_id: str) -> H323Site:
        """Hang up the site's call if it is still up, then call its last (or planned) address."""
        last = self._last_call.get((conference_id, site_id))
        if last is None and self.plan_address(site_id) is None:
            raise ValueError(f"会场没有可重拨的地址: {site_id}")
        await self.hangup(conference_id, site_id)
        conf = self.conferences.running(conference_id)
        if conf is not None and site_id in conf.room.participants:
            await conf.leave(site_id, "redial")
        if last is None:
            return await self.invite(conference_id, site_id, None)
        address, alias, name = last
        return await self.invite(conference_id, site_id, address, alias, name)

    async def hangup(self, conference_id: str, site_id: str) -> bool:
        """Release a site's H.323 call (False when there is none)."""
        site = self.find(conference_id, site_id)
        if site is None:
            return False
        site.handle.release(Cause.NORMAL_CALL_CLEARING)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(site.released), 5)
        return True

    def gatekeeper_status(self) -> dict[str, Any]:
        """The gatekeeper mode and its state (for the console or a health page)."""
        out: dict[str, Any] = {"mode": self.settings.gatekeeper}
        keeper = self.registration
        if keeper is not None:
            protocol = keeper.protocol
            out.update(gatekeeper=f"{keeper.gatekeeper.host}:{keeper.gatekeeper.port}",
                       registered=keeper.registered.is_set(), registrations=keeper.registrations,
                       last_error=keeper.last_error,
                       gatekeeper_id=protocol.client.gatekeeper_id if protocol else None,
                       endpoint_id=protocol.client.endpoint_id if protocol else None,
                       aliases=list(protocol.client.config.aliases) if protocol else [])
        if self.local_gatekeeper is not None:
            gk = self.local_gatekeeper.gatekeeper
            gk.expire(asyncio.get_running_loop().time())
            out.update(ras_address=f"{gk.ras_address.host}:{gk.ras_address.port}", terminals=[
                {"endpoint_id": r.endpoint_id, "aliases": list(r.aliases),
                 "address": f"{r.call_signal.host}:{r.call_signal.port}"} for r in gk.registrations.values()])
        return out

    def statistics(self) -> list[dict[str, Any]]:
        """Every H.323 call: site, conference, state and figures."""
        out = []
        for site in self.sites:
            out.append({"site_id": site.site_id, "conference_id": site.conference.id if site.conference else None,
                        "dial_out": site.dial_out, "joined": site.site is not None,
                        **(site.site.statistics() if site.site is not None else {})})
        return out


class H323SiteDialer:
    """The chair console's invite/redial/hang-up buttons (`ConferenceService.dial`) for H.323 sites."""

    def __init__(self, bridge: H323Bridge) -> None:
        self.bridge = bridge

    async def invite(self, conference: RunningConference, site_id: str, actor: str) -> None:
        try:
            await self.bridge.invite(conference.id, site_id)
        except (ValueError, ConnectionError) as exc:
            raise ConferenceError(str(exc)) from None

    async def redial(self, conference: RunningConference, site_id: str, actor: str) -> None:
        try:
            await self.bridge.redial(conference.id, site_id)
        except (ValueError, ConnectionError) as exc:
            raise ConferenceError(str(exc)) from None

    async def hangup(self, conference: RunningConference, site_id: str, actor: str) -> None:
        if not await self.bridge.hangup(conference.id, site_id):
            raise ConferenceError(f"会场不在通话中：{site_id}")

    async def invite_address(self, conference: RunningConference, address: str, name: str, actor: str) -> str:
        """The console's "add a site by address": ``h323:``/alias/number/IP; returns the new site id."""
        target = address.removeprefix("h323:")
        site_id = "h323-" + re.sub(r"[^0-9A-Za-z_.-]", "_", target)[:58]
        try:
            await self.bridge.invite(conference.id, site_id, address=target, name=name or target)
        except ValueError as exc:
            raise DialError("bad_address", str(exc)) from None
        except ConnectionError as exc:  # the site list shows it failed, with the reason
            raise DialError("unavailable", str(exc)) from None
        return site_id


@dataclass
class H323Capability:
    """What ``core.capabilities["h323"]`` holds."""

    bridge: H323Bridge

    async def stop(self) -> None:
        await self.bridge.stop()


def bridge_settings(settings: Settings) -> BridgeSettings:
    """The bridge's knobs from the installation's ``[h323]`` and ``[rtp]`` settings."""
    h323, rtp = settings.h323, settings.rtp
    return BridgeSettings(host=h323.host, port=h323.signalling_port, rtp_first=rtp.port_min,
                          rtp_last=rtp.port_max, gatekeeper=h323.gatekeeper,
                          gatekeeper_address=h323.gatekeeper_address, aliases=tuple(h323.aliases),
                          ras_port=h323.ras_port, time_to_live=h323.time_to_live_seconds,
                          gatekeeper_accounts=tuple((alias, password.get_secret_value())
                                                    for alias, password in h323.gatekeeper_accounts.items()))


async def start(core: CoreServices) -> H323Capability | None:
    """Capability entry point: listen for H.323 calls for the MCU's conferences."""
    mcu = core.capabilities.get("mcu")
    h323 = core.settings.h323
    if mcu is None or not getattr(h323, "enabled", True):
        return None
    conferences: ConferenceService = mcu.conferences
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
