"""Shared video encoders: one per view x codec x resolution (x H.264 packetization flavour).

Every receiver of a view shares its encoder ("encode once, send to many"). Encoding runs
in worker threads (PyAV releases the GIL in libx264/libvpx); :meth:`VideoEncoder.encode`
is serialised per encoder by a lock, so frames go in in order.

Key frames: receivers call :meth:`VideoEncoder.request_keyframe` (PLI/FIR, SIP INFO,
H.245 fast update). Requests are coalesced into one pending flag and rate-limited by
:class:`KeyframePolicy`: at most one forced key frame per ``min_gap`` seconds; a
periodic key frame that happens anyway satisfies a pending request.

Key-frame bursts (H.264): the VBV buffer is per tier (:data:`VBV_SECONDS`): half a second of
the tier's rate on the two best tiers, a quarter on 640x360 and below, so a low tier's key frame
is about half what it was (measured with libx264 on a busy picture, see
tests/mcu/test_encoder_bursts.py). An encoder keyed ``intra_refresh`` (for receivers on lossy
lines) replaces the periodic IDR by x264's periodic intra refresh: a column of intra blocks sweeps
the picture every ``intra_refresh_period`` seconds, so no frame is a burst and a loss heals within
that period without a key-frame request. Requested key frames are still IDRs (``forced-idr``), and
only an IDR counts as a key frame there (x264 flags each refresh's recovery point as a key frame;
it is not a place a decoder can start).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

import av

from sip_gateway.rtp.media_primitives import VIDEO_CLOCK, VIDEO_TIME_BASE, EncodedPacket

from .clock import Clock
from .compositor import ComposedFrame, fit_frame

CODECS = ("h264", "vp8", "h263", "h261")
# H.263 (baseline, RFC 2190) and H.261 only code the CIF family: their shared encoders are CIF, or
# QCIF for a site whose line cannot carry CIF (:data:`CIF_ONLY_RATES`).
CIF_ONLY_CODECS = ("h263", "h261")
QCIF = (176, 144)
# The ladder of shared-encoder tiers, best first: (width, height, bit/s). Receivers move between
# them (mcu.tiers); each (view, codec, tier) encoder runs only while a receiver is on it.
LADDER: tuple[tuple[int, int, int], ...] = (
    (1280, 720, 1_500_000), (960, 540, 1_000_000), (768, 432, 700_000), (640, 360, 500_000),
    (480, 270, 350_000), (352, 288, 250_000), (320, 180, 150_000),
)
# The content stream (slides and screens at a low frame rate: mcu.room CONTENT_VIEW): not a tier.
CONTENT_ENCODER = (1920, 1080, 1_200_000)
RESOLUTIONS: tuple[tuple[int, int], ...] = tuple((w, h) for w, h, _ in (*LADDER, CONTENT_ENCODER))
ENCODER_BITRATE = {(w, h): bps for w, h, bps in (*LADDER, CONTENT_ENCODER)}  # what a tier's encoder produces
# VBV buffer per encoder size, seconds of its rate: small buffers on low tiers (their receivers
# are on the slow lines, where a key frame of 0.5 s of the tier's rate is a burst the line queues).
VBV_SECONDS: dict[tuple[int, int], float] = {
    (1280, 720): 0.5, (960, 540): 0.5, (768, 432): 0.33, (640, 360): 0.25, (480, 270): 0.25,
    (352, 288): 0.25, (320, 180): 0.25, (1920, 1080): 0.5,
}
# The one H.263/H.261 encoder per view (no ladder): its sites are legacy room systems, often on the
# slowest lines; 192 kbit/s (+ ~15 kbit/s of headers) fits an H.323 terminal whose video channel
# says maxBitRate 327 kbit/s (221 kbit/s of video after audio and headers). A site whose budget is
# lower still gets frames dropped by its leg's pacer (up to the next I-picture, which it asks for).
CIF_ONLY_BITRATE = 192_000
# The lower rung of those codecs: QCIF at 112 kbit/s (+ ~8 kbit/s of headers), for a site whose
# budget is below the CIF rung (a 256 kbit/s line leaves ~156 kbit/s of video). The H.323 leg moves
# a site there only if the terminal listed QCIF (mcu.legs.h323); it lands on the new encoder's I-picture.
QCIF_BITRATE = 112_000
CIF_ONLY_RATES: dict[tuple[int, int], int] = {(352, 288): CIF_ONLY_BITRATE, QCIF: QCIF_BITRATE}
# The rate asked of a *source* shown at these sizes (H.323 flow control, mcu.legs.h323), not an encoder rate.
DEFAULT_BITRATE = {(1280, 720): 1_500_000, (640, 360): 600_000, (352, 288): 384_000}


@dataclass(frozen=True)
class EncoderKey:
    """What makes two receivers able to share an encoder."""

    view_id: str
    codec: str = "h264"
    width: int = 1280
    height: int = 720
    single_nal: bool = False  # H.264 packetization-mode 0: slices capped by slice-max-size
    intra_refresh: bool = False  # H.264: periodic intra refresh instead of periodic IDRs (lossy lines)

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unsupported codec {self.codec!r}; expected one of {CODECS}")
        if self.codec in CIF_ONLY_CODECS:
            if (self.width, self.height) not in CIF_ONLY_RATES:
                raise ValueError(f"{self.codec} encodes CIF (352x288) or QCIF (176x144) only")
        elif (self.width, self.height) not in RESOLUTIONS:
            raise ValueError(f"unsupported resolution {self.width}x{self.height}; expected one of {RESOLUTIONS}")
        if (self.single_nal or self.intra_refresh) and self.codec != "h264":
            raise ValueError("single_nal and intra_refresh apply to H.264 only")


@dataclass(frozen=True)
class EncoderSettings:
    fps: float = 25  # the rate frames really come in at (the content view's is low: mcu.room.CONTENT_EVERY)
    bitrate: int | None = None  # None: ENCODER_BITRATE of the tier
    keyframe_interval: float = 10.0  # seconds between periodic key frames
    min_keyframe_gap: float = 1.0  # rate limit for requested key frames
    preset: str = "veryfast"
    slice_max_size: int = 1200  # bytes, for single_nal (fits one RTP packet)
    threads: int = 0  # 0: codec default (x264 sliced threads with zerolatency)
    intra_refresh_period: float = 1.0  # seconds per intra-refresh sweep (EncoderKey.intra_refresh)
    vbv_seconds: float | None = None  # None: VBV_SECONDS of the size

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 60:
            raise ValueError("fps must be between 1 and 60")
        if self.bitrate is not None and self.bitrate < 32_000:
            raise ValueError("bitrate must be at least 32 kbit/s")
        if self.keyframe_interval <= 0 or self.min_keyframe_gap < 0:
            raise ValueError("key-frame interval must be > 0 and the gap >= 0")
        if not 0.1 <= self.intra_refresh_period <= 10:
            raise ValueError("intra-refresh period must be between 0.1 and 10 s")
        if self.vbv_seconds is not None and not 0.05 <= self.vbv_seconds <= 2:
            raise ValueError("VBV must be between 0.05 and 2 s")


class KeyframePolicy:
    """Coalesces key-frame requests and rate-limits them (pure; time is passed in)."""

    def __init__(self, min_gap: float) -> None:
        self.min_gap = min_gap
        self.pending = False
        self.requests = 0
        self.forced = 0
        self.last_keyframe: float | None = None

    def request(self) -> None:
        self.requests += 1
        self.pending = True

    def should_force(self, now: float) -> bool:
        if self.last_keyframe is None:
            return True  # the first frame is always a key frame
        return self.pending and now - self.last_keyframe >= self.min_gap

    def produced(self, keyframe: bool, now: float, forced: bool) -> None:
        if keyframe:
            self.last_keyframe = now
            self.pending = False
            if forced:
                self.forced += 1


def _open_context(key: EncoderKey, settings: EncoderSettings) -> av.VideoCodecContext:
    size = (key.width, key.height)
    default = CIF_ONLY_RATES[size] if key.codec in CIF_ONLY_CODECS else ENCODER_BITRATE[size]
    bitrate = settings.bitrate or default
    gop = max(1, round(settings.keyframe_interval * settings.fps))
    if key.codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        kbps = bitrate // 1000
        # A small VBV: key frames must not burst far past what a 768 kbit/s-2 Mbit/s line carries.
        vbv = settings.vbv_seconds or VBV_SECONDS.get((key.width, key.height), 0.5)
        if key.intra_refresh:  # the "GOP" is one refresh sweep; no periodic IDR
            gop = max(2, round(settings.intra_refresh_period * settings.fps))
        params = [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0", "repeat-headers=1",
                  f"vbv-maxrate={kbps}", f"vbv-bufsize={max(1, round(kbps * vbv))}"]
        if key.intra_refresh:
            params.append("intra-refresh=1")
        if key.single_nal:
            params.append(f"slice-max-size={settings.slice_max_size}")
        ctx.options = {
            "preset": settings.preset,
            "tune": "zerolatency",
            "profile": "baseline",  # x264's baseline is Constrained Baseline (no FMO/ASO)
            "forced-idr": "1",
            "x264-params": ":".join(params),
        }
    elif key.codec in CIF_ONLY_CODECS:
        options = _mpegvideo_rate_options(bitrate, settings.vbv_seconds or VBV_SECONDS[(352, 288)])
        if key.codec == "h263":
            ctx = av.CodecContext.create("h263", "w")
            # "ps": RTP mode, a GOB header (octet aligned) about every ps bytes: RFC 2190 mode A cuts there.
            options["ps"] = str(settings.slice_max_size)
        else:
            ctx = av.CodecContext.create("h261", "w")
        ctx.options = options
    else:
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
    ctx.width, ctx.height = key.width, key.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = VIDEO_TIME_BASE
    ctx.framerate = Fraction(settings.fps).limit_denominator(1001)
    ctx.bit_rate = bitrate
    ctx.gop_size = gop
    if settings.threads:
        ctx.thread_count = settings.threads
    ctx.open()
    return ctx


def _mpegvideo_rate_options(bitrate: int, vbv_seconds: float) -> dict[str, str]:
    """libavcodec's H.263/H.261 rate control, bounded: a target rate, a max rate and a VBV buffer of
    ``vbv_seconds`` of it, quantiser 2..31. With a target only (``bit_rate``; qmin/qmax change
    nothing) the mpegvideo encoders overshot 80-fold on a busy, noisy CIF picture (15.7 Mbit/s at
    250 kbit/s); the VBV (``maxrate`` + ``bufsize``) bounds them: 195 kbit/s at 192 kbit/s
    (tests/mcu/test_h263_rate.py). A picture too busy for qmax 31 still overshoots: the leg's
    pacer drops frames then."""
    return {"b": str(bitrate), "maxrate": str(bitrate), "bufsize": str(max(8_000, round(bitrate * vbv_seconds))),
            "qmin": "2", "qmax": "31"}


def has_idr(annexb: bytes) -> bool:
    """Does an H.264 Annex B access unit hold an IDR slice (NAL type 5)?"""
    pos = annexb.find(b"\x00\x00\x01")
    while 0 <= pos < len(annexb) - 3:
        if annexb[pos + 3] & 0x1F == 5:
            return True
        pos = annexb.find(b"\x00\x00\x01", pos + 3)
    return False


class VideoEncoder:
    """One libx264/libvpx encoder fed with composed frames of one view."""

    def __init__(self, key: EncoderKey, settings: EncoderSettings, clock: Clock) -> None:
        self.key = key
        self.settings = settings
        self._clock = clock
        self._ctx: av.VideoCodecContext | None = None  # opened on first use, in the worker thread
        self._lock = threading.Lock()
        self._policy_lock = threading.Lock()
        self.policy = KeyframePolicy(settings.min_keyframe_gap)
        self._last_pts = -1
        self._epoch: float | None = None
        self.frames_in = 0
        self.closed = False

    def request_keyframe(self) -> None:
        """Ask for a key frame; coalesced and rate-limited (thread-safe)."""
        with self._policy_lock:
            self.policy.request()

    def encode(self, composed: ComposedFrame, scaled: av.VideoFrame | None = None) -> list[EncodedPacket]:
        """Encode one composed frame (worker thread). ``scaled``: the frame already at our size."""
        frame = scaled if scaled is not None else fit_frame(composed.frame, self.key.width, self.key.height)
        with self._lock:
            if self.closed:
                return []
            if self._ctx is None:
                self._ctx = _open_context(self.key, self.settings)
            now = self._clock.monotonic()
            if self._epoch is None:
                self._epoch = composed.composed_at
            pts = max(self._last_pts + 1, int(round((composed.composed_at - self._epoch) * VIDEO_CLOCK)))
            self._last_pts = pts
            with self._policy_lock:
                force = self.policy.should_force(now)
            frame.pts = pts
            frame.time_base = VIDEO_TIME_BASE
            frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
            packets = self._ctx.encode(frame)
            self.frames_in += 1
            out = []
            for packet in packets:
                keyframe = bool(packet.is_keyframe)
                data = bytes(packet)
                if keyframe and self.key.intra_refresh:
                    keyframe = has_idr(data)  # a refresh's recovery point is no place to start decoding
                with self._policy_lock:
                    self.policy.produced(keyframe, now, force)
                out.append(
                    EncodedPacket(
                        data=data,
                        pts=int(packet.pts if packet.pts is not None else pts),
                        keyframe=keyframe,
                        codec=self.key.codec,
                        width=self.key.width,
                        height=self.key.height,
                        view_id=self.key.view_id,
                        composed_at=composed.composed_at,
                        sources=composed.sources,
                    )
                )
            return out

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._ctx = None


def scale_for_encoders(composed: ComposedFrame, sizes: set[tuple[int, int]]) -> dict[tuple[int, int], av.VideoFrame]:
    """Scale a composed frame once per distinct encoder size (letterboxed for CIF)."""
    return {size: fit_frame(composed.frame, *size) for size in sizes}
