"""Match AML reports to live calls by caller number and time (sans-I/O: the caller passes ``now``).

An AML report usually arrives a few seconds after the call is offered, sometimes before. A report
for a number with no live call is held until a call from that number arrives, or expires.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .aml import AmlMessage, normalize_number


@dataclass
class PendingAml:
    """An AML report waiting for its call."""

    id: int
    message: AmlMessage
    received_at: float


@dataclass
class AmlMatcher:
    """Pairs AML reports with calls. ``window_s``: how long a report waits for its call."""

    window_s: float = 300.0
    pending: list[PendingAml] = field(default_factory=list)
    live: dict[str, tuple[str, float]] = field(default_factory=dict)  # number → (call id, offered at)
    _next_id: int = 1

    def call_started(self, call_id: str, number: str, now: float) -> list[PendingAml]:
        """A call was offered; returns the waiting reports for its number (now matched)."""
        key = normalize_number(number)
        self.live[key] = (call_id, now)
        self.expire(now)
        matched = [p for p in self.pending if normalize_number(p.message.number) == key]
        self.pending = [p for p in self.pending if p not in matched]
        return matched

    def call_ended(self, call_id: str) -> None:
        """The call is over: later reports for its number are no longer matched to it."""
        self.live = {k: v for k, v in self.live.items() if v[0] != call_id}

    def report(self, message: AmlMessage, now: float) -> tuple[str | None, PendingAml]:
        """A report arrived: (the live call id it belongs to, or None if it now waits; the report)."""
        pending = PendingAml(self._next_id, message, now)
        self._next_id += 1
        live = self.live.get(normalize_number(message.number))
        if live is not None:
            return live[0], pending
        self.expire(now)
        self.pending.append(pending)
        return None, pending

    def expire(self, now: float) -> list[PendingAml]:
        """Drop and return reports older than the window."""
        old = [p for p in self.pending if now - p.received_at > self.window_s]
        self.pending = [p for p in self.pending if p not in old]
        return old
