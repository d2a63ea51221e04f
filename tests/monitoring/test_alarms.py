"""The pure parts of monitoring: gauge validation, the alarm machine, rain windows, the payload parser."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.site_plan import load_site_plan
from monitoring.alarms import STALE, STUCK, Alarm, GaugeMachine
from monitoring.gauges import Gauge, GaugeSet, load_gauges, parse_gauges
from monitoring.payload import MAX_PAYLOAD, Reading, Rejected, parse_item, parse_mqtt
from monitoring.window import WindowSum

T0 = 1_800_000_000.0


def river(**over: object) -> Gauge:
    raw: dict[str, object] = {
        "id": "g1", "name": "测试站", "kind": "river_level", "unit": "m", "position": [111.5, 22.8],
        "position_quality": "made-up", "period_s": 60, "stale_periods": 3, "valid_range": [0, 50],
        "thresholds": [{"key": "warning", "name": "警戒水位", "value": 20.0, "hysteresis": 0.3, "action": "incident"},
                       {"key": "guaranteed", "name": "保证水位", "value": 25.0, "hysteresis": 0.3,
                        "severity": "critical"}]}
    raw.update(over)
    return Gauge.model_validate(raw)


def transitions(alarms: list[Alarm]) -> list[tuple[str, bool]]:
    return [(a.key, a.raised) for a in alarms]


def test_rising_crossing_raises_once_and_hysteresis_holds() -> None:
    m = GaugeMachine(river(), T0)
    assert m.reading(19.0, T0 + 1).alarms == []
    up = m.reading(20.0, T0 + 2).alarms
    assert transitions(up) == [("warning", True)] and up[0].value == 20.0 and up[0].severity == "warning"
    # wobbling inside the hysteresis band: nothing, again and again
    for i, v in enumerate([19.9, 20.1, 19.75, 20.2, 19.71, 20.0]):
        assert m.reading(v, T0 + 3 + i).alarms == [], v
    assert m.state() == "warning"
    down = m.reading(19.69, T0 + 20).alarms
    assert transitions(down) == [("warning", False)]
    assert m.state() == "normal"
    assert transitions(m.reading(20.0, T0 + 21).alarms) == [("warning", True)]


def test_two_levels_and_critical_state() -> None:
    m = GaugeMachine(river(), T0)
    out = m.reading(26.0, T0 + 1).alarms
    assert transitions(out) == [("warning", True), ("guaranteed", True)]
    assert m.state() == "critical"
    assert transitions(m.reading(24.6, T0 + 2).alarms) == [("guaranteed", False)]
    assert m.state() == "warning"


def test_falling_threshold_for_low_levels() -> None:
    g = river(thresholds=[{"key": "low", "name": "旱限水位", "value": 5.0, "hysteresis": 0.5, "direction": "falling"}])
    m = GaugeMachine(g, T0)
    assert m.reading(6.0, T0 + 1).alarms == []
    assert transitions(m.reading(5.0, T0 + 2).alarms) == [("low", True)]
    assert m.reading(5.4, T0 + 3).alarms == []
    assert transitions(m.reading(5.6, T0 + 4).alarms) == [("low", False)]


def test_late_reading_does_not_move_a_level_threshold() -> None:
    m = GaugeMachine(river(), T0)
    m.reading(19.0, T0 + 10)
    out = m.reading(30.0, T0 + 5)
    assert out.late and out.alarms == [] and m.active == set()


def test_stale_fault_raised_once_and_cleared_by_a_reading() -> None:
    m = GaugeMachine(river(), T0)  # period 60 s × 3 = 180 s
    assert m.tick(T0 + 179) == []
    raised = m.tick(T0 + 180)
    assert transitions(raised) == [(STALE, True)] and raised[0].kind == "fault"
    assert m.tick(T0 + 500) == []  # once
    assert m.state() == "fault"
    assert transitions(m.reading(10.0, T0 + 501).alarms) == [(STALE, False)]
    assert m.tick(T0 + 680) == []
    assert transitions(m.tick(T0 + 681)) == [(STALE, True)]


def test_stuck_fault_on_an_unchanging_value() -> None:
    m = GaugeMachine(river(stuck_after_s=600, stale_periods=100), T0)
    for k in range(10):
        assert m.reading(12.34, T0 + 60 * k).alarms == []
    out = m.reading(12.34, T0 + 600)
    assert transitions(out.alarms) == [(STUCK, True)]
    assert m.tick(T0 + 700) == []
    assert transitions(m.reading(12.35, T0 + 720).alarms) == [(STUCK, False)]


def test_stuck_detection_off_by_default() -> None:
    m = GaugeMachine(river(stale_periods=1000), T0)
    for k in range(100):
        assert m.reading(1.0, T0 + 60 * k).alarms == []


def test_restored_alarm_is_not_raised_twice() -> None:
    m = GaugeMachine(river(), T0, active={("threshold", "warning")})
    assert m.reading(21.0, T0 + 1).alarms == []
    assert transitions(m.reading(10.0, T0 + 2).alarms) == [("warning", False)]


def rain() -> Gauge:
    return river(id="r1", kind="rainfall", unit="mm", period_s=600, stale_periods=1000, valid_range=[0, 200], thresholds=[
        {"key": "rain_1h", "name": "1小时雨量", "value": 30.0, "window_s": 3600},
        {"key": "rain_24h", "name": "24小时雨量", "value": 100.0, "window_s": 86400, "severity": "critical"}])


def test_rain_accumulates_and_leaves_the_window() -> None:
    m = GaugeMachine(rain(), T0)
    for k in range(5):  # 5 × 6 mm in 50 minutes: 30 mm within the hour
        out = m.reading(6.0, T0 + 600 * k)
    assert transitions(out.alarms) == [("rain_1h", True)]
    assert m.accumulated("rain_1h", T0 + 2400) == pytest.approx(30.0)
    # no more rain: the first sample leaves the hour at T0 + 3600
    assert m.tick(T0 + 3599) == []
    assert transitions(m.tick(T0 + 3600)) == [("rain_1h", False)]
    assert m.accumulated("rain_24h", T0 + 3600) == pytest.approx(30.0)


def test_late_rain_still_counts() -> None:
    m = GaugeMachine(rain(), T0)
    m.reading(20.0, T0 + 1200)
    out = m.reading(15.0, T0 + 600)  # delivered late, still within the hour
    assert out.late and transitions(out.alarms) == [("rain_1h", True)]


def test_window_sum_rules() -> None:
    w = WindowSum(100)
    w.add(0, 1.0)
    w.add(50, 2.0)
    w.add(20, 4.0)
    assert w.total(60) == 7.0
    assert w.total(100) == 6.0  # the sample at 0 is out: at > now - window
    assert w.total(1000) == 0.0
    with pytest.raises(ValueError):
        WindowSum(0)


# -- gauge configuration -----------------------------------------------------------------------

def test_demo_plan_gauges_are_valid_and_made_up() -> None:
    plan = load_site_plan("config/demo/yunfu.toml")
    gauges = load_gauges(plan, {"flood"})
    assert len(gauges) >= 4
    assert all(g.position_quality == "made-up" for g in gauges)
    assert {g.kind for g in gauges} >= {"river_level", "rainfall"}
    assert any(t.key == "warning" and t.action == "incident" for g in gauges for t in g.thresholds)


@pytest.mark.parametrize("change, field", [
    ({"unit": ""}, "gauges.0.unit"),
    ({"valid_range": [10, 5]}, "gauges.0.valid_range"),
    ({"kind": "tide"}, "gauges.0.kind"),
    ({"id": "Bad Id"}, "gauges.0.id"),
    ({"period_s": 0}, "gauges.0.period_s"),
    ({"position": [300, 10]}, "gauges.0.position"),
    ({"thresholds": [{"key": "w", "name": "x", "value": 99}]}, "gauges.0"),
    ({"thresholds": [{"key": "w", "name": "x", "value": 1, "hysteresis": -1}]}, "gauges.0.thresholds.0.hysteresis"),
    ({"thresholds": [{"key": "w", "name": "x", "value": 1, "action": "propose_plan"}]}, "gauges.0.thresholds.0"),
    ({"thresholds": [{"key": "w", "name": "x", "value": 1}, {"key": "w", "name": "y", "value": 2}]}, "gauges.0"),
    ({"bogus": 1}, "gauges.0.bogus"),
])
def test_bad_gauge_config_names_the_field(change: dict[str, object], field: str) -> None:
    raw = river().model_dump()
    raw.update(change)
    _, problems = parse_gauges([raw])
    assert problems and any(f"field '{field}" in p for p in problems), problems


def test_unknown_county_and_plan_and_duplicate_id(tmp_path: Path) -> None:
    raw = river().model_dump()
    raw["county"] = "999999"
    raw["thresholds"] = [{"key": "w", "name": "x", "value": 1, "action": "propose_plan", "plan": "nope"}]
    _, problems = parse_gauges([raw, raw], counties={"445381"}, plans={"flood"})
    text = "\n".join(problems)
    assert "unknown county '999999'" in text and "unknown response plan 'nope'" in text and "appears twice" in text


def test_bad_gauge_in_a_plan_file_names_file_and_line(tmp_path: Path) -> None:
    src = open("config/demo/yunfu.toml", encoding="utf-8").read()
    src = src.replace('boundaries = "', 'boundaries = "' + "../../../" + "work_nonexistent/", 0)
    bad = src.replace('id = "rain-luoding-luocheng"\nname = "罗定罗城雨量站"', 'id = "rain-luoding-luocheng"\nname = ""')
    path = tmp_path / "plan.toml"
    path.write_text(bad, encoding="utf-8")
    (tmp_path / "yunfu_counties.geojson").write_text(open("config/demo/yunfu_counties.geojson").read())
    plan = load_site_plan(path)
    with pytest.raises(ConfigError) as err:
        load_gauges(plan)
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if t == 'name = ""')
    assert f"{path}" in str(err.value) and f"{line}: field 'gauges.3.name'" in str(err.value)


# -- payloads ----------------------------------------------------------------------------------

def gauge_set() -> GaugeSet:
    gauges, problems = parse_gauges([river().model_dump()])
    assert not problems
    return gauges


NOW = T0 + 1000


def test_good_payloads() -> None:
    gs = gauge_set()
    assert parse_mqtt("cc/gauges/g1/reading", b'{"value": 12.5}', gs, NOW) == Reading("g1", 12.5, NOW)
    r = parse_mqtt("cc/gauges/g1/reading", b'{"value": 3, "at": "2027-01-15T08:00:00Z", "battery": 90}', gs,
                   1_800_000_000.0 + 10)
    assert r == Reading("g1", 3.0, 1_800_000_000.0)  # ISO 8601 with a zone; unknown keys ignored
    assert parse_mqtt("cc/gauges/g1/reading", json.dumps({"value": 3, "at": NOW - 5}).encode(), gs, NOW) == \
        Reading("g1", 3.0, NOW - 5)
    assert parse_item({"gauge": "g1", "value": 0}, gs, NOW) == Reading("g1", 0.0, NOW)


@pytest.mark.parametrize("topic, payload, reason", [
    ("cc/gauges/g1/reading", b"not json", "not_json"),
    ("cc/gauges/g1/reading", b"\xff\xfe", "not_json"),
    ("cc/gauges/g1/reading", b"[1, 2]", "not_object"),
    ("cc/gauges/g1/reading", b"12.5", "not_object"),
    ("cc/gauges/g1/reading", b'{"value": "12.5"}', "bad_value"),
    ("cc/gauges/g1/reading", b'{"value": true}', "bad_value"),
    ("cc/gauges/g1/reading", b'{"value": null}', "bad_value"),
    ("cc/gauges/g1/reading", b'{}', "bad_value"),
    ("cc/gauges/g1/reading", b'{"value": NaN}', "not_json"),
    ("cc/gauges/g1/reading", b'{"value": Infinity}', "not_json"),
    ("cc/gauges/g1/reading", b'{"value": 1e999}', "bad_value"),
    ("cc/gauges/g1/reading", b'{"value": 123456789012345678901234567890}', "bad_value"),
    ("cc/gauges/g1/reading", b'{"value": 51}', "out_of_range"),
    ("cc/gauges/g1/reading", b'{"value": -0.1}', "out_of_range"),
    ("cc/gauges/g1/reading", b'{"value": 1, "at": "yesterday"}', "bad_time"),
    ("cc/gauges/g1/reading", b'{"value": 1, "at": "2026-01-01T00:00:00"}', "bad_time"),
    ("cc/gauges/g1/reading", b'{"value": 1, "at": 1e400}', "bad_time"),
    ("cc/gauges/g1/reading", b'{"value": 1, "at": false}', "bad_time"),
    ("cc/gauges/g1/reading", json.dumps({"value": 1, "at": NOW + 3600}).encode(), "future_time"),
    ("cc/gauges/g1/reading", json.dumps({"value": 1, "at": 0}).encode(), "too_old"),
    ("cc/gauges/nope/reading", b'{"value": 1}', "unknown_gauge"),
    ("cc/gauges/g1", b'{"value": 1}', "bad_topic"),
    ("cc/gauges/a/b/reading", b'{"value": 1}', "bad_topic"),
    ("other/g1/reading", b'{"value": 1}', "bad_topic"),
    ("cc/gauges/g1/reading", b'{"value": 1, "pad": "' + b"x" * MAX_PAYLOAD + b'"}', "too_large"),
    ("cc/gauges/g1/reading", b"[" * 5000 + b"]" * 5000, "too_large"),
    ("cc/gauges/g1/reading", b"[" * 2000 + b"]" * 2000, "not_json"),
])
def test_bad_payloads_are_rejected_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    r = parse_mqtt(topic, payload, gauge_set(), NOW)
    assert isinstance(r, Rejected) and r.reason == reason, r


def test_unknown_gauge_is_named() -> None:
    r = parse_item({"gauge": "gauge-x", "value": 1}, gauge_set(), NOW)
    assert isinstance(r, Rejected) and "gauge-x" in r.detail
    assert parse_item("x", gauge_set(), NOW) == Rejected("not_object", "a reading is not a JSON object")
    assert isinstance(parse_item({"value": 1}, gauge_set(), NOW), Rejected)
    assert not math.isnan(NOW)
