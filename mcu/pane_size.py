"""What size each source should send: the largest pane it is shown in (pure; time is an argument).

Decoding 25 full 720p streams only to shrink them into 256x144 panes is most of a big
continuous-presence room's cost (bench/mcu_mix). So each source is asked for the size of
the largest pane it appears in, across every view that has receivers, and a source shown
nowhere is not decoded at all. This module decides *what* to ask and *when*; the legs
decide *how* (SIP ``imageattr``/TMMBR, H.245 flow control, the browser's sender parameters).

Rules
=====
* **Sizes are rungs.** A pane size is rounded *up* to a rung of :data:`RUNGS` (never ask for
  less than the pane shows) and capped at the largest rung. The rungs are the minimum step:
  a pane that changes by a few pixels asks nothing.
* **Bigger at once, smaller after it settles.** A source whose rung grows (including hidden →
  shown) is asked at once, limited to one request per ``min_interval`` seconds (a request
  that is due later is sent as soon as the interval has passed, with the newest size). A
  source whose rung shrinks (including shown → hidden) is asked only once the smaller rung
  has held for ``settle`` seconds, so a layout that flips back and forth costs no request.
* **Hidden.** ``None`` means shown in no view: the source's video is not decoded (its audio
  still is). Showing a hidden source is a growth, so it is immediate; the decode side asks
  the source for a key frame then.
* **Decode mode** (:func:`decode_mode`): ``"off"`` when hidden, ``"fast"`` (H.264 decoding
  with ``skip_loop_filter``) when the pane is smaller than a third of the source's picture
  in both directions, else ``"full"``.

:meth:`PaneSizer.update` takes the current largest pane of every source and the time, and
returns the requests due now; :meth:`PaneSizer.wanted` is the size last asked (what the
decode side follows).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

DecodeMode = Literal["off", "fast", "full"]

# 16:9 rungs from a 5x5 pane of 720p upward (the encoder tiers' sizes and the grid panes).
RUNGS: tuple[tuple[int, int], ...] = (
    (160, 90), (256, 144), (320, 180), (480, 270), (640, 360), (768, 432), (960, 540), (1280, 720),
)
SETTLE_SECONDS = 2.0
MIN_INTERVAL_SECONDS = 2.0
FAST_DECODE_RATIO = 3  # pane smaller than a third of the source: skip the deblocking filter


@dataclass(frozen=True)
class SizeRequest:
    """Ask ``source`` for ``size`` (width, height); ``None``: it is shown nowhere."""

    source: str
    size: tuple[int, int] | None
    previous: tuple[int, int] | None


def rung_for(width: int, height: int, rungs: tuple[tuple[int, int], ...] = RUNGS) -> tuple[int, int]:
    """The smallest rung at least as big as the pane in both directions (the largest if none)."""
    if width <= 0 or height <= 0:
        raise ValueError("pane size must be positive")
    for rw, rh in rungs:
        if rw >= width and rh >= height:
            return rw, rh
    return rungs[-1]


def _area(size: tuple[int, int] | None) -> int:
    return 0 if size is None else size[0] * size[1]


def largest_panes(views: Iterable[Iterable[tuple[str | None, int, int]]]) -> dict[str, tuple[int, int]]:
    """Per source, the largest (by area) pane it is shown in over all ``views``.

    Each view is an iterable of ``(source_id, pane_width, pane_height)``; empty panes have
    ``source_id`` None. Sources absent from the result are shown nowhere.
    """
    best: dict[str, tuple[int, int]] = {}
    for view in views:
        for source, w, h in view:
            if source is None:
                continue
            if w * h > _area(best.get(source)):
                best[source] = (w, h)
    return best


def decode_mode(pane: tuple[int, int] | None, source: tuple[int, int] | None) -> DecodeMode:
    """How to decode a source of size ``source`` shown at most at ``pane`` (None: hidden)."""
    if pane is None:
        return "off"
    if source is not None and pane[0] * FAST_DECODE_RATIO <= source[0] and pane[1] * FAST_DECODE_RATIO <= source[1]:
        return "fast"
    return "full"


@dataclass
class _State:
    asked: tuple[int, int] | None  # the rung last asked (None: hidden)
    asked_at: float
    target: tuple[int, int] | None  # the rung the layout wants now
    target_since: float


class PaneSizer:
    """Debounced, stepped "wanted size" per source; one instance per room."""

    def __init__(self, *, settle: float = SETTLE_SECONDS, min_interval: float = MIN_INTERVAL_SECONDS,
                 rungs: tuple[tuple[int, int], ...] = RUNGS) -> None:
        if settle < 0 or min_interval < 0:
            raise ValueError("settle and min_interval must not be negative")
        if not rungs or list(rungs) != sorted(rungs, key=lambda r: r[0] * r[1]):
            raise ValueError("rungs must be non-empty and ascending")
        self.settle = settle
        self.min_interval = min_interval
        self.rungs = rungs
        self._states: dict[str, _State] = {}

    def wanted(self, source: str) -> tuple[int, int] | None:
        """The size last asked of ``source`` (None: hidden, or unknown)."""
        state = self._states.get(source)
        return None if state is None else state.asked

    def forget(self, source: str) -> None:
        self._states.pop(source, None)

    def update(self, shown: Mapping[str, tuple[int, int]], sources: Iterable[str], now: float) -> list[SizeRequest]:
        """``shown``: largest pane per source shown somewhere; ``sources``: every source in the room.

        Returns the requests due at ``now``. A new source starts as asked for its current
        rung (or hidden) and yields a request only if it is shown.
        """
        out: list[SizeRequest] = []
        present = set(sources)
        for gone in [s for s in self._states if s not in present]:
            del self._states[gone]
        for source in sorted(present):
            pane = shown.get(source)
            target = None if pane is None else rung_for(pane[0], pane[1], self.rungs)
            state = self._states.get(source)
            if state is None:
                self._states[source] = _State(target, now, target, now)
                if target is not None:
                    out.append(SizeRequest(source, target, None))
                continue
            if target != state.target:
                state.target, state.target_since = target, now
            if state.target == state.asked:
                continue
            if state.asked is not None and now - state.asked_at < self.min_interval:
                continue  # showing a hidden source is never delayed (hiding it took `settle`)
            growing = _area(state.target) > _area(state.asked)
            if not growing and now - state.target_since < self.settle:
                continue
            out.append(SizeRequest(source, state.target, state.asked))
            state.asked, state.asked_at = state.target, now
        return out


FULL_HD_RATE = 1_500_000  # what a 1280x720 source is asked for (the top encoder tier's rate)
MIN_SOURCE_RATE = 96_000


def rate_for(size: tuple[int, int]) -> int:
    """The bit rate to ask of a source sending ``size``: the 720p rate scaled by area (floored)."""
    return max(MIN_SOURCE_RATE, int(FULL_HD_RATE * size[0] * size[1] / (1280 * 720)) // 1000 * 1000)
