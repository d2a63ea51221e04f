"""In-memory media forms shared by legs, the mixer, the compositor and the encoders.

Audio: one frame is a NumPy ``int16`` array of shape ``(960,)``: 20 ms of mono PCM at 48 kHz.

Video (canonical form): a PyAV :class:`av.VideoFrame` in any pixel format and size. Legs
get these straight from PyAV/aiortc decoders, so no conversion happens on arrival; the
compositor scales with libswscale (``VideoFrame.reformat``) to planar YUV 4:2:0, which is
also what the encoders take. A leg holding RGB pixels can call :func:`video_frame_from_rgb`.

Encoded output: :class:`EncodedPacket` (one access unit / frame, Annex B for H.264).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
VIDEO_TIME_BASE = Fraction(1, 90_000)  # RTP video clock

AudioFrame = npt.NDArray[np.int16]


def check_audio_frame(samples: object) -> AudioFrame:
    """Validate one 20 ms frame; raise ``ValueError`` with the reason if it is not one."""
    if not isinstance(samples, np.ndarray):
        raise ValueError("audio frame must be a numpy array")
    if samples.dtype != np.int16:
        raise ValueError(f"audio frame must be int16, got {samples.dtype}")
    if samples.shape != (FRAME_SAMPLES,):
        raise ValueError(f"audio frame must have shape ({FRAME_SAMPLES},), got {samples.shape}")
    return samples


def video_frame_from_rgb(rgb: npt.NDArray[np.uint8]) -> av.VideoFrame:
    """Wrap an ``(H, W, 3)`` uint8 RGB array as a canonical video frame."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("expected an (H, W, 3) uint8 RGB array")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def solid_yuv_frame(width: int, height: int, y: int, u: int, v: int) -> av.VideoFrame:
    """A YUV 4:2:0 frame of one colour (test sources, placeholders)."""
    if width % 2 or height % 2:
        raise ValueError("YUV 4:2:0 needs even dimensions")
    data = np.empty((height * 3 // 2, width), np.uint8)
    data[:height] = y
    chroma = data[height:].reshape(-1)
    quarter = (width // 2) * (height // 2)
    chroma[:quarter] = u
    chroma[quarter:] = v
    return av.VideoFrame.from_ndarray(data, format="yuv420p")


@dataclass(frozen=True)
class EncodedPacket:
    """One encoded video frame from a shared encoder.

    ``pts`` is in 90 kHz units. ``sources`` maps each participant shown in the frame to
    ``(sequence number, arrival time)`` of the source frame used, so a receiver (or the
    benchmark) can tell which input frames a packet contains.
    """

    data: bytes
    pts: int
    keyframe: bool
    codec: str  # "h264" | "vp8"
    width: int
    height: int
    view_id: str
    composed_at: float
    sources: dict[str, tuple[int, float]] = field(default_factory=dict)
