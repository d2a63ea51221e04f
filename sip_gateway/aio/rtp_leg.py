"""asyncio media leg for a SIP (later H.323) call: UDP sockets, SDES-SRTP, RTCP timers, and
decode/encode in a worker thread. The MCU implements :class:`MediaSink` and calls the
``send_*`` methods; it never sees sockets, SDP or RTP.

Usage::

    leg = await MediaLeg.allocate("127.0.0.1", video=True, sink=room_participant)
    ... answer the call with leg.local_media ...
    leg.start(call.streams)          # after offer/answer (CallEstablished)
    leg.send_audio(pcm_960_samples)  # every 20 ms
    await leg.send_video(frame)      # or leg.send_video_access_unit(bytes(av_packet), pts90k)
    await leg.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import av
import numpy as np
import pylibsrtp

from ..rtp.codecs import AudioDecoder, AudioEncoder, Pcm, VideoDecoder, VideoEncoder
from ..rtp.media_description import LocalMedia, MediaStream
from ..rtp.media_primitives import VIDEO_CLOCK
from ..rtp.pacing import SendBudget, VideoPacer, is_keyframe
from ..rtp.session import (
    DtmfDigit,
    EncodedFrame,
    KeyframeRequest,
    NackRequest,
    PacketLossDetected,
    PeerLeft,
    RateEstimate,
    RateFeedback,
    RateLimitRequest,
    ReceptionReport,
    RtpSession,
    SendNack,
    SendRtcp,
)
from .h224_channel import H224Channel
from .ports import RTP_PORT_RANGE, RtpPortManager

log = logging.getLogger(__name__)

RTCP_INTERVAL = 2.5
KEYFRAME_REQUEST_MIN_INTERVAL = 1.0
MAX_DECODE_BACKLOG = 8
SRTP_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


DSCP_EF = 46  # Expedited Forwarding (RFC 3246): audio
DSCP_AF41 = 34  # Assured Forwarding class 4, low drop (RFC 2597): interactive video


@dataclass(frozen=True)
class DscpMarking:
    """The DiffServ code points a leg's RTP and RTCP sockets carry (``settings.rtp.dscp_*``; 0 = unmarked).

    Routers on a leased line that honour DiffServ queue EF ahead of AF41 ahead of best effort, so a
    full queue drops video before it touches audio.
    """

    audio: int = DSCP_EF
    video: int = DSCP_AF41

    def __post_init__(self) -> None:
        for value in (self.audio, self.video):
            if not 0 <= value <= 63:
                raise ValueError(f"a DSCP is 0-63, not {value}")

    def for_kind(self, kind: str) -> int:
        return self.audio if kind == "audio" else self.video


def mark_socket(sock: socket.socket, dscp: int) -> None:
    """Set the DSCP (the upper six bits of IPv4 TOS / IPv6 traffic class) of every datagram ``sock`` sends."""
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
    except OSError as exc:  # never fail a call over a marking
        log.warning("cannot mark an RTP socket with DSCP %d: %s", dscp, exc)


class MediaSink(Protocol):
    """What the owner of a leg (a conference participant) receives."""

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        """20 ms of 48 kHz mono int16 audio."""

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        """A decoded video frame."""

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        """An RFC 4733 digit."""

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        """The endpoint wants a key frame (PLI/FIR; SIP INFO arrives via the SIP layer)."""


class RateListener(Protocol):
    """Who hears the peer's rate feedback (the MCU's rate budget of the site)."""

    def on_rate_feedback(self, kind: str, feedback: RateFeedback) -> None:
        """TMMBR, REMB or a receiver report about our ``kind`` ("audio"/"video") stream."""


class NullSink:
    """A sink that drops everything."""

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        """Ignore audio."""

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        """Ignore video."""

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        """Ignore digits."""

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        """Ignore key frame requests."""


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, channel: _Channel, rtcp: bool) -> None:
        self.channel = channel
        self.rtcp = rtcp
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            mark_socket(sock, self.channel.leg.dscp.for_kind(self.channel.kind))

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.channel.on_datagram(data, (str(addr[0]), int(addr[1])), self.rtcp)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %s", exc)


@dataclass
class StreamStatistics:
    """Per-stream figures for the console (codec, resolution, bitrate, loss, jitter)."""

    kind: str
    codec: str
    packets_received: int
    packets_lost: int
    jitter_ms: float
    bytes_received: int
    packets_sent: int
    resolution: tuple[int, int] | None = None
    bitrate_kbps: float = 0.0  # received, since the previous statistics() call


@dataclass(eq=False)
class _Channel:
    """Sockets for one m-line."""

    leg: MediaLeg
    kind: str
    rtp: _Socket | None = None
    rtcp: _Socket | None = None
    port: int = 0
    session: RtpSession | None = None
    remote_rtp: tuple[str, int] | None = None
    remote_rtcp: tuple[str, int] | None = None
    latched: bool = False
    srtp_in: pylibsrtp.Session | None = None
    srtp_out: pylibsrtp.Session | None = None
    audio_decoder: AudioDecoder | None = None
    audio_encoder: AudioEncoder | None = None
    video_decoder: VideoDecoder | None = None
    video_encoder: VideoEncoder | None = None
    sent_samples: int = 0
    last_keyframe_request: float = -1e9
    dtmf_busy_until: float = 0.0
    resolution: tuple[int, int] | None = None
    last_sample: tuple[float, int] = (0.0, 0)
    decode_backlog: int = 0
    loss_timer: asyncio.TimerHandle | None = None
    loss_timer_at: float = 0.0
    foreign_dropped: int = 0  # datagrams from a host that is not this call's peer

    def on_datagram(self, data: bytes, addr: tuple[str, int], from_rtcp_port: bool) -> None:
        session = self.session
        if session is None:
            return
        is_rtcp = len(data) > 1 and 192 <= data[1] <= 223
        if not self._from_peer(addr[0], is_rtcp or from_rtcp_port):
            self.foreign_dropped += 1
            return
        if self.srtp_in is not None:
            try:
                data = self.srtp_in.unprotect_rtcp(data) if is_rtcp else self.srtp_in.unprotect(data)
            except pylibsrtp.Error:
                return
        if not is_rtcp and not from_rtcp_port and not self.latched:
            # Symmetric RTP: answer to where the media really comes from (NAT, multi-homed peers).
            self.latched = True
            if addr != self.remote_rtp:
                self.remote_rtp = addr
                if session.stream.rtcp_mux:
                    self.remote_rtcp = addr
        for event in session.receive(data, time.monotonic()):
            self.leg._on_event(self, event)
        if not is_rtcp and session.loss is not None:
            self.leg._poll_loss(self)

    def _from_peer(self, host: str, rtcp: bool) -> bool:
        """Whether a datagram from `host` may act on this call. Once media has latched (symmetric RTP),
        only the latched host's RTP and RTCP count; before that, RTCP only from the host the peer
        signalled. So nobody else on the network can inject PLI/FIR/NACK/TMMBR/REMB (key-frame storms,
        a starved rate) or media into the call by guessing its port."""
        if self.remote_rtp is None:
            return True
        if self.latched or rtcp:
            return host == self.remote_rtp[0]
        return True

    def send_rtp(self, data: bytes) -> None:
        if self.rtp is None or self.rtp.transport is None or self.remote_rtp is None:
            return
        if self.srtp_out is not None:
            data = self.srtp_out.protect(data)
        self.rtp.transport.sendto(data, self.remote_rtp)

    def send_rtcp(self, data: bytes) -> None:
        if self.remote_rtcp is None or self.session is None:
            return
        if self.srtp_out is not None:
            data = self.srtp_out.protect_rtcp(data)
        sock = self.rtp if self.session.stream.rtcp_mux else self.rtcp
        if sock is not None and sock.transport is not None:
            sock.transport.sendto(data, self.remote_rtcp)

    def close(self) -> None:
        if self.loss_timer is not None:
            self.loss_timer.cancel()
        for sock in (self.rtp, self.rtcp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()


async def _open_channel(ports: RtpPortManager, host: str, channel: _Channel) -> None:
    channel.port, channel.rtp, channel.rtcp = await ports.open_pair(host, lambda rtcp: _Socket(channel, rtcp))


def _srtp_session(suite: str, key: bytes, outbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key, srtp_profile=SRTP_PROFILES[suite],
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
    )
    return pylibsrtp.Session(policy=policy)


class MediaLeg:
    """The media side of one call: up to one audio and one video stream.

    Video is paced to :attr:`send_budget` (``sip_gateway.rtp.pacing``: a leaky bucket per leg, key
    frames spread over time, whole frames dropped when the queue would hold more than half a second);
    ``None`` (the default) sends every packet at once. Audio and RTCP are never queued.
    NACKed video is resent from ``sip_gateway.rtp.retransmission`` within a share of that budget.
    """

    send_budget: SendBudget | None = None  # the site's video rate (set by its owner; may change any time)
    retransmit_enabled: bool = True  # answer generic NACKs (off only to compare repair against none)

    def __init__(self, host: str, sink: MediaSink | None = None, dscp: DscpMarking | None = None) -> None:
        self.host = host
        self.dscp = dscp or DscpMarking()
        self.sink: MediaSink = sink or NullSink()
        self.rate_listener: RateListener | None = None  # TMMBR, REMB, receiver reports
        self.audio: _Channel | None = None
        self.video: _Channel | None = None
        self.h224: H224Channel | None = None  # far-end camera control (RFC 4573), when allocated
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="media-leg")
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.pacer = VideoPacer()
        self._pacer_timer: asyncio.TimerHandle | None = None
        self._audio_fec = 0  # Opus in-band FEC asked for (a loss percentage, 0: off)

    @classmethod
    async def allocate(cls, host: str = "127.0.0.1", video: bool = True, sink: MediaSink | None = None,
                       port_range: tuple[int, int] = RTP_PORT_RANGE, dscp: DscpMarking | None = None,
                       h224: bool = False) -> MediaLeg:
        """Bind RTP/RTCP port pairs so the ports can go into our SDP (marked with ``dscp``, default EF/AF41).

        ``h224``: also a pair for far-end camera control, best effort (no free pair: no FECC, the
        call goes on without it).
        """
        leg = cls(host, sink, dscp)
        ports = RtpPortManager(None, *port_range)
        try:
            leg.audio = _Channel(leg, "audio")
            await _open_channel(ports, host, leg.audio)
            if video:
                leg.video = _Channel(leg, "video")
                await _open_channel(ports, host, leg.video)
        except OSError:
            await leg.close()  # give back the audio pair when only the video pair is missing
            raise
        if h224:
            try:
                leg.h224 = await H224Channel.allocate(host, port_range)
            except OSError:
                log.info("no free RTP port pair for far-end camera control: offering none")
        return leg

    @property
    def local_media(self) -> LocalMedia:
        """Our address and ports for SDP."""
        assert self.audio is not None
        return LocalMedia(self.host, self.audio.port, self.video.port if self.video else None,
                          h224_port=self.h224.port if self.h224 is not None else None)

    def start(self, streams: list[MediaStream]) -> None:
        """Apply the negotiated streams (call again after a re-INVITE changes them)."""
        for stream in streams:
            if stream.kind == "application":
                if self.h224 is not None and stream.codec.name == "H224" and stream.remote_port:
                    self.h224.start(stream.remote_host, stream.remote_port, stream.codec.payload_type)
                continue
            channel = self.audio if stream.kind == "audio" else self.video
            if channel is None:
                continue
            same_codec = channel.session is not None and channel.session.codec == stream.codec
            if not same_codec:
                previous = channel.session
                channel.session = RtpSession(stream)
                if previous is not None:  # a renegotiation: the same outgoing stream goes on
                    channel.session.continue_stream(previous)
                if stream.kind == "audio":
                    channel.audio_decoder = AudioDecoder(stream.codec)
                    channel.audio_encoder = AudioEncoder(stream.codec)
                    channel.audio_encoder.set_fec(self._audio_fec)  # kept across a renegotiation
                else:
                    channel.video_decoder = VideoDecoder(stream.codec)
                    channel.video_encoder = VideoEncoder(stream.codec)
            elif channel.session is not None:
                channel.session.stream = stream
            if not channel.latched:
                channel.remote_rtp = (stream.remote_host, stream.remote_port)
                channel.remote_rtcp = (stream.remote_host, stream.remote_rtcp_port)
            if stream.srtp is not None and channel.srtp_in is None:
                channel.srtp_in = _srtp_session(stream.srtp.suite, stream.srtp.remote_key, outbound=False)
                channel.srtp_out = _srtp_session(stream.srtp.suite, stream.srtp.local_key, outbound=True)
        if self._rtcp_timer is None:
            self._schedule_rtcp()

    def _channels(self) -> list[_Channel]:
        return [c for c in (self.audio, self.video) if c is not None]

    def _schedule_rtcp(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        self._rtcp_timer = loop.call_later(RTCP_INTERVAL * random.uniform(0.5, 1.5), self._send_reports)

    def _send_reports(self) -> None:
        for channel in self._channels():
            if channel.session is not None:
                channel.send_rtcp(channel.session.report(time.time(), time.monotonic()))
        self._schedule_rtcp()

    # ------------------------------------------------------------------ receive path

    def _on_event(self, channel: _Channel, event: object) -> None:
        if isinstance(event, EncodedFrame):
            if channel.kind == "audio" and channel.audio_decoder is not None:
                for pcm in channel.audio_decoder.decode(event.data, event.timestamp):
                    self.sink.on_audio(self, pcm)
            elif channel.video_decoder is not None and not self._closed:
                if channel.decode_backlog >= MAX_DECODE_BACKLOG:
                    # The worker cannot keep up: drop, and resync on the next key frame.
                    self.frames_dropped += 1
                    self.request_keyframe()
                    return
                channel.decode_backlog += 1
                future = asyncio.get_running_loop().run_in_executor(
                    self._executor, channel.video_decoder.decode, event.data, event.timestamp
                )
                future.add_done_callback(lambda f: self._video_decoded(channel, f))
        elif isinstance(event, DtmfDigit):
            self.sink.on_dtmf(self, event.digit)
        elif isinstance(event, KeyframeRequest):
            self.sink.on_keyframe_request(self)
            if self.rate_listener is not None:  # a peer without NACK says it lost packets this way
                self.rate_listener.on_rate_feedback(channel.kind, event)
        elif isinstance(event, NackRequest) and channel.session is not None and self.retransmit_enabled:
            now = asyncio.get_running_loop().time()
            kbps = self.send_budget.video_kbps() if self.send_budget is not None else None
            for data in channel.session.retransmit(event.sequence_numbers, now, kbps):
                channel.send_rtp(data)
                if channel.kind == "video":  # repairs use the video's rate: the queue waits for them
                    self.pacer.charge(len(data), now, self.send_budget)
        elif isinstance(event, PacketLossDetected):
            self.request_keyframe()
        elif isinstance(event, SendNack) and channel.session is not None:
            channel.send_rtcp(channel.session.nack(list(event.sequence_numbers)))
        elif isinstance(event, PeerLeft):
            log.info("peer sent RTCP BYE on %s", channel.kind)
        elif isinstance(event, SendRtcp):
            channel.send_rtcp(event.data)
        elif isinstance(event, RateLimitRequest | RateEstimate | ReceptionReport) and self.rate_listener is not None:
            self.rate_listener.on_rate_feedback(channel.kind, event)

    def _poll_loss(self, channel: _Channel) -> None:
        """Act on holes in the incoming video (NACK, key frame, TMMBR) and wake up when the next is due."""
        session = channel.session
        if session is None or self._closed:
            return
        now = time.monotonic()
        if channel.loss_timer is not None and channel.loss_timer_at <= now:
            channel.loss_timer = None  # this is that wake-up (or it is overdue)
        for event in session.poll_loss(now):
            self._on_event(channel, event)
        due = session.loss_due()
        if due is None or (channel.loss_timer is not None and channel.loss_timer_at <= due):
            return
        if channel.loss_timer is not None:
            channel.loss_timer.cancel()
        channel.loss_timer_at = due
        channel.loss_timer = asyncio.get_running_loop().call_later(max(due - now, 0.001), self._poll_loss, channel)

    def _video_decoded(self, channel: _Channel, future: asyncio.Future[list[av.VideoFrame]]) -> None:
        channel.decode_backlog -= 1
        if future.cancelled() or future.exception() is not None or self._closed:
            return
        for frame in future.result():
            channel.resolution = (frame.width, frame.height)
            self.frames_decoded += 1
            self.sink.on_video(self, frame)

    # ------------------------------------------------------------------ send path

    def send_audio(self, pcm: Pcm, marker: bool = False) -> None:
        """Encode and send 20 ms of 48 kHz mono int16 audio."""
        channel = self.audio
        if channel is None or channel.session is None or channel.audio_encoder is None:
            return
        if channel.session.stream.direction in ("recvonly", "inactive"):
            channel.sent_samples += channel.audio_encoder.timestamp_step
            return
        for payload in channel.audio_encoder.encode(pcm):
            for data in channel.session.packetize([payload], channel.sent_samples, marker):
                channel.send_rtp(data)
            channel.sent_samples += channel.audio_encoder.timestamp_step

    def set_audio_fec(self, loss_perc: int) -> bool:
        """Opus in-band FEC on our audio for this loss percentage (0: off), from the next frame, and
        on any encoder a renegotiation brings; False while the audio is not Opus."""
        self._audio_fec = max(0, min(100, int(loss_perc)))
        encoder = self.audio.audio_encoder if self.audio is not None else None
        return encoder is not None and encoder.set_fec(self._audio_fec)

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        """Send an RFC 4733 digit (packets spread over its duration)."""
        channel = self.audio
        if channel is None or channel.session is None:
            return
        loop = asyncio.get_running_loop()
        # Digits queue up behind each other instead of interleaving their packets.
        start = max(0.0, channel.dtmf_busy_until - loop.time())
        channel.dtmf_busy_until = loop.time() + start + duration_ms / 1000 + 0.05
        for offset, data in channel.session.dtmf(digit, channel.sent_samples, duration_ms):
            loop.call_later(start + offset, channel.send_rtp, data)
        # The event occupies its duration on the RTP timeline; the next event gets a new timestamp.
        channel.sent_samples += channel.session.codec.clock_rate * (duration_ms + 40) // 1000

    async def send_video(self, frame: av.VideoFrame, keyframe: bool = False) -> None:
        """Encode (in the worker thread) and send one video frame."""
        channel = self.video
        if channel is None or channel.session is None or channel.video_encoder is None:
            return
        encoder = channel.video_encoder
        payloads = await asyncio.get_running_loop().run_in_executor(self._executor, encoder.encode, frame, keyframe)
        offset = int((frame.time or 0) * VIDEO_CLOCK) if frame.time is not None else 0
        self._send_video_payloads(channel, payloads, offset, keyframe)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """Packetise and send (paced) one already encoded access unit (shared encoder output)."""
        channel = self.video
        if channel is None or channel.session is None or channel.video_encoder is None:
            return
        keyframe = self.send_budget is not None and is_keyframe(channel.session.codec.name, access_unit)
        self._send_video_payloads(channel, channel.video_encoder.pack(access_unit), timestamp_90k, keyframe)

    def _send_video_payloads(self, channel: _Channel, payloads: list[bytes], offset: int, keyframe: bool) -> None:
        if not payloads or channel.session is None:
            return
        if channel.session.stream.direction in ("recvonly", "inactive"):
            return
        budget = self.send_budget
        now = asyncio.get_running_loop().time()
        if budget is None and not self.pacer.queue:  # not paced: today's behaviour, straight out
            for data in channel.session.packetize(payloads, offset, now=now):
                channel.send_rtp(data)
            return
        if not self.pacer.admit([len(p) for p in payloads], keyframe, now, budget):
            if self.pacer.keyframe_wanted:  # frames were dropped: the shared encoder owes us a key frame
                self.pacer.keyframe_wanted = False
                self.sink.on_keyframe_request(self)
            return
        self.pacer.enqueue(channel.session.packetize(payloads, offset, now=now))
        self._release_video()

    def _release_video(self) -> None:
        """Send what the pacer lets go now and wake up when the next packet is due (one timer, no tick)."""
        if self._pacer_timer is not None:  # one wake-up at a time (this call may come before it)
            self._pacer_timer.cancel()
            self._pacer_timer = None
        channel = self.video
        if self._closed or channel is None:
            return
        loop = asyncio.get_running_loop()
        for data in self.pacer.release(loop.time(), self.send_budget):
            channel.send_rtp(data)
        due = self.pacer.next_release(self.send_budget)
        if due is not None:  # never sooner than 0.5 ms: a wake-up always finds something to send
            self._pacer_timer = loop.call_at(max(due, loop.time() + 0.0005), self._release_video)

    def request_keyframe(self) -> None:
        """Send PLI/FIR to the endpoint (rate-limited)."""
        channel = self.video
        if channel is None or channel.session is None:
            return
        now = time.monotonic()
        if now - channel.last_keyframe_request < KEYFRAME_REQUEST_MIN_INTERVAL:
            return
        channel.last_keyframe_request = now
        channel.send_rtcp(channel.session.keyframe_request())

    def set_video_decode(self, mode: str) -> None:
        """``"off"`` / ``"fast"`` / ``"full"``: see :class:`~sip_gateway.rtp.codecs.VideoDecoder`."""
        if self.video is not None and self.video.video_decoder is not None:
            self.video.video_decoder.set_mode(mode)

    @property
    def video_frames_skipped(self) -> int:
        """Received video frames not decoded (source shown nowhere, or awaiting a key frame)."""
        decoder = self.video.video_decoder if self.video is not None else None
        return decoder.frames_skipped if decoder is not None else 0

    # ------------------------------------------------------------------ status

    def statistics(self) -> list[StreamStatistics]:
        """Current per-stream statistics."""
        out = []
        now = time.monotonic()
        for channel in self._channels():
            session = channel.session
            if session is None:
                continue
            then, octets_then = channel.last_sample
            octets = session.stats.octets
            bitrate = (octets - octets_then) * 8 / 1000 / (now - then) if then and now > then else 0.0
            channel.last_sample = (now, octets)
            out.append(StreamStatistics(
                channel.kind, session.codec.name, session.stats.received, session.stats.lost,
                round(session.stats.jitter_ms, 2), octets, session.send.packets, channel.resolution,
                round(bitrate, 1),
            ))
        return out

    async def close(self) -> None:
        """Send RTCP BYE and release the sockets and the worker thread."""
        if self._closed:
            return
        for channel in self._channels():
            if channel.session is not None:
                channel.send_rtcp(channel.session.bye())
        self._closed = True
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
        if self._pacer_timer is not None:
            self._pacer_timer.cancel()
        for channel in self._channels():
            channel.close()
        if self.h224 is not None:
            self.h224.close()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)


def tone(frequency: float, start_sample: int, count: int = 960, amplitude: int = 8000) -> Pcm:
    """A sine tone chunk at 48 kHz (test signal and IVR beeps)."""
    t = (np.arange(count) + start_sample) / 48_000
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
