"""Continuous-presence layouts and pane modes (pure geometry and selection rules).

Layouts: ``1``, ``2`` (side by side), ``1+5``, ``1+7``, ``2x2``, ``3x3``, ``4x4``, ``5x5``, ``6x6``,
``7x7`` and ``auto`` (grows with the number of sites: 1, 2, 2x2, 3x3, 4x4, 5x5, 6x6, 7x7).

Pane modes follow OpenMCU-ru's static/VAD panes and Huawei/Poly polling:

* :class:`AutoPane` - filled with sites not shown elsewhere in the view, in join order;
* :class:`StaticPane` - one fixed site;
* :class:`VoicePane` - the ``rank``-th most recent active speaker (0 = current);
* :class:`PollingPane` - rotates through a list of sites every ``interval`` seconds.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LAYOUTS: tuple[str, ...] = ("1", "2", "1+5", "1+7", "2x2", "3x3", "4x4", "5x5", "6x6", "7x7", "auto")
MAX_PANES = 49  # the largest layout (7x7)


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.w // 2, self.y + self.h // 2


@dataclass(frozen=True)
class AutoPane:
    pass


@dataclass(frozen=True)
class StaticPane:
    participant_id: str


@dataclass(frozen=True)
class VoicePane:
    rank: int = 0


@dataclass(frozen=True)
class PollingPane:
    participant_ids: tuple[str, ...]
    interval: float
    started_at: float

    def current(self, now: float, present: Sequence[str]) -> str | None:
        """The site shown at ``now``: the list rotates, skipping sites not in the room."""
        sites = [p for p in self.participant_ids if p in present]
        if not sites:
            return None
        step = int(max(0.0, now - self.started_at) // self.interval)
        # Index into the full list so the rotation does not jump when someone leaves.
        for offset in range(len(self.participant_ids)):
            pid = self.participant_ids[(step + offset) % len(self.participant_ids)]
            if pid in present:
                return pid
        return None


Pane = AutoPane | StaticPane | VoicePane | PollingPane


def check_layout(name: str) -> str:
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; expected one of {', '.join(LAYOUTS)}")
    return name


def resolve_auto(name: str, site_count: int) -> str:
    """The concrete layout for ``auto`` given how many sites there are."""
    if name != "auto":
        return name
    if site_count <= 1:
        return "1"
    if site_count == 2:
        return "2"
    for grid, capacity in (("2x2", 4), ("3x3", 9), ("4x4", 16), ("5x5", 25), ("6x6", 36)):
        if site_count <= capacity:
            return grid
    return "7x7"


def pane_count(name: str) -> int:
    """Number of panes of a concrete (non-``auto``) layout."""
    return len(_cells(name))


def _grid(n: int) -> list[tuple[float, float, float, float]]:
    return [(c / n, r / n, 1 / n, 1 / n) for r in range(n) for c in range(n)]


def _big_plus_small(n: int) -> list[tuple[float, float, float, float]]:
    """One big pane (n-1 cells square) top-left and a ring of 2n-1 small ones."""
    big = (n - 1) / n
    cells = [(0.0, 0.0, big, big)]
    cells += [(big, r / n, 1 / n, 1 / n) for r in range(n)]  # right column
    cells += [(c / n, big, 1 / n, 1 / n) for c in range(n - 1)]  # bottom row
    return cells


def _cells(name: str) -> list[tuple[float, float, float, float]]:
    if name == "1":
        return [(0.0, 0.0, 1.0, 1.0)]
    if name == "2":
        return [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 0.5, 1.0)]
    if name == "1+5":
        return _big_plus_small(3)
    if name == "1+7":
        return _big_plus_small(4)
    if name.endswith(("x2", "x3", "x4", "x5", "x6", "x7")) and name[0] == name[-1]:
        return _grid(int(name[0]))
    raise ValueError(f"layout {name!r} has no fixed geometry")


def _even(value: float) -> int:
    return int(round(value / 2)) * 2


def pane_rects(name: str, width: int, height: int) -> list[Rect]:
    """Pixel rectangles (even coordinates, for YUV 4:2:0) of a concrete layout."""
    rects = []
    for fx, fy, fw, fh in _cells(name):
        x0, y0 = _even(fx * width), _even(fy * height)
        x1, y1 = _even((fx + fw) * width), _even((fy + fh) * height)
        rects.append(Rect(x0, y0, x1 - x0, y1 - y0))
    return rects


def fit_rect(src_w: int, src_h: int, box: Rect) -> Rect:
    """Largest rectangle of the source's aspect ratio centred in ``box`` (letterbox)."""
    scale = min(box.w / src_w, box.h / src_h)
    w = max(2, min(box.w, _even(src_w * scale)))
    h = max(2, min(box.h, _even(src_h * scale)))
    x = box.x + _even((box.w - w) / 2)
    y = box.y + _even((box.h - h) / 2)
    return Rect(x, y, w, h)


def assign_panes(
    panes: Sequence[Pane],
    count: int,
    present: Sequence[str],
    speakers: Sequence[str],
    now: float,
) -> list[str | None]:
    """Which site each of ``count`` panes shows.

    ``present`` is the room's sites in join order, ``speakers`` the most recent active
    speakers (newest first). Static and polling panes are placed first; voice panes take
    recent speakers not already shown; automatic panes take the remaining sites.
    """
    modes: list[Pane] = [panes[i] if i < len(panes) else AutoPane() for i in range(count)]
    chosen: list[str | None] = [None] * count
    shown: set[str] = set()
    for i, mode in enumerate(modes):
        pick: str | None = None
        if isinstance(mode, StaticPane) and mode.participant_id in present:
            pick = mode.participant_id
        elif isinstance(mode, PollingPane):
            pick = mode.current(now, present)
        if pick is not None:
            chosen[i] = pick
            shown.add(pick)
    # Voice panes, in rank order, take the recent speakers not fixed elsewhere.
    voice_queue = [s for s in speakers if s in present and s not in shown]
    voice_panes = sorted((m.rank, i) for i, m in enumerate(modes) if isinstance(m, VoicePane))
    for _rank, i in voice_panes:
        if voice_queue:
            pick = voice_queue.pop(0)
            chosen[i] = pick
            shown.add(pick)
    # Whatever is left (auto panes, and voice panes with no speaker yet) fills in join order.
    rest = [p for p in present if p not in shown]
    for i, mode in enumerate(modes):
        if chosen[i] is None and isinstance(mode, AutoPane | VoicePane) and rest:
            chosen[i] = rest.pop(0)
    return chosen
