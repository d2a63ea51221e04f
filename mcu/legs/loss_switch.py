"""Turn a loss protection on and off from measured loss, with hysteresis (pure: time is an argument).

One :class:`LossSwitch` per receiver and protection: FEC towards a WebRTC receiver (RED + ULPFEC,
:mod:`sip_gateway.rtp.ulpfec`), periodic intra refresh instead of IDRs for an RTP site's encoder
(:attr:`mcu.encoder.EncoderKey.intra_refresh`). Its input is the fraction lost of each receiver
report about what we send (RTCP RR, 0..1) and the time it arrived. The rules:

* **On** when the reported loss has stayed at or above ``on_loss`` (2 %) for ``on_after``
  (2 s): the first report at or above it starts the count, a report below it resets it, and the
  switch turns on at the first report that is ``on_after`` past the start. A single report at or
  above ``burst_loss`` (10 %) turns it on at once (a line that bad needs no second opinion).
* **Off** when every report for ``off_after`` (10 s) has been at or below ``off_loss`` (0.5 %):
  a report above it restarts the count. So a loss between ``off_loss`` and ``on_loss`` keeps
  whichever state the switch is in.
* **No flapping**: after a change the switch holds its state for at least ``min_hold`` (5 s),
  whatever the reports say.
* Reports with a fraction outside 0..1 (a broken peer) are ignored; so are reports older than the
  last one (time must not go backwards).

:meth:`LossSwitch.report` returns the new state when it changed, else None.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossRules:
    on_loss: float = 0.02
    on_after: float = 2.0
    burst_loss: float = 0.10
    off_loss: float = 0.005
    off_after: float = 10.0
    min_hold: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.off_loss < self.on_loss <= self.burst_loss <= 1:
            raise ValueError("loss rules: 0 <= off_loss < on_loss <= burst_loss <= 1")
        if min(self.on_after, self.off_after, self.min_hold) < 0:
            raise ValueError("loss rules: durations must not be negative")


class LossSwitch:
    """On/off from receiver reports (see the module docstring)."""

    def __init__(self, rules: LossRules | None = None, *, on: bool = False) -> None:
        self.rules = rules or LossRules()
        self.on = on
        self.changes = 0
        self._since: float | None = None  # start of the current run of reports for a change
        self._changed_at: float | None = None
        self._last: float | None = None

    def report(self, fraction_lost: float, now: float) -> bool | None:
        """One receiver report's loss (0..1) at ``now``; the new state if it changed."""
        if not 0 <= fraction_lost <= 1 or (self._last is not None and now < self._last):
            return None
        self._last = now
        r = self.rules
        wants_change = fraction_lost <= r.off_loss if self.on else fraction_lost >= r.on_loss
        if not wants_change:
            self._since = None
            return None
        if self._since is None:
            self._since = now
        held = self._changed_at is None or now - self._changed_at >= r.min_hold
        due = now - self._since >= (r.off_after if self.on else r.on_after)
        if not self.on and fraction_lost >= r.burst_loss:
            due = True
        if not (held and due):
            return None
        self.on = not self.on
        self.changes += 1
        self._changed_at = now
        self._since = None
        return self.on


__all__ = ["LossRules", "LossSwitch"]
