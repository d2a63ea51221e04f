from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.training import TrainingSimulator, make_route
from gis.geodesy import haversine_m
from gis.routing import RoadNetwork

T = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
A, B, C = (112.00, 22.90), (112.02, 22.90), (112.02, 22.92)


def net() -> RoadNetwork:
    def f(p: tuple[float, float], q: tuple[float, float], v: float) -> dict[str, object]:
        return {"type": "Feature", "properties": {"speed_kmh": v}, "geometry": {"type": "LineString", "coordinates": [p, q]}}
    return RoadNetwork.from_geojson({"type": "FeatureCollection", "features": [f(A, B, 60), f(B, C, 60)]})


def test_route_follows_roads_and_interpolates() -> None:
    r = make_route(A, C, 36.0, T, net())  # 10 m/s
    assert r.points == (A, B, C)
    assert r.length_m == pytest.approx(haversine_m(*A, *B) + haversine_m(*B, *C))
    lon, lat, done = r.position_at(T + timedelta(seconds=100))  # 1 km along A→B
    assert not done and lat == pytest.approx(22.90) and haversine_m(*A, lon, lat) == pytest.approx(1000, rel=1e-3)
    assert r.position_at(T + timedelta(hours=1)) == (C[0], C[1], True)
    assert r.position_at(T - timedelta(seconds=5))[:2] == A
    straight = make_route(A, C, 36.0, T)
    assert straight.points == (A, C)
    with pytest.raises(ValueError):
        make_route(A, C, 0, T)


def test_simulator_is_deterministic_and_flags_training() -> None:
    s1 = TrainingSimulator([A, B, C], net(), seed=7)
    s2 = TrainingSimulator([A, B, C], net(), seed=7)
    i1, i2 = s1.incident(T), s2.incident(T)
    assert i1 == i2 and i1.training and i1.id.startswith("DRILL-7-") and "演练" in i1.description
    s1.send("E1", A, C, 36.0, T)
    fixes, arrived = s1.tick(T + timedelta(seconds=50))
    assert [u for u, _ in fixes] == ["E1"] and arrived == [] and fixes[0][1].speed_kmh == 36.0
    fixes, arrived = s1.tick(T + timedelta(hours=1))
    assert arrived == ["E1"] and (fixes[0][1].lon, fixes[0][1].lat) == C and s1.routes == {}
    r = s1.patrol("P1", A, 30.0, T)
    assert r.points[-1] in (A, B, C)
    with pytest.raises(ValueError):
        TrainingSimulator([], None)
