"""Accumulation over a sliding time window (rain in the last 1 h / 3 h / 24 h). Pure.

Rules:
- a rainfall gauge reports the amount fallen since its previous report (mm per period);
- `add(at, amount)` adds a sample; `total(now)` is the sum of the samples with ``at > now - window``;
- samples leave the window by time alone, so a silent gauge's total decays to 0 as time passes;
- a sample older than the newest one already held is still counted if it is inside the window
  (late delivery), never twice: the caller passes each reading once.
"""
from __future__ import annotations

from collections import deque


class WindowSum:
    """The sum of the samples of the last `window_s` seconds."""

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.window_s = float(window_s)
        self._samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, at: float, amount: float) -> None:
        if self._samples and at < self._samples[-1][0]:  # late: keep the deque ordered by time
            items = sorted([*self._samples, (at, amount)])
            self._samples = deque(items)
        else:
            self._samples.append((at, amount))
        self._sum += amount

    def total(self, now: float) -> float:
        self._expire(now)
        # recompute on small sets to avoid drift from float subtraction
        if len(self._samples) <= 64:
            self._sum = sum(a for _, a in self._samples)
            return self._sum
        return self._sum

    def _expire(self, now: float) -> None:
        edge = now - self.window_s
        while self._samples and self._samples[0][0] <= edge:
            _, amount = self._samples.popleft()
            self._sum -= amount
        if not self._samples:
            self._sum = 0.0
