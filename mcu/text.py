"""Chinese-capable text tiles (site labels, banner 会标, placeholders) as YUV overlays.

Text is drawn once with Pillow and a CJK font, converted to YUV 4:2:0 plus an alpha
mask, and cached; per frame the compositor only alpha-blends small NumPy regions.

Font: Debian ``fonts-wqy-microhei`` at :data:`DEFAULT_FONT` unless a path is configured.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

DEFAULT_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


class FontError(ValueError):
    """The configured font cannot be loaded."""


@dataclass(frozen=True)
class Overlay:
    """A YUV 4:2:0 tile with per-pixel alpha (0..1), even width and height."""

    y: U8
    u: U8
    v: U8
    alpha: F32  # (h, w)
    alpha_c: F32  # (h/2, w/2), for the chroma planes

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])


def rgb_to_yuv(rgb: npt.NDArray[np.float32]) -> tuple[F32, F32, F32]:
    """BT.601 limited range, as libswscale uses for yuv420p by default."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return y.astype(np.float32), u.astype(np.float32), v.astype(np.float32)


def overlay_from_rgba(image: Image.Image) -> Overlay:
    """Convert an RGBA Pillow image (cropped to even size) to an :class:`Overlay`."""
    w, h = image.size
    image = image.crop((0, 0, w - w % 2, h - h % 2))
    px = np.asarray(image, dtype=np.float32)
    y, u, v = rgb_to_yuv(px[..., :3])
    alpha = px[..., 3] / 255.0
    # Chroma and its alpha at half resolution (2x2 mean).
    def half(a: F32) -> F32:
        out: F32 = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3)).astype(np.float32)
        return out

    return Overlay(
        y=np.clip(y, 0, 255).astype(np.uint8),
        u=np.clip(half(u), 0, 255).astype(np.uint8),
        v=np.clip(half(v), 0, 255).astype(np.uint8),
        alpha=alpha.astype(np.float32),
        alpha_c=half(alpha),
    )


def blend(plane: U8, tile: U8, alpha: F32, x: int, y: int) -> None:
    """Alpha-blend ``tile`` into ``plane`` at (x, y), clipped to the plane, in place."""
    ph, pw = plane.shape
    th, tw = tile.shape
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(pw, x + tw), min(ph, y + th)
    if x1 <= x0 or y1 <= y0:
        return
    dst = plane[y0:y1, x0:x1]
    src = tile[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    out = dst + (src - dst) * a
    dst[...] = out.astype(np.uint8)


class TextRenderer:
    """Renders and caches text tiles with one font file."""

    def __init__(self, font_path: str | Path | None = None) -> None:
        path = Path(font_path) if font_path is not None else DEFAULT_FONT
        if not path.is_file():
            raise FontError(
                f"font file not found: {path} (install Debian fonts-wqy-microhei or configure a CJK font)"
            )
        try:
            ImageFont.truetype(str(path), 16)
        except OSError as exc:
            raise FontError(f"cannot load font {path}: {exc}") from exc
        self.path = path
        self._lock = threading.Lock()
        # Per-instance caches (lru_cache on bound methods would keep the instance alive).
        self.font = lru_cache(maxsize=64)(self._font)
        self.label = lru_cache(maxsize=512)(self._label)
        self.text_strip = lru_cache(maxsize=16)(self._text_strip)
        self.placeholder = lru_cache(maxsize=256)(self._placeholder)

    def _font(self, size: int) -> ImageFont.FreeTypeFont:
        # BASIC layout: CJK and Latin need no complex shaping, and libraqm failed on odd input.
        return ImageFont.truetype(str(self.path), size, layout_engine=ImageFont.Layout.BASIC)

    def _draw_text(self, text: str, size: int, fill: tuple[int, int, int, int],
                   background: tuple[int, int, int, int], pad: int) -> Image.Image:
        font = self.font(size)
        with self._lock:  # FreeType faces are not safe to share across threads
            left, top, right, bottom = font.getbbox(text)
            w = max(2, int(right - left) + 2 * pad)
            h = max(2, int(bottom - top) + 2 * pad)
            w += w % 2
            h += h % 2
            image = Image.new("RGBA", (w, h), background)
            ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=fill)
        return image

    def _label(self, text: str, size: int) -> Overlay:
        """White text on a translucent dark box: a site-name label."""
        return overlay_from_rgba(self._draw_text(text, size, (255, 255, 255, 255), (0, 0, 0, 150), size // 4))

    def _text_strip(self, text: str, size: int, colour: tuple[int, int, int]) -> Overlay:
        """Text on a transparent background (banner text, blended over the banner bar)."""
        return overlay_from_rgba(self._draw_text(text, size, (*colour, 255), (0, 0, 0, 0), 0))

    def _placeholder(self, text: str, width: int, height: int) -> tuple[U8, U8, U8]:
        """A site without video: dark slate tile with the site's name in the middle."""
        image = Image.new("RGBA", (width, height), (40, 48, 64, 255))
        size = max(10, min(height // 6, int(width / max(2, len(text) + 1))))
        font = self.font(size)
        with self._lock:
            draw = ImageDraw.Draw(image)
            left, top, right, bottom = font.getbbox(text)
            x = (width - (right - left)) // 2 - left
            y = (height - (bottom - top)) // 2 - top
            draw.text((x, y), text, font=font, fill=(230, 230, 230, 255))
        tile = overlay_from_rgba(image)
        return tile.y, tile.u, tile.v
