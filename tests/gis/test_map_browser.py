"""The folium map works in headless Chromium with Leaflet served locally and no other host contacted."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gis.jurisdictions import load_areas_geojson
from gis.map_builder import MapPoint, MapSpec, render_html

pytestmark = pytest.mark.browser


def _leaflet_dist(repo_root: Path) -> Path:
    env = os.environ.get("CC_LEAFLET_DIST")
    d = Path(env) if env else repo_root / "web_console" / "frontend" / "node_modules" / "leaflet" / "dist"
    if not (d / "leaflet.js").is_file():
        pytest.fail(f"npm package leaflet not installed at {d} (make test installs it)")
    return d


def test_map_renders_in_chromium_offline(repo_root: Path, counties_path: Path, artifacts_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    dist = _leaflet_dist(repo_root)
    html = render_html(MapSpec(
        counties=load_areas_geojson(counties_path),
        layers={"stations": [MapPoint("s1", "罗定消防站", 111.57, 22.77)],
                "flood_gauges": [MapPoint("g1", "南江水文站", 111.6, 22.8)]},
    ))
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            def handle(route):  # type: ignore[no-untyped-def]
                url = route.request.url
                requests.append(url)
                if url == "http://cc.test/map":
                    route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
                elif url.startswith("http://cc.test/static/vendor/leaflet/dist/"):
                    f = dist / url.removeprefix("http://cc.test/static/vendor/leaflet/dist/")
                    ctype = "text/css" if f.suffix == ".css" else "image/png" if f.suffix == ".png" else "application/javascript"
                    route.fulfill(status=200, content_type=ctype, body=f.read_bytes())
                else:
                    route.abort()

            page.route("**/*", handle)
            page.goto("http://cc.test/map", wait_until="load")
            # folium names the map variable map_<id>; count drawn vector features (canvas renderer)
            count_js = """() => { const k = Object.keys(window).find(k => k.startsWith('map_'));
                if (!k) return 0; let n = 0;
                window[k].eachLayer(l => { if (l instanceof L.Path) n++; }); return n; }"""
            page.wait_for_function(count_js, timeout=10_000)
            n_paths = page.evaluate(count_js)
            assert page.locator("canvas.leaflet-zoom-animated").count() >= 1
            assert page.evaluate("typeof L !== 'undefined' && L.version") == "1.9.4"
            layer_labels = page.inner_text(".leaflet-control-layers")
            page.screenshot(path=str(artifacts_dir / "gis_map_builder.png"))
        finally:
            browser.close()
    assert not errors, errors
    assert n_paths == 7  # 5 county polygons + 2 circle markers
    assert "县（市、区）界" in layer_labels and "水文站" in layer_labels
    assert all(u.startswith("http://cc.test/") for u in requests), requests
