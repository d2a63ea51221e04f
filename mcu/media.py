"""In-memory media forms shared by legs, the mixer, the compositor and the encoders.

Audio: one frame is a NumPy ``int16`` array of shape ``(960,)``: 20 ms of mono PCM at 48 kHz.

Video (canonical form): a PyAV :class:`av.VideoFrame` in any pixel format and size. Legs
get these straight from PyAV/aiortc decoders, so no conversion happens on arrival; the
compositor scales with libswscale (``VideoFrame.reformat``) to planar YUV 4:2:0, which is
also what the encoders take. A leg holding RGB pixels can call :func:`video_frame_from_rgb`.

The units themselves (sample rate, frame size, video clock) and the encoded output,
:class:`~sip_gateway.rtp.media_primitives.EncodedPacket`, live in
:mod:`sip_gateway.rtp.media_primitives`, which every layer may import.
"""
from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

from sip_gateway.rtp.media_primitives import FRAME_SAMPLES, AudioFrame


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

