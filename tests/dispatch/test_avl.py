from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.avl import ArrivalDetector, validate_batch
from dispatch.model import Position, UnitStatus

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
UNITS = {"E1", "E2", "A1"}


def iso(dt: datetime) -> str:
    return dt.isoformat()


def test_bad_items_rejected_rest_accepted() -> None:
    batch = [
        {"unit_id": "E1", "lon": 111.57, "lat": 22.77, "ts": iso(NOW - timedelta(seconds=5)), "speed_kmh": 42},
        {"unit_id": "GHOST", "lon": 111.57, "lat": 22.77, "ts": iso(NOW)},
        {"unit_id": "E2", "lon": 181.0, "lat": 22.77, "ts": iso(NOW)},
        {"unit_id": "E2", "lon": 111.0, "lat": -95, "ts": iso(NOW)},
        {"unit_id": "E2", "lon": 111.0, "lat": 22.0, "ts": iso(NOW + timedelta(minutes=10))},
        {"unit_id": "E2", "lon": 111.0, "lat": 22.0, "ts": "2026-11-21T09:00:00"},  # no offset
        {"unit_id": "E2", "lon": 111.0, "lat": 22.0, "ts": "yesterday"},
        {"unit_id": "E2", "lon": "111", "lat": 22.0, "ts": iso(NOW)},
        {"unit_id": "E2", "lon": 111.0, "lat": 22.0, "ts": iso(NOW), "speed_kmh": -3},
        "not an object",
        {"lon": 111.0, "lat": 22.0, "ts": iso(NOW)},
        {"unit_id": "E2", "lon": 111.0, "lat": 22.0, "ts": iso(NOW - timedelta(days=3))},
        {"unit_id": "A1", "lon": 112.0, "lat": 22.9, "ts": "2026-11-21T17:00:10+08:00"},  # = NOW + 10 s, within skew
        {"unit_id": "E2", "lon": 111.0, "lat": 22.0, "ts": NOW.timestamp() - 1},
    ]
    r = validate_batch(batch, UNITS, NOW)
    assert [f.index for f in r.accepted] == [0, 12, 13]
    assert [(x.index, x.code) for x in r.rejected] == [
        (1, "unknown_unit"), (2, "bad_coordinates"), (3, "bad_coordinates"), (4, "future_timestamp"),
        (5, "bad_timestamp"), (6, "bad_timestamp"), (7, "bad_coordinates"), (8, "bad_value"),
        (9, "malformed"), (10, "malformed"), (11, "too_old")]
    reasons = {x.index: x.reason for x in r.rejected}
    assert "GHOST" in reasons[1] and "经度" not in reasons[1] and "lon" in reasons[2] and "超前 600 秒" in reasons[4]
    assert "时区" in reasons[5]
    assert r.accepted[0].position.speed_kmh == 42 and r.accepted[1].position.at == NOW + timedelta(seconds=10)
    body = r.as_json()
    assert body["accepted"] == 3 and body["rejected"][0] == {
        "index": 1, "unit_id": "GHOST", "code": "unknown_unit", "reason": "未知力量 GHOST"}
    assert validate_batch({"unit_id": "E1"}, UNITS, NOW).rejected[0].code == "malformed"


def test_out_of_order_fixes_are_not_latest() -> None:
    t = [NOW - timedelta(seconds=s) for s in (30, 10, 20)]
    batch = [{"unit_id": "E1", "lon": 111.5 + i / 100, "lat": 22.7, "ts": iso(x)} for i, x in enumerate(t)]
    r = validate_batch(batch, UNITS, NOW)
    assert [f.latest for f in r.accepted] == [False, True, False]
    r = validate_batch(batch[:1], UNITS, NOW, last_fix_at={"E1": NOW - timedelta(seconds=1)})
    assert r.accepted[0].latest is False


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["unit_id", "lon", "lat", "ts", "speed_kmh", "heading_deg", "accuracy_m"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                              st.sampled_from(["E1", "A1", "2026-11-21T09:00:00+08:00"]))),
    st.integers(), st.text(max_size=5)), max_size=20))
def test_fuzz_every_item_is_either_accepted_or_rejected(items: list[object]) -> None:
    r = validate_batch(items, UNITS, NOW)
    assert sorted([f.index for f in r.accepted] + [x.index for x in r.rejected]) == list(range(len(items)))
    for f in r.accepted:
        assert -180 <= f.position.lon <= 180 and f.position.at.tzinfo is not None


def test_geofence_arrival_needs_consecutive_fixes_and_fires_once() -> None:
    scene = (111.5700, 22.7700)
    where = {"INC-1": scene}.get
    g = ArrivalDetector(radius_m=150, min_fixes=2)

    def fix(dlat_m: float, s: int) -> Position:
        return Position(scene[0], scene[1] + dlat_m / 111_195, NOW + timedelta(seconds=s))

    en = UnitStatus.EN_ROUTE
    assert g.observe("E1", en, "INC-1", fix(1000, 0), where) is None
    assert g.observe("E1", en, "INC-1", fix(100, 5), where) is None  # one fix inside
    assert g.observe("E1", en, "INC-1", fix(400, 10), where) is None  # drove past
    assert g.observe("E1", en, "INC-1", fix(120, 15), where) is None
    a = g.observe("E1", en, "INC-1", fix(40, 20), where)
    assert a is not None and a.incident_id == "INC-1" and a.at == NOW + timedelta(seconds=20)
    assert 39 < a.distance_m < 41
    assert g.observe("E1", en, "INC-1", fix(30, 25), where) is None  # only once
    # an available unit passing the scene, or a unit on another incident, does not arrive
    for _ in range(3):
        assert g.observe("E2", UnitStatus.AVAILABLE, None, fix(0, 30), where) is None
        assert g.observe("A1", UnitStatus.DISPATCHED, "INC-404", fix(0, 30), where) is None
