"""A WebRTC receiver's video budget from its REMB (pure: the clock is injected).

Fills :class:`mcu.tiers.VideoBudget` until the per-site rate budget
(:mod:`mcu.legs.rate_budget`) takes REMB in with the other signals. The rules:

* **REMB is a ceiling only under congestion.** libwebrtc's receive-side estimate follows what it
  receives (it grows to at most about 1.5x the incoming rate), so a low REMB on a calm picture is
  no shortage. A sample is *congested* when REMB is below ``congested_ratio`` (0.9) of what we
  sent over the last seconds (and we sent more than ``min_sent_bps``, 50 kbit/s).
* **Dips shorter than ``hold`` (1 s) are invisible.** A key frame makes REMB dip for a moment:
  the budget is congested only when every sample of the last ``hold`` seconds (and the one in
  force when that window began) was congested, and then it is the largest REMB among them.
* **Otherwise the line is not the limit** as far as REMB can tell: the budget is ``ceiling_kbps``
  (the line rate we know, or the best tier's rate plus headroom), so the tier machine probes up one
  tier at a time, and a probe that congests comes back down (and waits longer next time).
* **A move up must be in reach of REMB** (:meth:`RembBudget.up_kbps`, the tier machine's
  :class:`~mcu.tiers.UpBudget`): the newest REMB times ``up_ratio`` (1.25). libwebrtc's estimate
  climbs about 8 % a second from what arrives (measured from a clean start: 512 -> 1305 kbit/s
  in 12 s), up to 1.5x what arrives, and falls when the line is overused: so on a clean line the
  receiver climbs as fast as the estimate does, and on a 768 kbit/s line the estimate (at most
  ~1.5x the 500k tier) keeps it from probing straight to 1 Mbit/s (it did with 2 s steps and
  no such bound: the line overflowed before Chromium's estimate said so). A REMB at least
  ``free_ratio`` (1.4) times what we send is at its ceiling (1.5x what arrives: a calm picture
  does not use its tier's rate, so its REMB never reaches the next tier): no bound then.
* **No REMB yet:** 0 (unknown: the tier machine's start tier).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RembBudget:
    """REMB samples in, ``video_kbps()`` out (see the module docstring)."""

    def __init__(self, *, ceiling_kbps: int = 2000, hold: float = 1.0, congested_ratio: float = 0.9,
                 min_sent_bps: float = 50_000, up_ratio: float = 1.25, free_ratio: float = 1.4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling_kbps <= 0 or hold < 0 or not 0 < congested_ratio <= 1:
            raise ValueError("ceiling_kbps > 0, hold >= 0 and 0 < congested_ratio <= 1")
        self.ceiling_kbps = ceiling_kbps
        self.hold = hold
        self.congested_ratio = congested_ratio
        self.min_sent_bps = min_sent_bps
        self.up_ratio = up_ratio
        self.free_ratio = free_ratio
        self._sent_bps = 0.0
        self._clock = clock
        self._samples: deque[tuple[float, int, bool]] = deque()  # (time, REMB bit/s, congested)
        self.override_kbps: int | None = None  # tests and operators: a fixed budget

    def on_remb(self, remb_bps: int, sent_bps: float) -> None:
        """A REMB from the peer and what we sent it lately (bit/s). Nonsense values are clamped."""
        now = self._clock()
        remb = max(0, min(int(remb_bps), 10_000_000_000))
        self._sent_bps = float(sent_bps)
        congested = sent_bps > self.min_sent_bps and remb < self.congested_ratio * sent_bps
        self._samples.append((now, remb, congested))
        # Keep the samples of the window and the one in force when it began.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.hold:
            self._samples.popleft()

    def up_kbps(self) -> int | None:
        """How far a move up may reach now: the newest REMB times ``up_ratio`` (None: no REMB yet,
        or an override: no bound)."""
        if self.override_kbps is not None or not self._samples:
            return None
        remb = self._samples[-1][1]
        if remb >= self.free_ratio * self._sent_bps:  # at its ceiling: the picture, not the line, is the limit
            return None
        return max(1, int(remb * self.up_ratio) // 1000)

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
