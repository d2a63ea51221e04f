"""Continuous-presence compositor: one render plan in, one YUV 4:2:0 frame out.

The room builds an immutable :class:`ViewPlan` on the event loop (which site in which
pane, the newest frame of each, labels, banner); :meth:`Compositor.render` then runs in a
worker thread. Scaling is libswscale (``VideoFrame.reformat``, area filter) straight into
planar YUV, pasting is NumPy slicing into the output frame's planes, and every text tile
is cached, so there is no per-pixel Python. Each source frame is scaled once per size
even when several views show it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter

from .layout import Rect, fit_rect
from .participant import VideoSample
from .text import Overlay, TextRenderer, blend, overlay_from_rgba

U8 = npt.NDArray[np.uint8]
BLACK_Y, BLACK_C = 16, 128
INTERPOLATION = "AREA"  # best quality/speed for the downscaling a compositor does


@dataclass(frozen=True)
class PaneSpec:
    rect: Rect
    participant_id: str | None  # None: empty pane (black)
    name: str = ""
    sample: VideoSample | None = None  # None: placeholder with the name


@dataclass(frozen=True)
class BannerSpec:
    text: str
    position: str = "top"  # "top" | "bottom"
    scroll: bool = False
    speed: float = 120.0  # pixels per second when scrolling
    started_at: float = 0.0


@dataclass(frozen=True)
class ViewPlan:
    view_id: str
    width: int
    height: int
    layout: str
    panes: tuple[PaneSpec, ...]
    labels: bool
    banner: BannerSpec | None
    now: float


@dataclass
class ComposedFrame:
    view_id: str
    frame: av.VideoFrame  # yuv420p, plan.width x plan.height
    composed_at: float
    sources: dict[str, tuple[int, float]] = field(default_factory=dict)


def frame_planes(frame: av.VideoFrame) -> tuple[U8, U8, U8]:
    """Zero-copy NumPy views (height x width) of a yuv420p frame's three planes."""
    out = []
    for plane in frame.planes:
        raw: U8 = np.frombuffer(memoryview(plane), np.uint8)  # writable view of the frame's buffer
        buf = raw.reshape(plane.height, plane.line_size)
        out.append(buf[:, : plane.width])
    return out[0], out[1], out[2]


def blank_frame(width: int, height: int) -> tuple[av.VideoFrame, U8, U8, U8]:
    frame = av.VideoFrame(width, height, "yuv420p")
    y, u, v = frame_planes(frame)
    y.fill(BLACK_Y)
    u.fill(BLACK_C)
    v.fill(BLACK_C)
    return frame, y, u, v


_local = threading.local()


def _reformatter(key: tuple[int, int, str, int, int]) -> VideoReformatter:
    """A swscale context per thread and per conversion.

    ``VideoFrame.reformat`` keeps one context on the frame itself, which is unsafe when two
    views scale the same source frame in two threads at once (it crashed); a per-thread
    cache keyed by the conversion also avoids re-initialising swscale between panes.
    """
    cache: dict[tuple[int, int, str, int, int], VideoReformatter] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    reformatter = cache.get(key)
    if reformatter is None:
        if len(cache) > 128:
            cache.clear()
        reformatter = cache[key] = VideoReformatter()
    return reformatter


def scale_to(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """libswscale to ``width`` x ``height`` yuv420p (no-op if already so)."""
    fmt = frame.format.name
    if frame.width == width and frame.height == height and fmt == "yuv420p":
        return frame
    reformatter = _reformatter((frame.width, frame.height, fmt, width, height))
    # threads=1: panes are many and small, and parallelism comes from the worker threads.
    return reformatter.reformat(frame, width, height, "yuv420p", interpolation=INTERPOLATION, threads=1)


def fit_frame(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """Scale to ``width`` x ``height`` preserving aspect ratio (letterbox with black)."""
    inner = fit_rect(frame.width, frame.height, Rect(0, 0, width, height))
    if inner.w == width and inner.h == height:
        return scale_to(frame, width, height)
    out, y, u, v = blank_frame(width, height)
    paste(scale_to(frame, inner.w, inner.h), inner, y, u, v)
    return out


def paste(src: av.VideoFrame, at: Rect, y: U8, u: U8, v: U8) -> None:
    sy, su, sv = frame_planes(src)
    y[at.y : at.y + at.h, at.x : at.x + at.w] = sy
    cx, cy, cw, ch = at.x // 2, at.y // 2, at.w // 2, at.h // 2
    u[cy : cy + ch, cx : cx + cw] = su
    v[cy : cy + ch, cx : cx + cw] = sv


def draw_overlay(tile: Overlay, x: int, y: int, py: U8, pu: U8, pv: U8) -> None:
    x -= x % 2
    y -= y % 2
    blend(py, tile.y, tile.alpha, x, y)
    blend(pu, tile.u, tile.alpha_c, x // 2, y // 2)
    blend(pv, tile.v, tile.alpha_c, x // 2, y // 2)


class Compositor:
    """Renders :class:`ViewPlan` objects; safe to call from several worker threads."""

    BANNER_COLOUR = (150, 16, 16)  # 会标: white text on a red bar
    BANNER_TEXT = (255, 255, 255)

    def __init__(self, text: TextRenderer) -> None:
        self.text = text
        self._scaled: dict[tuple[str, int, int], tuple[VideoSample, av.VideoFrame]] = {}
        self._scaled_lock = threading.Lock()
        self._bars: dict[tuple[int, int], Overlay] = {}

    # ---- scaling cache --------------------------------------------------
    def _scaled_source(self, pid: str, sample: VideoSample, w: int, h: int) -> av.VideoFrame:
        key = (pid, w, h)
        cached = self._scaled.get(key)
        if cached is not None and cached[0] is sample:
            return cached[1]
        scaled = scale_to(sample.frame, w, h)
        with self._scaled_lock:
            self._scaled[key] = (sample, scaled)
        return scaled

    def forget(self, participant_id: str | None = None) -> None:
        """Drop cached scaled frames of one source (or all): call when a site leaves."""
        with self._scaled_lock:
            if participant_id is None:
                self._scaled.clear()
            else:
                for key in [k for k in self._scaled if k[0] == participant_id]:
                    del self._scaled[key]

    # ---- rendering ------------------------------------------------------
    def render(self, plan: ViewPlan) -> ComposedFrame:
        frame, y, u, v = blank_frame(plan.width, plan.height)
        sources: dict[str, tuple[int, float]] = {}
        for pane in plan.panes:
            if pane.participant_id is None:
                continue
            if pane.sample is None:
                py, pu, pv = self.text.placeholder(pane.name or pane.participant_id, pane.rect.w, pane.rect.h)
                r = pane.rect
                y[r.y : r.y + r.h, r.x : r.x + r.w] = py
                u[r.y // 2 : (r.y + r.h) // 2, r.x // 2 : (r.x + r.w) // 2] = pu
                v[r.y // 2 : (r.y + r.h) // 2, r.x // 2 : (r.x + r.w) // 2] = pv
            else:
                src = pane.sample.frame
                inner = fit_rect(src.width, src.height, pane.rect)
                paste(self._scaled_source(pane.participant_id, pane.sample, inner.w, inner.h), inner, y, u, v)
                sources[pane.participant_id] = (pane.sample.seq, pane.sample.arrival)
            if plan.labels and pane.name:
                self._draw_label(pane, y, u, v)
        if plan.banner is not None and plan.banner.text:
            self._draw_banner(plan, y, u, v)
        frame.pts = None
        return ComposedFrame(plan.view_id, frame, plan.now, sources)

    def _draw_label(self, pane: PaneSpec, y: U8, u: U8, v: U8) -> None:
        size = max(12, min(28, pane.rect.h // 12))
        tile = self.text.label(pane.name, size)
        margin = max(2, size // 3)
        x0 = pane.rect.x + margin
        y0 = pane.rect.y + pane.rect.h - tile.height - margin
        if tile.width > pane.rect.w - margin:  # never spill into the next pane
            return
        draw_overlay(tile, x0, y0, y, u, v)

    def banner_height(self, height: int) -> int:
        return max(20, (height // 12) // 2 * 2)

    def _bar(self, width: int, height: int) -> Overlay:
        key = (width, height)
        bar = self._bars.get(key)
        if bar is None:
            from PIL import Image

            bar = overlay_from_rgba(Image.new("RGBA", (width, height), (*self.BANNER_COLOUR, 230)))
            self._bars[key] = bar
        return bar

    def _draw_banner(self, plan: ViewPlan, y: U8, u: U8, v: U8) -> None:
        banner = plan.banner
        assert banner is not None
        bar_h = self.banner_height(plan.height)
        top = 0 if banner.position == "top" else plan.height - bar_h
        draw_overlay(self._bar(plan.width, bar_h), 0, top, y, u, v)
        tile = self.text.text_strip(banner.text, int(bar_h * 0.7), self.BANNER_TEXT)
        ty = top + (bar_h - tile.height) // 2
        if banner.scroll:
            travel = plan.width + tile.width
            offset = int((plan.now - banner.started_at) * banner.speed) % travel
            tx = plan.width - offset
        else:
            tx = (plan.width - tile.width) // 2
        # Blend into views of the bar's rows only, so the text never bleeds into the picture.
        rows = slice(top, top + bar_h)
        crows = slice(top // 2, (top + bar_h) // 2)
        draw_overlay(tile, tx, ty - top, y[rows], u[crows], v[crows])
