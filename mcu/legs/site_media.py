"""Connect a leg (SIP, H.323, WebRTC) to a participant of a running conference.

Protocol-neutral: the leg is anything with ``send_audio(pcm)``, ``send_video_access_unit(bytes,
pts_90k)`` and ``request_keyframe()`` (see :class:`RtpLeg`). :class:`SiteMedia` *is* the RTP
leg's :class:`~sip_gateway.aio.rtp_leg.MediaSink` (``leg.sink = media``): the leg calls its ``on_*``
methods with decoded media, key-frame requests and DTMF digits. :class:`SiteMedia` then

* pushes decoded audio/video into the participant (mixer and compositor);
* subscribes the leg to the room's *shared* encoder of the site's current view with the leg's
  negotiated codec, packetization mode and resolution (:class:`VideoFormat`), following chair
  operations (broadcast, select-view, voice activation) without re-negotiation; a later change
  of size (H.245 flow control, WebRTC bandwidth feedback) goes through
  :meth:`SiteMedia.change_video_format`, the one way a site's video format changes;
* sends the site's N-1 audio mix every 20 ms, driven by the conference's one audio clock
  (:class:`mcu.runner.MediaRunner`, right after each mix);
* maps key-frame requests both ways through its :class:`KeyframeCoalescer`s, the one place
  they are coalesced: the endpoint's PLI/FIR/INFO/H.245 requests go to the shared encoder
  (which also rate-limits), and the room asks the endpoint for a key frame when the site
  joins and while its video is stalled;
* keeps per-site statistics for the console (``conference.site_status`` events, every
  ``stats_interval`` seconds), merging the leg's stream statistics;
* cleans up on :meth:`SiteMedia.close` (leave/hang-up): subscription, clock, participant.

Usage (from the event loop)::

    media = await SiteMedia.join(conf, "site-1", "云城区会议室", "sip", leg,
                                 video=VideoFormat("h264", 640, 360, single_nal=False),
                                 leg_statistics=lambda: [...])
    rtp_leg.sink = media  # decoded media, digits and key-frame requests now reach the room
    await media.close("hangup")
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import av
import numpy as np

from mcu.legs.rtp_rewrite import StreamRewriter, is_switch_point
from mcu.legs.tier_seat import FixedBudget, TierSeat
from mcu.room import RoomError
from mcu.tiers import ReceiverLimits, Tier, VideoBudget, tier_for_size
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES, EncodedPacket

if TYPE_CHECKING:
    from mcu.conferences import RunningConference
    from mcu.participant import Participant
    from mcu.room import ParticipantSubscription

log = logging.getLogger(__name__)

ENDPOINT_KEYFRAME_MIN_INTERVAL = 1.0  # our requests to the endpoint
ENCODER_KEYFRAME_MIN_INTERVAL = 0.5  # the endpoint's requests, before the encoder's own limit
VIDEO_STALL_SECONDS = 2.0  # no decoded frame for this long: ask the endpoint for a key frame
STALL_REQUEST_INTERVAL = 5.0  # ... and again at most this often while it stays stalled
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
EncodedSink = Callable[[EncodedPacket], None]

# Shared encoder sizes (mcu/encoder.py); a leg gets the largest one its codec level allows.
SIZES = ((1280, 720), (640, 360), (352, 288))


class RtpLeg(Protocol):
    """What SiteMedia needs from a leg (sip_gateway.aio.rtp_leg.MediaLeg satisfies it)."""

    def send_audio(self, pcm: np.ndarray) -> None:
        """Encode and send 20 ms of 48 kHz mono int16 audio."""

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """Packetise and send one encoded access unit."""

    def request_keyframe(self) -> None:
        """Ask the endpoint for a key frame (PLI/FIR, H.245 fast update...)."""


@runtime_checkable
class DecodeControl(Protocol):
    """A leg that decodes video itself and can skip it (sip_gateway.aio.rtp_leg.MediaLeg)."""

    def set_video_decode(self, mode: str) -> None:
        """``"off"`` (shown nowhere) / ``"fast"`` (skip_loop_filter) / ``"full"``."""

    @property
    def video_frames_skipped(self) -> int:
        """Received frames not decoded."""


@dataclass(frozen=True)
class VideoFormat:
    """What the leg negotiated for video towards the endpoint."""

    codec: str = "h264"  # "h264" | "vp8" (lower case, as mcu.encoder keys)
    width: int = 640
    height: int = 360
    single_nal: bool = False  # H.264 packetization-mode 0
    intra_refresh: bool = False  # H.264: an encoder with periodic intra refresh (a site on a lossy line)


def size_for_h264_level(profile_level_id: str | None, max_size: tuple[int, int] = (1280, 720)) -> tuple[int, int]:
    """Largest shared-encoder size a H.264 ``profile-level-id`` can decode (≤ ``max_size``).

    Level 3.1+ → 720p, 2.2–3.0 → 640x360, anything lower or unparsable → CIF (352x288).
    """
    level = 0
    if profile_level_id and len(profile_level_id) == 6:
        with contextlib.suppress(ValueError):
            level = int(profile_level_id[4:6], 16)
    if level >= 31:
        size = (1280, 720)
    elif level >= 22:
        size = (640, 360)
    else:
        size = (352, 288)
    allowed = [s for s in SIZES if s[0] * s[1] <= max_size[0] * max_size[1]]
    fitting = [s for s in allowed if s[0] * s[1] <= size[0] * size[1]]
    return fitting[0] if fitting else SIZES[-1]


@dataclass
class SiteCounters:
    """What SiteMedia itself counts (the leg adds codec/loss/jitter)."""

    audio_frames_in: int = 0
    audio_frames_out: int = 0
    audio_underruns: int = 0
    video_frames_in: int = 0
    video_frames_out: int = 0
    video_bytes_out: int = 0
    keyframes_requested_by_endpoint: int = 0
    keyframes_requested_from_endpoint: int = 0
    dtmf: list[str] = field(default_factory=list)
    last_video_in: float = 0.0
    input_resolution: tuple[int, int] | None = None


class KeyframeCoalescer:
    """Lets one key-frame request through per ``min_interval`` seconds (pure: the clock is injected).

    Endpoints ask for the same key frame several ways at once (RTCP PLI and FIR, SIP INFO, H.245
    videoFastUpdate); one request per interval reaches the other side.
    """

    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self.last = -1e9  # when the last request went through

    def allow(self) -> bool:
        """True (and the request counts as sent) unless one went through less than the interval ago."""
        now = self._clock()
        if now - self.last < self.min_interval:
            return False
        self.last = now
        return True

    def since_last(self) -> float:
        """Seconds since the last request went through."""
        return self._clock() - self.last


class SiteMedia:
    """The media of one site of a conference: the leg's sink, the participant's feeder."""

    def __init__(self, conf: RunningConference, participant: Participant, leg: RtpLeg, *,
                 video: VideoFormat | None, leg_statistics: Callable[[], list[Any]] | None = None,
                 stats_interval: float = 5.0, extra_stats: Callable[[], dict[str, Any]] | None = None,
                 endpoint_keyframe_gap: float = ENCODER_KEYFRAME_MIN_INTERVAL,
                 send_packet: EncodedSink | None = None, budget: VideoBudget | None = None) -> None:
        """``video``: the largest format the site takes (its codec, level and the settings chose it).
        ``budget``: the site's rate budget (mcu.legs.site_rate); an H.264 RTP site with one starts
        on the tier it carries and moves with it, never above ``video``.
        ``endpoint_keyframe_gap``: how often the endpoint's key-frame requests reach the shared
        encoder (0: each one; aiortc sends one per loss). ``send_packet``: where the shared
        encoder's packets go when the leg takes whole packets (WebRTC; aiortc packetizes);
        otherwise their access units go to ``leg.send_video_access_unit``."""
        self.conf = conf
        self.participant = participant
        self.participant_id = participant.id
        self.leg = leg
        self.video = video
        self.budget = budget
        self.max_video = video
        self.leg_statistics = leg_statistics
        self.extra_stats = extra_stats
        self.stats_interval = stats_interval
        self.counters = SiteCounters()
        self.subscription: ParticipantSubscription | None = None
        # One continuous stream across shared encoders (mcu.legs.rtp_rewrite): the old subscription
        # keeps flowing until the new one's key frame lands.
        self.rewriter = StreamRewriter()
        self._outgoing: ParticipantSubscription | None = None
        # An RTP site sending H.264 sits on the conference's tier machine (see _take_seat).
        self.seat: TierSeat | None = None
        self._audio_ticks = 0
        self.closed = False
        self._started = time.monotonic()
        self.to_encoder = KeyframeCoalescer(endpoint_keyframe_gap)  # the endpoint's requests
        self.to_endpoint = KeyframeCoalescer(ENDPOINT_KEYFRAME_MIN_INTERVAL)  # the room's requests
        self._send_packet = send_packet
        self._stats_task: asyncio.Task[None] | None = None
        self._ticking = False
        self.on_dtmf_digit: Callable[[str], None] | None = None  # the room's use of digits, if any
        # Called once when the room removed the participant (chair remove/end): hang up the call.
        self.on_removed: Callable[[], None] | None = None
        self._removed_notified = False
        # Pane size (mcu.pane_size): the decode mode applied to the leg, and the protocol's way of
        # asking the endpoint for the size it is shown at (SIP imageattr, H.245 flow control).
        self._pane_version = 0
        self.decode_mode = "full"
        self.on_pane_size: Callable[[tuple[int, int] | None], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    async def join(cls, conf: RunningConference, participant_id: str, name: str, protocol: str, leg: RtpLeg, *,
                   video: VideoFormat | None, leg_statistics: Callable[[], list[Any]] | None = None,
                   stats_interval: float = 5.0, extra_stats: Callable[[], dict[str, Any]] | None = None,
                   endpoint_keyframe_gap: float = ENCODER_KEYFRAME_MIN_INTERVAL,
                   send_packet: EncodedSink | None = None, budget: VideoBudget | None = None) -> SiteMedia:
        """Join the room as ``participant_id`` and start media (RoomError if the room refuses)."""
        participant = await conf.join(participant_id, name, protocol)
        media = cls(conf, participant, leg, video=video, leg_statistics=leg_statistics,
                    stats_interval=stats_interval, extra_stats=extra_stats,
                    endpoint_keyframe_gap=endpoint_keyframe_gap, send_packet=send_packet, budget=budget)
        media.start()
        return media

    def start(self) -> None:
        """Subscribe video, attach to the conference's audio clock, start the statistics timer."""
        if self.video is not None:
            if self._seated(self.video) and self.budget is not None:  # start where the line says, not at the top
                tier = self.conf.tiers.fit(self.budget.video_kbps(), self._limits(self.video))
                self.video = dataclasses.replace(self.video, width=tier.width, height=tier.height)
            self._subscribe(self.video)
            self._take_seat(self.video)
            self.request_endpoint_keyframe()
        self.conf.runner.add_audio_sink(self)
        self._ticking = True
        if self.stats_interval > 0:
            self._stats_task = asyncio.get_running_loop().create_task(self._stats_loop(), name="site-stats")

    def change_video_format(self, video: VideoFormat) -> None:
        """Send the site another codec/size of its view's shared encoder from now on (the only way
        a site's video format changes: H.245 flow control, WebRTC bandwidth feedback...)."""
        if self.closed or video == self.video and self.subscription is not None:
            return
        self._subscribe(video)
        if self.seat is not None:  # the leg moved it (H.245 flow control): the machine must know, and stay there
            tier = tier_for_size(video.width, video.height)
            self.seat.placed(tier)
            if isinstance(self.seat.budget, FixedBudget):
                self.seat.budget = FixedBudget.fitting(tier, self.seat.machine)

    def _seated(self, video: VideoFormat) -> bool:
        return video.codec == "h264" and self._send_packet is None

    def _limits(self, video: VideoFormat) -> ReceiverLimits:
        top = self.max_video or video
        return ReceiverLimits(max_area=top.width * top.height, fps=self.conf.room.settings.fps)

    def _take_seat(self, video: VideoFormat) -> None:
        """An RTP site sending H.264 takes a seat on the conference's tier machine: its key-frame
        requests are limited there (asking too often moves it down a tier) and its budget moves
        it, never above the largest format it takes (its H.264 level and the settings chose that).
        Without a rate budget the budget is fixed at the starting tier. WebRTC legs
        (``send_packet``) take their own seat."""
        if not self._seated(video):
            return
        tiers = self.conf.tiers
        tier = tier_for_size(video.width, video.height)
        budget = self.budget if self.budget is not None else FixedBudget.fitting(tier, tiers)
        self.seat = TierSeat(tiers, self.participant_id, budget, move=self._move_tier,
                             serve_keyframe=self._serve_keyframe, group=self._tier_group,
                             limits=self._limits(video))
        self.seat.start(tier)

    def budget_moved(self) -> None:
        """The site's budget moved: its seat reads it now rather than at the next half-second tick
        (a line drop is answered as soon as the budget knows)."""
        if self.seat is not None and not self.closed:
            self.seat.tick()

    def _move_tier(self, tier: Tier) -> None:
        if self.video is not None and not self.closed:
            log.info("site %s: tier %dx%d -> %dx%d", self.participant_id, self.video.width, self.video.height,
                     tier.width, tier.height)
            self._subscribe(dataclasses.replace(self.video, width=tier.width, height=tier.height))

    def set_intra_refresh(self, on: bool) -> None:
        """The site's line turned lossy (or clean again): from now on its tier's encoder refreshes
        with periodic intra refresh instead of periodic IDRs (:attr:`mcu.encoder.EncoderKey.intra_refresh`;
        H.264 RTP sites only: the site moves to that encoder on its first IDR, like a tier move)."""
        if self.closed or self.video is None or not self._seated(self.video) or self.video.intra_refresh == on:
            return
        log.info("site %s: intra refresh %s", self.participant_id, "on" if on else "off")
        self._subscribe(dataclasses.replace(self.video, intra_refresh=on))

    def _tier_group(self) -> object:
        sub = self.subscription
        return (sub.key.view_id, sub.key.codec, sub.key.single_nal, sub.key.intra_refresh) if sub is not None else None

    def _serve_keyframe(self) -> None:
        if self.subscription is not None:
            self.subscription.request_keyframe()

    def _subscribe(self, video: VideoFormat) -> None:
        if self.subscription is not None:
            if self._outgoing is None:
                self._outgoing = self.subscription  # flows until the new one's key frame
            else:
                self.subscription.close()  # a switch that never landed
        self.video = video
        refresh = video.intra_refresh and video.codec == "h264"
        self.subscription = self.conf.room.subscribe_video(
            self.participant_id, lambda packet: self._on_packet(packet, refresh), codec=video.codec,
            width=video.width, height=video.height, single_nal=video.single_nal, intra_refresh=refresh)
        key = self.subscription.key
        self.rewriter.switch_to((key.view_id, key.codec, key.width, key.height, refresh), time.monotonic())

    async def close(self, reason: str = "left", detail: str | None = None) -> None:
        """Stop media and leave the room (idempotent); ``detail`` is the console's text."""
        if self.closed:
            return
        self.closed = True
        if self._ticking:
            self.conf.runner.remove_audio_sink(self)
        for sub in (self.subscription, self._outgoing):
            if sub is not None:
                sub.close()
        if self.seat is not None:
            self.seat.close()
        if self._stats_task is not None:
            self._stats_task.cancel()
        self.participant_state_stats()  # final figures into the site list
        await self.conf.leave(self.participant_id, reason, detail)

    # ------------------------------------------------------------------ leg → room (the MediaSink)
    def on_audio(self, leg: object, pcm: np.ndarray) -> None:
        """A decoded 20 ms frame from the endpoint (any thread)."""
        if self.closed:
            return
        self.counters.audio_frames_in += 1
        self.participant.push_audio(pcm)

    def on_video(self, leg: object, frame: av.VideoFrame) -> None:
        """A decoded video frame from the endpoint (any thread)."""
        if self.closed:
            return
        self.counters.video_frames_in += 1
        self.counters.last_video_in = time.monotonic()
        self.counters.input_resolution = (frame.width, frame.height)
        self.participant.push_video(frame)

    def on_keyframe_request(self, leg: object) -> None:
        """The endpoint asks for a key frame (PLI/FIR, SIP INFO, H.245): coalesced per site."""
        self.counters.keyframes_requested_by_endpoint += 1
        if self.subscription is None or not self.to_encoder.allow():
            return
        if self.seat is not None:
            self.seat.keyframe_request(switching=self.rewriter.switching)
        else:
            self.subscription.request_keyframe()

    def on_dtmf(self, leg: object, digit: str) -> None:
        """A DTMF digit after joining (kept for the console; the room may act on it)."""
        self.counters.dtmf.append(digit)
        del self.counters.dtmf[:-16]
        if self.on_dtmf_digit is not None:
            self.on_dtmf_digit(digit)
        self.conf.site_dtmf(self.participant_id, digit)  # the conference's use (request to speak)

    # ------------------------------------------------------------------ room → leg
    def request_endpoint_keyframe(self) -> None:
        """Ask the endpoint for a key frame (coalesced here; legs may limit again)."""
        if not self.to_endpoint.allow():
            return
        self.counters.keyframes_requested_from_endpoint += 1
        self.leg.request_keyframe()

    def _on_packet(self, packet: EncodedPacket, intra_refresh: bool = False) -> None:
        if self.closed:
            return
        out = self.rewriter.rewrite((packet.view_id, packet.codec, packet.width, packet.height, intra_refresh),
                                    packet.pts,
                                    is_switch_point(packet.codec, packet.data, packet.keyframe), time.monotonic())
        if out is None:
            return
        if out.switched and self._outgoing is not None:
            self._outgoing.close()
            self._outgoing = None
        packet = dataclasses.replace(packet, pts=out.timestamp)
        self.counters.video_frames_out += 1
        self.counters.video_bytes_out += len(packet.data)
        if self._send_packet is not None:
            self._send_packet(packet)
        else:
            self.leg.send_video_access_unit(packet.data, packet.pts)

    def send_audio_tick(self) -> None:
        """Called every 20 ms by the conference's audio clock: the N-1 mix (silence when none is ready)."""
        if self.closed:
            return
        if self.participant.has_left:
            if not self._removed_notified and self.on_removed is not None:
                self._removed_notified = True
                self.on_removed()
            return
        mix = self.participant.pull_audio()
        if mix is None:
            self.counters.audio_underruns += 1
            mix = SILENCE
        else:
            self.counters.audio_frames_out += 1
        self.leg.send_audio(mix)
        self._audio_ticks += 1
        self._follow_pane()
        if self.seat is not None and self._audio_ticks % 25 == 0:  # the budget, every half second
            self.seat.tick()
        if self.video is not None and self.decode_mode != "off":  # a hidden source is not decoded: no stall
            last = self.counters.last_video_in or self._started
            now = time.monotonic()
            if now - last > VIDEO_STALL_SECONDS and self.to_endpoint.since_last() > STALL_REQUEST_INTERVAL:
                self.request_endpoint_keyframe()

    def _follow_pane(self) -> None:
        """Apply the room's pane size to this site: decode off/fast/full, ask the endpoint."""
        site = self.participant
        mode = site.decode_mode(self.counters.input_resolution)
        if mode != self.decode_mode:
            was = self.decode_mode
            self.decode_mode = mode
            if isinstance(self.leg, DecodeControl):
                self.leg.set_video_decode(mode)
                if mode != "off":  # shown again (or a new decoder): it needs a key frame now
                    self.counters.keyframes_requested_from_endpoint += 1
                    self.leg.request_keyframe()
            log.debug("site %s: video decode %s -> %s", self.participant_id, was, mode)
        if site.pane_version != self._pane_version:
            self._pane_version = site.pane_version
            if self.on_pane_size is not None:
                try:
                    self.on_pane_size(site.pane)
                except Exception:
                    log.exception("site %s: asking for the pane size failed", self.participant_id)

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> dict[str, Any]:
        """Console figures: our counters plus the leg's per-stream statistics."""
        c = self.counters
        out: dict[str, Any] = {
            "audio_frames_in": c.audio_frames_in, "audio_frames_out": c.audio_frames_out,
            "video_frames_in": c.video_frames_in, "video_frames_out": c.video_frames_out,
            "video_bytes_out": c.video_bytes_out,
            "keyframes_requested_by_endpoint": c.keyframes_requested_by_endpoint,
            "keyframes_requested_from_endpoint": c.keyframes_requested_from_endpoint,
            "input_resolution": list(c.input_resolution) if c.input_resolution else None,
            "audio_only": self.video is None,
            "video_decode": self.decode_mode,
            "video_frames_skipped": self.leg.video_frames_skipped if isinstance(self.leg, DecodeControl) else 0,
            "pane": list(self.participant.pane) if self.participant.pane else None,
        }
        if self.video is not None:
            out["send_video"] = {"codec": self.video.codec, "width": self.video.width,
                                 "height": self.video.height,
                                 "packetization_mode": 0 if self.video.single_nal else 1}
        if self.leg_statistics is not None:
            streams = []
            for s in self.leg_statistics():
                item = asdict(s) if is_dataclass(s) and not isinstance(s, type) else dict(s)
                if isinstance(item.get("resolution"), tuple):
                    item["resolution"] = list(item["resolution"])
                streams.append(item)
            out["streams"] = streams
        if self.extra_stats is not None:
            out.update(self.extra_stats())
        return out

    def participant_state_stats(self) -> dict[str, Any]:
        """Refresh the site list entry's statistics (no event)."""
        stats = self.statistics()
        state = self.conf.sites.get(self.participant_id)
        if state is not None:
            state.stats = stats
        return stats

    async def publish_statistics(self) -> None:
        """Update the site list and publish ``conference.site_status``."""
        self.participant_state_stats()
        state = self.conf.sites.get(self.participant_id)
        if state is not None and not self.closed:
            await self.conf.service.publish_site(self.conf, state)

    async def _stats_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.stats_interval)
            try:
                await self.publish_statistics()
            except Exception:  # statistics must never end a call
                log.exception("site %s: statistics failed", self.participant_id)


__all__ = ["KeyframeCoalescer", "RoomError", "RtpLeg", "SiteCounters", "SiteMedia", "VideoFormat", "size_for_h264_level"]
