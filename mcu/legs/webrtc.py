"""WebRTC legs (aiortc): a browser (or any WebRTC peer) as a site of a running conference.

A leg answers the peer's SDP offer, then, as a site, goes through the same
:class:`~mcu.legs.site_media.SiteMedia` as SIP and H.323 sites:

* inbound: aiortc decodes the peer's camera (its receiver runs the decoder in its own thread)
  and microphone; decoded video goes to ``SiteMedia.on_video``, audio is down-mixed to the
  room's 48 kHz mono 20 ms frames and goes to ``SiteMedia.on_audio``;
* outbound video: **no per-leg encode**. SiteMedia subscribes the site to the room's shared
  encoder of its view (following broadcast/select-view/voice activation) and the leg hands the
  encoded access units to aiortc as ``av.Packet``s: since aiortc 1.6 ``RTCRtpSender`` only
  *packetizes* (``encoder.pack``) what a track's ``recv()`` returns when it is a packet
  rather than a frame (the "encoded frame bypass", aiortc PR #1010);
* outbound audio: the site's N-1 mix, sent by SiteMedia on the conference's audio clock into
  :class:`MixAudioTrack`, Opus-encoded by aiortc (N-1 mixes differ per listener, so this encode
  is inherent);
* PLI/FIR from the peer: ``RTCRtpSender._send_keyframe`` is replaced per sender by
  ``SiteMedia.on_keyframe_request`` (then rate-limited by the shared encoder);
* REMB from the peer: aiortc sets ``encoder.target_bitrate`` on the sender's encoder; we give
  the sender a :class:`PassthroughEncoder` whose setter picks the view's resolution
  (1280x720 / 640x360 / 352x288) with hysteresis and moves the site there with
  ``SiteMedia.change_video_format``.

A receive-only viewer of a fixed view (``view=...``) is no site: it subscribes to that view's
encoder itself and sends nothing into the room.

Both hooks use aiortc internals (``_send_keyframe`` and the name-mangled
``_RTCRtpSender__encoder``); they are checked at leg start so an aiortc upgrade that changes
them fails loudly in the tests rather than silently losing key-frame requests.

The aiortc plumbing (tracks, the pass-through encoder, ICE hosts) is in
:mod:`mcu.legs.webrtc_aiortc`. ICE host candidates come from ``configure_host_addresses`` there
(the configured interfaces, loopback allowed; aioice itself never offers 127.0.0.1) and
STUN/TURN from the settings.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError

from mcu.legs.site_media import SiteCounters, SiteMedia, VideoFormat
from mcu.legs.webrtc_aiortc import (
    EncodedVideoTrack,
    MixAudioTrack,
    PassthroughEncoder,
    configure_host_addresses,
    deprioritise_video_decoders,
    negotiated_video_codec,
    prefer_codecs,
    to_mono_frames,
)
from mcu.room import BROADCAST, Room, RoomError, Subscription
from sip_gateway.rtp.media_primitives import EncodedPacket

if TYPE_CHECKING:
    from core.runtime import CoreServices
    from mcu.conferences import RunningConference

log = logging.getLogger(__name__)

# Resolution ladder for bandwidth feedback, best first (the shared encoders' sizes).
LADDER: tuple[tuple[int, int], ...] = ((1280, 720), (640, 360), (352, 288))


@dataclass(frozen=True)
class IceServer:
    urls: str
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class WebRtcConfig:
    """What a leg needs from the settings (config.settings.WebRtcSettings maps onto it)."""

    host_addresses: tuple[str, ...] = ("127.0.0.1",)
    ice_servers: tuple[IceServer, ...] = ()
    video_codecs: tuple[str, ...] = ("h264", "vp8")  # answer preference when the peer offers both
    media_timeout: float = 5.0  # seconds without inbound RTP after connecting: the peer is gone

    def rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                                            for s in self.ice_servers])


def webrtc_config(core: CoreServices) -> Any:
    """The legs' configuration from the `webrtc` settings section."""
    w = core.settings.webrtc
    return WebRtcConfig(host_addresses=tuple(w.host_addresses),
                        ice_servers=tuple(IceServer(s.urls, s.username, s.credential) for s in w.ice_servers),
                        video_codecs=tuple(w.video_codecs), media_timeout=w.media_timeout_seconds)


class BandwidthLadder:
    """Chooses the resolution rung from REMB (pure: the caller passes rates and time).

    A receiver's REMB follows what it actually receives (libwebrtc caps it at 1.5x the incoming
    rate), so a low REMB on a calm picture is no congestion. Congestion is a REMB below what we
    send: step one rung down (at most every `settle` seconds). Since REMB cannot say how much
    more would fit, step back up by probing after `probe_after` seconds without congestion,
    doubling the wait after a probe that congests again.
    """

    def __init__(self, start: tuple[int, int] = LADDER[0], *, settle: float = 2.0, probe_after: float = 15.0,
                 max_probe_after: float = 120.0) -> None:
        self.size = start
        self.settle = settle
        self.base_probe_after = probe_after
        self.probe_after = probe_after
        self.max_probe_after = max_probe_after
        self._changed_at = -1e9
        self._probing = False

    def update(self, remb: int, sent_rate: float, now: float) -> tuple[int, int]:
        rung = LADDER.index(self.size)
        if now - self._changed_at < self.settle:
            return self.size
        congested = sent_rate > 50_000 and remb < 0.9 * sent_rate
        if congested and rung < len(LADDER) - 1:
            if self._probing:  # the probe failed: wait longer before the next one
                self.probe_after = min(self.max_probe_after, self.probe_after * 2)
            self._probing = False
            return self._move(rung + 1, now)
        if not congested and rung > 0 and now - self._changed_at >= self.probe_after:
            self._probing = True
            return self._move(rung - 1, now)
        if not congested and self._probing and now - self._changed_at >= 2 * self.settle:
            self._probing = False  # the probe held: the next step down starts from scratch
            self.probe_after = self.base_probe_after
        return self.size

    def _move(self, rung: int, now: float) -> tuple[int, int]:
        self.size = LADDER[rung]
        self._changed_at = now
        return self.size


@dataclass
class LegStats:
    """The leg's own figures; what the site receives is counted by its SiteMedia (``site``)."""

    started_at: float = field(default_factory=time.monotonic)
    viewer_keyframe_requests: int = 0
    remb: int = 0
    resolution_switches: int = 0
    last_media_at: float = 0.0
    site: SiteCounters | None = None

    @property
    def video_frames_in(self) -> int:
        return self.site.video_frames_in if self.site is not None else 0

    @property
    def audio_frames_in(self) -> int:
        return self.site.audio_frames_in if self.site is not None else 0

    @property
    def keyframe_requests(self) -> int:
        """PLI/FIR from the peer."""
        site = self.site.keyframes_requested_by_endpoint if self.site is not None else 0
        return site + self.viewer_keyframe_requests


class WebRtcLeg:
    """One peer connection: a site (send + receive) or a receive-only viewer of a fixed view."""

    def __init__(self, conference: RunningConference, config: WebRtcConfig, *, participant_id: str,
                 name: str = "", view: str | None = None, on_closed: Callable[[WebRtcLeg], None] | None = None,
                 size: tuple[int, int] = LADDER[0]) -> None:
        """`view` None: a site that joins the room; otherwise a receive-only viewer of that view.

        `size` is the starting rung of the resolution ladder (bandwidth feedback moves it).
        """
        if size not in LADDER:
            raise ValueError(f"size must be one of {LADDER}")
        self.conference = conference
        self.config = config
        self.participant_id = participant_id
        self.name = name or participant_id
        self.view = view
        self.pc = RTCPeerConnection(config.rtc_configuration())
        self.stats = LegStats()
        self.codec: str | None = None
        self.size: tuple[int, int] = size
        self.ladder = BandwidthLadder(self.size)
        self.media: SiteMedia | None = None  # a site's media (None for a viewer)
        self._view_subscription: Subscription | None = None  # a viewer's feed
        self.video_track = EncodedVideoTrack()
        self._audio_track: MixAudioTrack | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_audio = np.zeros(0, np.int16)
        self._sender: RTCRtpSender | None = None
        self._closing = False
        self._early_tracks: list[MediaStreamTrack] = []

    @property
    def room(self) -> Room:
        return self.conference.room

    @property
    def subscription(self) -> Subscription | None:
        """Where the leg's video comes from: the site's view (through SiteMedia) or the viewer's view."""
        if self.media is not None:
            return self.media.subscription
        return self._view_subscription

    # -- negotiation --------------------------------------------------------------------------
    async def answer(self, offer_sdp: str, *, codec: str | None = None) -> str:
        """Join (unless a viewer), answer the offer, start media. RoomError/ValueError: refused, nothing kept."""
        self.pc.on("track", self._on_track)  # fires inside setRemoteDescription
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            await self.pc.close()
            raise ValueError(f"无法解析的SDP: {exc}") from None
        kinds = {t.kind for t in self.pc.getTransceivers()}
        # A viewer needs video; a participant may be audio-only (the desk softphone, a phone-like
        # browser): it is mixed like any site and shown with the placeholder tile.
        if "video" not in kinds and (self.view is not None or "audio" not in kinds):
            await self.pc.close()
            raise ValueError("SDP offer has no video" if self.view is not None else "SDP offer has no audio or video")
        if self.view is None:
            # The video format is known after the answer (change_video_format below).
            self.media = await SiteMedia.join(self.conference, self.participant_id, self.name, "webrtc", self,
                                              video=None, stats_interval=0, endpoint_keyframe_gap=0.0,
                                              send_packet=self._offer_packet)
            self.stats.site = self.media.counters
        try:
            order = [codec] + [c for c in self.config.video_codecs if c != codec] if codec else self.config.video_codecs
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "video":
                    prefer_codecs(transceiver, order)
                    transceiver.sender.replaceTrack(self.video_track)
                    transceiver.direction = "sendonly" if self.view else "sendrecv"
                    self._sender = transceiver.sender
                elif transceiver.kind == "audio" and self.media is not None:
                    self._audio_track = MixAudioTrack()
                    transceiver.sender.replaceTrack(self._audio_track)
                    transceiver.direction = "sendrecv"
            for track in self._early_tracks:
                self._on_track(track)
            self._early_tracks.clear()
            self.pc.on("connectionstatechange", self._on_state)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            if "video" in kinds:
                self.codec = negotiated_video_codec(self.pc.localDescription.sdp)
                if self.codec is None:
                    raise ValueError("no common video codec (H.264 or VP8)")
                self._hook_sender()
                self._subscribe(self.size)
        except BaseException:
            await self.close("failed")
            raise
        self._spawn(self._watchdog())
        return str(self.pc.localDescription.sdp)

    def _hook_sender(self) -> None:
        sender = self._sender
        assert sender is not None and self.codec is not None
        if not hasattr(sender, "_send_keyframe") or not hasattr(sender, "_RTCRtpSender__encoder"):
            raise RuntimeError("aiortc internals changed: cannot route key-frame requests/REMB to the shared encoder")
        params = next(c for c in RTCRtpSender.getCapabilities("video").codecs
                      if c.mimeType.lower() == f"video/{self.codec}")
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters
        inner = get_encoder(RTCRtpCodecParameters(mimeType=params.mimeType, clockRate=params.clockRate,
                                                  parameters=dict(params.parameters)))
        sender._RTCRtpSender__encoder = PassthroughEncoder(inner, self._on_remb)
        sender._send_keyframe = self._on_peer_keyframe_request  # type: ignore[method-assign]

    def _subscribe(self, size: tuple[int, int]) -> None:
        assert self.codec is not None
        if self.media is not None:
            self.media.change_video_format(VideoFormat(self.codec, *size))
        else:
            assert self.view is not None
            if self._view_subscription is not None:
                self._view_subscription.close()
            self._view_subscription = self.room.subscribe_view(self.view, self._offer_packet, self.codec, *size)
        self.size = size

    def _offer_packet(self, packet: EncodedPacket) -> None:
        sub = self.subscription
        self.video_track.offer(packet, sub.key if sub is not None else None)

    # -- the RtpLeg SiteMedia sends through -----------------------------------------------------
    def send_audio(self, pcm: np.ndarray) -> None:
        """20 ms of the site's mix (aiortc encodes it to Opus)."""
        if self._audio_track is not None:
            self._audio_track.push(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """Unused: the leg takes whole packets (SiteMedia's ``send_packet``), aiortc packetizes them."""

    def request_keyframe(self) -> None:
        """The room asks the peer for a key frame: aiortc's receiver already sends PLI when it needs one."""

    # -- feedback -----------------------------------------------------------------------------
    def _on_peer_keyframe_request(self) -> None:
        """PLI/FIR from the peer: to the shared encoder (which rate-limits)."""
        if self.media is not None:
            self.media.on_keyframe_request(self)
            return
        self.stats.viewer_keyframe_requests += 1
        if self._view_subscription is not None:
            self._view_subscription.request_keyframe()

    def _on_remb(self, bitrate: int) -> None:
        self.stats.remb = bitrate
        rung = self.ladder.update(bitrate, self.video_track.sent_rate(), time.monotonic())
        if rung != self.size and not self._closing and not self.room.ended:
            log.info("leg %s: REMB %d bit/s, switching %dx%d -> %dx%d", self.participant_id, bitrate,
                     *self.size, *rung)
            self.stats.resolution_switches += 1
            self._subscribe(rung)

    # -- inbound media ------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.media is None:
            if self.view is None:
                self._early_tracks.append(track)  # consumed once the site has joined
            return
        self._spawn(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        """Decoded frames from the peer into the site's media, until the track ends."""
        media = self.media
        assert media is not None
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.stats.last_media_at = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    media.on_video(self, frame)
                elif isinstance(frame, av.AudioFrame):
                    frames, self._pending_audio = to_mono_frames(frame, self._pending_audio)
                    for samples in frames:
                        media.on_audio(self, samples)

    # -- liveness and teardown ----------------------------------------------------------------
    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._spawn(self.close("failed" if self.pc.connectionState == "failed" else "left"))

    async def _watchdog(self) -> None:
        """A peer that vanished without a word (no RTP for media_timeout once connected) leaves."""
        while not self._closing:
            await asyncio.sleep(0.5)
            if self.room.ended or (self.media is not None and self.media.participant.has_left):
                self._spawn(self.close("ended" if self.room.ended else "removed"))
                return
            if self.view is not None or self.pc.connectionState != "connected":
                continue
            last = self.stats.last_media_at
            if last and time.monotonic() - last > self.config.media_timeout:
                log.info("leg %s: no media for %.0f s, closing", self.participant_id, self.config.media_timeout)
                self._spawn(self.close("failed"))
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, reason: str = "left") -> None:
        """Leave the room, stop the subscription and the peer connection (idempotent)."""
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.close_reason = reason
        try:
            if self._view_subscription is not None:
                self._view_subscription.close()
            if self.media is not None and self.media.subscription is not None:
                self.media.subscription.close()  # stop feeding the track before it stops
            self.video_track.stop()
            if self._audio_track is not None:
                self._audio_track.stop()
            await self.pc.close()
            if self.media is not None:
                with contextlib.suppress(RoomError):
                    await self.media.close(reason)
        finally:
            current = asyncio.current_task()
            others = [t for t in self._tasks if t is not current]
            for task in others:
                task.cancel()
            if others:
                await asyncio.gather(*others, return_exceptions=True)
            self.closed.set()
            if self._on_closed is not None:
                self._on_closed(self)

    def describe(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id, "view": self.view or BROADCAST, "codec": self.codec,
                "size": list(self.size), "state": self.pc.connectionState, "remb": self.stats.remb,
                "keyframe_requests": self.stats.keyframe_requests, "video_frames_in": self.stats.video_frames_in,
                "packets_sent": self.video_track.packets_sent}


class WebRtcLegs:
    """The WebRTC legs of this node (so shutdown closes them all)."""

    def __init__(self, config: WebRtcConfig) -> None:
        self.config = config
        self.legs: dict[str, WebRtcLeg] = {}
        configure_host_addresses(config.host_addresses)
        deprioritise_video_decoders()

    def create(self, conference: RunningConference, *, participant_id: str, name: str = "",
               view: str | None = None, size: tuple[int, int] = LADDER[0]) -> WebRtcLeg:
        leg = WebRtcLeg(conference, self.config, participant_id=participant_id, name=name, view=view,
                        on_closed=self._forget, size=size)
        self.legs[f"{conference.id}/{participant_id}"] = leg
        return leg

    def _forget(self, leg: WebRtcLeg) -> None:
        key = f"{leg.conference.id}/{leg.participant_id}"
        if self.legs.get(key) is leg:
            del self.legs[key]

    async def stop(self) -> None:
        legs = list(self.legs.values())
        await asyncio.gather(*(leg.close("ended") for leg in legs), return_exceptions=True)
