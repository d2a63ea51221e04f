"""The media units every layer agrees on: the audio frame, the video clock, the encoded packet.

This is the one home of these numbers. It sits at the bottom of the media stack (the RTP
legs below the MCU, the MCU and the recorder above) so that every user may import it, and it
stays pure: no asyncio, sockets, clock or codec library, only NumPy for the frame type.

Audio: one frame is 20 ms of mono PCM at 48 kHz, a NumPy ``int16`` array of shape
``(FRAME_SAMPLES,)`` (960 samples). Every leg decodes to this and the mixer ticks in it.

Video: timestamps run on the RTP video clock, 90 kHz (``VIDEO_TIME_BASE``).

Encoded output of a shared encoder: :class:`EncodedPacket`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import numpy.typing as npt

__all__ = [
    "AUDIO_TIME_BASE",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "FRAME_SECONDS",
    "SAMPLE_RATE",
    "VIDEO_CLOCK",
    "VIDEO_TIME_BASE",
    "AudioFrame",
    "EncodedPacket",
]

SAMPLE_RATE = 48_000  # Hz, mono
FRAME_MS = 20  # one audio frame, one mixer tick
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_SECONDS = FRAME_MS / 1000
AUDIO_TIME_BASE = Fraction(1, SAMPLE_RATE)  # audio timestamps count samples
VIDEO_CLOCK = 90_000  # Hz: the RTP video clock
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)

AudioFrame = npt.NDArray[np.int16]


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
