"""Codec bridges between RTP payloads and MCU frames, built on aiortc.codecs and PyAV.

MCU audio frames are 48 kHz mono int16 NumPy arrays of 960 samples (20 ms); video frames are
PyAV ``VideoFrame`` objects. H.264 packetization-mode 1 (STAP-A/FU-A) reuses aiortc's
packetiser; mode 0 (single NAL unit per packet) is done here with x264's ``slice-max-size``
keeping every NAL under the MTU, because aiortc only implements mode 1.
"""

from __future__ import annotations

import fractions
import logging
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc.codecs import depayload, get_decoder, get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .bits import join_framed_pieces
from .h261 import packetize_rfc4587, strip_rfc4587
from .h263 import packetize_rfc2190, packetize_rfc4629, strip_rfc2190, strip_rfc4629
from .media_description import Codec
from .media_primitives import FRAME_SAMPLES as SAMPLES_PER_FRAME
from .media_primitives import SAMPLE_RATE, VIDEO_CLOCK
from .opus_fec import OpusFecEncoder

log = logging.getLogger(__name__)

MTU_PAYLOAD = 1200
Pcm = npt.NDArray[np.int16]
VIDEO_CODECS = ("H264", "VP8", "H263", "H263-1998", "H261")
# H.263/H.261 (H.323 room systems) are (de)packetised here, not by aiortc.
_H26X_STRIP = {"H263": strip_rfc2190, "H263-1998": strip_rfc4629, "H261": strip_rfc4587}
_H26X_PACK = {"H263": packetize_rfc2190, "H263-1998": packetize_rfc4629, "H261": packetize_rfc4587}
_H26X_FFMPEG = {"H263": "h263", "H263-1998": "h263", "H261": "h261"}
_H26X_BIT_PIECES = {"H263", "H261"}  # payloads that may start/end mid-octet: framed pieces


def aiortc_parameters(codec: Codec) -> RTCRtpCodecParameters:
    """aiortc's codec description for a negotiated SDP codec."""
    kind = "video" if codec.name in VIDEO_CODECS else "audio"
    name = {"OPUS": "opus"}.get(codec.name, codec.name)
    return RTCRtpCodecParameters(
        mimeType=f"{kind}/{name}", clockRate=codec.clock_rate,
        channels=codec.channels if kind == "audio" else None, payloadType=codec.payload_type,
        parameters=dict(codec.fmtp_params),
    )


def depayload_media(codec: Codec, payload: bytes) -> bytes:
    """RTP payload → codec bitstream piece (H.264 single NAL, STAP-A and FU-A; VP8 descriptor;
    H.263 RFC 2190/4629 and H.261 RFC 4587 headers)."""
    strip = _H26X_STRIP.get(codec.name)
    if strip is not None:
        return strip(payload)
    return bytes(depayload(aiortc_parameters(codec), payload))


class AudioDecoder:
    """Decode audio payloads to 48 kHz mono int16 frames of 960 samples."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._decoder = get_decoder(aiortc_parameters(codec))
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._pending: Pcm = np.zeros(0, dtype=np.int16)

    def decode(self, payload: bytes, timestamp: int) -> list[Pcm]:
        """Decode one payload; returns zero or more complete 20 ms frames."""
        frames: list[Any] = self._decoder.decode(JitterFrame(payload, timestamp))
        chunks = [self._pending]
        for frame in frames:
            for out in self._resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        pcm = np.concatenate(chunks)
        count = len(pcm) // SAMPLES_PER_FRAME
        result = [pcm[i * SAMPLES_PER_FRAME : (i + 1) * SAMPLES_PER_FRAME] for i in range(count)]
        self._pending = pcm[count * SAMPLES_PER_FRAME :]
        return result


class AudioEncoder:
    """Encode 48 kHz mono int16 frames of 960 samples into one payload each.

    Opus is encoded by :class:`~sip_gateway.rtp.opus_fec.OpusFecEncoder` (aiortc's output, with
    in-band FEC switchable: :meth:`set_fec`).
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._opus = OpusFecEncoder() if codec.name == "OPUS" else None
        self._encoder: Any = self._opus or get_encoder(aiortc_parameters(codec))
        self._samples = 0
        # RTP clock ticks per 20 ms (G.722 uses an 8 kHz RTP clock for 16 kHz audio, RFC 3551).
        self.timestamp_step = codec.clock_rate * SAMPLES_PER_FRAME // SAMPLE_RATE

    def encode(self, pcm: Pcm) -> list[bytes]:
        """Encode 20 ms; returns the payloads (normally exactly one)."""
        if pcm.shape != (SAMPLES_PER_FRAME,):
            raise ValueError(f"expected {SAMPLES_PER_FRAME} samples, got {pcm.shape}")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._samples += SAMPLES_PER_FRAME
        payloads, _ = self._encoder.encode(frame)
        return [bytes(p) for p in payloads]

    def set_fec(self, loss_perc: int) -> bool:
        """Opus in-band FEC for this loss percentage (0: off), from the next frame; False: not Opus."""
        if self._opus is None:
            return False
        self._opus.set_fec(loss_perc)
        return True

    @property
    def fec_loss_perc(self) -> int:
        """The in-band FEC asked for (0: off or not Opus)."""
        return self._opus.wanted if self._opus is not None else 0


class VideoDecoder:
    """Decode a reassembled video frame (H.264 Annex B or VP8) into PyAV frames.

    ``set_mode`` (the MCU's pane sizes, mcu.pane_size): ``"off"`` skips decoding (counted in
    ``frames_skipped``; for a source shown in no pane), ``"fast"`` decodes H.264 without the
    deblocking filter (``skip_loop_filter``: for a source shown much smaller than it is sent),
    ``"full"`` decodes normally. After a change, H.264 frames are skipped until the next
    IDR/SPS (the caller asks the source for a key frame), so no broken picture is shown.
    """

    MODES = ("off", "fast", "full")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        ffmpeg = _H26X_FFMPEG.get(codec.name)
        self._h26x: Any = av.CodecContext.create(ffmpeg, "r") if ffmpeg else None
        self._decoder = None if ffmpeg else get_decoder(aiortc_parameters(codec))
        self.mode = "full"
        self.frames_skipped = 0
        self._fast: Any = None  # an H.264 context opened with skip_loop_filter
        self._await_key = False

    def set_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown decode mode {mode!r}")
        if mode == self.mode:
            return
        self.mode = mode
        self._fast = None
        if mode == "fast" and self.codec.name == "H264":
            self._fast = av.CodecContext.create("h264", "r")
            self._fast.options = {"skip_loop_filter": "all"}
        self._await_key = self.codec.name == "H264"

    def decode(self, data: bytes, timestamp: int) -> list[av.VideoFrame]:
        """Decode; corrupt input yields no frames instead of an exception."""
        if self.mode == "off":
            self.frames_skipped += 1
            return []
        if self._await_key:
            if not any(nal and nal[0] & 0x1F in (5, 7) for nal in split_annexb(data)):
                self.frames_skipped += 1
                return []
            self._await_key = False
        fast = self._fast  # set_mode runs on another thread: read once
        try:
            if fast is not None:
                return [f for f in fast.decode(av.Packet(data)) if isinstance(f, av.VideoFrame)]
            if self._h26x is not None:
                if self.codec.name in _H26X_BIT_PIECES:  # SBIT/EBIT pieces: join them bit-exactly
                    data = join_framed_pieces(data)
                return [f for f in self._h26x.decode(av.Packet(data)) if isinstance(f, av.VideoFrame)]
            assert self._decoder is not None
            frames: list[Any] = self._decoder.decode(JitterFrame(data, timestamp))
        except (av.FFmpegError, ValueError) as exc:
            log.debug("video decode error: %s", exc)
            return []
        return [f for f in frames if isinstance(f, av.VideoFrame)]


def split_annexb(data: bytes) -> Iterator[bytes]:
    """NAL units of an Annex B byte stream, start codes removed."""
    i = 0
    n = len(data)
    starts: list[tuple[int, int]] = []
    while i + 3 <= n:
        if data[i] == 0 and data[i + 1] == 0:
            if data[i + 2] == 1:
                starts.append((i, i + 3))
                i += 3
                continue
            if i + 4 <= n and data[i + 2] == 0 and data[i + 3] == 1:
                starts.append((i, i + 4))
                i += 4
                continue
        i += 1
    for k, (_, begin) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else n
        nal = data[begin:end]
        if nal:
            yield nal


def packetize_h264(annexb: bytes, mode: int) -> list[bytes]:
    """RTP payloads for one access unit: mode 0 = one NAL per packet, mode 1 = STAP-A/FU-A."""
    nals = list(split_annexb(annexb))
    if mode == 1:
        return list(H264Encoder._packetize(nals))  # aiortc's STAP-A/FU-A packetiser
    for nal in nals:
        if len(nal) > MTU_PAYLOAD + 200:
            log.warning("H.264 NAL of %d bytes in packetization-mode 0 (slice-max-size not honoured)", len(nal))
    return nals


class VideoEncoder:
    """Encode PyAV frames to RTP payloads (H.264 mode 0/1 with libx264, VP8 with aiortc)."""

    def __init__(self, codec: Codec, bitrate: int = 768_000, fps: int = 25) -> None:
        self.codec = codec
        self.mode = codec.packetization_mode if codec.name == "H264" else 1
        self.bitrate = bitrate
        self.fps = fps
        self._vp8 = get_encoder(aiortc_parameters(codec)) if codec.name == "VP8" else None
        self._x264: Any = None
        self._size: tuple[int, int] | None = None
        self._pts = 0

    @property
    def h264_level(self) -> int:
        """level_idc from the negotiated profile-level-id (3.1 when absent or unreadable)."""
        pli = self.codec.fmtp_params.get("profile-level-id", "")
        try:
            level = int(pli[4:6], 16) if len(pli) == 6 else 31
        except ValueError:
            return 31
        return level if 9 <= level <= 52 else 31

    def _open_x264(self, width: int, height: int) -> Any:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.bit_rate = self.bitrate
        ctx.framerate = fractions.Fraction(self.fps, 1)
        ctx.time_base = fractions.Fraction(1, self.fps)
        ctx.profile = "Baseline"
        options = {"tune": "zerolatency", "preset": "veryfast", "level": str(self.h264_level),
                   "g": str(self.fps * 4)}
        if self.mode == 0:
            options["slice-max-size"] = str(MTU_PAYLOAD)
        ctx.options = options
        return ctx

    def encode(self, frame: av.VideoFrame, keyframe: bool = False) -> list[bytes]:
        """Encode one frame; returns its RTP payloads (empty while the encoder buffers)."""
        if self._vp8 is not None:
            frame.pts = self._pts
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            self._pts += VIDEO_CLOCK // self.fps
            payloads, _ = self._vp8.encode(frame, keyframe)
            return [bytes(p) for p in payloads]
        ffmpeg = _H26X_FFMPEG.get(self.codec.name)
        if ffmpeg is not None:
            return self._encode_h26x(ffmpeg, frame, keyframe)
        size = (frame.width, frame.height)
        if self._x264 is None or self._size != size:
            self._x264 = self._open_x264(*size)
            self._size = size
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.fps)
        self._pts += 1
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        data = b"".join(bytes(p) for p in self._x264.encode(frame))
        return packetize_h264(data, self.mode) if data else []

    def _encode_h26x(self, name: str, frame: av.VideoFrame, keyframe: bool) -> list[bytes]:
        """H.263/H.261 at CIF (the sizes those codecs have), packetised per their RFC."""
        if self._x264 is None:
            ctx: Any = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt = 352, 288, "yuv420p"
            ctx.bit_rate = min(self.bitrate, 384_000)
            ctx.time_base = fractions.Fraction(1, self.fps)
            ctx.gop_size = self.fps * 4
            if name == "h263":
                ctx.options = {"ps": str(MTU_PAYLOAD)}
            self._x264 = ctx
        if (frame.width, frame.height) != (352, 288) or frame.format.name != "yuv420p":
            frame = frame.reformat(width=352, height=288, format="yuv420p")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.fps)
        self._pts += 1
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        return [p for packet in self._x264.encode(frame) for p in self.pack(bytes(packet))]

    def pack(self, access_unit: bytes) -> list[bytes]:
        """Packetise an already encoded access unit (``bytes(av_packet)`` of a shared encoder):
        H.264, or an H.263/H.261 picture."""
        pack = _H26X_PACK.get(self.codec.name)
        if pack is not None:
            try:
                return pack(access_unit)
            except ValueError as exc:  # not a picture we can describe: skip it, the next key frame heals
                log.debug("cannot packetise %s picture: %s", self.codec.name, exc)
                return []
        return packetize_h264(access_unit, self.mode)
