"""A receiver's seat on its conference's :class:`~mcu.tiers.TierMachine` (thin: the clock is injected).

The one place a leg's budget meets the machine, for WebRTC legs and RTP sites alike:

* :meth:`TierSeat.start` places the receiver (a caller-chosen tier, or the budget's);
* :meth:`TierSeat.tick` (the caller calls it on every budget signal and every half second)
  reads the budget (firm when it is a :class:`~mcu.tiers.FirmBudget` that says so: a shortfall
  then moves the receiver at once; an :class:`~mcu.tiers.UpBudget` bounds moves up) and, when the machine moves the receiver, calls ``move(tier)``: the caller
  subscribes the new tier's encoder (which asks it for an IDR) and its stream rewriter waits
  for that IDR;
* :meth:`TierSeat.keyframe_request` routes the peer's PLI/FIR: served (``serve_keyframe()``),
  coalesced, or the receiver is moved down a tier instead;
* :meth:`TierSeat.placed` records a move the caller made for its own reasons (H.245 flow
  control): the machine must know where the receiver is;
* :meth:`TierSeat.close` leaves the machine.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from mcu.tiers import FirmBudget, KeyframeDecision, ReceiverLimits, Tier, TierMachine, UpBudget, VideoBudget


class FixedBudget:
    """A budget that does not change (the settings' rate, a test, an operator's override)."""

    def __init__(self, kbps: int) -> None:
        self.kbps = int(kbps)

    def video_kbps(self) -> int:
        return self.kbps

    @classmethod
    def fitting(cls, tier: Tier, machine: TierMachine) -> FixedBudget:
        """The smallest budget that fits exactly ``tier`` (a receiver kept where it is)."""
        return cls(-(-tier.kbps * 1000 // round(machine.rules.headroom * 1000)))


class TierSeat:
    """One receiver on a tier machine (see the module docstring)."""

    def __init__(self, machine: TierMachine, receiver: Hashable, budget: VideoBudget, *,
                 move: Callable[[Tier], None], serve_keyframe: Callable[[], None],
                 group: Callable[[], Hashable], limits: ReceiverLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.machine = machine
        self.receiver = receiver
        self.budget = budget
        self.limits = limits if limits is not None else ReceiverLimits()
        self._move = move
        self._serve = serve_keyframe
        self._group = group
        self._clock = clock
        self.tier: Tier | None = None
        self.moves = 0
        self.coalesced = 0
        self.closed = False

    def start(self, tier: Tier | None = None) -> Tier:
        """Place the receiver; returns its tier (the caller subscribes it)."""
        self.tier = self.machine.add(self.receiver, self._clock(), limits=self.limits, tier=tier,
                                     group=self._group())
        return self.tier

    def tick(self) -> Tier | None:
        """Check the budget; moves the receiver (``move``) and returns the new tier when it moved."""
        if self.closed or self.receiver not in self.machine:
            return None
        self.machine.set_group(self.receiver, self._group())
        firm = isinstance(self.budget, FirmBudget) and self.budget.budget_is_firm()
        up = self.budget.up_kbps() if isinstance(self.budget, UpBudget) else None
        tier = self.machine.update(self.receiver, self.budget.video_kbps(), self._clock(), firm=firm, up_kbps=up)
        if tier is not None:
            self._moved(tier)
        return tier

    def keyframe_request(self, *, switching: bool = False) -> KeyframeDecision:
        """The peer asks for a key frame. ``switching``: a move is under way (its IDR is coming)."""
        if self.closed or switching or self.receiver not in self.machine:
            self.coalesced += 1
            return KeyframeDecision.COALESCE
        self.machine.set_group(self.receiver, self._group())
        decision, tier = self.machine.keyframe_request(self.receiver, self._clock())
        if decision is KeyframeDecision.SERVE:
            self._serve()
        elif decision is KeyframeDecision.MOVE_DOWN:
            self._moved(tier)
        else:
            self.coalesced += 1
        return decision

    def placed(self, tier: Tier) -> None:
        """The caller moved the receiver itself (flow control...): tell the machine."""
        if self.closed or self.receiver not in self.machine or tier == self.tier:
            return
        self.machine.place(self.receiver, tier, self._clock())
        self.tier = tier

    def _moved(self, tier: Tier) -> None:
        self.tier = tier
        self.moves += 1
        self._move(tier)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.machine.remove(self.receiver)


__all__ = ["FixedBudget", "TierSeat"]
