"""Folium maps with every asset served locally.

folium points Leaflet, jQuery, Bootstrap and Font Awesome at public CDNs. A command centre may run
on a network with no Internet, so ``localize_assets`` rewrites every element's ``default_js`` /
``default_css``: Leaflet goes to our static URL (npm package ``leaflet`` in
``web_console/frontend/node_modules``, mounted by the app at ``asset_base``); the others are
dropped because our layers use only core Leaflet (GeoJSON, CircleMarker, Tooltip, LayerControl).
An unknown asset makes ``build_map`` raise rather than leak a CDN URL into a page.

The default basemap is the vector boundaries with no tiles; an optional local tile URL (served
from an MBTiles file by ``gis.mbtiles``) can be added.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import folium
from branca.element import Element
from shapely.geometry import mapping
from shapely.ops import unary_union

from gis.jurisdictions import Area

DEFAULT_ASSET_BASE = "/static/vendor"
# folium asset names → path below asset_base (files of the npm package "leaflet" 1.9.x)
LOCAL_ASSETS: dict[str, str] = {
    "leaflet": "leaflet/dist/leaflet.js",
    "leaflet_css": "leaflet/dist/leaflet.css",
}
# folium/branca assets we do not need for the layers we draw
DROPPED_ASSETS = frozenset(
    {
        "jquery",
        "bootstrap",
        "bootstrap_css",
        "glyphicons_css",
        "awesome_markers",
        "awesome_markers_css",
        "awesome_markers_font_css",
        "awesome_rotate_css",
    }
)
_REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)

# Layer names shown in the layer control (zh-CN UI)
LAYER_NAMES = {
    "counties": "县（市、区）界",
    "townships": "镇（街道）界",
    "stations": "站点",
    "hydrants": "消火栓",
    "flood_gauges": "水文站",
    "incidents": "警情",
    "units": "力量",
}
LAYER_COLOURS = {"stations": "#1f6feb", "hydrants": "#d1242f", "flood_gauges": "#0a7f86"}
PRIORITY_COLOURS = {1: "#b60205", 2: "#e36209", 3: "#dbab09", 4: "#0e8a16", 5: "#6a737d"}


class MapAssetError(RuntimeError):
    """An element wants a JS/CSS asset we have no local copy for."""


@dataclass(frozen=True)
class MapPoint:
    """A point on the map (station, hydrant, gauge, incident, unit)."""

    id: str
    name: str
    lon: float
    lat: float
    colour: str | None = None
    detail: str = ""  # extra tooltip line
    approximate: bool = False  # shown as "位置为示意" so nobody mistakes demo data for a survey


@dataclass
class MapSpec:
    """What to draw."""

    counties: Sequence[Area] = ()
    townships: Sequence[Area] = ()
    layers: Mapping[str, Sequence[MapPoint]] = field(default_factory=dict)
    tiles_url: str | None = None  # e.g. "/tiles/{z}/{x}/{y}" (local MBTiles); None = vector only
    tiles_attribution: str = "离线瓦片"
    center: tuple[float, float] | None = None  # (lon, lat); default: centre of the counties
    zoom: int = 9
    asset_base: str = DEFAULT_ASSET_BASE


def areas_geojson(areas: Iterable[Area]) -> dict[str, object]:
    """The areas as a GeoJSON FeatureCollection (properties `code` and `name`), for any map."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": a.code, "name": a.name},
                "geometry": mapping(a.geometry),
            }
            for a in areas
        ],
    }


def localize_assets(root: Element, asset_base: str = DEFAULT_ASSET_BASE) -> None:
    """Point every element's JS/CSS at local URLs; raise MapAssetError for unknown assets."""
    base = asset_base.rstrip("/")
    stack: list[Element] = [root]
    while stack:
        el = stack.pop()
        for attr in ("default_js", "default_css"):
            assets = getattr(el, attr, None)
            if not assets:
                continue
            local: list[tuple[str, str]] = []
            for name, url in assets:
                if name in LOCAL_ASSETS:
                    local.append((name, f"{base}/{LOCAL_ASSETS[name]}"))
                elif name in DROPPED_ASSETS:
                    continue
                elif not re.match(r"(?:https?:)?//", url):
                    local.append((name, url))  # already local
                else:
                    raise MapAssetError(f"{type(el).__name__} 需要未本地化的资源 {name}: {url}")
            setattr(el, attr, local)  # instance attribute shadows the class list
        stack.extend(getattr(el, "_children", {}).values())


def _tooltip(p: MapPoint) -> str:
    lines = [p.name]
    if p.detail:
        lines.append(p.detail)
    if p.approximate:
        lines.append("（位置为示意）")
    return "<br>".join(_escape(s) for s in lines)


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_map(spec: MapSpec) -> folium.Map:
    """A folium Map with boundary and point layers, all assets local."""
    if spec.center is not None:
        lon, lat = spec.center
    elif spec.counties:
        c = unary_union([a.geometry for a in spec.counties]).centroid
        lon, lat = c.x, c.y
    else:
        lon, lat = 112.04, 22.93  # Yunfu city seat
    m = folium.Map(location=[lat, lon], zoom_start=spec.zoom, tiles=None, control_scale=True, prefer_canvas=True)
    if spec.tiles_url:
        if re.match(r"(?:https?:)?//", spec.tiles_url):
            raise MapAssetError(f"瓦片地址必须是本地路径: {spec.tiles_url}")
        folium.TileLayer(tiles=spec.tiles_url, attr=spec.tiles_attribution, name="底图", max_zoom=18).add_to(m)
    if spec.counties:
        folium.GeoJson(
            areas_geojson(spec.counties),
            name=LAYER_NAMES["counties"],
            style_function=lambda _f: {"color": "#444", "weight": 2, "fillColor": "#e8eef4", "fillOpacity": 0.35},
            tooltip=folium.GeoJsonTooltip(fields=["name"], labels=False),
        ).add_to(m)
    if spec.townships:
        folium.GeoJson(
            areas_geojson(spec.townships),
            name=LAYER_NAMES["townships"],
            style_function=lambda _f: {"color": "#888", "weight": 1, "dashArray": "4 3", "fillOpacity": 0},
            tooltip=folium.GeoJsonTooltip(fields=["name"], labels=False),
        ).add_to(m)
    for key, points in spec.layers.items():
        group = folium.FeatureGroup(name=LAYER_NAMES.get(key, key))
        default_colour = LAYER_COLOURS.get(key, "#333")
        for p in points:
            colour = p.colour or default_colour
            folium.CircleMarker(
                location=[p.lat, p.lon],
                radius=6,
                color=colour,
                fill=True,
                fill_color=colour,
                fill_opacity=0.9 if not p.approximate else 0.5,
                dash_array="3 3" if p.approximate else None,
                tooltip=_tooltip(p),
            ).add_to(group)
        group.add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    localize_assets(m.get_root(), spec.asset_base)
    return m


def render_html(spec: MapSpec) -> str:
    """Complete standalone HTML page for the map; raises MapAssetError if any remote asset remains."""
    html = build_map(spec).get_root().render()
    if _REMOTE.search(html):
        raise MapAssetError("渲染结果仍含远程资源地址")
    return html
