"""Named deadlines for sans-I/O state machines (the caller owns the clock)."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Timers"]


@dataclass
class Timers:
    """A set of named deadlines in the caller's time base (seconds, e.g. ``loop.time()``)."""

    _deadlines: dict[str, float] = field(default_factory=dict)

    def start(self, name: str, now: float, seconds: float) -> None:
        """(Re)start timer ``name`` to expire ``seconds`` after ``now``."""
        self._deadlines[name] = now + seconds

    def stop(self, name: str) -> None:
        self._deadlines.pop(name, None)

    def running(self, name: str) -> bool:
        return name in self._deadlines

    def clear(self) -> None:
        self._deadlines.clear()

    def next_deadline(self) -> float | None:
        """Earliest deadline, or None when no timer runs."""
        return min(self._deadlines.values(), default=None)

    def pop_expired(self, now: float) -> list[str]:
        """Names of the timers due at ``now`` (earliest first); they are stopped."""
        due = sorted((t, n) for n, t in self._deadlines.items() if t <= now)
        for _, name in due:
            del self._deadlines[name]
        return [name for _, name in due]
