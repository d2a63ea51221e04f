"""The queue/ACD state machine with a fake clock: order, priority, longest idle, skip+mark, overflow,
abandon → callback list, browser crash → head of the queue."""
from __future__ import annotations

import pytest

from dispatch.calltaking.acd import (
    Acd,
    AcdConfig,
    AcdError,
    AcdEvent,
    CallbackListed,
    Offer,
    OfferWithdrawn,
    PositionMarked,
    PositionState,
    Requeued,
    TrainingAlarm,
)


def offers(events: list[AcdEvent]) -> list[tuple[str, str]]:
    return [(e.call_id, e.position_id) for e in events if isinstance(e, Offer)]


def test_fifo_within_priority_and_priority_by_number() -> None:
    acd = Acd()
    acd.arrive("a", "1", "110", 0)
    acd.arrive("b", "2", "122", 1)
    acd.arrive("c", "3", "120", 2)  # medical first
    acd.arrive("d", "4", "110", 3)
    assert [c.id for c in acd.queue()] == ["c", "a", "d", "b"]
    assert acd.queue_position("b") == 4
    assert offers(acd.login("p1", 5)) == [("c", "p1")]
    assert offers(acd.login("p2", 6)) == [("a", "p2")]


def test_longest_idle_position_first() -> None:
    acd = Acd(AcdConfig(wrap_up_s=5))
    acd.login("p1", 0)
    acd.login("p2", 1)
    acd.login("p3", 2)
    assert offers(acd.arrive("a", "1", "110", 10)) == [("a", "p1")]
    acd.answer("p1", "a", 11)
    acd.end("a", 20)  # p1 wraps up until 25, then is the most recently idle
    assert acd.positions["p1"].state == PositionState.WRAP_UP
    acd.tick(25)
    assert acd.positions["p1"].state.value == "available"
    assert offers(acd.arrive("b", "2", "110", 30)) == [("b", "p2")]
    assert offers(acd.arrive("c", "3", "110", 31)) == [("c", "p3")]
    assert offers(acd.arrive("d", "4", "110", 32)) == [("d", "p1")]


def test_unanswered_offer_skips_and_marks_position() -> None:
    acd = Acd(AcdConfig(answer_timeout_s=8))
    acd.login("p1", 0)
    acd.login("p2", 1)
    assert offers(acd.arrive("a", "1", "119", 5)) == [("a", "p1")]
    assert acd.next_deadline() == 13
    assert acd.tick(12) == []
    events = acd.tick(13)
    assert OfferWithdrawn("a", "p1", "no answer") in events
    assert any(isinstance(e, PositionMarked) and e.position_id == "p1" for e in events)
    assert offers(events) == [("a", "p2")]
    p1 = acd.positions["p1"]
    assert p1.state == PositionState.PAUSED and p1.missed == 1 and "未应答" in p1.mark
    with pytest.raises(AcdError):
        acd.answer("p1", "a", 14)  # too late, it rings at p2 now
    acd.answer("p2", "a", 15)
    assert acd.calls["a"].skipped == ["p1"] and acd.calls["a"].answered_at == 15
    acd.set_state("p1", PositionState.AVAILABLE, 20)
    assert acd.positions["p1"].mark == ""


def test_overflow_group_after_wait() -> None:
    acd = Acd(AcdConfig(overflow_after_s=30))
    acd.login("p1", 0)
    acd.login("o1", 0, group="overflow")
    acd.arrive("a", "1", "110", 1)  # p1
    assert offers(acd.arrive("b", "2", "110", 2)) == []  # overflow not yet
    assert acd.next_deadline() == 11  # p1's offer timeout first
    acd.answer("p1", "a", 3)
    assert acd.next_deadline() == 32
    assert offers(acd.tick(31)) == []
    assert offers(acd.tick(32)) == [("b", "o1")]


def test_abandoned_calls_go_to_callback_list_and_queue_keeps_order() -> None:
    acd = Acd()
    for i, t in enumerate([0, 1, 2]):
        acd.arrive(f"c{i}", f"1380000000{i}", "110", t)
    events = acd.abandon("c1", 5)
    assert events == [CallbackListed("c1", "13800000001", 4)]
    assert acd.callbacks == events
    assert [c.id for c in acd.queue()] == ["c0", "c2"]
    acd.login("p1", 6)
    assert acd.calls["c0"].state == "offered"
    events = acd.abandon("c0", 7)  # ringing at p1, caller gives up: offer withdrawn, next call offered
    assert OfferWithdrawn("c0", "p1", "caller hung up") in events and offers(events) == [("c2", "p1")]


def test_browser_crash_requeues_at_head_with_flag() -> None:
    acd = Acd()
    acd.login("p1", 0)
    acd.arrive("a", "1", "122", 1)
    acd.answer("p1", "a", 2)
    acd.arrive("b", "2", "120", 3)  # higher priority, already waiting
    events = acd.position_lost("p1", 4)
    assert Requeued("a", "position p1 lost") in events
    assert [c.id for c in acd.queue()] == ["a", "b"] and acd.calls["a"].flags
    assert offers(acd.login("p2", 5)) == [("a", "p2")]


def test_bad_actions_change_nothing() -> None:
    acd = Acd()
    acd.login("p1", 0)
    acd.arrive("a", "1", "110", 1)
    with pytest.raises(AcdError):
        acd.arrive("a", "1", "110", 1)
    with pytest.raises(AcdError):
        acd.answer("nope", "a", 2)
    with pytest.raises(AcdError):
        acd.set_state("p1", PositionState.BUSY, 2)
    with pytest.raises(AcdError):
        acd.set_state("p1", PositionState.PAUSED, 2)  # ringing
    assert acd.positions["p1"].state == PositionState.OFFERED and acd.calls["a"].state == "offered"
    with pytest.raises(AcdError):
        acd.end("zzz", 3)


def test_five_callers_two_positions_order_and_abandon() -> None:
    acd = Acd(AcdConfig(wrap_up_s=0))
    acd.login("p1", 0)
    acd.login("p2", 0.5)
    answered: list[str] = []
    for i in range(5):
        for call_id, pos in offers(acd.arrive(f"c{i}", f"1390000000{i}", "110", 1 + i)):
            acd.answer(pos, call_id, 1 + i)
            answered.append(call_id)
    acd.abandon("c3", 7)
    t = 10.0
    while acd.queue() or any(c.state == "answered" for c in acd.calls.values()):
        busy = sorted((c for c in acd.calls.values() if c.state == "answered"), key=lambda c: c.answered_at or 0)
        ev = acd.end(busy[0].id, t)
        ev += acd.tick(t)
        for call_id, pos in offers(ev):
            acd.answer(pos, call_id, t)
            answered.append(call_id)
        t += 1
    assert answered == ["c0", "c1", "c2", "c4"]
    assert [c.number for c in acd.callbacks] == ["13900000003"]


def test_training_positions_get_training_calls_only_and_the_alarm_follows_the_real_queue() -> None:
    def alarms(events: list[AcdEvent]) -> list[tuple[bool, int]]:
        return [(e.active, e.waiting) for e in events if isinstance(e, TrainingAlarm)]

    acd = Acd(AcdConfig(wrap_up_s=0))
    assert alarms(acd.arrive("real1", "1", "120", 0)) == []  # nobody signed on: no training alarm
    events = acd.login("trainee", 1, training=True)
    assert offers(events) == [] and alarms(events) == [(True, 1)]  # the real call is not offered
    assert offers(acd.arrive("drill1", "9", "110", 2, training=True)) == [("drill1", "trainee")]
    assert alarms(acd.arrive("real2", "2", "110", 3)) == []  # already raised: events on changes only
    assert acd.training_alarm() and acd.real_waiting() == 2
    acd.answer("trainee", "drill1", 4)
    with pytest.raises(AcdError):
        acd.set_training("trainee", False, 4)  # on the line with a drill call: finish it first
    events = acd.login("real", 5)  # a real position signs on: it takes the real calls, medical first
    assert offers(events) == [("real1", "real")] and alarms(events) == [(False, 2)]
    acd.answer("real", "real1", 6)
    assert offers(acd.end("drill1", 7)) == []  # the trainee is free again but real2 is not offered to it
    assert acd.calls["real2"].state == "queued" and acd.calls["real2"].position_id is None
    with pytest.raises(AcdError, match="演练"):
        acd.transfer("real1", "trainee", 8)  # a real caller is never handed to a trainee


def test_alarm_clears_when_the_real_caller_hangs_up_and_a_position_leaves_training() -> None:
    acd = Acd()
    acd.login("t1", 0, training=True)
    events = acd.arrive("r", "1", "120", 1)
    assert [e.active for e in events if isinstance(e, TrainingAlarm)] == [True]
    events = acd.abandon("r", 2)
    assert [e.active for e in events if isinstance(e, TrainingAlarm)] == [False]
    assert any(isinstance(e, CallbackListed) for e in events)
    acd.arrive("r2", "2", "110", 3)
    assert acd.alarm
    assert offers(acd.arrive("d", "9", "110", 3, training=True)) == [("d", "t1")]  # a drill call rings
    # The trainee leaves training at once: the ringing drill call goes back to the queue, the real one rings.
    events = acd.set_training("t1", False, 4)
    assert [(e.call_id, e.reason) for e in events if isinstance(e, OfferWithdrawn)] == [("d", "position left training")]
    assert offers(events) == [("r2", "t1")] and [e.active for e in events if isinstance(e, TrainingAlarm)] == [False]
    assert acd.calls["d"].state == "queued"
    with pytest.raises(AcdError):
        acd.set_training("t1", True, 5)  # a real call rings here: it is not handed back to the queue
