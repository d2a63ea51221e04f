"""The static SVG map (gis/static_map.py): pure, parses as XML, labels escaped, points outside the
view left out, the projection keeps north up and east right."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from shapely.geometry import box

from gis.jurisdictions import Area
from gis.map_builder import MapPoint
from gis.static_map import View, fit_view, render_svg

NS = "{http://www.w3.org/2000/svg}"


def test_svg_draws_areas_points_and_escapes_labels() -> None:
    view = View(111.57, 22.77, half_width_km=10)
    county = Area(445381, "罗定市", "county", box(111.5, 22.7, 111.65, 22.85))
    svg = render_svg(view, [county], {"resources": [MapPoint("d", "<仓库 & 库>", 111.58, 22.78),
                                                    MapPoint("far", "远处", 113.0, 23.5)]},
                     focus=[MapPoint("i", "警情", 111.57, 22.77, "#b60205")])
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "<仓库 & 库>" in texts and "警情" in texts and "远处" not in texts and "罗定市" in texts
    assert len(root.findall(f"{NS}path")) == 1


def test_projection_north_up_east_right() -> None:
    v = View(111.57, 22.77, half_width_km=10, width_px=1000, height_px=600)
    assert v.project(111.57, 22.77) == (500, 300)
    x, y = v.project(111.58, 22.78)
    assert x > 500 and y < 300
    east_10km = 10 / (111.32 * 0.9220)  # degrees of longitude for 10 km at 22.77°N
    assert abs(v.project(111.57 + east_10km, 22.77)[0] - 1000) < 2


def test_fit_view_shows_every_point_within_bounds() -> None:
    near = fit_view(111.68, 22.525, [])
    assert near.half_width_km == 10
    depot = MapPoint("d", "罗定市应急物资仓库", 111.578, 22.765)  # ~28 km north-west of 罗镜镇
    v = fit_view(111.68, 22.525, [depot])
    assert v.contains(*v.project(depot.lon, depot.lat)) and 10 < v.half_width_km <= 80
    far = fit_view(111.68, 22.525, [MapPoint("x", "广州", 113.26, 23.13)])
    assert far.half_width_km == 80  # capped: a far point is left out rather than shrinking the incident
