"""Viewing copies with a burned-in caption (who viewed, when, why). The evidence copy is never touched.

Decodes the segments, draws the caption with Pillow (WenQuanYi Micro Hei for Chinese,
Debian `fonts-wqy-microhei`), and re-encodes with libx264 into one MP4. Only this copy
is re-encoded; exports keep the original bytes that the log's hashes cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def caption_frame(img: Image.Image, caption: str) -> Image.Image:
    """Draw `caption` on a dark band at the bottom of the picture."""
    draw = ImageDraw.Draw(img)
    size = max(12, img.height // 24)
    font = _font(size)
    band = size + size // 2
    draw.rectangle((0, img.height - band, img.width, img.height), fill=(0, 0, 0))
    draw.text((size // 2, img.height - band + size // 4), caption, fill=(255, 255, 255), font=font)
    return img


def make_viewing_copy(segments: Sequence[Path], dest: Path, caption: str, fps: int = 25) -> int:
    """Concatenate `segments` into `dest` with `caption` burned in; returns frames written (blocking)."""
    if not segments:
        raise ValueError("no segments to copy")
    out = av.open(str(dest), "w", format="mp4")
    stream = None
    written = 0
    try:
        for path in segments:
            with av.open(str(path)) as src:
                for frame in src.decode(video=0):
                    img = caption_frame(Image.fromarray(frame.to_ndarray(format="rgb24")), caption)
                    if stream is None:
                        stream = out.add_stream("libx264", rate=fps)
                        stream.width, stream.height = img.width - img.width % 2, img.height - img.height % 2
                        stream.pix_fmt = "yuv420p"
                        stream.codec_context.time_base = Fraction(1, fps)
                        stream.options = {"preset": "veryfast", "crf": "23"}
                    rgb = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")
                    vf = rgb.reformat(stream.width, stream.height, "yuv420p")
                    vf.pts = written
                    for packet in stream.encode(vf):
                        out.mux(packet)
                    written += 1
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    finally:
        out.close()
    return written
