from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.model import (
    Capability,
    Location,
    Position,
    Station,
    Unit,
    UnitStatus,
    assign_units,
    new_incident,
)
from dispatch.recommendation import Recommender, recommended_unit_ids
from dispatch.response_plans import Requirement
from gis.geodesy import haversine_m
from gis.routing import EtaEstimator, RoadNetwork

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
INC_POS = (112.00, 22.90)  # incident
PA = (112.00, 22.92)  # north, over a slow hill road (20 km/h)
PB = (112.03, 22.90)  # east, on the expressway (80 km/h)
PC = (111.98, 22.90)  # west, county road (40 km/h)
PD = (112.00, 22.86)  # south, county road (40 km/h)


def line(a: tuple[float, float], b: tuple[float, float], kmh: float) -> dict[str, object]:
    return {"type": "Feature", "properties": {"speed_kmh": kmh},
            "geometry": {"type": "LineString", "coordinates": [list(a), list(b)]}}


@pytest.fixture()
def net() -> RoadNetwork:
    return RoadNetwork.from_geojson({"type": "FeatureCollection", "features": [
        line(PA, INC_POS, 20), line(PB, INC_POS, 80), line(PC, INC_POS, 40), line(PD, INC_POS, 40)]})


def secs(p: tuple[float, float], kmh: float) -> float:
    return haversine_m(*p, *INC_POS) / (kmh / 3.6)


def fix(p: tuple[float, float], age_s: float = 10) -> Position:
    return Position(p[0], p[1], NOW - timedelta(seconds=age_s))


STATIONS = {"ST-S": Station("ST-S", "南站", "fire", *PD)}


def incident(training: bool = False):  # type: ignore[no-untyped-def]
    return new_incident("INC-1", "fire", "residential", 1, Location(*INC_POS), NOW, "t", training=training)


def engine(uid: str, p: tuple[float, float] | None, **kw: object) -> Unit:
    return Unit(uid, uid, "fire_engine", "ST-S", position=fix(p) if p else None, **kw)  # type: ignore[arg-type]


def test_ranking_matches_hand_computed_eta_order(net: RoadNetwork) -> None:
    r = Recommender(EtaEstimator(network=net), STATIONS)
    r.upsert_many([engine("A", PA), engine("B", PB), engine("C", PC)])
    # straight line: C 2.05 km < A 2.22 km < B 3.08 km; by road: B 139 s < C 185 s < A 400 s
    expect = sorted([("A", secs(PA, 20)), ("B", secs(PB, 80)), ("C", secs(PC, 40))], key=lambda x: x[1])
    assert [u for u, _ in expect] == ["B", "C", "A"]
    (res,) = r.recommend(incident(), [Requirement(Capability.ENGINE, 2)], NOW)
    assert [c.unit_id for c in res.candidates] == ["B", "C", "A"]
    for c, (_, s) in zip(res.candidates, expect, strict=True):
        assert c.eta.seconds == pytest.approx(s, rel=1e-9) and c.eta.method == "road"
    assert [c.recommended for c in res.candidates] == [True, True, False] and res.shortfall == 0
    b = res.candidates[0]
    assert b.straight_m == pytest.approx(haversine_m(*PB, *INC_POS))
    for text in ("B（水罐消防车）", "具备水罐/泡沫车", "直线 3.1 km", "预计 2 分钟", "实时定位", "轮换：近期未出动"):
        assert text in b.explanation


def test_capability_filter_and_no_double_pick(net: RoadNetwork) -> None:
    r = Recommender(EtaEstimator(network=net), STATIONS)
    r.upsert_many([
        Unit("L1", "登高1", "ladder", "ST-S", position=fix(PB)),
        Unit("ALS", "救护1", "ambulance_als", "ST-S", position=fix(PB)),
        Unit("BLS", "救护2", "ambulance_bls", "ST-S", position=fix(PA)),
        engine("E1", PC),
    ])
    res = r.recommend(incident(), [Requirement(Capability.ENGINE, 1), Requirement(Capability.ALS, 1),
                                   Requirement(Capability.BLS, 2), Requirement(Capability.BOAT, 1)], NOW)
    assert [c.unit_id for c in res[0].candidates] == ["E1"]  # the nearer ladder cannot pump water
    assert [c.unit_id for c in res[1].recommended] == ["ALS"]
    # ALS also has BLS and is ranked first, but it is already picked for the ALS requirement
    assert [c.unit_id for c in res[2].candidates] == ["ALS", "BLS"]
    assert [c.unit_id for c in res[2].recommended] == ["BLS"] and res[2].shortfall == 1
    assert res[3].candidates == () and res[3].shortfall == 1
    assert recommended_unit_ids(res) == ["E1", "ALS", "BLS"]


def test_out_of_service_busy_and_training_excluded(net: RoadNetwork) -> None:
    r = Recommender(EtaEstimator(network=net), STATIONS)
    oos = Unit("OOS", "OOS", "fire_engine", "ST-S", position=fix(PB), status=UnitStatus.OUT_OF_SERVICE)
    busy = Unit("BUSY", "BUSY", "fire_engine", "ST-S", position=fix(PB), status=UnitStatus.ON_SCENE, incident_id="X")
    ret = Unit("RET", "RET", "fire_engine", "ST-S", position=fix(PA), status=UnitStatus.RETURNING)
    drill = engine("DRILL", PB, training=True)
    r.upsert_many([oos, busy, ret, drill, engine("C", PC)])
    (res,) = r.recommend(incident(), [Requirement(Capability.ENGINE, 5)], NOW)
    assert [c.unit_id for c in res.candidates] == ["C", "RET"]
    assert "状态：返队" in res.candidates[1].explanation
    (res,) = r.recommend(incident(training=True), [Requirement(Capability.ENGINE, 5)], NOW)
    assert [c.unit_id for c in res.candidates] == ["DRILL"]
    # a unit put back in service becomes eligible again on update
    from dataclasses import replace

    r.upsert(replace(oos, status=UnitStatus.AVAILABLE))
    (res,) = r.recommend(incident(), [Requirement(Capability.ENGINE, 1)], NOW, exclude=["C"])
    assert [c.unit_id for c in res.candidates] == ["OOS", "RET"]


def test_station_position_for_units_without_avl_and_stale_fix(net: RoadNetwork) -> None:
    r = Recommender(EtaEstimator(network=net), STATIONS, stale_after_s=300)
    r.upsert_many([
        Unit("NOAVL", "NOAVL", "fire_engine", "ST-S", has_avl=False, position=fix(PB)),  # AVL ignored
        Unit("NOFIX", "NOFIX", "fire_engine", "ST-S"),
        Unit("STALE", "STALE", "fire_engine", "ST-S", position=Position(*PC, NOW - timedelta(minutes=12))),
    ])
    (res,) = r.recommend(incident(), [Requirement(Capability.ENGINE, 3)], NOW)
    by = {c.unit_id: c for c in res.candidates}
    assert by["NOAVL"].position == PD and by["NOAVL"].position_source == "station"
    assert by["NOFIX"].position == PD and "驻地" in by["NOFIX"].explanation
    assert by["NOAVL"].eta.seconds == pytest.approx(secs(PD, 40))
    assert by["STALE"].position_source == "avl_stale" and "定位过期 12 分钟" in by["STALE"].explanation


def test_rotation_breaks_near_ties() -> None:
    est = EtaEstimator()  # no network: great-circle assumption
    r = Recommender(est, STATIONS, rotation_tolerance_s=120)
    r.upsert_many([
        Unit("X", "X", "police_car", "ST-S", position=fix((112.0, 22.905)), last_dispatched_at=NOW - timedelta(minutes=20)),
        Unit("Y", "Y", "police_car", "ST-S", position=fix((112.0, 22.906)), last_dispatched_at=NOW - timedelta(hours=5)),
        Unit("Z", "Z", "police_car", "ST-S", position=fix((112.0, 22.96))),
    ])
    inc = new_incident("P", "police", "theft", 3, Location(*INC_POS), NOW, "t")
    (res,) = r.recommend(inc, [Requirement(Capability.PATROL, 1)], NOW)
    assert [c.unit_id for c in res.candidates] == ["Y", "X", "Z"]  # X and Y within 2 min: Y rested longer
    assert "上次出动 5.0 小时前" in res.candidates[0].explanation
    assert "估算" in res.candidates[0].explanation and "未配置路网" in res.candidates[0].explanation


def test_already_assigned_units_count(net: RoadNetwork) -> None:
    r = Recommender(EtaEstimator(network=net), STATIONS)
    a, b, c = engine("A", PA), engine("B", PB), engine("C", PC)
    inc, (b2,) = assign_units(incident(), [b], NOW, "d")
    r.upsert_many([a, b2, c])
    (res,) = r.recommend(inc, [Requirement(Capability.ENGINE, 2)], NOW)
    assert res.already_assigned == ("B",)
    assert [x.unit_id for x in res.recommended] == ["C"] and "B" not in [x.unit_id for x in res.candidates]


def test_candidate_limit_and_removal(net: RoadNetwork) -> None:
    r = Recommender(EtaEstimator(network=net), STATIONS, candidate_limit=2)
    r.upsert_many([engine("A", PA), engine("B", PB), engine("C", PC)])
    (res,) = r.recommend(incident(), [Requirement(Capability.ENGINE, 1)], NOW)
    assert [x.unit_id for x in res.candidates] == ["C", "A"]  # B is 3rd by straight line: not considered
    r.remove("C")
    (res,) = r.recommend(incident(), [Requirement(Capability.ENGINE, 1)], NOW)
    assert [x.unit_id for x in res.candidates] == ["B", "A"]


def test_unit_without_fix_or_known_station_is_refused() -> None:
    from dispatch.model import ValidationError

    r = Recommender(EtaEstimator(), STATIONS)
    with pytest.raises(ValidationError, match="驻地"):
        r.upsert(Unit("Q", "Q", "fire_engine", "ST-NOWHERE"))
    assert "Q" not in r.units
