from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gis.geodesy import CoordinateError, haversine_m
from gis.unit_index import UnitIndex


def brute(points: dict[str, tuple[float, float]], lon: float, lat: float, k: int) -> list[str]:
    return [u for u, _ in sorted(points.items(), key=lambda kv: (haversine_m(lon, lat, *kv[1]), kv[0]))[:k]]


def test_nearest_matches_brute_force_with_moves() -> None:
    rng = random.Random(7)
    idx = UnitIndex(cell_deg=0.02)
    pts: dict[str, tuple[float, float]] = {}
    for i in range(2000):
        p = (rng.uniform(111.2, 112.5), rng.uniform(22.3, 23.4))
        idx.update(f"u{i}", *p)
        pts[f"u{i}"] = p
    for i in range(0, 2000, 3):  # move a third of them, some far
        p = (rng.uniform(111.2, 112.5), rng.uniform(22.3, 23.4))
        idx.update(f"u{i}", *p)
        pts[f"u{i}"] = p
    for i in range(0, 2000, 10):
        idx.remove(f"u{i}")
        del pts[f"u{i}"]
    assert len(idx) == len(pts)
    for _ in range(50):
        q = (rng.uniform(111.0, 112.7), rng.uniform(22.2, 23.5))
        got = [n.unit_id for n in idx.nearest(*q, k=7)]
        assert got == brute(pts, *q, 7)


def test_filter_and_max_distance() -> None:
    idx = UnitIndex()
    idx.update("a", 112.0, 22.9)
    idx.update("b", 112.001, 22.9)
    idx.update("c", 112.5, 22.9)
    r = idx.nearest(112.0, 22.9, k=5, where=lambda u: u != "a")
    assert [n.unit_id for n in r] == ["b", "c"]
    r = idx.nearest(112.0, 22.9, k=5, max_distance_m=1000)
    assert [n.unit_id for n in r] == ["a", "b"] and r[1].distance_m == pytest.approx(102.6, abs=0.5)
    assert idx.nearest(112.0, 22.9, k=0) == []
    assert UnitIndex().nearest(112.0, 22.9) == []
    with pytest.raises(CoordinateError):
        idx.update("d", 190.0, 0.0)
    assert "d" not in idx and idx.position("a") == (112.0, 22.9)
    idx.remove("zzz")  # unknown: no error


@settings(max_examples=60, deadline=None)
@given(
    pts=st.lists(st.tuples(st.floats(111.0, 113.0), st.floats(22.0, 24.0)), min_size=1, max_size=60),
    q=st.tuples(st.floats(110.0, 114.0), st.floats(21.0, 25.0)),
    k=st.integers(1, 10),
)
def test_nearest_property(pts: list[tuple[float, float]], q: tuple[float, float], k: int) -> None:
    idx = UnitIndex(cell_deg=0.1)
    d = {f"u{i}": p for i, p in enumerate(pts)}
    for u, p in d.items():
        idx.update(u, *p)
    got = idx.nearest(*q, k=k)
    want = brute(d, *q, k)
    assert [round(n.distance_m, 3) for n in got] == [round(haversine_m(*q, *d[u]), 3) for u in want]
