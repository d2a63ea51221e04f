"""The command view's figures (pure): each rule of dispatch/command_view.py on made-up rows."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch.calltaking.stats import CallTiming
from dispatch.command_view import (
    ActivationRow,
    AllocationRow,
    IncidentRow,
    Inputs,
    OverduePolicy,
    TaskRow,
    hour_starts,
    local_midnight,
    summary,
)

NOW = datetime(2026, 12, 7, 6, 30, tzinfo=UTC)  # 14:30 in Beijing
MIN = timedelta(minutes=1)


def _act(aid: int, inc: str, level: int, at: datetime = NOW - 60 * MIN, status: str = "active") -> ActivationRow:
    return ActivationRow(aid, inc, "flood", "防汛预案", level, at, f"9000000{aid}", 111.5, 22.7, status)


def test_open_incidents_by_priority_and_by_response_level() -> None:
    incidents = [IncidentRow("a", 1, "new", NOW - 5 * MIN), IncidentRow("b", 2, "on_scene", NOW - 90 * MIN),
                 IncidentRow("c", 2, "closed", NOW - 30 * MIN), IncidentRow("d", 5, "dispatched", NOW)]
    # "a" has two active plans (II and I): counted once, at the most severe; "b" an ended one only
    acts = [_act(1, "a", 2), _act(2, "a", 1), _act(3, "b", 3, status="ended")]
    out = summary(Inputs(incidents=incidents, activations=acts), NOW)["figures"]["open_incidents"]
    assert out["total"] == 3
    assert out["by_priority"] == {"1": 1, "2": 1, "3": 0, "4": 0, "5": 1}
    assert out["by_level"] == {"I": 1, "II": 0, "III": 0, "IV": 0, "none": 2}


def test_units_deployed_and_calls_waiting() -> None:
    statuses = ["available", "dispatched", "en_route", "on_scene", "transporting", "at_hospital", "returning",
                "out_of_service"]
    f = summary(Inputs(unit_statuses=statuses, calls_waiting=3), NOW)["figures"]
    assert (f["units_deployed"], f["units_total"], f["calls_waiting"]) == (5, 8, 3)


def test_answer_rate_counts_today_only_and_abandoned_calls_count_against() -> None:
    midnight = local_midnight(NOW)
    assert midnight.isoformat() == "2026-12-07T00:00:00+08:00"

    def call(offset_min: float, wait_s: float | None, abandoned: bool = False) -> CallTiming:
        at = NOW - offset_min * MIN
        return CallTiming(at, None if wait_s is None else at + timedelta(seconds=wait_s), abandoned)

    calls = [call(10, 4), call(20, 12), call(30, 20), call(40, None, abandoned=True),
             call(60 * 15, 2)]  # 15 h ago: yesterday in Beijing, not today
    f = summary(Inputs(calls=calls), NOW)["figures"]["answer"]
    assert (f["offered"], f["answered"], f["abandoned"]) == (4, 3, 1)
    assert f["within_10"] == 25.0 and f["within_15"] == 50.0
    assert summary(Inputs(), NOW)["figures"]["answer"]["within_10"] is None  # no call: no rate, not 0 %


def test_overdue_tasks_and_progress_per_agency() -> None:
    policy = OverduePolicy(acknowledge_within=timedelta(minutes=10), complete_within=timedelta(hours=2))
    tasks = [
        TaskRow(1, "flood_control", "assigned", NOW - 11 * MIN),  # not acknowledged in 10 min: overdue
        TaskRow(1, "flood_control", "assigned", NOW - 9 * MIN),  # still within
        TaskRow(1, "flood_control", "acknowledged", NOW - 60 * MIN),  # acknowledged, within 2 h
        TaskRow(1, "meteorology", "in_progress", NOW - 121 * MIN),  # open after 2 h: overdue
        TaskRow(1, "meteorology", "done", NOW - 300 * MIN),  # done is never overdue
        TaskRow(1, "fire", "cancelled", NOW - 300 * MIN),  # withdrawn: not counted at all
        TaskRow(9, "fire", "assigned", NOW - 300 * MIN),  # an activation that is not active
    ]
    out = summary(Inputs(activations=[_act(1, "a", 2)], tasks=tasks,
                         agency_names={"flood_control": "三防", "meteorology": "气象"}), NOW, policy)
    assert out["figures"]["tasks_overdue"] == 2 and out["figures"]["tasks_open"] == 4
    (act,) = out["activations"]
    assert (act["level"], act["done"], act["acknowledged"], act["total"], act["overdue"]) == ("II", 1, 3, 5, 2)
    assert act["agencies"] == [
        {"agency": "flood_control", "agency_name": "三防", "done": 0, "acknowledged": 1, "total": 3, "overdue": 1},
        {"agency": "meteorology", "agency_name": "气象", "done": 1, "acknowledged": 2, "total": 2, "overdue": 1},
    ]


def test_activations_most_severe_first_and_ended_ones_left_out() -> None:
    acts = [_act(1, "a", 3), _act(2, "b", 1, NOW - 300 * MIN), _act(3, "c", 1, NOW - 10 * MIN),
            _act(4, "d", 2, status="ended")]
    out = summary(Inputs(activations=acts), NOW)["activations"]
    assert [a["id"] for a in out] == [3, 2, 1]


def test_resources_consumed_per_item() -> None:
    allocs = [AllocationRow("sandbag", 500), AllocationRow("pump", 2), AllocationRow("sandbag", 1500)]
    out = summary(Inputs(allocations=allocs, item_names={"sandbag": ("编织袋", "袋")}), NOW)["resources_consumed"]
    assert out == [{"item": "sandbag", "name": "编织袋", "unit": "袋", "quantity": 2000},
                   {"item": "pump", "name": "pump", "unit": "", "quantity": 2}]


def test_series_is_24_whole_hours_oldest_first() -> None:
    starts = hour_starts(NOW)
    assert len(starts) == 24 and starts[-1] == NOW.replace(minute=0) and starts[0] == starts[-1] - timedelta(hours=23)
    incidents = [IncidentRow("a", 1, "new", NOW - 1 * MIN), IncidentRow("b", 1, "closed", NOW - 61 * MIN),
                 IncidentRow("c", 1, "new", NOW - 25 * 60 * MIN)]  # older than the window: not in the series
    calls = [CallTiming(NOW - 2 * MIN, NOW - 2 * MIN + timedelta(seconds=6), False),
             CallTiming(NOW - 3 * MIN, NOW - 3 * MIN + timedelta(seconds=10), False),
             CallTiming(NOW - 4 * MIN, None, True)]
    s = summary(Inputs(incidents=incidents, calls=calls), NOW)["series"]
    assert s["hours"][-1] == "2026-12-07T06:00:00+00:00"
    assert s["incidents"][-1] == 1 and s["incidents"][-2] == 1 and sum(s["incidents"]) == 2
    assert s["calls"][-1] == 3 and s["answer_mean_s"][-1] == 8.0 and s["answer_max_s"][-1] == 10.0
    assert s["answer_mean_s"][0] is None
