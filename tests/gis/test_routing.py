from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gis.geodesy import haversine_m
from gis.routing import EtaEstimator, RoadNetwork, RoadNetworkError

A, B, C, D = (112.00, 22.90), (112.01, 22.90), (112.02, 22.90), (112.01, 22.92)
FAR_ISLAND = [(112.30, 22.60), (112.31, 22.60)]


def road(coords: list[tuple[float, float]], speed: Any, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"speed_kmh": speed, **props},
            "geometry": {"type": "LineString", "coordinates": [list(c) for c in coords]}}


def fc(*feats: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(feats)}


@pytest.fixture()
def net() -> RoadNetwork:
    return RoadNetwork.from_geojson(fc(
        road([A, B, C], 60),            # main road
        road([A, D], 30), road([D, C], 30),  # slow detour
        road([B, D], 50, oneway=True),  # one-way lane B → D
        road(FAR_ISLAND, 40),           # disconnected piece
    ))


def t(p: tuple[float, float], q: tuple[float, float], kmh: float) -> float:
    return haversine_m(*p, *q) / (kmh / 3.6)


def test_shortest_time_path_hand_computed(net: RoadNetwork) -> None:
    est = EtaEstimator(network=net)
    e = est.eta(A, C, "fire_engine")
    assert e.method == "road"
    assert e.seconds == pytest.approx(t(A, B, 60) + t(B, C, 60), rel=1e-9)
    assert e.distance_m == pytest.approx(haversine_m(*A, *C), rel=1e-6)
    # D → B must go D→A→B or D→C→B (the lane is one-way B → D)
    e = est.eta(D, B, "fire_engine")
    expect = min(t(D, A, 30) + t(A, B, 60), t(D, C, 30) + t(C, B, 60))
    assert e.seconds == pytest.approx(expect, rel=1e-9)
    assert est.eta(B, D, "x").seconds == pytest.approx(t(B, D, 50), rel=1e-9)


def test_snapping_adds_access_leg(net: RoadNetwork) -> None:
    est = EtaEstimator(network=net, access_speed_kmh=18)
    off = (112.0, 22.9009)  # ~100 m north of A
    e = est.eta(off, C, "police_car")
    snap = haversine_m(*off, *A)
    assert e.seconds == pytest.approx(t(A, C, 60) + snap / 5.0, rel=1e-6)
    node, d = net.snap(*off)
    assert node == A and d == pytest.approx(snap)


def test_batch_equals_single_and_uses_cache(net: RoadNetwork) -> None:
    est = EtaEstimator(network=net)
    origins = [(A, "ladder"), (B, "ladder"), (D, "boat")]
    batch = est.etas_to(C, origins)
    assert [round(e.seconds, 6) for e in batch] == [round(est.eta(o, C, ty).seconds, 6) for o, ty in origins]
    assert len(net._cache) == 1


def test_fallbacks_carry_assumption(net: RoadNetwork) -> None:
    no_net = EtaEstimator(detour_factor=1.5, type_speeds_kmh={"boat": 12.0})
    e = no_net.eta(A, C, "boat")
    assert e.method == "great_circle" and "未配置路网" in e.assumption and "1.5" in e.assumption and "12" in e.assumption
    assert e.seconds == pytest.approx(haversine_m(*A, *C) * 1.5 / (12 / 3.6))
    assert no_net.eta(A, C, "unknown").assumption.count("40") == 1  # default speed
    est = EtaEstimator(network=net)
    assert "起点距路网" in est.eta((112.5, 22.5), C, "x").assumption
    assert "目标距路网" in est.eta(A, (112.5, 22.5), "x").assumption
    assert "不连通" in est.eta(FAR_ISLAND[0], C, "x").assumption


def test_bad_road_data(tmp_path: Path) -> None:
    with pytest.raises(RoadNetworkError, match=r"features\[0\].*speed_kmh"):
        RoadNetwork.from_geojson(fc(road([A, B], 0)))
    with pytest.raises(RoadNetworkError, match=r"features\[1\].*speed_kmh"):
        RoadNetwork.from_geojson(fc(road([A, B], 50), road([B, C], "fast")))
    with pytest.raises(RoadNetworkError, match="LineString"):
        RoadNetwork.from_geojson(fc({"type": "Feature", "properties": {"speed_kmh": 5},
                                     "geometry": {"type": "Point", "coordinates": [1, 2]}}))
    with pytest.raises(RoadNetworkError, match="经度"):
        RoadNetwork.from_geojson(fc(road([A, (200.0, 1.0)], 50)))
    with pytest.raises(RoadNetworkError, match="路网为空"):
        RoadNetwork.from_geojson(fc())
    p = tmp_path / "roads.geojson"
    p.write_text(json.dumps(fc(road([A, B], 50))))
    assert RoadNetwork.from_geojson(p).graph.number_of_edges() == 2
    p.write_text("nope")
    with pytest.raises(RoadNetworkError, match="roads.geojson"):
        RoadNetwork.from_geojson(p)


def test_resumable_search_matches_networkx_on_a_grid() -> None:
    import random

    import networkx as nx

    rng = random.Random(3)
    feats = []
    n = 12
    for i in range(n):
        for j in range(n):
            for di, dj in ((1, 0), (0, 1)):
                if i + di < n and j + dj < n:
                    feats.append(road([(112 + i / 100, 22 + j / 100), (112 + (i + di) / 100, 22 + (j + dj) / 100)],
                                      rng.choice([20, 40, 60]), oneway=rng.random() < 0.2))
    net = RoadNetwork.from_geojson(fc(*feats))
    target = (112.05, 22.05)
    expect = nx.single_source_dijkstra_path_length(net.graph.reverse(), target, weight="seconds")
    some = list(net.graph.nodes)[:5]
    partial = dict(net.times_to(target, some))
    assert all(partial[s][0] == pytest.approx(expect[s]) for s in some if s in expect)
    assert len(partial) < len(expect)  # stopped early
    full = net.times_to(target)  # resumes the cached search
    assert set(full) == set(expect)
    assert all(full[k][0] == pytest.approx(v) for k, v in expect.items())
