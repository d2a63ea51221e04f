"""The tier machine's rules (mcu.tiers): pure, time passed in."""
from __future__ import annotations

import pytest

from mcu.tiers import (
    TIERS,
    KeyframeDecision,
    ReceiverLimits,
    TierMachine,
    TierRules,
    h264_limits,
    tier_for_size,
)


def _size(machine: TierMachine, receiver: str) -> tuple[int, int]:
    return machine.tier_of(receiver).size


def test_the_ladder_is_the_issues_seven_tiers() -> None:
    assert [(t.width, t.height, t.kbps) for t in TIERS] == [
        (1280, 720, 1500), (960, 540, 1000), (768, 432, 700), (640, 360, 500), (480, 270, 350),
        (352, 288, 250), (320, 180, 150)]
    assert tier_for_size(640, 360).index == 4
    with pytest.raises(ValueError):
        tier_for_size(800, 600)


def test_placement_fits_the_budget_with_headroom() -> None:
    m = TierMachine()
    assert m.fit(2000).size == (1280, 720)  # 2M line
    assert m.fit(1600).size == (960, 540)  # 1.5M does not fit 1.6M with 10 % headroom
    assert m.fit(700).size == (640, 360)  # 768k line minus audio: not the 700k tier
    assert m.fit(100).size == (320, 180)  # nothing fits: the lowest tier
    assert m.fit(None).size == (640, 360)  # unknown line: the tier that fits 500k, never 720p
    assert m.fit(0).size == (640, 360)
    assert m.fit(-5).size == (640, 360)
    assert m.add("a", 0.0).size == (640, 360)
    assert m.add("b", 0.0, budget_kbps=5000).size == (1280, 720)  # a known budget places at once


def test_h264_level_and_profile_limit_the_tier() -> None:
    m = TierMachine()
    assert m.fit(5000, h264_limits("42e01f")).size == (1280, 720)  # level 3.1
    assert m.fit(5000, h264_limits("42e01e")).size == (768, 432)  # level 3.0: 960x540 is too many MBs
    assert m.fit(5000, h264_limits("42e016")).size == (480, 270)  # 2.2: 640x360@25 exceeds MaxMBPS
    assert m.fit(5000, h264_limits("42e00d")).size == (352, 288)  # 1.3
    assert m.fit(5000, h264_limits("42e00c")).size == (320, 180)  # 1.2
    assert m.fit(5000, h264_limits(None)).size == (352, 288)  # unknown: level 2.0
    assert m.fit(5000, h264_limits("zzzzzz")).size == (352, 288)
    assert m.fit(5000, h264_limits("42")).size == (352, 288)
    assert m.fit(5000, h264_limits("640034")).size == (1280, 720)  # High 5.2 decodes our baseline
    assert m.fit(5000, h264_limits("ff001f")).size == (320, 180)  # an unknown profile: smallest
    assert m.fit(5000, h264_limits("42e0ff")).size == (1280, 720)  # beyond the table: no level limit
    assert m.fit(5000, h264_limits("42e01f", max_size=(640, 360))).size == (640, 360)
    assert m.fit(5000, h264_limits("42e01f", fps=60)).size == (768, 432)  # 3.1 at 60 fps: MaxMBPS
    # A start on an unknown line respects the limits too.
    assert m.add("x", 0.0, limits=h264_limits("42e00d")).size == (352, 288)


def test_down_fast_on_sustained_shortfall_but_not_on_a_short_dip() -> None:
    m = TierMachine()
    m.add("a", 0.0, budget_kbps=2000)
    assert m.update("a", 300, 10.0) is None  # a key frame's REMB dip ...
    assert m.update("a", 300, 10.6) is None
    assert m.update("a", 2000, 10.9) is None  # ... over within 1 s: nobody moves
    assert _size(m, "a") == (1280, 720)
    assert m.update("a", 500, 20.0) is None
    moved = m.update("a", 500, 21.0)  # 1 s of shortfall: straight down to what fits
    assert moved is not None and moved.size == (480, 270)
    assert m.moves == 1


def test_up_one_tier_after_a_short_stable_period() -> None:
    """A clean line takes a receiver from 640x360 to 720p in three 2 s steps (it took 24 s)."""
    m = TierMachine()
    m.add("a", 0.0)  # 640x360
    assert m.update("a", 5000, 1.0) is None
    assert m.update("a", 5000, 2.9) is None
    up = m.update("a", 5000, 3.0)
    assert up is not None and up.size == (768, 432)  # one tier, not straight to 720p
    assert m.update("a", 5000, 3.5) is None  # the stable period starts again
    assert m.update("a", 5000, 5.4) is None
    assert m.update("a", 5000, 5.5) is not None and _size(m, "a") == (960, 540)
    assert m.update("a", 5000, 6.0) is None
    assert m.update("a", 5000, 8.0) is not None and _size(m, "a") == (1280, 720)
    # A budget that only equals the current tier keeps it.
    m.add("b", 0.0)
    for t in range(0, 60):
        assert m.update("b", 560, float(t)) is None


def test_failed_probe_doubles_the_wait() -> None:
    m = TierMachine()
    m.add("a", 0.0)  # 640x360
    m.update("a", 900, 0.0)
    assert m.update("a", 900, 2.0) is not None  # probe up to 768x432
    m.update("a", 600, 5.0)
    assert m.update("a", 600, 6.0) is not None and _size(m, "a") == (640, 360)  # failed within 10 s
    m.update("a", 900, 7.0)
    assert m.update("a", 900, 10.9) is None  # 4 s now, not 2
    assert m.update("a", 900, 11.0) is not None


def test_a_move_up_is_not_undone_at_once() -> None:
    """Within ``settle`` of a move up, a dip of a budget that is not firm must last ``settle`` (the
    new tier's key frame makes REMB dip); later, ``down_after`` again."""
    m = TierMachine()
    m.add("a", 0.0)
    m.update("a", 900, 0.0)
    assert m.update("a", 900, 2.0) is not None  # up to 768x432
    assert m.update("a", 600, 2.5) is None  # a dip right after the move ...
    assert m.update("a", 600, 3.6) is None  # ... 1.1 s: down_after alone would have moved it
    assert m.update("a", 600, 4.5) is not None and _size(m, "a") == (640, 360)  # 2 s of it: a real shortfall
    m.update("a", 900, 5.0)
    assert m.update("a", 900, 9.0) is not None  # up again (4 s: the probe failed)
    m.update("a", 900, 12.0)
    assert m.update("a", 600, 12.0) is None  # past settle: down_after (1 s) as before
    assert m.update("a", 600, 13.0) is not None


def test_a_firm_budget_moves_down_at_once() -> None:
    """A rate budget's cut (already judged over reports and key-frame requests) is no dip."""
    m = TierMachine()
    m.add("a", 0.0, budget_kbps=2000)
    moved = m.update("a", 600, 10.0, firm=True)
    assert moved is not None and moved.size == (640, 360)
    m.update("a", 900, 10.0)
    assert m.update("a", 900, 12.0) is not None  # up again
    assert m.update("a", 600, 12.1, firm=True) is not None  # firm: no settle either
    assert m.update("a", 2000, 13.0, firm=True) is None  # up is never at once


def test_keyframe_requests_are_limited_and_a_greedy_receiver_moves_down() -> None:
    m = TierMachine(TierRules(keyframes_per_window=3, keyframe_window=10.0))
    m.add("a", 0.0, budget_kbps=2000, group="broadcast")
    m.add("b", 0.0, budget_kbps=2000, group="broadcast")
    assert m.keyframe_request("a", 0.2)[0] is KeyframeDecision.COALESCE  # the start IDR covers it
    assert m.keyframe_request("a", 1.0)[0] is KeyframeDecision.SERVE
    assert m.keyframe_request("b", 1.2)[0] is KeyframeDecision.COALESCE  # same encoder, 0.2 s later
    assert m.keyframe_request("a", 1.5)[0] is KeyframeDecision.COALESCE  # same receiver within 1 s
    assert m.keyframe_request("a", 2.5)[0] is KeyframeDecision.SERVE
    assert m.keyframe_request("a", 4.0)[0] is KeyframeDecision.SERVE
    decision, tier = m.keyframe_request("a", 5.5)  # a fourth within 10 s: a smaller tier instead
    assert decision is KeyframeDecision.MOVE_DOWN and tier.size == (960, 540)
    assert _size(m, "b") == (1280, 720)  # the others stay
    # Its next probe up waits twice as long.
    m.update("a", 2000, 6.0)
    assert m.update("a", 2000, 9.9) is None
    assert m.update("a", 2000, 10.0) is not None
    # A receiver on another group has its own encoder.
    m.add("c", 30.0, budget_kbps=2000, group="select:x")
    assert m.keyframe_request("b", 30.0)[0] is KeyframeDecision.SERVE
    assert m.keyframe_request("c", 31.0)[0] is KeyframeDecision.SERVE


def test_only_needed_tiers_are_wanted() -> None:
    m = TierMachine()
    assert m.wanted() == frozenset()
    m.add("a", 0.0, budget_kbps=2000, group="v")
    m.add("b", 0.0, group="v")
    assert {(g, t.size) for g, t in m.wanted()} == {("v", (1280, 720)), ("v", (640, 360))}
    m.update("a", 400, 0.0)
    m.update("a", 400, 1.0)
    assert {(g, t.size) for g, t in m.wanted()} == {("v", (480, 270)), ("v", (640, 360))}
    m.set_group("b", "w")
    assert {(g, t.size) for g, t in m.wanted()} == {("v", (480, 270)), ("w", (640, 360))}
    m.remove("a")
    m.remove("a")
    assert {(g, t.size) for g, t in m.wanted()} == {("w", (640, 360))}
    assert "a" not in m and len(m) == 1


def test_bad_rules_and_limits_are_refused_or_safe() -> None:
    with pytest.raises(ValueError):
        TierRules(headroom=0)
    with pytest.raises(ValueError):
        TierRules(down_after=-1)
    with pytest.raises(ValueError):
        TierRules(up_after=100, max_up_after=10)
    m = TierMachine()
    nothing = ReceiverLimits(max_frame_mbs=1)
    assert m.fit(10_000, nothing).size == (320, 180)
    assert m.fit(10**12).size == (1280, 720)
    m.add("a", 0.0)
    assert m.update("a", None, 1.0) is None and m.update("a", -1, 2.0) is None


def test_a_caller_chosen_start_tier() -> None:
    m = TierMachine()
    assert m.add("a", 0.0, tier=TIERS[0]).size == (1280, 720)
    with pytest.raises(ValueError):
        m.add("b", 0.0, tier=TIERS[0].__class__(9, 10, 10, 1))
