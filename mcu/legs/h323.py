"""One H.323 call as a conference site: its call events, media, IVR audio and joining.

An :class:`H323Site` follows its call's events (from :class:`~sip_gateway.aio.h323_endpoint.H323Endpoint`),
opens and closes the media channels on its :class:`~sip_gateway.aio.h323_media.H323MediaLeg`, plays
the IVR's prompts on the call's audio channel until it joins, and joins the room through
:class:`mcu.legs.site_media.SiteMedia` (decoded media into the room, the room's shared encoder out with
the negotiated codec: H.264, H.263 or H.261). H.245 videoFastUpdatePicture from the terminal asks
the shared encoder for a key frame. What we send is bounded by the site's rate budget
(:class:`mcu.legs.rate_budget.RateBudget`: its line from the site plan, the ``maxBitRate`` of
the video channel we send on, flowControlCommand): an H.264 site gets the largest size its level
allows whose encoder rate fits, and moves when flowControlCommand changes the budget. Towards the terminal,
flowControlCommand asks for no more video than its largest pane needs (:func:`bitrate_for_pane`).
The video is paced to that budget (the leg's :class:`~sip_gateway.rtp.pacing.VideoPacer`), H.263/H.261 too.

H.239 content (:mod:`mcu.legs.h323_content_media`): once joined, a site whose owner has the
conference content service gets an :class:`H323ContentLink`; the token messages, the content
channels and their key-frame requests go to it.

Far-end camera control: a terminal that announced H.224 gets our H.224 channel (and its own is
accepted); :attr:`H323Site.camera` is what the chair console steers (:mod:`mcu.legs.fecc`).

Who gets in and through which conference is :mod:`mcu.legs.h323_dial_in`'s (calls in) and
:mod:`mcu.legs.h323_bridge`'s (calls out); the site only carries the call.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from mcu.conferences import RunningConference
from mcu.encoder import CIF_ONLY_CODECS, DEFAULT_BITRATE, QCIF
from mcu.legs.h323_content_media import ContentHub, H323ContentLink
from mcu.legs.h323_settings import BridgeSettings
from mcu.legs.rate_budget import RateBudget, Signal
from mcu.legs.site_media import SiteMedia, VideoFormat
from mcu.legs.site_rate import SiteRate, size_for_rate
from mcu.pacer import AUDIO_PERIOD, Pacer
from mcu.room import RoomError
from sip_gateway.aio.h224_channel import H224Channel
from sip_gateway.aio.h323_endpoint import CallHandle
from sip_gateway.aio.h323_media import H323MediaLeg, site_video_codec
from sip_gateway.h323.capabilities import AUDIO_SESSION, VIDEO_SESSION, Codec, MediaFormat
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
    RoundTripDelayMeasured,
    UserInputReceived,
    VideoFastUpdateRequested,
)
from sip_gateway.h323.h239 import CONTENT_SESSION, H239Message, H239MessageReceived, SubMessage
from sip_gateway.h323.q931 import Cause
from sip_gateway.rtp.codecs import Pcm
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES as SAMPLES_PER_FRAME
from sip_gateway.rtp.session import KeyframeRequest

__all__ = ["H323Site", "SiteOwner", "bitrate_for_pane", "cif_only_size", "formats_for_line", "incoming_video_limit", "takes_cif", "takes_qcif",
           "UpstreamWatch", "upstream_video_bps"]

log = logging.getLogger(__name__)

_SILENCE: Pcm = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)


class SiteOwner(Protocol):
    """What a site needs from the bridge that holds its call."""

    settings: BridgeSettings
    prompts: Mapping[str, Pcm]  # the IVR's prompts by name (spoken, or the beeps)
    content: ContentHub | None  # the conferences' content (H.239); None: no content for H.323

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task the owner waits for when it stops."""

    def site_ended(self, site: H323Site) -> None:
        """The call is over and its media closed: give its ports back and forget it."""

    def line_kbps(self, site_id: str) -> int:
        """The rate of the site's line (site plan or the H.323 default), kbit/s."""

    def line_known(self, site_id: str) -> bool:
        """True when the site plan states the site's line; False when only the H.323 default stands
        in (its video then starts low and moves up on evidence, as an unstated SIP line's does)."""


def bitrate_for_pane(size: tuple[int, int] | None, offered_bps: int) -> int | None:
    """Video rate to ask of a terminal shown at ``size`` (None: unseen → the CIF rate; no cap
    when the pane is larger than 640x360 or the terminal offers no more than the cap)."""
    area = size[0] * size[1] if size is not None else 0
    if area > 640 * 360:
        return None
    cap = DEFAULT_BITRATE[(352, 288)] if area <= 352 * 288 else DEFAULT_BITRATE[(640, 360)]
    return cap if not offered_bps or offered_bps > cap else None


CIF = (352, 288)
QCIF_DOWN_KBPS = 205  # a budget below this cannot carry the CIF rung (192 kbit/s + overshoot): QCIF
QCIF_UP_KBPS = 240  # ... and back to CIF only at this budget or more (hysteresis: no flapping)
OVERSHOOT_WINDOW = 2.0  # seconds of received video per measurement of the terminal's upstream
OVERSHOOT_WINDOWS = 2  # this many windows in a row above the cap: it is asked, whatever its OLC says


def upstream_video_bps(line_kbps: float) -> int:
    """The video bit stream a terminal may send us on its line (a leased line is symmetric): the
    line less audio, RTCP and packet headers, as :class:`RateBudget` reckons our own direction."""
    return RateBudget(line_kbps).video_kbps() * 1000


def formats_for_line(formats: Sequence[MediaFormat], line_kbps: float) -> tuple[MediaFormat, ...]:
    """Our receive capability set for a call to a site on a line of ``line_kbps``: every video
    format's ``maxBitRate`` (100 bit/s units) no more than its line carries beside audio
    (:func:`upstream_video_bps`), so the terminal opens its video channel within it."""
    cap = max(1, upstream_video_bps(line_kbps) // 100)
    return tuple(replace(f, max_bitrate=min(f.max_bitrate, cap) if f.max_bitrate else cap) if f.codec.is_video else f
                 for f in formats)


def incoming_video_limit(pane: tuple[int, int] | None, offered_bps: int, line_kbps: float,
                         overshoot: bool = False) -> int | None:
    """The flowControlCommand rate for a terminal's video channel (None: no restriction): the
    smaller of what its largest pane needs (:func:`bitrate_for_pane`) and what its line carries
    (:func:`upstream_video_bps`). Asked only when the terminal's channel allows more (its
    ``maxBitRate`` ``offered_bps``, 0 when unstated) or it was seen sending more (``overshoot``)."""
    area = pane[0] * pane[1] if pane is not None else 0
    caps = [upstream_video_bps(line_kbps)]
    if area <= 640 * 360:
        caps.append(DEFAULT_BITRATE[(352, 288)] if area <= 352 * 288 else DEFAULT_BITRATE[(640, 360)])
    cap = min(caps)
    return cap if overshoot or not offered_bps or offered_bps > cap else None


class UpstreamWatch:
    """The terminal's video as received, per window of at least ``window`` seconds (pure: time and
    the received octet count are passed in): ``overshoot`` once ``windows`` windows in a row carried
    more than the cap asked of it would allow."""

    def __init__(self, window: float = OVERSHOOT_WINDOW, windows: int = OVERSHOOT_WINDOWS) -> None:
        self.window, self.windows = window, windows
        self.received_bps: int | None = None
        self.overshoot = False
        self._sample: tuple[float, int] | None = None
        self._over = 0

    def sample(self, now: float, octets: int, cap_bps: int | None) -> bool:
        """Another reading; True when this one found the overshoot."""
        if self._sample is None or now < self._sample[0]:
            self._sample = (now, octets)
            return False
        then, before = self._sample
        if now - then < self.window:
            return False
        self._sample = (now, octets)
        self.received_bps = round(max(0, octets - before) * 8 / (now - then))
        self._over = self._over + 1 if cap_bps is not None and self.received_bps > cap_bps else 0
        if self._over >= self.windows and not self.overshoot:
            self.overshoot = True
            return True
        return False


def takes_qcif(fmt: MediaFormat) -> bool:
    """Does our H.263/H.261 channel to the terminal allow QCIF (the terminal listed qcifMPI)?"""
    return fmt.codec in (Codec.H263, Codec.H261) and any(name == "qcifMPI" for name, _ in fmt.mpi)


def takes_cif(fmt: MediaFormat) -> bool:
    """Does it allow CIF (cifMPI listed, or no sizes listed at all)? H323Plus's QCIF capability does not."""
    return not fmt.mpi or any(name == "cifMPI" for name, _ in fmt.mpi)


def cif_only_size(video_kbps: int, current: tuple[int, int], qcif: bool, cif: bool = True) -> tuple[int, int]:
    """H.263/H.261: the shared encoder's size for a budget of ``video_kbps`` (the video bit stream),
    moving from ``current`` with hysteresis. Without ``qcif`` (the terminal did not list it) CIF
    stays, and the leg's pacer drops frames when the budget is below the CIF rung; a terminal that
    listed QCIF but not ``cif`` gets QCIF whatever the budget."""
    if qcif and not cif:
        return QCIF
    if not qcif:
        return CIF
    if current == QCIF:
        return CIF if video_kbps >= QCIF_UP_KBPS else QCIF
    return QCIF if video_kbps < QCIF_DOWN_KBPS else CIF


@dataclass(eq=False)
class H323Site:
    """One H.323 call and, once admitted, its conference site."""

    owner: SiteOwner
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
    prompts: collections.deque[Pcm] = field(default_factory=collections.deque)  # IVR audio to play
    prompts_played: asyncio.Event = field(default_factory=asyncio.Event)
    _prompter: asyncio.Task[None] | None = None
    rate: RateBudget | None = None  # once joining: the video we may send (line, maxBitRate, flow control, RTCP)
    site_rate: SiteRate | None = None  # feeds ``rate`` with the terminal's RTCP and fast-update requests
    qcif: bool = False  # H.263/H.261: the terminal takes QCIF (the lower rung for a slow line)
    cif: bool = True  # ... and CIF (a terminal that listed QCIF only is sent QCIF)
    upstream: UpstreamWatch = field(default_factory=UpstreamWatch)  # the terminal's video as received
    video_ceiling: VideoFormat | None = None  # the largest format the negotiated channel carries
    content_link: H323ContentLink | None = None  # H.239, once joined (when the owner has content)

    @property
    def camera(self) -> H224Channel | None:
        """Far-end camera control (H.281 over the H.224 data channel), once it is open both ways to us."""
        return self.media.camera

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
            if self.content_link is not None:
                self.content_link.on_channel_opened(event.channel)
            self.channel_change.set()
        elif isinstance(event, ChannelClosed):
            self.media.close_channel(event.number, event.outgoing)
            if self.content_link is not None:
                self.content_link.on_channel_closed(event.number, event.outgoing)
        elif isinstance(event, H239MessageReceived):
            if self.content_link is not None:
                self.content_link.on_message(event.message)
            elif event.message.kind is SubMessage.PRESENTATION_TOKEN_REQUEST:
                # Not in the room (yet), or no content here: refused, never left unanswered.
                self.handle.send_h239(H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE,
                                                  channel_id=event.message.channel_id,
                                                  terminal_label=event.message.terminal_label, acknowledge=False))
        elif isinstance(event, ChannelRejected):
            self.rejected.append(f"{event.session_id}:{event.cause}")
            if event.session_id == CONTENT_SESSION:
                if self.content_link is not None:
                    self.content_link.on_channel_rejected(event.session_id)
            elif event.session_id == VIDEO_SESSION:
                self.video_mismatch = True  # no video towards this terminal: join audio-only
            self.channel_change.set()
        elif isinstance(event, CapabilityMismatch):
            self.video_mismatch = self.video_mismatch or event.video
            self.channel_change.set()
        elif isinstance(event, UserInputReceived):
            for char in event.text:
                self.digits.put_nowait(char)
                if self.site is not None:
                    self.site.on_dtmf(self.media.leg, char)
        elif isinstance(event, VideoFastUpdateRequested):
            content_out = self.media.outgoing_content
            if content_out is not None and content_out.number == event.channel:
                if self.content_link is not None:
                    self.content_link.on_fast_update()
            elif self.site is not None:
                self.site.on_keyframe_request(self.media.leg)
                if self.site_rate is not None:  # a sign of loss from a terminal that sends no RTCP PLI
                    self.site_rate.on_rate_feedback("video", KeyframeRequest("h245"))
        elif isinstance(event, FlowControlRequested):
            content_out = self.media.outgoing_content
            if content_out is not None and content_out.number == event.channel:
                if self.content_link is not None:  # our H.239 content channel, not the camera's
                    self.content_link.on_flow_control(event.bitrate_bps)
            else:
                self.apply_flow_control(event.bitrate_bps)
        elif isinstance(event, RoundTripDelayMeasured):
            self.round_trip_ms = round(event.seconds * 1000, 1)
        elif isinstance(event, CallReleased):
            self.settled.set()
            self.seen_setup.set()
            if not self.released.done():
                self.released.set_result(event)

    def apply_flow_control(self, bitrate_bps: int | None) -> None:
        """flowControlCommand into the rate budget (None: no restriction); the site moves to the
        size the budget carries."""
        self.flow_cap_bps = bitrate_bps
        if self.rate is None:
            return
        if bitrate_bps is None:
            self.rate.clear(Signal.H245_FLOW_CONTROL)
        else:
            self.rate.on_h245_flow_control(bitrate_bps / 1000)
        self.refit()

    def refit(self) -> None:
        """The budget moved: send the site the size it carries now (a move lands on a key frame of
        the new shared encoder, :class:`SiteMedia`)."""
        site = self.site
        if site is None or site.video is None or site.subscription is None or self.video_ceiling is None:
            return
        fitted = self.fit(self.video_ceiling, site.video)
        if fitted != site.video:
            site.change_video_format(fitted)

    def fit(self, ceiling: VideoFormat, current: VideoFormat | None = None) -> VideoFormat:
        """``ceiling`` at the size the budget carries; H.263/H.261: CIF, or QCIF below the CIF
        rung when the terminal takes it (:func:`cif_only_size`, with hysteresis from ``current``)."""
        if self.rate is None:
            return ceiling
        if ceiling.codec in CIF_ONLY_CODECS:
            now = (current.width, current.height) if current is not None else (ceiling.width, ceiling.height)
            width, height = cif_only_size(self.rate.video_kbps(), now, self.qcif, self.cif)
        else:
            width, height = size_for_rate(self.rate.video_kbps(), (ceiling.width, ceiling.height))
        return VideoFormat(ceiling.codec, width, height, ceiling.single_nal)

    def extra_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol_detail": "H.323", "round_trip_ms": self.round_trip_ms,
                               "requested_video_bps": self.requested_video_bps,
                               "flow_control_bps": self.flow_cap_bps, "rejected_channels": list(self.rejected),
                               "upstream_overshoot": self.upstream.overshoot,
                               "received_video_bps": self.upstream.received_bps}
        if self.site_rate is not None:
            out["budget"] = self.site_rate.statistics()
        elif self.rate is not None:
            out["budget"] = self.rate.snapshot()
        # Each direction is its own logical channel and may use another codec (a terminal
        # sending H.263 while receiving H.261): "audio"/"video" are what we send.
        codecs: dict[str, str | None] = {}
        for session_id, kind in ((AUDIO_SESSION, "audio"), (VIDEO_SESSION, "video")):
            sent = self.media.channels.get((session_id, True))
            received = self.media.channels.get((session_id, False))
            codecs[kind] = sent.format.codec.value if sent else None
            codecs[f"{kind}_received"] = received.format.codec.value if received else None
        out["h323_codecs"] = codecs
        link = self.content_link
        if link is not None:  # H.239: content frames decoded from / sent to the terminal
            out["h239"] = {"frames_in": link.frames_in, "frames_out": link.frames_out,
                           "receiving": self.media.incoming_content is not None,
                           "sending": self.media.outgoing_content is not None,
                           "last_refusal": link.floor.last_refusal}
        return out

    # ------------------------------------------------------------------ joining
    async def wait_for_media(self) -> None:
        """Until audio flows both ways and video is open (or clearly not coming)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.owner.settings.media_settle * 3
        video_deadline: float | None = None
        while not self.released.done():
            have_audio = (AUDIO_SESSION, True) in self.media.channels
            have_video = (VIDEO_SESSION, True) in self.media.channels and (VIDEO_SESSION, False) in self.media.channels
            if have_audio and (have_video or self.video_mismatch):
                return
            now = loop.time()
            if have_audio and video_deadline is None:
                video_deadline = now + self.owner.settings.media_settle
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
        # An unstated line starts low and moves up on the terminal's RTCP receiver reports.
        self.site_rate = SiteRate(self.owner.line_kbps(site_id), name=site_id,
                                  line_known=self.owner.line_known(site_id))
        self.rate = self.site_rate.budget
        if self.flow_cap_bps is not None:  # a flowControlCommand that came before the join
            self.rate.on_h245_flow_control(self.flow_cap_bps / 1000)
        if video_out is not None:
            codec, (width, height), single_nal = site_video_codec(video_out.format)
            if video_out.format.bitrate_bps > 0:
                self.rate.on_h245_max_bitrate(video_out.format.bitrate_bps / 1000)
            self.video_ceiling = VideoFormat(codec, width, height, single_nal)
            self.qcif, self.cif = takes_qcif(video_out.format), takes_cif(video_out.format)
            video = self.fit(self.video_ceiling)
        # The leg's pacer keeps the video within the budget (a leaky bucket, key frames spread out,
        # whole frames dropped up to the next key frame when the queue would hold > 0.5 s: an H.263
        # P-picture after a dropped one is not decodable) and audio is never queued behind it.
        self.media.leg.send_budget = self.rate
        # RTCP receiver reports and PLI/FIR about our video move the budget (as a SIP site's do).
        self.media.leg.rate_listener = self.site_rate
        self.site_rate.on_change = lambda _change: self.refit()
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
        self.media.sink = self.site  # decoded media and RTCP PLI/FIR (if the terminal sends one)
        # The chair removed the site (or ended the conference): hang up the call.
        self.site.on_removed = lambda: self.handle.release(Cause.NORMAL_CALL_CLEARING)
        self._start_content(conf, site_id)
        self.owner.spawn(self._limit_incoming_video())

    def _start_content(self, conf: RunningConference, site_id: str) -> None:
        """H.239 for the joined site (when the node has the content service)."""
        hub = self.owner.content
        if hub is None or self.media.content is None:
            return
        h245 = self.handle.call.h245
        link = H323ContentLink(site_id, conf, hub.of(conf), self.handle, self.media,
                               remote_formats=lambda: list(h245.remote_content_formats) if h245 is not None else [])
        self.content_link = link
        link.start()
        incoming = self.media.incoming_content  # opened before the join
        if incoming is not None:
            link.on_channel_opened(incoming)

    async def _limit_incoming_video(self) -> None:
        """Ask the terminal (H.245 flowControlCommand) for no more video than its line carries and
        its largest pane needs (:func:`incoming_video_limit`): its own upstream must leave room on
        the line, and decoding full-rate 720p only to shrink it into a small pane is wasted CPU.
        A terminal seen sending far more than that is asked even when its channel's maxBitRate
        says it would not."""
        loop = asyncio.get_running_loop()
        while self.site is not None and not self.site.closed and not self.released.done():
            incoming = self.media.incoming_video
            channel = self.media.leg.video
            session = channel.session if channel is not None else None
            if incoming is not None and self.conference is not None and self.rate is not None:
                with contextlib.suppress(RoomError):
                    part = self.site.participant  # the settled pane (mcu.pane_size): no flip-flop storms
                    wanted = part.pane if part.pane_version else self.conference.room.wanted_video_size(self.site_id)
                    line = self.rate.line_kbps
                    watch = self.upstream
                    if session is not None and watch.sample(loop.time(), session.stats.octets,
                                                            incoming_video_limit(wanted, 0, line)):
                        log.info("H.323 site %s sends %s bit/s of video, more than its line carries: asked anyway",
                                 self.site_id, watch.received_bps)
                    limit = incoming_video_limit(wanted, incoming.format.bitrate_bps, line, watch.overshoot)
                    if limit != self.requested_video_bps:
                        self.requested_video_bps = limit
                        self.handle.flow_control(incoming.number, limit)
            await asyncio.sleep(min(self.owner.settings.pane_check_interval, OVERSHOOT_WINDOW))

    async def finish(self, event: CallReleased) -> None:
        """The call is over: leave the room, close media, tell the console."""
        reason = "hangup" if event.cause == Cause.NORMAL_CALL_CLEARING else "failed"
        if self.joining:  # released while entering the room: leave it once in, not before
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.join_finished.wait(), 10)
        if self.content_link is not None:
            await self.content_link.close()
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
        self.owner.site_ended(self)

    def prompt(self, name: str) -> None:
        """Queue an IVR prompt (the owner's prompts: spoken, or the beeps) towards the terminal."""
        self.prompts.append(self.owner.prompts[name])
        if self._prompter is None:
            self._prompter = self.owner.spawn(self._play_prompts())

    async def _play_prompts(self) -> None:
        """20 ms frames of the queued prompts (silence between them) until the site joins the
        room (whose mix then feeds the terminal) or the call ends."""
        pacer = Pacer(AUDIO_PERIOD)
        pending = _SILENCE[:0]
        while self.site is None and not self.released.done():
            if (AUDIO_SESSION, True) in self.media.channels:  # hold the prompts until audio is open
                frame, pending = self._next_prompt_frame(pending)
                self.media.send_audio(frame)
            await pacer.wait()

    def _next_prompt_frame(self, pending: Pcm) -> tuple[Pcm, Pcm]:
        """The next 20 ms of prompt audio (padded with silence) and what remains after it."""
        if len(pending) < SAMPLES_PER_FRAME and self.prompts:
            pending = np.concatenate([pending, self.prompts.popleft()])
        frame, pending = pending[:SAMPLES_PER_FRAME], pending[SAMPLES_PER_FRAME:]
        if len(frame) < SAMPLES_PER_FRAME:
            frame = np.concatenate([frame, _SILENCE[len(frame):]])
        if not len(pending) and not self.prompts:
            self.prompts_played.set()
        return frame, pending

    async def finish_prompts(self, seconds: float = 2.0) -> None:
        """Until the queued prompts are played, the call ends or ``seconds`` pass."""
        if self._prompter is None or self._prompter.done():
            return
        self.prompts_played.clear()
        played = asyncio.ensure_future(self.prompts_played.wait())
        await asyncio.wait([played, self._prompter], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        played.cancel()
