from __future__ import annotations

import json
import re
from pathlib import Path

import folium
import pytest

from gis.jurisdictions import load_areas_geojson
from gis.map_builder import MapAssetError, MapPoint, MapSpec, build_map, localize_assets, render_html

URL = re.compile(r"https?://", re.I)


def spec(counties_path: Path, **kw: object) -> MapSpec:
    return MapSpec(
        counties=load_areas_geojson(counties_path),
        layers={
            "stations": [MapPoint("s1", "罗定消防站", 111.57, 22.77, approximate=True)],
            "hydrants": [MapPoint("h1", "消火栓 <1>", 111.571, 22.771)],
            "flood_gauges": [MapPoint("g1", "南江水文站", 111.6, 22.8, detail="水位 21.3 m")],
        },
        **kw,  # type: ignore[arg-type]
    )


def test_rendered_html_has_no_remote_url(counties_path: Path) -> None:
    html = render_html(spec(counties_path))
    assert not URL.search(html), URL.findall(html)
    assert '<script src="/static/vendor/leaflet/dist/leaflet.js"></script>' in html
    assert 'href="/static/vendor/leaflet/dist/leaflet.css"' in html
    for name in ("罗定市", "云城区", "罗定消防站", "南江水文站", "水位 21.3 m", "县（市、区）界", "消火栓", "位置为示意"):
        assert name in html or json.dumps(name)[1:-1] in html, name
    assert "消火栓 &lt;1&gt;" in html  # names are escaped
    assert "tileLayer" not in html  # default basemap: vector boundaries only


def test_local_tiles_and_asset_base(counties_path: Path) -> None:
    html = render_html(spec(counties_path, tiles_url="/tiles/{z}/{x}/{y}", asset_base="/assets/"))
    assert "/tiles/{z}/{x}/{y}" in html and "/assets/leaflet/dist/leaflet.js" in html
    assert not URL.search(html)
    with pytest.raises(MapAssetError, match="本地"):
        build_map(spec(counties_path, tiles_url="https://tile.openstreetmap.org/{z}/{x}/{y}.png"))


def test_default_folium_map_would_leak_cdn_urls() -> None:
    """Guard: confirms the check above can fail (folium's defaults are CDN URLs)."""
    html = folium.Map(tiles=None).get_root().render()
    assert URL.search(html)


def test_unknown_remote_asset_is_refused() -> None:
    m = folium.Map(tiles=None)
    el = folium.Element("")
    el.default_js = [("mystery", "https://cdn.example.com/x.js")]  # type: ignore[attr-defined]
    m.add_child(el)
    with pytest.raises(MapAssetError, match="mystery"):
        localize_assets(m.get_root())
