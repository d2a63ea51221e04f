"""A receiver's seat on the tier machine (mcu.legs.tier_seat): budget ticks, key-frame routing, outside moves."""
from __future__ import annotations

from mcu.legs.tier_seat import FixedBudget, TierSeat
from mcu.tiers import TIERS, KeyframeDecision, TierMachine, TierRules, tier_for_size


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _seat(machine: TierMachine, clock: Clock, budget: FixedBudget) -> tuple[TierSeat, list[tuple[int, int]], list[int]]:
    moves: list[tuple[int, int]] = []
    served: list[int] = []
    seat = TierSeat(machine, "r", budget, move=lambda t: moves.append(t.size), serve_keyframe=lambda: served.append(1),
                    group=lambda: "broadcast", clock=clock)
    return seat, moves, served


def test_fitting_budget_keeps_the_tier() -> None:
    m = TierMachine()
    for tier in TIERS:
        assert m.fit(FixedBudget.fitting(tier, m).video_kbps()) == tier


def test_ticks_move_and_keyframes_route() -> None:
    clock = Clock()
    m = TierMachine(TierRules(keyframes_per_window=2))
    budget = FixedBudget(2000)
    seat, moves, served = _seat(m, clock, budget)
    assert seat.start().size == (640, 360)
    clock.t = 1.0
    assert seat.tick() is None
    clock.t = 9.5
    assert seat.tick() is not None and moves == [(768, 432)]
    clock.t = 11.0
    assert seat.keyframe_request() is KeyframeDecision.SERVE and served == [1]
    assert seat.keyframe_request() is KeyframeDecision.COALESCE
    clock.t = 12.5
    assert seat.keyframe_request(switching=True) is KeyframeDecision.COALESCE  # a move's IDR is coming
    assert seat.keyframe_request() is KeyframeDecision.SERVE
    clock.t = 14.0
    assert seat.keyframe_request() is KeyframeDecision.MOVE_DOWN and moves[-1] == (640, 360)
    assert seat.moves == 2 and seat.coalesced == 2
    seat.close()
    seat.close()
    assert "r" not in m and seat.tick() is None


def test_an_outside_move_is_recorded() -> None:
    clock = Clock()
    m = TierMachine()
    seat, moves, _ = _seat(m, clock, FixedBudget.fitting(TIERS[0], m))
    seat.start(TIERS[0])
    clock.t = 5.0
    seat.placed(tier_for_size(352, 288))  # H.245 flow control
    assert m.tier_of("r").size == (352, 288) and moves == []
    seat.budget = FixedBudget.fitting(tier_for_size(352, 288), m)
    clock.t = 100.0
    assert seat.tick() is None and m.tier_of("r").size == (352, 288)


class CutBudget:
    """A FirmBudget: a rate budget whose cuts are already judged."""

    def __init__(self, kbps: int, firm: bool) -> None:
        self.kbps, self.firm = kbps, firm

    def video_kbps(self) -> int:
        return self.kbps

    def budget_is_firm(self) -> bool:
        return self.firm


def test_a_firm_budget_moves_the_seat_down_on_the_tick_it_is_read() -> None:
    clock = Clock()
    m = TierMachine()
    budget = CutBudget(2000, firm=True)
    moves: list[tuple[int, int]] = []
    seat = TierSeat(m, "r", budget, move=lambda t: moves.append(t.size), serve_keyframe=lambda: None,
                    group=lambda: "broadcast", clock=clock)
    seat.start(TIERS[0])
    clock.t = 10.0
    budget.kbps = 600  # the loss controller's cut
    assert seat.tick() is not None and moves == [(640, 360)]
    budget.kbps, budget.firm = 300, False  # a REMB sample: it may be a key frame's dip
    clock.t = 20.0
    assert seat.tick() is None and moves == [(640, 360)]
    clock.t = 21.0
    assert seat.tick() is not None and moves[-1] == (352, 288)  # 1 s later (down_after)
