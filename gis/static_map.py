"""A static map as inline SVG: county boundaries and coloured points, no script, no tiles, nothing
fetched. For documents printed headless (the situation report's PDF), where an interactive Leaflet
map would need JavaScript and assets at print time; the page itself keeps the folium map.

Pure: geometry in, SVG text out. The projection is equirectangular around the view's centre
(x scaled by cos(latitude)), exact enough for a county-sized view. Labels are XML-escaped; points
outside the view are left out; polygons are clipped by the view box.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from gis.jurisdictions import Area
from gis.map_builder import LAYER_COLOURS, MapPoint


@dataclass(frozen=True)
class View:
    """What part of the world the picture shows: a centre and a half-width in kilometres."""

    lon: float
    lat: float
    half_width_km: float = 15.0
    width_px: int = 900
    height_px: int = 520

    def project(self, lon: float, lat: float) -> tuple[float, float]:
        km_per_deg_lat = 111.32
        km_per_deg_lon = km_per_deg_lat * math.cos(math.radians(self.lat))
        scale = self.width_px / (2 * self.half_width_km)  # px per km
        x = self.width_px / 2 + (lon - self.lon) * km_per_deg_lon * scale
        y = self.height_px / 2 - (lat - self.lat) * km_per_deg_lat * scale
        return x, y

    def contains(self, x: float, y: float) -> bool:
        return 0 <= x <= self.width_px and 0 <= y <= self.height_px


def fit_view(lon: float, lat: float, points: Iterable[MapPoint], min_half_km: float = 10.0,
             max_half_km: float = 80.0, margin: float = 1.15, width_px: int = 900, height_px: int = 520) -> View:
    """A view centred on (lon, lat) wide enough for every point (plus a margin), between
    ``min_half_km`` and ``max_half_km`` half-width; points beyond that are left out of the picture."""
    km_lat = 111.32
    km_lon = km_lat * math.cos(math.radians(lat))
    need = min_half_km
    for p in points:
        dx = abs(p.lon - lon) * km_lon
        dy = abs(p.lat - lat) * km_lat * width_px / height_px  # the height is the shorter side
        need = max(need, margin * max(dx, dy))
    return View(lon, lat, min(need, max_half_km), width_px, height_px)


def _rings(geometry: BaseGeometry) -> Iterable[Sequence[tuple[float, float]]]:
    polygons = geometry.geoms if isinstance(geometry, MultiPolygon) else [geometry]
    for p in polygons:
        if isinstance(p, Polygon):
            yield list(p.exterior.coords)
            for hole in p.interiors:
                yield list(hole.coords)


def _path(view: View, geometry: BaseGeometry) -> str:
    parts = []
    for ring in _rings(geometry):
        pts = [view.project(lon, lat) for lon, lat, *_ in ring]
        parts.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + " Z")
    return " ".join(parts)


def render_svg(view: View, counties: Sequence[Area], layers: Mapping[str, Sequence[MapPoint]],
               focus: Sequence[MapPoint] = (), scale_label: str = "km") -> str:
    """The SVG: counties (name at their centre), each layer's points (labelled), ``focus`` points
    drawn last and larger (the incident), and a scale bar."""
    w, h = view.width_px, view.height_px
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           f'class="static-map" role="img">',
           f'<rect width="{w}" height="{h}" fill="#f4f7fa"/>']
    for a in counties:
        out.append(f'<path d="{_path(view, a.geometry)}" fill="#e8eef4" stroke="#444" stroke-width="1.5" '
                   f'fill-rule="evenodd"/>')
    for a in counties:
        c = a.geometry.representative_point()
        x, y = view.project(c.x, c.y)
        if view.contains(x, y):
            out.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="14" fill="#555" text-anchor="middle">'
                       f"{escape(a.name)}</text>")
    for key, points in layers.items():
        default = LAYER_COLOURS.get(key, "#333")
        for p in points:
            x, y = view.project(p.lon, p.lat)
            if not view.contains(x, y):
                continue
            dash = ' stroke-dasharray="3 2"' if p.approximate else ""
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill={quoteattr(p.colour or default)} '
                       f'stroke="#fff" stroke-width="1"{dash}/>')
            out.append(f'<text x="{x + 7:.1f}" y="{y + 4:.1f}" font-size="11" fill="#222">{escape(p.name)}</text>')
    for p in focus:
        x, y = view.project(p.lon, p.lat)
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="10" fill={quoteattr(p.colour or "#b60205")} '
                   f'stroke="#000" stroke-width="2"/>')
        out.append(f'<text x="{x:.1f}" y="{y - 15:.1f}" font-size="14" font-weight="700" fill="#000" '
                   f'text-anchor="middle" stroke="#fff" stroke-width="3" paint-order="stroke">'
                   f"{escape(p.name)}</text>")
    bar_km = _nice(view.half_width_km / 2)
    bar_px = bar_km * view.width_px / (2 * view.half_width_km)
    out.append(f'<line x1="20" y1="{h - 20}" x2="{20 + bar_px:.1f}" y2="{h - 20}" stroke="#000" stroke-width="3"/>')
    out.append(f'<text x="20" y="{h - 28}" font-size="12">{bar_km:g} {escape(scale_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _nice(km: float) -> float:
    """The largest of 1, 2, 5 × 10^n not above ``km``."""
    base = 10.0 ** math.floor(math.log10(km))
    return float(max(m * base for m in (1, 2, 5) if m * base <= km))
