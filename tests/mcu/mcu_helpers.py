"""Synthetic sources and pixel/FFT probes for the MCU tests.

Each site's identity is a colour chosen on a 5x5 grid of (U, V) chroma values at mid
luma, 40 levels apart: robust through scaling and H.264, and easy to tell from black
(letterbox/empty), the placeholder tile and each other.
"""
from __future__ import annotations

import av
import numpy as np

from mcu.compositor import frame_planes
from mcu.media import solid_yuv_frame
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES, SAMPLE_RATE

LEVELS = (48, 88, 128, 168, 208)
PALETTE = [(128, u, v) for u in LEVELS for v in LEVELS]


def colour(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def source_frame(i: int, width: int = 640, height: int = 360) -> av.VideoFrame:
    y, u, v = colour(i)
    return solid_yuv_frame(width, height, y, u, v)


def yuv_at(frame: av.VideoFrame, x: int, y: int, radius: int = 4) -> tuple[float, float, float]:
    """Mean (Y, U, V) of a small block centred on pixel (x, y)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    py, pu, pv = frame_planes(frame)
    yy = float(py[y - radius : y + radius, x - radius : x + radius].mean())
    cx, cy, r = x // 2, y // 2, max(1, radius // 2)
    uu = float(pu[cy - r : cy + r, cx - r : cx + r].mean())
    vv = float(pv[cy - r : cy + r, cx - r : cx + r].mean())
    return yy, uu, vv


def identify(sample: tuple[float, float, float], tolerance: float = 14.0) -> int | None:
    """Palette index of the colour, or None (black, placeholder, anything else)."""
    best, dist = None, 1e9
    for i, ref in enumerate(PALETTE):
        d = max(abs(a - b) for a, b in zip(sample, ref, strict=True))
        if d < dist:
            best, dist = i, d
    return best if dist <= tolerance else None


def is_black(sample: tuple[float, float, float], tolerance: float = 10.0) -> bool:
    return abs(sample[0] - 16) <= tolerance and abs(sample[1] - 128) <= tolerance and abs(sample[2] - 128) <= tolerance


def tone(freq: float, amplitude: float, frame_index: int) -> np.ndarray:
    """One 20 ms int16 frame of a sine, phase-continuous across frames."""
    n = np.arange(FRAME_SAMPLES) + frame_index * FRAME_SAMPLES
    return (amplitude * np.sin(2 * np.pi * freq * n / SAMPLE_RATE)).astype(np.int16)


def spectrum(samples: np.ndarray) -> np.ndarray:
    """Magnitude spectrum normalised to a sine's peak amplitude (bin spacing 50 Hz at 960 samples)."""
    return np.abs(np.fft.rfft(samples.astype(np.float64))) * 2 / len(samples)


def amplitude_at(samples: np.ndarray, freq: float) -> float:
    bins = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    return float(spectrum(samples)[int(np.argmin(np.abs(bins - freq)))])


def decode_all(packets: list[bytes], codec: str) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create(codec, "r")
    assert isinstance(ctx, av.VideoCodecContext)
    frames: list[av.VideoFrame] = []
    for data in packets:
        frames.extend(ctx.decode(av.Packet(data)))
    frames.extend(ctx.decode(None))
    return frames
