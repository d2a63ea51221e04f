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


def test_a_move_up_must_be_in_reach_of_remb() -> None:
    """Measured from a clean start, Chromium's REMB climbs ~8 %/s from 512 kbit/s: a receiver moves
    up as the estimate allows (newest REMB × 1.25), never straight past it; on a 768k line the
    estimate (≤ 1.5x the 500k tier) keeps it off 960x540."""
    clock = Clock()
    b = RembBudget(clock=clock)
    m = TierMachine()
    m.add("a", 0.0)  # 640x360
    assert b.up_kbps() is None
    sizes, remb = [], 512_000.0
    for tick in range(100):  # 20 s, a REMB every 0.2 s, +1.6 % each
        clock.t = tick * 0.2
        b.on_remb(int(remb), m.tier_of("a").kbps * 1000)  # we send the tier's rate
        moved = m.update("a", b.video_kbps(), clock.t, up_kbps=b.up_kbps())
        if moved is not None:
            sizes.append((round(clock.t, 1), moved.size))
            assert moved.kbps * 1000 <= remb * 1.5  # never past what the estimate would take
        remb *= 1.016
    assert [s for _, s in sizes] == [(768, 432), (960, 540), (1280, 720)], sizes
    assert sizes[-1][0] <= 15.0, sizes
    capped = RembBudget(clock=clock)  # a 768k line: the estimate stops at ~1.5x the 500k tier
    m.add("b", clock.t)
    for _ in range(100):
        clock.t += 0.2
        capped.on_remb(760_000, m.tier_of("b").kbps * 1000)
        m.update("b", capped.video_kbps(), clock.t, up_kbps=capped.up_kbps())
    assert m.tier_of("b").size == (768, 432)  # one tier up, not 960x540
    capped.override_kbps = 300
    assert capped.up_kbps() is None


def test_a_remb_at_its_ceiling_does_not_bound_a_move_up() -> None:
    """A calm picture sends less than its tier's rate, and REMB stops at ~1.5x what arrives: that
    says the picture, not the line, is the limit; the move up is not bounded then."""
    clock = Clock()
    b = RembBudget(clock=clock)
    b.on_remb(484_000, 323_000)  # measured: a 10 fps canvas at the 500k tier
    assert b.up_kbps() is None
    b.on_remb(484_000, 450_000)  # below 1.4x what we send: bounded
    assert b.up_kbps() == 605
