"""Injected clocks: every time-dependent decision in the MCU reads one of these.

A clock is anything with ``monotonic() -> float`` (seconds, never goes backwards).
Production code uses :class:`MonotonicClock`; tests use :class:`FakeClock` and move
time explicitly, so polling, hold times and rate limits are deterministic.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds. The only thing the room and its media parts know about time."""

    def monotonic(self) -> float: ...


class MonotonicClock:
    """The real clock (``time.monotonic``)."""

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to (thread-safe)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (must be >= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        with self._lock:
            self._now += seconds
            return self._now
