"""REMB as a video budget (mcu.legs.remb_budget): congestion only when sustained, key-frame dips ignored."""
from __future__ import annotations

import pytest

from mcu.legs.remb_budget import RembBudget
from mcu.tiers import TierMachine


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_no_remb_is_unknown_and_a_calm_picture_is_no_congestion() -> None:
    clock = Clock()
    b = RembBudget(ceiling_kbps=2000, clock=clock)
    assert b.video_kbps() == 0
    b.on_remb(120_000, 60_000)  # low REMB, but we send less: the line is not the limit
    clock.t = 5.0
    assert b.video_kbps() == 2000


def test_a_key_frame_dip_shorter_than_a_second_moves_nobody() -> None:
    clock = Clock()
    b = RembBudget(clock=clock)
    m = TierMachine()
    m.add("a", 0.0, budget_kbps=2000)
    samples = {0: (2_000_000, 1_400_000), 10: (2_000_000, 1_400_000),
               20: (700_000, 1_500_000), 25: (900_000, 1_500_000),  # the dip ...
               29: (2_000_000, 1_400_000), 40: (2_000_000, 1_400_000)}  # ... is over after 0.9 s
    for tick in range(60):  # every 0.1 s
        clock.t = tick / 10
        if tick in samples:
            b.on_remb(*samples[tick])
        assert b.video_kbps() == 2000
        assert m.update("a", b.video_kbps(), clock.t) is None
    assert m.tier_of("a").size == (1280, 720)


def test_sustained_congestion_is_the_budget_within_three_seconds() -> None:
    """A line that drops from 2M to 768k: the receiver is moved down within 3 s."""
    clock = Clock()
    b = RembBudget(clock=clock)
    m = TierMachine()
    m.add("a", 0.0, budget_kbps=2000)
    moved_at = None
    t = 10.0
    while t < 14.0 and moved_at is None:
        clock.t = t
        b.on_remb(700_000, 1_400_000)
        if m.update("a", b.video_kbps(), t) is not None:
            moved_at = t
        t += 0.25
    assert moved_at is not None and moved_at - 10.0 <= 3.0
    assert m.tier_of("a").size == (640, 360)
    assert b.video_kbps() == 700


def test_override_and_bad_values() -> None:
    clock = Clock()
    b = RembBudget(clock=clock)
    b.override_kbps = 300
    assert b.video_kbps() == 300
    b.override_kbps = None
    for bad in (-5, 0, 10**15):
        b.on_remb(bad, 1_000_000)
    clock.t = 3.0
    assert 0 < b.video_kbps() <= 10_000_000
    with pytest.raises(ValueError):
        RembBudget(ceiling_kbps=0)


def test_a_remb_climbing_after_a_move_up_is_no_shortage() -> None:
    """After a move up from 700k to 1M, Chromium's REMB starts below the new rate and climbs about
    8 % a second: compared with what we sent before the move (the last 3 s) it is no shortage, so
    the move up is not undone. A REMB that stays below a steady rate is one."""
    clock = Clock()
    b = RembBudget(clock=clock)
    m = TierMachine()
    m.add("a", 0.0, budget_kbps=1200)  # 960x540
    for tick in range(30):  # 3 s at 700k, REMB a little above it
        clock.t = tick / 10
        if tick % 5 == 0:
            b.on_remb(760_000, 700_000)
    remb = 760_000.0
    for tick in range(30, 80):  # moved up: 1M now, REMB climbing 4 % every 0.5 s
        clock.t = tick / 10
        if tick % 5 == 0:
            b.on_remb(int(remb), 1_000_000)
            remb *= 1.04
        assert b.video_kbps() == 2000, tick
        m.update("a", b.video_kbps(), clock.t)
        assert m.tier_of("a").index <= 2  # never moved down
    for tick in range(80, 140):  # it stops climbing below what we send: a shortage
        clock.t = tick / 10
        if tick % 5 == 0:
            b.on_remb(800_000, 1_000_000)
    assert b.video_kbps() == 800
