"""Small real media for tests: H.264 in fragmented MP4, encoded with PyAV's libx264."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from recorder.segmenter import MOVFLAGS


def write_h264_mp4(path: Path, seconds: float = 1.0, fps: int = 10, size: tuple[int, int] = (160, 96),
                   seed: int = 0) -> None:
    """A short fMP4 with a moving gradient (different per seed), key frame first."""
    out = av.open(str(path), "w", format="mp4", options={"movflags": MOVFLAGS})
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, fps)
    stream.options = {"preset": "ultrafast", "g": str(fps)}
    w, h = size
    for i in range(int(seconds * fps)):
        img = np.zeros((h, w, 3), dtype=np.uint8)
        img[:, :, 0] = (np.arange(w)[None, :] * 2 + i * 8 + seed * 40) % 256
        img[:, :, 1] = (np.arange(h)[:, None] * 2) % 256
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))
