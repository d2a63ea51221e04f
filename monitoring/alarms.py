"""The alarm machine of one gauge: readings and clock ticks in, alarm and fault transitions out. Pure.

Time is an argument (seconds, any epoch); nothing here reads a clock, touches the network or
stores anything. `service.py` feeds it and acts on what it returns.

Rules:
- **Threshold, rising** (``direction = "rising"``): raised when the measured value reaches the
  threshold (``value >= threshold``), cleared only when it falls below ``threshold - hysteresis``.
  Between the two the state holds, so a level wobbling around the line does not flap.
- **Threshold, falling** (a low level, e.g. drought): raised at ``value <= threshold``, cleared
  above ``threshold + hysteresis``.
- **Accumulation** (``window_s > 0``): the measured value is the sum of the readings of the last
  ``window_s`` seconds (rain in 1 h / 3 h / 24 h, `window.WindowSum`); the same raise/clear rules
  apply to the sum. `tick` re-evaluates sums, so rain that stops clears its alarm as it leaves the window.
- **Order**: a reading older than or as old as the newest one evaluated is counted in accumulations
  (late delivery) but does not move a level threshold or the stuck detector (`Outcome.late`).
- **Stale** fault: no reading for ``period_s × stale_periods`` seconds (counted from the machine's
  start when none came yet), found by `tick(now)`; raised once, cleared by the next reading.
- **Stuck** fault (``stuck_after_s > 0``): the same value (within 1e-9) for ``stuck_after_s``
  seconds or more, found on a reading or a tick; cleared when the value changes.
- Each transition is returned once, as an `Alarm` (``raised=True``) or its clearing (``raised=False``);
  `active` lists what is raised now. A machine can start with alarms already active (restored from
  the store after a restart) so they are not raised twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from monitoring.gauges import Gauge, Threshold
from monitoring.window import WindowSum

STALE = "stale"
STUCK = "stuck"
_SAME = 1e-9


@dataclass(frozen=True)
class Alarm:
    """One transition: a threshold alarm (``kind="threshold"``, key = the threshold's key) or a
    sensor fault (``kind="fault"``, key = "stale" | "stuck") raised or cleared at `at`."""

    gauge_id: str
    kind: Literal["threshold", "fault"]
    key: str
    raised: bool
    at: float
    value: float | None
    severity: str = "warning"


@dataclass
class Outcome:
    """What one reading did: its transitions, and whether it came late (out of order)."""

    alarms: list[Alarm] = field(default_factory=list)
    late: bool = False


class GaugeMachine:
    """The thresholds and faults of one gauge."""

    def __init__(self, gauge: Gauge, started_at: float, active: set[tuple[str, str]] | None = None) -> None:
        self.gauge = gauge
        self.started_at = started_at
        self.active: set[tuple[str, str]] = set(active or ())
        self.last_at: float | None = None
        self.last_value: float | None = None
        self._same_since: float | None = None
        self._windows = {t.key: WindowSum(t.window_s) for t in gauge.thresholds if t.window_s > 0}

    # -- inputs -----------------------------------------------------------------------
    def reading(self, value: float, at: float) -> Outcome:
        """Evaluate one accepted reading (already range-checked by the parser)."""
        out = Outcome()
        late = self.last_at is not None and at <= self.last_at
        for window in self._windows.values():
            window.add(at, value)
        if late:
            out.late = True
            newest = self.last_at if self.last_at is not None else at
            out.alarms += self._evaluate_windows(newest)
            return out
        self._clear(out, "fault", STALE, at, value)
        if self.last_value is not None and abs(value - self.last_value) <= _SAME:
            pass
        else:
            self._same_since = at
            self._clear(out, "fault", STUCK, at, value)
        self.last_at, self.last_value = at, value
        for t in self.gauge.thresholds:
            if t.window_s == 0:
                self._judge(out, t, value, at)
        out.alarms += self._evaluate_windows(at)
        self._check_stuck(out, at)
        return out

    def tick(self, now: float) -> list[Alarm]:
        """Time passes: stale and stuck faults, sums leaving their windows."""
        out = Outcome()
        since = self.last_at if self.last_at is not None else self.started_at
        if now - since >= self.gauge.stale_after_s:
            self._raise(out, "fault", STALE, now, self.last_value, "warning")
        self._check_stuck(out, now)
        out.alarms += self._evaluate_windows(now)
        return out.alarms

    # -- views --------------------------------------------------------------------------
    def accumulated(self, key: str, now: float) -> float | None:
        window = self._windows.get(key)
        return None if window is None else window.total(now)

    def state(self) -> str:
        """"normal", "warning", "critical" or "fault" (the worst raised), for the map marker."""
        severities = {self._severity(kind, key) for kind, key in self.active}
        if "critical" in severities:
            return "critical"
        if any(kind == "threshold" for kind, _ in self.active):
            return "warning"
        return "fault" if self.active else "normal"

    # -- rules --------------------------------------------------------------------------
    def _severity(self, kind: str, key: str) -> str:
        t = self.gauge.threshold(key) if kind == "threshold" else None
        return t.severity if t is not None else "warning"

    def _evaluate_windows(self, now: float) -> list[Alarm]:
        out = Outcome()
        for t in self.gauge.thresholds:
            if t.window_s > 0:
                self._judge(out, t, self._windows[t.key].total(now), now)
        return out.alarms

    def _judge(self, out: Outcome, t: Threshold, measured: float, at: float) -> None:
        on = ("threshold", t.key) in self.active
        if t.direction == "rising":
            if not on and measured >= t.value:
                self._raise(out, "threshold", t.key, at, measured, t.severity)
            elif on and measured < t.value - t.hysteresis:
                self._clear(out, "threshold", t.key, at, measured)
        else:
            if not on and measured <= t.value:
                self._raise(out, "threshold", t.key, at, measured, t.severity)
            elif on and measured > t.value + t.hysteresis:
                self._clear(out, "threshold", t.key, at, measured)

    def _check_stuck(self, out: Outcome, now: float) -> None:
        limit = self.gauge.stuck_after_s
        if limit > 0 and self._same_since is not None and now - self._same_since >= limit:
            self._raise(out, "fault", STUCK, now, self.last_value, "warning")

    def _raise(self, out: Outcome, kind: Literal["threshold", "fault"], key: str, at: float,
               value: float | None, severity: str) -> None:
        if (kind, key) not in self.active:
            self.active.add((kind, key))
            out.alarms.append(Alarm(self.gauge.id, kind, key, True, at, value, severity))

    def _clear(self, out: Outcome, kind: Literal["threshold", "fault"], key: str, at: float, value: float | None) -> None:
        if (kind, key) in self.active:
            self.active.discard((kind, key))
            out.alarms.append(Alarm(self.gauge.id, kind, key, False, at, value, self._severity(kind, key)))
