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
* tiers: the receiver is placed on one of the view's seven shared-encoder tiers
  (:mod:`mcu.tiers`, the conference's :class:`~mcu.tiers.TierMachine`, through a
  :class:`~mcu.legs.tier_seat.TierSeat`) from its
  budget (:class:`~mcu.tiers.VideoBudget`; until the per-site rate budget takes over, its
  REMB: aiortc sets ``encoder.target_bitrate`` on the sender's encoder, our
  :class:`PassthroughEncoder` hands it to a :class:`~mcu.legs.remb_budget.RembBudget`) and its
  H.264 level; it starts at 640x360 on an unknown line and moves with hysteresis
  (checked on every REMB and every half second). Peer key-frame requests go through the
  machine too (a receiver asking too often is moved down a tier instead of served);
* moves are seamless: the new tier is subscribed and asked for an IDR at the decision, the old
  one keeps flowing until the IDR lands, and a :class:`~mcu.legs.rtp_rewrite.StreamRewriter`
  (SiteMedia's for a site, the leg's own for a viewer) keeps the timestamps continuous on the
  sender's SSRC (aiortc numbers the packets itself, without gaps).

A receive-only viewer of a fixed view (``view=...``) is no site: it subscribes to that view's
encoder itself and sends nothing into the room.

* pane size (:mod:`mcu.pane_size` decides, SiteMedia follows it): the size the site is shown at
  goes to the browser over the signalling socket (:meth:`WebRtcLeg.attach_signalling`) as
  ``{"type": "send_size", "active", "width", "height", "max_bitrate"}`` (:func:`send_size_message`);
  the join page sets its video sender's ``scaleResolutionDownBy``/``maxBitrate``, or
  ``active: false`` for a source shown nowhere. Such a source is not decoded either
  (:class:`~mcu.legs.webrtc_aiortc.DecodeGate` on aiortc's decoder queue); shown again, the leg
  sends the browser a PLI and decodes from its next key frame;
* NACK: aiortc's sender answers the browser's NACKs itself, with RTX when negotiated (browsers
  offer it); :class:`~mcu.legs.webrtc_aiortc.RetransmitGuard` keeps that within a byte budget
  (20 % of the video rate sent, :mod:`mcu.legs.resend_budget`) and counts it;
* FEC: RED + ULPFEC answered when the browser offers them and sent while its receiver reports
  show a lossy line, within 25 % of the media bytes, counted in the tier budget
  (:mod:`mcu.legs.webrtc_fec`);
* Audio loss: RED for Opus (RFC 2198) answered when the browser offers it, else Opus in-band FEC
  towards a browser that decodes it, either switched on from its receiver reports
  (:mod:`mcu.legs.audio_fec`, :mod:`mcu.legs.audio_red`).

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
import dataclasses
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

from mcu.legs.audio_fec import AudioFec, peer_decodes_opus_fec
from mcu.legs.audio_red import AudioRedTypes, add_audio_red, offered_audio_red
from mcu.legs.remb_budget import RembBudget
from mcu.legs.rtp_rewrite import StreamRewriter, is_switch_point
from mcu.legs.site_media import SiteCounters, SiteMedia, VideoFormat
from mcu.legs.tier_seat import TierSeat
from mcu.legs.webrtc_aiortc import (
    DecodeGate,
    EncodedVideoTrack,
    MixAudioTrack,
    PassthroughEncoder,
    RetransmitGuard,
    configure_host_addresses,
    deprioritise_video_decoders,
    media_ssrc,
    negotiated_h264_profile_level,
    negotiated_video_codec,
    prefer_codecs,
    to_mono_frames,
)
from mcu.legs.webrtc_fec import FecAwareBudget, FecHook, FecTypes, RedUnwrap, add_fec_codecs, offered_fec
from mcu.pane_size import rate_for
from mcu.room import BROADCAST, Room, RoomError, Subscription
from mcu.tiers import ReceiverLimits, Tier, VideoBudget, h264_limits, tier_for_size
from sip_gateway.rtp.media_primitives import EncodedPacket

if TYPE_CHECKING:
    from core.runtime import CoreServices
    from mcu.conferences import RunningConference

log = logging.getLogger(__name__)

TIER_TICK = 0.5  # seconds between budget checks when no REMB arrives

Signal = Callable[[dict[str, Any]], None]  # a message to the browser over its signalling socket


def send_size_message(size: tuple[int, int] | None) -> dict[str, Any]:
    """What the join page is told to send for a pane of ``size`` (None: shown nowhere, pause it).

    The page scales its camera down to at least ``width`` x ``height`` (never below the pane)
    and caps the rate at :func:`mcu.pane_size.rate_for` of that size.
    """
    if size is None:
        return {"type": "send_size", "active": False}
    return {"type": "send_size", "active": True, "width": size[0], "height": size[1],
            "max_bitrate": rate_for(size)}


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
    fec: bool = True  # answer RED + ULPFEC when offered (sent only on a lossy line: mcu.legs.webrtc_fec)

    def rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                                            for s in self.ice_servers])


def webrtc_config(core: CoreServices) -> Any:
    """The legs' configuration from the `webrtc` settings section."""
    w = core.settings.webrtc
    return WebRtcConfig(host_addresses=tuple(w.host_addresses),
                        ice_servers=tuple(IceServer(s.urls, s.username, s.credential) for s in w.ice_servers),
                        video_codecs=tuple(w.video_codecs), media_timeout=w.media_timeout_seconds)


@dataclass
class LegStats:
    """The leg's own figures; what the site receives is counted by its SiteMedia (``site``)."""

    started_at: float = field(default_factory=time.monotonic)
    viewer_keyframe_requests: int = 0
    keyframes_coalesced: int = 0  # peer requests the tier machine did not pass on
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
        return site + self.viewer_keyframe_requests + self.keyframes_coalesced


class WebRtcLeg:
    """One peer connection: a site (send + receive) or a receive-only viewer of a fixed view."""

    def __init__(self, conference: RunningConference, config: WebRtcConfig, *, participant_id: str,
                 name: str = "", view: str | None = None, on_closed: Callable[[WebRtcLeg], None] | None = None,
                 size: tuple[int, int] | None = None) -> None:
        """`view` None: a site that joins the room; otherwise a receive-only viewer of that view.

        `size`: a start tier chosen by the caller (None: the budget's, 640x360 on an unknown line).
        """
        self.start_tier: Tier | None = tier_for_size(*size) if size is not None else None
        self.conference = conference
        self.config = config
        self.participant_id = participant_id
        self.name = name or participant_id
        self.view = view
        self.pc = RTCPeerConnection(config.rtc_configuration())
        self.stats = LegStats()
        self.codec: str | None = None
        self.size: tuple[int, int] = (0, 0)
        self.remb = RembBudget()
        self.fec = FecHook()  # RED + ULPFEC towards the browser (installed with the sender's hooks)
        # The conference's tier machine; the budget is REMB until the per-site rate budget replaces it.
        self.seat = TierSeat(conference.tiers, participant_id, FecAwareBudget(self.remb, self.fec.overhead),
                             move=self._move,
                             serve_keyframe=self._serve_keyframe, group=self._group,
                             limits=ReceiverLimits(fps=conference.room.settings.fps))
        self._viewer_rewriter = StreamRewriter()  # a site's stream is rewritten by its SiteMedia
        self._view_outgoing: Subscription | None = None  # a viewer's old tier until the new one's IDR
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
        # Pane size (mcu.pane_size): what the browser was last told to send, and where to tell it.
        self.decode_gate = DecodeGate()
        self.audio_fec = AudioFec()
        self.retransmits = RetransmitGuard(lambda: self.video_track.sent_rate() / 1000)
        self.send_size: dict[str, Any] | None = None
        self.send_size_messages = 0
        self._signal: Signal | None = None
        self._video_receiver: Any = None

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
                                              send_packet=self._offer_site_packet)
            self.stats.site = self.media.counters
            self.media.on_pane_size = self.ask_pane_size
        try:
            order = [codec] + [c for c in self.config.video_codecs if c != codec] if codec else self.config.video_codecs
            fec_types = None
            red: tuple[Any, AudioRedTypes] | None = None  # the audio sender and the RED we answer
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "video":
                    prefer_codecs(transceiver, order)
                    fec_types = offered_fec(offer_sdp, transceiver.mid) if self.config.fec else None
                    if fec_types is not None:
                        add_fec_codecs(transceiver, fec_types)
                        RedUnwrap(fec_types).install(transceiver.receiver)
                    transceiver.sender.replaceTrack(self.video_track)
                    transceiver.direction = "sendonly" if self.view else "sendrecv"
                    self._sender = transceiver.sender
                    if self.media is not None:
                        self._video_receiver = transceiver.receiver
                        self.decode_gate.install(transceiver.receiver)
                elif transceiver.kind == "audio" and self.media is not None:
                    self._audio_track = MixAudioTrack()
                    transceiver.sender.replaceTrack(self._audio_track)
                    self.audio_fec.install(transceiver.sender, peer_decodes_opus_fec(offer_sdp))
                    red_types = offered_audio_red(offer_sdp, transceiver.mid)
                    if red_types is not None:
                        add_audio_red(transceiver, red_types)
                        # Chromium sends us plain Opus (RED follows it in the answer); should a peer
                        # send RED anyway, its primary block reaches the decoder (no ULPFEC in audio).
                        RedUnwrap(FecTypes(red_types.red, ulpfec=-1)).install(transceiver.receiver)
                        red = (transceiver.sender, red_types)
                    transceiver.direction = "sendrecv"
            for track in self._early_tracks:
                self._on_track(track)
            self._early_tracks.clear()
            self.pc.on("connectionstatechange", self._on_state)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            if red is not None and "red/48000" in self.pc.localDescription.sdp.lower():
                self.audio_fec.install_red(*red)
            if "video" in kinds:
                self.codec = negotiated_video_codec(self.pc.localDescription.sdp)
                if self.codec is None:
                    raise ValueError("no common video codec (H.264 or VP8)")
                self._hook_sender()
                self.fec.install(self._sender, fec_types if self._answered_fec() else None, self._media_pt())
                if self.codec == "h264":
                    self.seat.limits = h264_limits(negotiated_h264_profile_level(self.pc.localDescription.sdp),
                                                   fps=self.room.settings.fps)
                self._subscribe(self.seat.start(self.start_tier).size)
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
        self.retransmits.install(sender)

    def _answered_fec(self) -> bool:
        """Whether our answer kept RED and ULPFEC (aiortc wrote it from the transceiver's codecs)."""
        sdp = self.pc.localDescription.sdp.lower()
        return "red/90000" in sdp and "ulpfec/90000" in sdp

    def _media_pt(self) -> int:
        """The payload type aiortc sends the video codec with (the first negotiated codec)."""
        assert self._sender is not None
        for transceiver in self.pc.getTransceivers():
            if transceiver.sender is self._sender and transceiver._codecs:
                pt = transceiver._codecs[0].payloadType
                if pt is not None:
                    return pt
        raise RuntimeError("aiortc internals changed: no negotiated video codec on the sender")

    @property
    def budget(self) -> VideoBudget:
        """The receiver's video budget (REMB until the per-site rate budget replaces it; tests set it).

        What the tier machine sees is this less FEC's share while FEC is on (:class:`FecAwareBudget`).
        """
        budget = self.seat.budget
        return budget.inner if isinstance(budget, FecAwareBudget) else budget

    @budget.setter
    def budget(self, budget: VideoBudget) -> None:
        self.seat.budget = FecAwareBudget(budget, self.fec.overhead)

    def _group(self) -> tuple[str, str | None]:
        """What the receiver shares encoders by besides the tier: its view and codec."""
        sub = self.subscription
        if sub is not None:
            return (sub.key.view_id, self.codec)
        return (self.view if self.view is not None else self.room.view_for(self.participant_id), self.codec)

    def _subscribe(self, size: tuple[int, int]) -> None:
        """Feed the leg from the view's encoder of this size (make before break: see the module doc)."""
        assert self.codec is not None
        if self.media is not None:
            self.media.change_video_format(VideoFormat(self.codec, *size))
        else:
            assert self.view is not None
            if self._view_subscription is not None:
                if self._view_outgoing is None:
                    self._view_outgoing = self._view_subscription
                else:
                    self._view_subscription.close()
            sub = self.room.subscribe_view(self.view, self._offer_view_packet, self.codec, *size)
            self._view_subscription = sub
            self._viewer_rewriter.switch_to((sub.key.view_id, sub.key.codec, sub.key.width, sub.key.height),
                                            time.monotonic())
        self.size = size

    def _offer_view_packet(self, packet: EncodedPacket) -> None:
        out = self._viewer_rewriter.rewrite((packet.view_id, packet.codec, packet.width, packet.height), packet.pts,
                                            is_switch_point(packet.codec, packet.data, packet.keyframe),
                                            time.monotonic())
        if out is None:
            return
        if out.switched and self._view_outgoing is not None:
            self._view_outgoing.close()
            self._view_outgoing = None
        self._offer_site_packet(dataclasses.replace(packet, pts=out.timestamp))

    def _offer_site_packet(self, packet: EncodedPacket) -> None:
        """A packet of the receiver's continuous stream (already rewritten) to aiortc."""
        self.video_track.offer(packet, (packet.view_id, packet.codec, packet.width, packet.height))

    # -- the RtpLeg SiteMedia sends through -----------------------------------------------------
    def send_audio(self, pcm: np.ndarray) -> None:
        """20 ms of the site's mix (aiortc encodes it to Opus)."""
        if self._audio_track is not None:
            self._audio_track.push(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """Unused: the leg takes whole packets (SiteMedia's ``send_packet``), aiortc packetizes them."""

    def request_keyframe(self) -> None:
        """The room asks the peer for a key frame (a source shown again): a PLI on its media SSRC."""
        receiver = self._video_receiver
        ssrc = media_ssrc(receiver) if receiver is not None else None
        if ssrc is not None and not self._closing:
            self._spawn(receiver._send_rtcp_pli(ssrc))

    # -- pane size (mcu.pane_size): ask the browser for it, decode only what is shown -------------
    def set_video_decode(self, mode: str) -> None:
        """Decode off / fast / full (SiteMedia follows the room's pane sizes)."""
        self.decode_gate.set_mode(mode)

    @property
    def video_frames_skipped(self) -> int:
        """Video frames received and not decoded."""
        return self.decode_gate.frames_skipped

    def ask_pane_size(self, size: tuple[int, int] | None) -> None:
        """Tell the browser the size it is shown at (None: shown nowhere); kept until a socket attaches."""
        self.send_size = send_size_message(size)
        if self._signal is not None:
            self.send_size_messages += 1
            self._signal(self.send_size)

    def attach_signalling(self, signal: Signal) -> Callable[[], None]:
        """Messages to the browser go to ``signal`` from now (the last size at once); returns the detach."""
        self._signal = signal
        if self.send_size is not None:
            self.send_size_messages += 1
            signal(self.send_size)

        def detach() -> None:
            if self._signal is signal:
                self._signal = None

        return detach

    # -- feedback -----------------------------------------------------------------------------
    def _on_peer_keyframe_request(self) -> None:
        """PLI/FIR from the peer: through the tier machine's limits (TierSeat) to the shared encoder."""
        rewriter = self.media.rewriter if self.media is not None else self._viewer_rewriter
        if self._closing:
            return
        self.seat.keyframe_request(switching=rewriter.switching)
        self.stats.keyframes_coalesced = self.seat.coalesced

    def _serve_keyframe(self) -> None:
        if self.media is not None:
            self.media.on_keyframe_request(self)
            return
        self.stats.viewer_keyframe_requests += 1
        if self._view_subscription is not None:
            self._view_subscription.request_keyframe()

    def _on_remb(self, bitrate: int) -> None:
        self.stats.remb = bitrate
        self.remb.on_remb(bitrate, self.video_track.sent_rate())
        self.tier_tick()

    def tier_tick(self) -> None:
        """Check the budget against the tier (on every REMB and every TIER_TICK seconds)."""
        if not self._closing and not self.room.ended and self.codec is not None:
            self.seat.tick()

    def _move(self, tier: Tier) -> None:
        """The machine moved the receiver (budget or key-frame requests): subscribe the new tier."""
        if self._closing or self.room.ended:
            return
        log.info("leg %s: switching %dx%d -> %dx%d (%d kbit/s, budget %d kbit/s)", self.participant_id,
                 *self.size, tier.width, tier.height, tier.kbps, self.budget.video_kbps())
        self.stats.resolution_switches += 1
        self._subscribe(tier.size)

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
            await asyncio.sleep(TIER_TICK)
            self.tier_tick()
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
            self.seat.close()
            for sub in (self._view_subscription, self._view_outgoing):
                if sub is not None:
                    sub.close()
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
                "size": list(self.size), "tier": tier_for_size(*self.size).index if self.size != (0, 0) else None,
                "budget_kbps": self.budget.video_kbps(), "state": self.pc.connectionState, "remb": self.stats.remb,
                "keyframe_requests": self.stats.keyframe_requests, "video_frames_in": self.stats.video_frames_in,
                "packets_sent": self.video_track.packets_sent, "send_size": self.send_size,
                "video_decode": self.decode_gate.mode, "video_frames_skipped": self.decode_gate.frames_skipped,
                "nack_requested": self.retransmits.requested, "retransmitted": self.retransmits.resent,
                "retransmits_refused": self.retransmits.refused, **self.fec.describe(),
                **self.audio_fec.describe()}


class WebRtcLegs:
    """The WebRTC legs of this node (so shutdown closes them all)."""

    def __init__(self, config: WebRtcConfig) -> None:
        self.config = config
        self.legs: dict[str, WebRtcLeg] = {}
        configure_host_addresses(config.host_addresses)
        deprioritise_video_decoders()

    def create(self, conference: RunningConference, *, participant_id: str, name: str = "",
               view: str | None = None, size: tuple[int, int] | None = None) -> WebRtcLeg:
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
