"""The deadline pacer: no drift from work between ticks, resynchronises instead of bursting."""
from __future__ import annotations

from mcu.pacer import Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


async def test_deadlines_do_not_drift_with_work_between_ticks() -> None:
    t = FakeTime()
    pacer = Pacer(0.02, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        assert await pacer.wait()
        t.now += 0.005  # work done after each tick
    assert t.slept == [0.02, 0.015, 0.015]
    assert abs(pacer.deadline - 100.06) < 1e-9


async def test_slightly_late_catches_up_far_behind_resynchronises() -> None:
    t = FakeTime()
    pacer = Pacer(0.02, clock=t.clock, sleep=t.sleep)
    t.now += 0.05  # a short stall: the next ticks run at once to catch up
    assert await pacer.wait() and await pacer.wait()
    assert t.slept == []
    t.now += 1.0  # suspended: no burst of 50 ticks
    assert not await pacer.wait()
    assert pacer.late_ticks == 1 and pacer.deadline == t.now
    assert await pacer.wait() and t.slept == [0.02]
