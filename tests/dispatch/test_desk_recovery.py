"""The desk's start-up recovery rules (dispatch.calltaking.recovery): pure, time as an argument."""
from __future__ import annotations

from dispatch.calltaking.recovery import LeftCall, lost_calls, pending_reports


def test_waiting_calls_in_queue_order_then_interrupted_answered_ones() -> None:
    left = [
        LeftCall("c-late-110", "139", "queued", 1, offered_at=110.0),
        LeftCall("c-early-122", "138", "queued", 3, offered_at=100.0),
        LeftCall("c-offered-110", "137", "offered", 1, offered_at=105.0),
        LeftCall("c-requeued", "136", "queued", 3, offered_at=108.0, head=True),
        LeftCall("c-answered", "135", "answered", 1, offered_at=90.0, answered_at=96.0),
    ]
    lost = lost_calls(left, now=130.0)
    assert [c.call_id for c in lost] == ["c-requeued", "c-offered-110", "c-late-110", "c-early-122", "c-answered"]
    assert [c.order for c in lost] == [1, 2, 3, 4, 5]
    assert {c.call_id: c.waited_s for c in lost} == {"c-requeued": 22.0, "c-offered-110": 25.0, "c-late-110": 20.0,
                                                     "c-early-122": 30.0, "c-answered": 6.0}
    assert [c.answered for c in lost] == [False, False, False, False, True]


def test_calls_held_by_a_live_desk_are_left_alone() -> None:
    left = [LeftCall("a", "1", "queued", 1, 0.0), LeftCall("b", "2", "queued", 1, 1.0)]
    assert [c.call_id for c in lost_calls(left, 5.0, held_elsewhere=["a"])] == ["b"]
    assert lost_calls([], 5.0) == []


def test_clock_behind_the_row_never_gives_a_negative_wait() -> None:
    assert lost_calls([LeftCall("a", "1", "queued", 1, 10.0)], 9.0)[0].waited_s == 0.0


def test_pending_reports_keep_their_reception_time_window() -> None:
    keep, expire = pending_reports([(1, 0.0), (2, 101.0), (3, 400.0)], now=401.0, window_s=300.0)
    assert keep == [2, 3] and expire == [1]


def test_takeover_looks_only_at_dead_nodes_never_at_itself() -> None:
    from dispatch.calltaking.recovery import orphaned_nodes

    assert orphaned_nodes(["a", "b", "me"], "me", dead={"b", "me", "x"}) == {"b"}
    assert orphaned_nodes(["a"], "me", dead=set()) == set()


def test_lost_calls_keep_the_node_that_took_them() -> None:
    left = [LeftCall("c1", "1", "queued", 1, 0.0, node="desk-a/web/1"), LeftCall("c2", "2", "answered", 1, 1.0, 2.0)]
    assert [(c.call_id, c.node) for c in lost_calls(left, 5.0)] == [("c1", "desk-a/web/1"), ("c2", None)]
