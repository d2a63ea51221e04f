"""aiortc plumbing of the WebRTC leg (:mod:`mcu.legs.webrtc`): tracks, the pass-through encoder, ICE hosts.

Apart from the leg because it is where aiortc's internals are touched (module-level helpers
replaced, a sender's encoder swapped): the leg itself only wires these to its SiteMedia.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcpeerconnection import filter_preferred_codecs
from aiortc.rtp import RTP_HISTORY_SIZE
from aiortc.sdp import SessionDescription

from mcu.legs.resend_budget import ResendBudget
from mcu.runner import deprioritise_current_thread
from sip_gateway.rtp.codecs import split_annexb
from sip_gateway.rtp.media_primitives import (
    AUDIO_TIME_BASE,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    VIDEO_TIME_BASE,
    EncodedPacket,
)

RTP_OVERHEAD = 12 + 2 + 28 + 10  # RTP header, RTX's OSN, UDP/IPv4, SRTP tag: a resend's bytes beyond its payload
VIDEO_QUEUE_DEPTH = 30  # ~1 s of packets at 25 fps; beyond that the leg drops to the next key frame
AUDIO_QUEUE_DEPTH = 5  # 100 ms of mix while aiortc is not sending yet (ICE): older frames are dropped


# -- ICE host candidates ---------------------------------------------------------------------

_ORIGINAL_HOST_ADDRESSES = aioice.ice.get_host_addresses
_host_addresses: tuple[str, ...] = ()


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _host_addresses:
        return _ORIGINAL_HOST_ADDRESSES(use_ipv4, use_ipv6)
    return [a for a in _host_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def configure_host_addresses(addresses: Sequence[str]) -> None:
    """ICE host candidates on these addresses only (empty: every non-loopback address, aioice's default).

    aioice has no per-connection option for this, so its module-level helper is replaced once.
    """
    global _host_addresses
    _host_addresses = tuple(addresses)
    aioice.ice.get_host_addresses = _configured_host_addresses


_ORIGINAL_DECODER_WORKER = aiortc.rtcrtpreceiver.decoder_worker


def _niced_decoder_worker(*args: Any) -> None:
    # A late decoded frame spoils one pane; a late composite spoils every receiver (see runner).
    if threading.current_thread().name.startswith("video"):
        deprioritise_current_thread()
    _ORIGINAL_DECODER_WORKER(*args)


def deprioritise_video_decoders() -> None:
    """Run aiortc's video decoder threads at a lower priority than composing and encoding.

    aiortc starts one decoder thread per receiver with the module-level `decoder_worker` as
    target, looked up when the thread starts, so wrapping it reaches every leg.
    """
    aiortc.rtcrtpreceiver.decoder_worker = _niced_decoder_worker  # type: ignore[assignment]


class PassthroughEncoder:
    """Stands in for aiortc's per-sender encoder: packs pre-encoded packets, reports REMB."""

    def __init__(self, inner: Any, on_bitrate: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_bitrate = on_bitrate
        self._target = 0

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]:
        result: tuple[list[bytes], int] = self._inner.pack(packet)
        return result

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        result: tuple[list[bytes], int] = self._inner.encode(frame, force_keyframe)
        return result

    @property
    def target_bitrate(self) -> int:
        return self._target

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._target = int(bitrate)
        self._on_bitrate(int(bitrate))


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a reassembled frame (aiortc's depayloaded data) starts a picture: H.264 IDR/SPS, VP8 key."""
    if codec.lower() == "h264":
        return any(nal and nal[0] & 0x1F in (5, 7) for nal in split_annexb(data))
    if codec.lower() == "vp8":
        return bool(data) and data[0] & 0x01 == 0  # the VP8 frame tag's inverse key-frame bit (RFC 6386)
    return True


class DecodeGate:
    """Skips a receiver's video decode while its source is shown nowhere (:mod:`mcu.pane_size`'s "off").

    aiortc hands each reassembled frame to its decoder thread through a ``queue.Queue``
    (``_RTCRtpReceiver__decoder_queue``); :meth:`install` wraps that queue's ``put`` on the event
    loop, so a frame that is not wanted never reaches the decoder (counted in ``frames_skipped``).
    After "off", frames are skipped until the next key frame (the leg asks the browser for one),
    so the decoder never gets P-frames without their reference. ``"fast"`` decodes like
    ``"full"``: the browser is asked to send its pane's size, so there is nothing big to shrink.
    """

    MODES = ("off", "fast", "full")

    def __init__(self) -> None:
        self.mode = "full"
        self.frames_skipped = 0
        self._await_key = False

    def set_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown decode mode {mode!r}")
        if self.mode == "off" and mode != "off":
            self._await_key = True
        self.mode = mode

    def admit(self, codec: str, data: bytes) -> bool:
        """Whether this frame goes to the decoder."""
        if self.mode == "off":
            self.frames_skipped += 1
            return False
        if self._await_key:
            if not is_keyframe(codec, data):
                self.frames_skipped += 1
                return False
            self._await_key = False
        return True

    def install(self, receiver: Any) -> None:
        """Gate ``receiver``'s decoder queue (RuntimeError if aiortc's internals changed)."""
        decoder_queue = getattr(receiver, "_RTCRtpReceiver__decoder_queue", None)
        if not isinstance(decoder_queue, queue.Queue):
            raise RuntimeError("aiortc internals changed: cannot skip the decode of hidden sources")
        put = decoder_queue.put

        def gated_put(item: Any, block: bool = True, timeout: float | None = None) -> None:
            if item is not None and not self.admit(str(item[0].name), bytes(item[1].data)):
                return
            put(item, block, timeout)

        decoder_queue.put = gated_put  # type: ignore[method-assign]


def media_ssrc(receiver: Any) -> int | None:
    """The SSRC the peer's media arrives on lately (not its RTX SSRC); None before any packet."""
    active: dict[int, Any] = getattr(receiver, "_RTCRtpReceiver__active_ssrc", {})
    rtx: dict[int, int] = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {})
    candidates = sorted((when, ssrc) for ssrc, when in active.items() if ssrc not in rtx)
    return candidates[-1][1] if candidates else None


class RetransmitGuard:
    """Puts aiortc's NACK answers under a byte budget (:class:`~mcu.legs.resend_budget.ResendBudget`).

    aiortc's ``RTCRtpSender._retransmit`` resends a NACKed packet from its last 128 sent packets,
    wrapped in RTX (RFC 4588) when the peer negotiated ``video/rtx`` (browsers do), with no limit
    and no count. :meth:`install` wraps it: a packet aiortc still has is resent (by aiortc) only
    within the budget; ``requested``/``resent``/``refused``/``unknown`` count what happened.
    ``video_kbps``: the leg's video rate now; ``clock``: seconds.
    """

    def __init__(self, video_kbps: Callable[[], float], clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = ResendBudget()
        self._video_kbps = video_kbps
        self._clock = clock
        self.requested = 0
        self.resent = 0
        self.refused = 0
        self.unknown = 0

    def install(self, sender: Any) -> None:
        history = getattr(sender, "_RTCRtpSender__rtp_history", None)
        retransmit = getattr(sender, "_retransmit", None)
        if not isinstance(history, dict) or retransmit is None:
            raise RuntimeError("aiortc internals changed: cannot budget retransmissions")

        async def guarded(sequence_number: int) -> None:
            self.requested += 1
            packet = history.get(sequence_number % RTP_HISTORY_SIZE)
            if packet is None or packet.sequence_number != sequence_number:
                self.unknown += 1
                return
            size = len(packet.payload) + RTP_OVERHEAD
            if not self.budget.allow(sequence_number, size, self._clock(), self._video_kbps()):
                self.refused += 1
                return
            self.resent += 1
            await retransmit(sequence_number)

        sender._retransmit = guarded


class _QueuedTrack(MediaStreamTrack):
    """A track fed from the event loop through a queue: `recv()` waits for the next item."""

    def __init__(self) -> None:
        super().__init__()
        self._ready = asyncio.Event()

    async def _next(self, queue: deque[Any]) -> Any:
        """The next queued item; MediaStreamError once the track has stopped."""
        while not queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        return queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class EncodedVideoTrack(_QueuedTrack):
    """A video track whose `recv()` returns the shared encoder's packets (aiortc only packetizes them)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[EncodedPacket] = deque()
        self._need_keyframe = True
        self._last_key: object = None
        self.packets_sent = 0
        self.bytes_sent = 0
        self._rate_window: deque[tuple[float, int]] = deque()
        self.packets_dropped = 0

    def offer(self, packet: EncodedPacket, key: object) -> None:
        """Sink side (event loop): queue a packet; after a switch or overflow, wait for a key frame."""
        if key != self._last_key:
            self._last_key = key
            self._need_keyframe = True
        if len(self._queue) >= VIDEO_QUEUE_DEPTH:
            self.packets_dropped += len(self._queue)
            self._queue.clear()
            self._need_keyframe = True
        if self._need_keyframe:
            if not packet.keyframe:
                self.packets_dropped += 1
                return
            self._need_keyframe = False
        self._queue.append(packet)
        self._ready.set()

    def sent_rate(self) -> float:
        """Bits per second sent over the last two seconds."""
        if len(self._rate_window) < 2:
            return 0.0
        span = max(0.5, self._rate_window[-1][0] - self._rate_window[0][0])
        return sum(n for _, n in self._rate_window) * 8 / span

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._need_keyframe

    async def recv(self) -> av.Packet[Any]:
        encoded: EncodedPacket = await self._next(self._queue)
        now = time.monotonic()
        self._rate_window.append((now, len(encoded.data)))
        while self._rate_window and now - self._rate_window[0][0] > 2.0:
            self._rate_window.popleft()
        packet = av.Packet(encoded.data)
        packet.pts = encoded.pts
        packet.time_base = VIDEO_TIME_BASE
        self.packets_sent += 1
        return packet


class MixAudioTrack(_QueuedTrack):
    """The site's N-1 mix as SiteMedia sends it, one 20 ms frame per tick of the conference clock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[np.ndarray] = deque(maxlen=AUDIO_QUEUE_DEPTH)
        self._pts = -FRAME_SAMPLES

    def push(self, samples: np.ndarray) -> None:
        """Sink side (event loop): queue the next 20 ms of mix."""
        self._queue.append(samples)
        self._ready.set()

    async def recv(self) -> av.AudioFrame:
        samples: np.ndarray = await self._next(self._queue)
        self._pts += FRAME_SAMPLES
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = AUDIO_TIME_BASE
        return frame


def to_mono_frames(frame: av.AudioFrame, pending: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Down-mix a decoded frame to mono int16 and cut it into 20 ms frames (pure; returns the rest)."""
    if frame.sample_rate != SAMPLE_RATE or frame.format.name not in ("s16", "s16p"):
        frame = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE).resample(frame)[0]
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = data.mean(axis=0) if data.shape[0] > 1 else data[0]
    else:
        mono = data.reshape(-1, channels).mean(axis=1) if channels > 1 else data.reshape(-1)
    samples = np.concatenate([pending, np.asarray(mono, np.int16)])
    count = len(samples) // FRAME_SAMPLES
    frames = [samples[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].copy() for i in range(count)]
    return frames, samples[count * FRAME_SAMPLES:]


def negotiated_video_codec(sdp: str) -> str | None:
    """The first video codec of an SDP answer: "h264", "vp8" or None."""
    for media in SessionDescription.parse(sdp).media:
        if media.kind == "video" and media.port != 0:
            for codec in media.rtp.codecs:
                name = codec.mimeType.split("/")[-1].lower()
                if name in ("h264", "vp8"):
                    return name
    return None


def negotiated_h264_profile_level(sdp: str) -> str | None:
    """The ``profile-level-id`` of the first H.264 codec of an SDP answer's video (None: absent)."""
    for media in SessionDescription.parse(sdp).media:
        if media.kind == "video" and media.port != 0:
            for codec in media.rtp.codecs:
                if codec.mimeType.lower() == "video/h264":
                    value = codec.parameters.get("profile-level-id")
                    return str(value) if value is not None else None
    return None


def prefer_codecs(transceiver: Any, order: Sequence[str]) -> None:
    """Reorder the codecs negotiated from the offer by our preference.

    aiortc applies ``setCodecPreferences`` while parsing the remote offer, before an answerer
    can see the transceiver it creates, so we reorder its negotiated list (``_codecs``) with
    aiortc's own helper (which keeps each RTX entry with its codec).
    """
    caps = RTCRtpSender.getCapabilities("video").codecs
    ranked = [c for name in order for c in caps if c.mimeType.lower() == f"video/{name}"]
    rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
    preferred = filter_preferred_codecs(transceiver._codecs, ranked + rtx)
    if preferred:
        transceiver._codecs = preferred


__all__ = ["DecodeGate", "EncodedVideoTrack", "RetransmitGuard", "is_keyframe", "media_ssrc", "MixAudioTrack", "PassthroughEncoder", "configure_host_addresses",
           "deprioritise_video_decoders", "negotiated_h264_profile_level", "negotiated_video_codec", "prefer_codecs", "to_mono_frames"]
