"""Encoder tiers that receivers move between (pure: time and budgets are arguments).

Each view has a ladder of shared encoders (:data:`mcu.encoder.LADDER`), tier 1 the best::

    tier  size        rate        tier  size       rate
    1     1280x720    1.5M        5     480x270    350k
    2     960x540     1M          6     352x288    250k
    3     768x432     700k        7     320x180    150k
    4     640x360     500k

A :class:`TierMachine` (one per room) places every receiver on a tier and moves it. The rules:

* **Fit.** A tier fits a budget when its rate is at most ``headroom`` (0.9) of the receiver's
  video budget (:class:`VideoBudget`, kbit/s for video; the rest is for rate-control overshoot
  and RTCP), and the receiver can decode it (:class:`ReceiverLimits`: H.264 level MaxFS/MaxMBPS
  at the room's frame rate, a configured maximum size). The fitting tier is the best one that
  fits; the lowest tier when none does.
* **Start low.** A receiver whose budget is unknown (None) starts on the best tier whose rate
  is at most ``start_kbps`` (500k: 640x360), never 720p; a known budget places it at once.
* **Down fast.** When the fitting tier stays below the current one for ``down_after`` seconds
  (1 s: a REMB dip after a key frame is shorter), the receiver moves straight to it, as many
  tiers as needed. A *firm* budget (``update(..., firm=True)``: a rate budget whose every move
  was already judged, such as :mod:`mcu.legs.rate_budget`'s loss controller over seconds of
  receiver reports and key-frame requests, or a cap the peer stated) is not a sample that can
  dip: it moves the receiver at once.
* **Up quickly while the line stays clean, with hysteresis.** When the fitting tier stays above
  the current one for ``up_after`` seconds (2 s) since the last move, the receiver moves up *one*
  tier (so a receiver started at 640x360 on a clean line reaches 720p in about 6 s; it was 24 s
  with 8 s). A move down within ``probe_window`` (10 s) of a move up was a failed probe: that
  receiver's ``up_after`` doubles (up to ``max_up_after``, 64 s); after ``max_up_after`` seconds
  without a move down it is reset. A move up is not undone at once: for ``settle`` seconds (2 s)
  after it, a shortfall of a budget that is not firm must last ``settle`` seconds, not
  ``down_after`` (the new tier's key frame makes REMB dip, and the peer's estimate needs a moment
  to follow the higher rate). A budget that bounds moves up (``update(..., up_kbps=...)``, a
  :class:`UpBudget` such as the REMB budget's newest estimate with headroom) moves the receiver
  up only to a tier that fits that bound too.
* **Key frames.** A receiver's request is served (the caller asks the encoder for an IDR) unless
  that receiver was served less than ``receiver_keyframe_gap`` ago, or its encoder (its group and
  tier) produced a requested IDR less than ``encoder_keyframe_gap`` ago: then it is coalesced
  (the peer repeats PLI if it still needs one). A receiver already served
  ``keyframes_per_window`` IDRs in the last ``keyframe_window`` seconds is moved down a tier
  instead (its line is losing the key frames; a smaller one is cheaper), and its next probe up
  waits longer, as after a failed probe. A move records an IDR request on the new tier: the
  caller asks that encoder for one at the moment of the decision (see :mod:`mcu.legs.rtp_rewrite`).
* **Run only what is needed.** :meth:`TierMachine.wanted` is the set of (group, tier) pairs some
  receiver is on; the caller runs exactly those encoders (the room starts an encoder with its
  first subscriber and stops it with its last).

A *group* is what receivers share encoders by besides the tier (the view, codec and packetization),
chosen by the caller; receivers in different groups never share an encoder.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

from mcu.encoder import LADDER


@dataclass(frozen=True)
class Tier:
    index: int  # 1 = best
    width: int
    height: int
    kbps: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def macroblocks(self) -> int:
        return ((self.width + 15) // 16) * ((self.height + 15) // 16)


TIERS: tuple[Tier, ...] = tuple(Tier(i + 1, w, h, bps // 1000) for i, (w, h, bps) in enumerate(LADDER))


def tier_for_size(width: int, height: int) -> Tier:
    """The tier of a shared-encoder size (ValueError if it is none)."""
    for tier in TIERS:
        if tier.size == (width, height):
            return tier
    raise ValueError(f"no tier is {width}x{height}")


class VideoBudget(Protocol):
    """A receiver's budget for video, kbit/s (the rate budget of :mod:`mcu.legs.rate_budget` fills it)."""

    def video_kbps(self) -> int:
        """What video may use now; 0 or less: unknown."""


@runtime_checkable
class FirmBudget(Protocol):
    """A budget that can say its current value is already judged (see the rules: Down fast)."""

    def budget_is_firm(self) -> bool:
        """True when the budget's current value is a judged one (not a sample that can dip)."""


@runtime_checkable
class UpBudget(Protocol):
    """A budget that bounds how far a move up may reach (see the rules: Up quickly)."""

    def up_kbps(self) -> int | None:
        """The budget a tier must fit to be moved up to (None: no bound beyond the budget)."""


# H.264 Table A-1: level_idc -> (MaxFS macroblocks, MaxMBPS macroblocks/s). 9 is level 1b.
H264_LEVELS: dict[int, tuple[int, int]] = {
    9: (99, 1485), 10: (99, 1485), 11: (396, 3000), 12: (396, 6000), 13: (396, 11880), 20: (396, 11880),
    21: (792, 19800), 22: (1620, 20250), 30: (1620, 40500), 31: (3600, 108000), 32: (5120, 216000),
    40: (8192, 245760), 41: (8192, 245760), 42: (8704, 522240), 50: (22080, 589824), 51: (36864, 983040),
    52: (36864, 2073600),
}
UNKNOWN_LEVEL = 20  # an unparsable or missing profile-level-id: what every decoder manages (CIF)
# Profiles whose decoders take our Constrained Baseline stream (x264 "baseline"): CB, Baseline,
# Main, Extended, High and its successors.
CB_DECODING_PROFILES = frozenset({66, 77, 88, 100, 110, 122, 244})


@dataclass(frozen=True)
class ReceiverLimits:
    """What a receiver can decode. None: no limit from that source."""

    max_frame_mbs: int | None = None  # H.264 MaxFS
    max_mbps: int | None = None  # H.264 MaxMBPS
    max_area: int | None = None  # pixels (a configured maximum size, e.g. sip.max_video_size)
    fps: int = 25

    def allows(self, tier: Tier) -> bool:
        if self.max_frame_mbs is not None and tier.macroblocks > self.max_frame_mbs:
            return False
        if self.max_mbps is not None and tier.macroblocks * self.fps > self.max_mbps:
            return False
        return self.max_area is None or tier.width * tier.height <= self.max_area


def h264_limits(profile_level_id: str | None, *, fps: int = 25,
                max_size: tuple[int, int] | None = None) -> ReceiverLimits:
    """A receiver's limits from its SDP ``profile-level-id`` (RFC 6184; six hex digits).

    Missing or unparsable: level 2.0 (352x288 at 25 fps). A level above the table: no limit. A
    profile that cannot decode Constrained Baseline: level 1.0 only (the smallest tier stays
    out of reach, so the caller falls back to the lowest tier: at least nothing bigger)."""
    area = max_size[0] * max_size[1] if max_size is not None else None
    level = UNKNOWN_LEVEL
    profile = 66
    if profile_level_id is not None and len(profile_level_id) == 6:
        try:
            profile = int(profile_level_id[0:2], 16)
            constraints = int(profile_level_id[2:4], 16)
            level = int(profile_level_id[4:6], 16)
        except ValueError:
            profile, level = 66, UNKNOWN_LEVEL
        else:
            if level == 11 and profile in (66, 77, 88) and constraints & 0x10:
                level = 9  # level 1b
    if profile not in CB_DECODING_PROFILES:
        level = 10
    if level > max(H264_LEVELS):
        return ReceiverLimits(max_area=area, fps=fps)
    known = max((lv for lv in H264_LEVELS if lv <= level), default=10)
    max_fs, max_mbps = H264_LEVELS[known]
    return ReceiverLimits(max_fs, max_mbps, area, fps)


@dataclass(frozen=True)
class TierRules:
    headroom: float = 0.9
    start_kbps: int = 500
    down_after: float = 1.0
    up_after: float = 2.0
    settle: float = 2.0
    max_up_after: float = 64.0
    probe_window: float = 10.0
    receiver_keyframe_gap: float = 1.0
    encoder_keyframe_gap: float = 0.5
    keyframe_window: float = 10.0
    keyframes_per_window: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        if min(self.down_after, self.up_after, self.settle, self.receiver_keyframe_gap, self.encoder_keyframe_gap) < 0:
            raise ValueError("intervals must be >= 0")
        if self.max_up_after < self.up_after or self.keyframes_per_window < 1:
            raise ValueError("max_up_after must be >= up_after and keyframes_per_window >= 1")


class KeyframeDecision(Enum):
    SERVE = "serve"  # ask the receiver's encoder for an IDR now
    COALESCE = "coalesce"  # one was served just now; nothing to do
    MOVE_DOWN = "move_down"  # the receiver moved down a tier (see the returned tier): switch it


@dataclass
class _Receiver:
    tier: Tier
    limits: ReceiverLimits
    group: Hashable
    moved_at: float
    up_after: float
    below_since: float | None = None  # since when the fitting tier has been below the current one
    above_since: float | None = None
    last_up: float | None = None
    last_down: float | None = None
    served: deque[float] = field(default_factory=deque)  # when this receiver's IDRs were served


class TierMachine:
    """The tiers of one room's receivers (see the module docstring for the rules)."""

    def __init__(self, rules: TierRules | None = None, tiers: tuple[Tier, ...] = TIERS) -> None:
        if not tiers:
            raise ValueError("no tiers")
        self.rules = rules or TierRules()
        self.tiers = tuple(sorted(tiers, key=lambda t: t.index))
        self._receivers: dict[Hashable, _Receiver] = {}
        self._encoder_idr: dict[tuple[Hashable, int], float] = {}  # (group, tier) -> last requested IDR
        self.moves = 0

    # -- placement ---------------------------------------------------------------------------
    def fit(self, budget_kbps: int | None, limits: ReceiverLimits = ReceiverLimits()) -> Tier:
        """The best tier that fits the budget (None or <= 0: the start tier) and the limits."""
        decodable = [t for t in self.tiers if limits.allows(t)] or [self.tiers[-1]]
        if budget_kbps is None or budget_kbps <= 0:
            ceiling = float(self.rules.start_kbps)
        else:
            ceiling = budget_kbps * self.rules.headroom
        for tier in decodable:
            if tier.kbps <= ceiling:
                return tier
        return decodable[-1]

    def add(self, receiver: Hashable, now: float, *, limits: ReceiverLimits = ReceiverLimits(),
            budget_kbps: int | None = None, group: Hashable = None, tier: Tier | None = None) -> Tier:
        """Place a new receiver (re-adding one replaces it). Its encoder owes it an IDR.

        ``tier``: the caller's start tier (configuration, tests) instead of the budget's."""
        if tier is None:
            tier = self.fit(budget_kbps, limits)
        elif tier not in self.tiers:
            raise ValueError(f"not a tier of this machine: {tier}")
        self._receivers[receiver] = _Receiver(tier, limits, group, now, self.rules.up_after)
        self._encoder_idr[(group, tier.index)] = now
        return tier

    def remove(self, receiver: Hashable) -> None:
        """Forget a receiver (idempotent); encoders nobody is on leave :meth:`wanted`."""
        r = self._receivers.pop(receiver, None)
        if r is not None:
            self._forget_idle_encoders()

    def tier_of(self, receiver: Hashable) -> Tier:
        return self._receivers[receiver].tier

    def set_group(self, receiver: Hashable, group: Hashable) -> None:
        """The receiver now shares encoders with ``group`` (a view change)."""
        self._receivers[receiver].group = group
        self._forget_idle_encoders()

    def wanted(self) -> frozenset[tuple[Hashable, Tier]]:
        """(group, tier) of every encoder some receiver is on: run these, stop the others."""
        return frozenset((r.group, r.tier) for r in self._receivers.values())

    def __contains__(self, receiver: Hashable) -> bool:
        return receiver in self._receivers

    def __len__(self) -> int:
        return len(self._receivers)

    # -- moves ---------------------------------------------------------------------------------
    def update(self, receiver: Hashable, budget_kbps: int | None, now: float, *, firm: bool = False,
               up_kbps: int | None = None) -> Tier | None:
        """A budget sample: the new tier if the receiver moves now, else None. ``firm``: the budget
        is already judged (see the rules): a shortfall moves the receiver at once."""
        r = self._receivers[receiver]
        rules = self.rules
        if r.last_down is not None and now - r.last_down >= rules.max_up_after:
            r.up_after = rules.up_after  # stable for long: probing is cheap again
        if budget_kbps is None or budget_kbps <= 0:
            r.below_since = r.above_since = None
            return None
        target = self.fit(budget_kbps, r.limits)
        if target.index > r.tier.index:  # worse tier fits: shortfall
            r.above_since = None
            if r.below_since is None:
                r.below_since = now
            wait = rules.down_after
            if r.last_up is not None and r.below_since - r.last_up < rules.settle:
                wait = max(wait, rules.settle)  # a fresh move up is not undone at once
            if firm or now - r.below_since >= wait:
                return self._move(r, target, now)
            return None
        r.below_since = None
        if target.index < r.tier.index and up_kbps is not None and up_kbps > 0:
            target = max(target, self.fit(up_kbps, r.limits), key=lambda t: t.index)  # in reach of the bound
        if target.index < r.tier.index:
            if r.above_since is None:
                r.above_since = now
            if now - r.above_since >= r.up_after:
                return self._move(r, self._step(r.tier, -1), now)
            return None
        r.above_since = None
        return None

    def place(self, receiver: Hashable, tier: Tier, now: float) -> None:
        """The caller put the receiver on ``tier`` for its own reasons (H.245 flow control): a move
        like the machine's own (down counts for probing), with an IDR owed by the new encoder."""
        if tier not in self.tiers:
            raise ValueError(f"not a tier of this machine: {tier}")
        r = self._receivers[receiver]
        if tier != r.tier:
            self._move(r, tier, now)

    def keyframe_request(self, receiver: Hashable, now: float) -> tuple[KeyframeDecision, Tier]:
        """A key-frame request (PLI/FIR...) from the receiver; returns the decision and its tier then."""
        r = self._receivers[receiver]
        rules = self.rules
        while r.served and now - r.served[0] > rules.keyframe_window:
            r.served.popleft()
        if r.served and now - r.served[-1] < rules.receiver_keyframe_gap:
            return KeyframeDecision.COALESCE, r.tier
        last = self._encoder_idr.get((r.group, r.tier.index))
        if last is not None and now - last < rules.encoder_keyframe_gap:
            return KeyframeDecision.COALESCE, r.tier
        if len(r.served) >= rules.keyframes_per_window and r.tier is not self.tiers[-1]:
            self._move(r, self._step(r.tier, +1), now, failed=True)
            return KeyframeDecision.MOVE_DOWN, r.tier
        r.served.append(now)
        self._encoder_idr[(r.group, r.tier.index)] = now
        return KeyframeDecision.SERVE, r.tier

    def _step(self, tier: Tier, direction: int) -> Tier:
        i = self.tiers.index(tier) + direction
        return self.tiers[max(0, min(len(self.tiers) - 1, i))]

    def _move(self, r: _Receiver, tier: Tier, now: float, *, failed: bool = False) -> Tier:
        if tier.index > r.tier.index:
            if failed or r.last_up is not None and now - r.last_up <= self.rules.probe_window:
                r.up_after = min(self.rules.max_up_after, r.up_after * 2)  # the probe failed
            r.last_down = now
        else:
            r.last_up = now
        r.tier = tier
        r.moved_at = now
        r.below_since = r.above_since = None
        r.served.clear()
        self._encoder_idr[(r.group, tier.index)] = now  # the switch asks the new encoder for an IDR
        self.moves += 1
        self._forget_idle_encoders()
        return tier

    def _forget_idle_encoders(self) -> None:
        live = {(r.group, r.tier.index) for r in self._receivers.values()}
        for key in [k for k in self._encoder_idr if k not in live]:
            del self._encoder_idr[key]


__all__ = ["H264_LEVELS", "TIERS", "FirmBudget", "KeyframeDecision", "UpBudget", "ReceiverLimits", "Tier", "TierMachine", "TierRules",
           "VideoBudget", "h264_limits", "tier_for_size"]
