"""Jurisdiction lookup on the real Yunfu county boundaries (config/demo/yunfu_counties.geojson)."""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from shapely.geometry import Point, Polygon, shape
from shapely.ops import unary_union

from gis.geodesy import CoordinateError, haversine_m, metres_per_degree
from gis.jurisdictions import Area, JurisdictionError, Jurisdictions, load_areas_geojson

NAMES = {445302: "云城区", 445303: "云安区", 445321: "新兴县", 445322: "郁南县", 445381: "罗定市"}


def _rings(counties_path: Path) -> dict[int, list[tuple[float, float]]]:
    doc = json.loads(counties_path.read_text(encoding="utf-8"))
    out: dict[int, list[tuple[float, float]]] = {}
    for f in doc["features"]:
        pts: list[tuple[float, float]] = []
        for poly in f["geometry"]["coordinates"]:
            for ring in poly:
                pts.extend((float(x), float(y)) for x, y in ring)
        out[f["properties"]["adcode"]] = pts
    return out


def _shared_vertices(counties_path: Path) -> dict[frozenset[int], list[tuple[float, float]]]:
    """Vertices that appear (bit-identical) in the rings of two or more counties."""
    owners: dict[tuple[float, float], set[int]] = {}
    for code, pts in _rings(counties_path).items():
        for p in pts:
            owners.setdefault(p, set()).add(code)
    shared: dict[frozenset[int], list[tuple[float, float]]] = {}
    for p, codes in owners.items():
        if len(codes) > 1:
            shared.setdefault(frozenset(codes), []).append(p)
    return shared


def test_centres_resolve_to_their_county(yunfu: Jurisdictions, counties_path: Path) -> None:
    doc = json.loads(counties_path.read_text(encoding="utf-8"))
    for f in doc["features"]:
        code = f["properties"]["adcode"]
        # the DataV "center" is the seat; a representative point is guaranteed inside
        rp = shape(f["geometry"]).representative_point()
        m = yunfu.county_of(rp.x, rp.y)
        assert m is not None and m.code == code and m.name == NAMES[code]
        assert not m.fallback and not m.on_border


def test_known_places(yunfu: Jurisdictions) -> None:
    # Luoding city seat, Xinxing seat (Xincheng town), Yunan seat (Dushi town)
    assert yunfu.county_of(111.5698, 22.7685).code == 445381  # type: ignore[union-attr]
    assert yunfu.county_of(112.2255, 22.6960).code == 445321  # type: ignore[union-attr]
    assert yunfu.county_of(111.5350, 23.2340).code == 445322  # type: ignore[union-attr]


def test_points_exactly_on_shared_borders_take_lowest_adcode(yunfu: Jurisdictions, counties_path: Path) -> None:
    shared = _shared_vertices(counties_path)
    pairs = [k for k in shared if len(k) == 2]
    # the real data has at least these neighbouring pairs with exactly shared vertices
    assert {frozenset({445302, 445303}), frozenset({445303, 445322}), frozenset({445322, 445381})} <= set(pairs)
    checked = 0
    for codes, pts in shared.items():
        for x, y in pts[:: max(1, len(pts) // 7)]:
            m = yunfu.county_of(x, y)
            assert m is not None
            assert m.code == min(codes), (x, y, codes, m)
            assert set(m.border_with) >= set(codes)
            assert m.on_border and not m.fallback
            checked += 1
    assert checked >= 20


def test_midpoint_of_shared_edge_is_on_border(yunfu: Jurisdictions, counties_path: Path) -> None:
    """A point on a shared segment (not a vertex) is within the 1 cm tolerance of both counties."""
    a = shape(json.loads(counties_path.read_text(encoding="utf-8"))["features"][0]["geometry"])
    shared = _shared_vertices(counties_path)[frozenset({445302, 445303})]
    ring = list(a.geoms[0].exterior.coords)
    s = set(shared)
    for p, q in zip(ring, ring[1:], strict=False):
        if p in s and q in s:
            mid = ((p[0] + q[0]) / 2, (p[1] + q[1]) / 2)
            m = yunfu.county_of(*mid)
            assert m is not None and m.code == 445302 and m.border_with == (445302, 445303)
            return
    pytest.fail("no shared segment found")


def test_points_just_either_side_of_a_border(yunfu: Jurisdictions, counties_path: Path) -> None:
    """20 m either side of a shared segment the two neighbours are told apart."""
    doc = json.loads(counties_path.read_text(encoding="utf-8"))
    geoms = {f["properties"]["adcode"]: shape(f["geometry"]) for f in doc["features"]}
    shared = _shared_vertices(counties_path)
    for pair in (frozenset({445322, 445381}), frozenset({445302, 445321}), frozenset({445303, 445381})):
        a, b = sorted(pair)
        s = set(shared[pair])
        ring = list(geoms[a].geoms[0].exterior.coords)
        segs = [(p, q) for p, q in zip(ring, ring[1:], strict=False) if p in s and q in s]
        segs = [sg for sg in segs if haversine_m(*sg[0], *sg[1]) > 200]
        assert segs, pair
        (x1, y1), (x2, y2) = segs[len(segs) // 2]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        kx, ky = metres_per_degree(my)
        dx, dy = (x2 - x1) * kx, (y2 - y1) * ky
        n = math.hypot(dx, dy)
        nx, ny = -dy / n, dx / n  # unit normal in metres
        seen = set()
        for side in (1, -1):
            px, py = mx + side * 20 * nx / kx, my + side * 20 * ny / ky
            m = yunfu.county_of(px, py)
            assert m is not None and not m.on_border and not m.fallback
            assert geoms[m.code].contains(Point(px, py))
            seen.add(m.code)
        assert seen == {a, b}


def test_triple_point_takes_lowest_of_three(yunfu: Jurisdictions, counties_path: Path) -> None:
    triples = [k for k in _shared_vertices(counties_path) if len(k) >= 3]
    if not triples:
        pytest.skip("not applicable: no vertex shared by three counties in this data")
    for codes in triples:
        x, y = _shared_vertices(counties_path)[codes][0]
        m = yunfu.county_of(x, y)
        assert m is not None and m.code == min(codes) and len(m.border_with) >= 3


def test_nearest_area_fallback_reports_distance(yunfu: Jurisdictions, counties_path: Path) -> None:
    doc = json.loads(counties_path.read_text(encoding="utf-8"))
    union = unary_union([shape(f["geometry"]) for f in doc["features"]])
    # westernmost vertex of the city is in Luoding; step 500 m further west
    west = min(union.exterior.coords if isinstance(union, Polygon) else union.geoms[0].exterior.coords)
    kx, _ = metres_per_degree(west[1])
    m = yunfu.county_of(west[0] - 500 / kx, west[1])
    assert m is not None and m.fallback and m.code == 445381
    assert 400 < m.distance_m <= 500.5
    # Guangzhou is ~100 km away: no county
    assert yunfu.county_of(113.2644, 23.1291) is None
    # a tighter fallback radius turns the 500 m point away
    tight = Jurisdictions(load_areas_geojson(counties_path), max_fallback_m=100)
    assert tight.county_of(west[0] - 500 / kx, west[1]) is None


def test_township_level_with_given_polygons(counties_path: Path) -> None:
    # two made-up townships splitting a box inside Luoding, sharing the x=111.57 edge
    t1 = Area(445381001, "甲镇", "township", Polygon([(111.55, 22.75), (111.57, 22.75), (111.57, 22.78), (111.55, 22.78)]), 445381)
    t2 = Area(445381002, "乙镇", "township", Polygon([(111.57, 22.75), (111.59, 22.75), (111.59, 22.78), (111.57, 22.78)]), 445381)
    j = Jurisdictions(load_areas_geojson(counties_path), [t2, t1])
    r = j.resolve(111.56, 22.76)
    assert r.county and r.county.code == 445381 and r.township and r.township.name == "甲镇"
    r = j.resolve(111.57, 22.76)
    assert r.township and r.township.code == 445381001 and r.township.border_with == (445381001, 445381002)
    assert j.resolve(111.58, 22.76).township.code == 445381002  # type: ignore[union-attr]
    assert j.area(445381002).name == "乙镇"


def test_bad_inputs(yunfu: Jurisdictions, tmp_path: Path) -> None:
    for lon, lat in ((181.0, 22.0), (111.0, -91.0), (float("nan"), 22.0)):
        with pytest.raises(CoordinateError):
            yunfu.resolve(lon, lat)
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "x"}, "geometry": {"type": "Point", "coordinates": [0, 0]}}]}))
    with pytest.raises(JurisdictionError, match=r"features\[0\].*adcode"):
        load_areas_geojson(bad)
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"adcode": 1}, "geometry": {"type": "Point", "coordinates": [0, 0]}}]}))
    with pytest.raises(JurisdictionError, match="Polygon"):
        load_areas_geojson(bad)
    bad.write_text("{not json")
    with pytest.raises(JurisdictionError, match="bad.geojson"):
        load_areas_geojson(bad)
    sq = Polygon([(0, 0), (1, 0), (1, 1)])
    with pytest.raises(JurisdictionError, match="重复"):
        Jurisdictions([Area(1, "a", "county", sq), Area(1, "b", "county", sq)])
    assert Counter(a.level for a in yunfu.all_areas()) == {"county": 5}


def test_fallback_uses_ground_distance_not_degrees() -> None:
    """At 60° N a degree of longitude is half a degree of latitude: the planar-nearest area
    (0.010° north) is farther on the ground than the one 0.015° east."""
    east = Area(2, "东", "county", Polygon([(10.015, 59.9), (10.1, 59.9), (10.1, 60.1), (10.015, 60.1)]))
    north = Area(1, "北", "county", Polygon([(9.9, 60.010), (10.01, 60.010), (10.01, 60.1), (9.9, 60.1)]))
    j = Jurisdictions([north, east], max_fallback_m=5000)
    m = j.county_of(10.0, 60.0)
    assert m is not None and m.fallback and m.code == 2
    assert m.distance_m == pytest.approx(haversine_m(10.0, 60.0, 10.015, 60.0), rel=1e-3)
