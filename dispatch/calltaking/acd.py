"""The call-taking queue (ACD) as a sans-I/O state machine.

Inputs are method calls carrying ``now`` (seconds, any monotonic origin); outputs are
:class:`Offer`, :class:`OfferWithdrawn`, :class:`PositionMarked`, :class:`CallbackListed` and
:class:`Requeued` events returned from each call. Nothing reads a clock: the adapter asks
``next_deadline()`` and calls ``tick(now)`` then. That keeps every rule below testable with a
fake clock:

* order: calls by priority (from the dialled number), then arrival; a call whose call-taker's
  browser died goes back to the *head* with a flag;
* distribution: the longest-idle available position first;
* a position that does not answer an offer within ``answer_timeout_s`` is skipped and marked
  (set to paused with the mark, so no more calls are offered to it until it is made available);
* overflow: positions of the overflow group take calls that waited ``overflow_after_s``;
* wrap-up after each call, back to available after ``wrap_up_s`` (or when the call-taker says so);
* an abandoned call (caller hung up before answer) goes on the callback list with its number;
* training (演练): a call is real or training from the moment it is created (a call from the network
  on an emergency number is always real; only the training runner makes training calls), and a
  position is real or in training. A call is offered only to a position of its own kind, so a
  trainee is never offered a real emergency. When real calls wait and every signed-on position is
  in training, :class:`TrainingAlarm` is raised (and cleared when that is no longer so).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PositionState(StrEnum):
    AVAILABLE = "available"
    OFFERED = "offered"  # ringing at this position
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    LOGGED_OUT = "logged_out"


class CallState(StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    ENDED = "ended"


class AcdError(ValueError):
    """An action that does not fit the current state (the console shows the message)."""


@dataclass
class Position:
    id: str
    group: str = "primary"  # "primary" | "overflow"
    state: PositionState = PositionState.LOGGED_OUT
    idle_since: float = 0.0
    call_id: str | None = None
    offer_deadline: float | None = None
    wrap_up_until: float | None = None
    missed: int = 0
    mark: str = ""  # why the ACD paused it (shown on the dashboard)
    training: bool = False  # 演练 position: offered training calls only


@dataclass
class QueuedCall:
    id: str
    number: str
    dialled: str
    priority: int
    arrived_at: float
    state: CallState = CallState.QUEUED
    position_id: str | None = None
    head: bool = False  # back at the head of the queue after a position failure
    flags: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    answered_at: float | None = None
    ended_at: float | None = None
    training: bool = False  # flagged when the call is created; never from a global mode


@dataclass(frozen=True)
class Offer:
    call_id: str
    position_id: str


@dataclass(frozen=True)
class OfferWithdrawn:
    call_id: str
    position_id: str
    reason: str


@dataclass(frozen=True)
class PositionMarked:
    position_id: str
    reason: str


@dataclass(frozen=True)
class CallbackListed:
    call_id: str
    number: str
    waited_s: float


@dataclass(frozen=True)
class Requeued:
    call_id: str
    reason: str


@dataclass(frozen=True)
class TrainingAlarm:
    """Raised (``active``) when real calls wait and every signed-on position is in training;
    cleared when a real position is back or no real call waits any more."""

    active: bool
    waiting: int  # real calls waiting for a position
    training_positions: tuple[str, ...]  # the signed-on positions, all in training


AcdEvent = Offer | OfferWithdrawn | PositionMarked | CallbackListed | Requeued | TrainingAlarm


@dataclass
class AcdConfig:
    answer_timeout_s: float = 10.0
    overflow_after_s: float = 30.0
    wrap_up_s: float = 30.0
    # dialled number → priority (1 = most urgent); unknown numbers get default_priority.
    priorities: dict[str, int] = field(default_factory=lambda: {"120": 1, "119": 1, "110": 2, "122": 3})
    default_priority: int = 5


class Acd:
    """The queue and the positions. All times are ``now`` arguments."""

    def __init__(self, config: AcdConfig | None = None) -> None:
        self.config = config or AcdConfig()
        self.positions: dict[str, Position] = {}
        self.calls: dict[str, QueuedCall] = {}
        self.callbacks: list[CallbackListed] = []
        self.alarm = False  # TrainingAlarm state (events are sent on changes only)

    # ------------------------------------------------------------------ queries

    def queue(self) -> list[QueuedCall]:
        """Calls not yet answered, in the order they will be offered."""
        waiting = [c for c in self.calls.values() if c.state in (CallState.QUEUED, CallState.OFFERED)]
        return sorted(waiting, key=lambda c: (not c.head, c.priority, c.arrived_at))

    def queue_position(self, call_id: str) -> int | None:
        """1-based place in the queue (what an announcement would say)."""
        for i, call in enumerate(self.queue(), 1):
            if call.id == call_id:
                return i
        return None

    def real_waiting(self) -> int:
        """Real calls not yet answered."""
        return sum(1 for c in self.queue() if not c.training)

    def all_positions_training(self) -> bool:
        """At least one position is signed on and every signed-on position is in training."""
        signed_on = [p for p in self.positions.values() if p.state != PositionState.LOGGED_OUT]
        return bool(signed_on) and all(p.training for p in signed_on)

    def training_alarm(self) -> bool:
        """Real calls wait while every signed-on position is in training."""
        return self.real_waiting() > 0 and self.all_positions_training()

    def next_deadline(self) -> float | None:
        """When ``tick`` must next run (offer timeouts, wrap-up ends, overflow), or None."""
        times: list[float] = []
        for p in self.positions.values():
            if p.offer_deadline is not None:
                times.append(p.offer_deadline)
            if p.wrap_up_until is not None:
                times.append(p.wrap_up_until)
        has_overflow = any(p.group != "primary" for p in self.positions.values())
        if has_overflow:
            times += [c.arrived_at + self.config.overflow_after_s for c in self.queue()
                      if c.state == CallState.QUEUED]
        return min(times) if times else None

    # ------------------------------------------------------------------ positions

    def _position(self, position_id: str) -> Position:
        try:
            return self.positions[position_id]
        except KeyError:
            raise AcdError(f"未知席位 {position_id}") from None

    def login(self, position_id: str, now: float, group: str = "primary",
              training: bool | None = None) -> list[AcdEvent]:
        """A call-taker signs on at a position (available at once). ``training``: sign on in
        training mode (True) or real (False); None keeps the position's mode (real when new)."""
        pos = self.positions.setdefault(position_id, Position(position_id, group))
        if pos.state in (PositionState.BUSY, PositionState.OFFERED):
            raise AcdError("席位正在通话中")
        pos.group = group
        if training is not None:
            pos.training = training
        self._make_available(pos, now)
        return self._distribute(now)

    def set_training(self, position_id: str, training: bool, now: float) -> list[AcdEvent]:
        """Put a position in training mode (offered training calls only) or back to real.

        Leaving training is never held up by a drill call that is only ringing (the real queue may
        be waiting): that call goes back to the queue. A call on the line must be finished first."""
        pos = self._position(position_id)
        out: list[AcdEvent] = []
        if pos.training == training:
            return self._distribute(now)
        ringing = self.calls.get(pos.call_id or "") if pos.state == PositionState.OFFERED else None
        if ringing is not None and ringing.training and not training:
            ringing.state, ringing.position_id = CallState.QUEUED, None
            pos.state, pos.call_id, pos.offer_deadline = PositionState.AVAILABLE, None, None
            out.append(OfferWithdrawn(ringing.id, pos.id, "position left training"))
        elif pos.state in (PositionState.BUSY, PositionState.OFFERED):
            raise AcdError("席位正在通话或振铃，结束后再切换演练模式")
        pos.training = training
        return out + self._distribute(now)

    def set_state(self, position_id: str, state: PositionState, now: float) -> list[AcdEvent]:
        """The call-taker sets available / paused / logged out (not busy: that comes from calls)."""
        pos = self._position(position_id)
        if state not in (PositionState.AVAILABLE, PositionState.PAUSED, PositionState.LOGGED_OUT):
            raise AcdError(f"不能手动设置为 {state}")
        if pos.state in (PositionState.BUSY, PositionState.OFFERED) and state != PositionState.AVAILABLE:
            raise AcdError("席位正在通话或振铃，先结束")
        if pos.state in (PositionState.BUSY, PositionState.OFFERED):
            raise AcdError("席位正在通话或振铃")
        if state == PositionState.AVAILABLE:
            self._make_available(pos, now)
        else:
            pos.state = state
            pos.wrap_up_until = None
        return self._distribute(now)

    def _make_available(self, pos: Position, now: float) -> None:
        pos.state = PositionState.AVAILABLE
        pos.idle_since = now
        pos.wrap_up_until = None
        pos.mark = ""
        pos.call_id = None

    # ------------------------------------------------------------------ calls

    def arrive(self, call_id: str, number: str, dialled: str, now: float, training: bool = False) -> list[AcdEvent]:
        """A call reached the centre; it is queued and offered when a position of its kind
        (real, or training for a training call) is free."""
        if call_id in self.calls:
            raise AcdError(f"呼叫 {call_id} 已在队列中")
        priority = self.config.priorities.get(dialled, self.config.default_priority)
        self.calls[call_id] = QueuedCall(call_id, number, dialled, priority, now, training=training)
        return self._distribute(now)

    def _call(self, call_id: str) -> QueuedCall:
        try:
            return self.calls[call_id]
        except KeyError:
            raise AcdError(f"未知呼叫 {call_id}") from None

    def answer(self, position_id: str, call_id: str, now: float) -> list[AcdEvent]:
        """The position answers the call offered to it."""
        pos, call = self._position(position_id), self._call(call_id)
        if call.state != CallState.OFFERED or call.position_id != position_id or pos.call_id != call_id:
            raise AcdError("该呼叫未振铃到本席位（可能已被取消或转给其他席位）")
        call.state, call.answered_at = CallState.ANSWERED, now
        pos.state, pos.offer_deadline = PositionState.BUSY, None
        return []

    def abandon(self, call_id: str, now: float) -> list[AcdEvent]:
        """The caller hung up before being answered: callback list."""
        call = self._call(call_id)
        if call.state not in (CallState.QUEUED, CallState.OFFERED):
            return self.end(call_id, now)
        out: list[AcdEvent] = []
        if call.state == CallState.OFFERED and call.position_id is not None:
            pos = self.positions[call.position_id]
            out.append(OfferWithdrawn(call.id, pos.id, "caller hung up"))
            pos.offer_deadline = None
            self._make_available(pos, pos.idle_since)  # it keeps its idle rank: it took no call
        call.state, call.ended_at, call.position_id = CallState.ABANDONED, now, None
        entry = CallbackListed(call.id, call.number, now - call.arrived_at)
        self.callbacks.append(entry)
        out.append(entry)
        return out + self._distribute(now)

    def end(self, call_id: str, now: float) -> list[AcdEvent]:
        """An answered call ended (either side hung up): the position goes to wrap-up."""
        call = self._call(call_id)
        if call.state in (CallState.ENDED, CallState.ABANDONED):
            return []
        if call.state != CallState.ANSWERED:
            return self.abandon(call_id, now)
        call.state, call.ended_at = CallState.ENDED, now
        pos = self.positions.get(call.position_id or "")  # None: an agency desk that is no ACD position
        if pos is not None:
            if pos.call_id == call.id and self.config.wrap_up_s <= 0:
                self._make_available(pos, now)
            elif pos.call_id == call.id:
                pos.state, pos.wrap_up_until = PositionState.WRAP_UP, now + self.config.wrap_up_s
        return self._distribute(now)

    def transfer(self, call_id: str, to_position: str, now: float) -> list[AcdEvent]:
        """Attended transfer of an answered call: the old position wraps up, the new one owns the call.

        ``to_position`` may be an agency desk that is no ACD position; if it is one, it becomes busy.
        """
        call = self._call(call_id)
        if call.state != CallState.ANSWERED or call.position_id is None:
            raise AcdError("只能转接已接听的呼叫")
        if to_position == call.position_id:
            raise AcdError("不能转接给自己")
        target = self.positions.get(to_position)
        if target is not None and target.state not in (PositionState.AVAILABLE, PositionState.PAUSED,
                                                       PositionState.WRAP_UP):
            raise AcdError(f"席位 {to_position} 正忙")
        if target is not None and target.training != call.training:
            raise AcdError(f"席位 {to_position} 处于演练模式，不能接真实报警" if target.training
                           else f"席位 {to_position} 不在演练模式，不能转入演练呼叫")
        old = self.positions[call.position_id]
        old.state, old.wrap_up_until = PositionState.WRAP_UP, now + self.config.wrap_up_s
        if target is not None:
            target.state, target.call_id, target.wrap_up_until = PositionState.BUSY, call.id, None
        call.position_id = to_position
        call.flags.append(f"由 {old.id} 转接给 {to_position}")
        return self._distribute(now)

    def position_lost(self, position_id: str, now: float) -> list[AcdEvent]:
        """The call-taker's browser died: its call goes back to the head of the queue, flagged."""
        pos = self._position(position_id)
        out: list[AcdEvent] = []
        if pos.call_id is not None and pos.state in (PositionState.BUSY, PositionState.OFFERED):
            call = self.calls[pos.call_id]
            call.state, call.position_id, call.head = CallState.QUEUED, None, True
            call.flags.append(f"席位 {pos.id} 掉线后重新排队")
            out.append(Requeued(call.id, f"position {pos.id} lost"))
        pos.state, pos.call_id, pos.offer_deadline, pos.wrap_up_until = PositionState.LOGGED_OUT, None, None, None
        return out + self._distribute(now)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[AcdEvent]:
        """Apply timeouts due at ``now``: unanswered offers, wrap-up ends, overflow."""
        out: list[AcdEvent] = []
        for pos in self.positions.values():
            if pos.offer_deadline is not None and now >= pos.offer_deadline and pos.call_id is not None:
                call = self.calls[pos.call_id]
                call.state, call.position_id = CallState.QUEUED, None
                call.skipped.append(pos.id)
                pos.missed += 1
                pos.state, pos.call_id, pos.offer_deadline = PositionState.PAUSED, None, None
                pos.mark = f"{self.config.answer_timeout_s:.0f} 秒未应答，已跳过"
                out += [OfferWithdrawn(call.id, pos.id, "no answer"), PositionMarked(pos.id, pos.mark)]
            if pos.wrap_up_until is not None and now >= pos.wrap_up_until and pos.state == PositionState.WRAP_UP:
                self._make_available(pos, now)
        return out + self._distribute(now)

    def _eligible(self, call: QueuedCall, now: float) -> list[Position]:
        overflow_ok = now - call.arrived_at >= self.config.overflow_after_s
        free = [p for p in self.positions.values()
                if p.state == PositionState.AVAILABLE and p.training == call.training
                and (p.group == "primary" or overflow_ok)]
        # A position that let this call ring out is tried last (it is paused anyway until reset).
        return sorted(free, key=lambda p: (p.id in call.skipped, p.group != "primary", p.idle_since, p.id))

    def _distribute(self, now: float) -> list[AcdEvent]:
        out: list[AcdEvent] = []
        for call in self.queue():
            if call.state != CallState.QUEUED:
                continue
            eligible = self._eligible(call, now)
            if not eligible:
                continue
            pos = eligible[0]
            pos.state, pos.call_id = PositionState.OFFERED, call.id
            pos.offer_deadline = now + self.config.answer_timeout_s
            call.state, call.position_id = CallState.OFFERED, pos.id
            out.append(Offer(call.id, pos.id))
        alarm = self.training_alarm()
        if alarm != self.alarm:
            self.alarm = alarm
            trainees = tuple(sorted(p.id for p in self.positions.values() if p.state != PositionState.LOGGED_OUT))
            out.append(TrainingAlarm(alarm, self.real_waiting(), trainees if alarm else ()))
        return out

    def forget(self, call_id: str) -> list[AcdEvent]:
        """Drop a finished call (the database keeps its record); may clear the alarm."""
        self.calls.pop(call_id, None)
        alarm = self.training_alarm()
        if alarm != self.alarm:
            self.alarm = alarm
            return [TrainingAlarm(alarm, self.real_waiting(), ())]
        return []
