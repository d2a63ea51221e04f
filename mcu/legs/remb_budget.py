"""A WebRTC receiver's video budget from its REMB (pure: the clock is injected).

Fills :class:`mcu.tiers.VideoBudget` until the per-site rate budget
(:mod:`mcu.legs.rate_budget`) takes REMB in with the other signals. The rules:

* **REMB is a ceiling only under congestion.** libwebrtc's receive-side estimate follows what it
  receives (it grows to at most about 1.5x the incoming rate), so a low REMB on a calm picture is
  no shortage. A sample is *congested* when REMB is below ``congested_ratio`` (0.9) of what we
  sent over the last seconds (and we sent more than ``min_sent_bps``, 50 kbit/s). What we sent is
  the smallest send rate of the last ``ramp`` seconds (3 s): libwebrtc's estimate climbs about
  8 % a second from what arrives (up to 1.5x it), so right after we move a receiver up a tier
  its REMB lags below the new rate while it climbs; compared with the rate before the move it is
  no shortage, and the move up is not undone for it. A REMB that stays below a steady rate is.
* **Dips shorter than ``hold`` (1 s) are invisible.** A key frame makes REMB dip for a moment:
  the budget is congested only when every sample of the last ``hold`` seconds (and the one in
  force when that window began) was congested, and then it is the largest REMB among them.
* **Otherwise the line is not the limit** as far as REMB can tell: the budget is ``ceiling_kbps``
  (the line rate we know, or the best tier's rate plus headroom), so the tier machine probes up one
  tier at a time, and a probe that congests comes back down (and waits longer next time).
* **No REMB yet:** 0 (unknown: the tier machine's start tier).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RembBudget:
    """REMB samples in, ``video_kbps()`` out (see the module docstring)."""

    def __init__(self, *, ceiling_kbps: int = 2000, hold: float = 1.0, congested_ratio: float = 0.9,
                 min_sent_bps: float = 50_000, ramp: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling_kbps <= 0 or hold < 0 or not 0 < congested_ratio <= 1:
            raise ValueError("ceiling_kbps > 0, hold >= 0 and 0 < congested_ratio <= 1")
        self.ceiling_kbps = ceiling_kbps
        self.hold = hold
        self.congested_ratio = congested_ratio
        self.min_sent_bps = min_sent_bps
        self.ramp = ramp
        self._sent: deque[tuple[float, float]] = deque()  # (time, what we sent then, bit/s)
        self._clock = clock
        self._samples: deque[tuple[float, int, bool]] = deque()  # (time, REMB bit/s, congested)
        self.override_kbps: int | None = None  # tests and operators: a fixed budget

    def on_remb(self, remb_bps: int, sent_bps: float) -> None:
        """A REMB from the peer and what we sent it lately (bit/s). Nonsense values are clamped."""
        now = self._clock()
        remb = max(0, min(int(remb_bps), 10_000_000_000))
        self._sent.append((now, float(sent_bps)))
        while self._sent and self._sent[0][0] < now - self.ramp:
            self._sent.popleft()
        sent = min(bps for _, bps in self._sent)  # before a move up, if there was one lately
        congested = sent > self.min_sent_bps and remb < self.congested_ratio * sent
        self._samples.append((now, remb, congested))
        # Keep the samples of the window and the one in force when it began.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.hold:
            self._samples.popleft()

    def video_kbps(self) -> int:
        if self.override_kbps is not None:
            return self.override_kbps
        if not self._samples:
            return 0
        now = self._clock()
        window = [s for i, s in enumerate(self._samples)
                  if s[0] > now - self.hold or i + 1 == len(self._samples)
                  or self._samples[i + 1][0] > now - self.hold]
        if window[0][0] > now - self.hold or not all(congested for _, _, congested in window):
            return self.ceiling_kbps
        return max(1, max(remb for _, remb, _ in window) // 1000)


__all__ = ["RembBudget"]
