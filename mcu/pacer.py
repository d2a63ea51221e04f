"""A drift-free deadline pacer: the one way media code waits for its next 20 ms (or 1/fps) tick.

Each tick's deadline is the previous deadline plus the period, not "now plus the period", so
time spent working between ticks does not add up to drift. When the pacer has fallen far
behind (the process was suspended, the machine is saturated), it resynchronises on the clock
instead of bursting the missed ticks out at once.

The clock and the sleep are injectable so tests can drive a pacer without waiting::

    pacer = Pacer(0.02)
    while running:
        await pacer.wait()
        send_one_frame()
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

AUDIO_PERIOD = 0.02  # 20 ms: one audio frame of the conference
RESYNC_AFTER_PERIODS = 5  # further behind than this: resynchronise, don't burst


class Pacer:
    """Waits until the next deadline of a fixed period (the first tick is one period after start)."""

    def __init__(self, period: float, *, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 resync_after: float = RESYNC_AFTER_PERIODS) -> None:
        if period <= 0:
            raise ValueError("period must be positive")
        self.period = period
        self._clock = clock or asyncio.get_running_loop().time
        self._sleep = sleep
        self._resync_after = resync_after * period
        self.deadline = self._clock()
        self.late_ticks = 0  # resynchronisations (each one lost time, never frames bursted)

    async def wait(self) -> bool:
        """Sleep until the next deadline; False when it was missed so far that the pacer resynchronised."""
        self.deadline += self.period
        delay = self.deadline - self._clock()
        if delay > 0:
            await self._sleep(delay)
            return True
        if delay < -self._resync_after:
            self.late_ticks += 1
            self.deadline = self._clock()
            return False
        return True


__all__ = ["AUDIO_PERIOD", "Pacer"]
