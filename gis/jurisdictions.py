"""Jurisdictions: which county (and township) a point lies in.

Polygons (county boundaries from GeoJSON, township polygons when the site plan has them) sit in
a shapely STRtree per level. ``resolve`` answers point-in-polygon, with two defined edge rules:

* **Shared border rule.** A point whose distance to two or more areas of the same level is at most
  ``BORDER_TOLERANCE_DEG`` (1e-7 degrees, about 1 cm) lies *on* their shared border. It resolves
  to the area with the **lowest code** (adcode for counties, township code for townships); the
  result lists every area it touches in ``border_with``. A rule on codes is stable (it does not
  depend on tree order or floating-point noise) and easy to explain to a dispatcher.
* **Nearest-area fallback.** A point inside no area but within ``max_fallback_m`` metres of one
  (GPS noise, a boat on a border river, a simplified boundary) resolves to the nearest area with
  ``fallback=True`` and the distance in metres. Farther away it resolves to nothing.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
import shapely.affinity
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from gis.geodesy import check_lon_lat, haversine_m

BORDER_TOLERANCE_DEG = 1e-7
DEFAULT_MAX_FALLBACK_M = 2_000.0


@dataclass(frozen=True)
class Area:
    """One administrative area: a county (adcode) or a township (9/12-digit code)."""

    code: int
    name: str
    level: str  # "county" | "township"
    geometry: BaseGeometry
    parent_code: int | None = None
    center: tuple[float, float] | None = None


@dataclass(frozen=True)
class AreaMatch:
    """The answer for one level: which area, and how it was decided."""

    code: int
    name: str
    level: str
    fallback: bool = False  # True when the point is outside every area and this is the nearest one
    distance_m: float = 0.0  # distance to the area when fallback, else 0
    border_with: tuple[int, ...] = field(default=())  # all codes touched when the point is on a border

    @property
    def on_border(self) -> bool:
        return len(self.border_with) > 1


@dataclass(frozen=True)
class Resolution:
    """County and township for a point (either may be None)."""

    lon: float
    lat: float
    county: AreaMatch | None
    township: AreaMatch | None


class JurisdictionError(ValueError):
    """Bad boundary input (file, feature index and field named)."""


def load_areas_geojson(
    path: str | Path,
    level: str = "county",
    code_field: str = "adcode",
    name_field: str = "name",
    parent_field: str | None = None,
) -> list[Area]:
    """Read areas from a GeoJSON FeatureCollection of (Multi)Polygons.

    Raises JurisdictionError naming the file, the feature index and the field on bad input.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise JurisdictionError(f"{p}: 无法读取 GeoJSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise JurisdictionError(f"{p}: 顶层必须是 FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise JurisdictionError(f"{p}: features 必须是数组")
    areas: list[Area] = []
    for i, feat in enumerate(features):
        where = f"{p}: features[{i}]"
        try:
            areas.append(_area_from_feature(feat, where, level, code_field, name_field, parent_field))
        except JurisdictionError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            # any other shape problem in hand-edited data: name the feature, never crash
            raise JurisdictionError(f"{where}: 数据格式错误: {e}") from None
    return areas


def _area_from_feature(
    feat: Any, where: str, level: str, code_field: str, name_field: str, parent_field: str | None
) -> Area:
    if not isinstance(feat, dict):
        raise JurisdictionError(f"{where}: 必须是 Feature 对象")
    props = feat.get("properties") or {}
    if not isinstance(props, dict):
        raise JurisdictionError(f"{where}.properties: 必须是对象")
    if code_field not in props:
        raise JurisdictionError(f"{where}: 缺少属性 {code_field!r}")
    try:
        code = int(props[code_field])
    except (TypeError, ValueError) as e:
        raise JurisdictionError(f"{where}.{code_field}: 不是整数编码: {props[code_field]!r}") from e
    try:
        geom = shape(feat["geometry"])
    except Exception as e:  # shapely raises several types for malformed geometry
        raise JurisdictionError(f"{where}.geometry: 无效几何: {e}") from e
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise JurisdictionError(f"{where}.geometry: 需要 Polygon/MultiPolygon, 得到 {geom.geom_type}")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    center = props.get("center")
    if center is not None and not (
        isinstance(center, list) and len(center) == 2 and all(isinstance(c, int | float) for c in center)
    ):
        raise JurisdictionError(f"{where}.center: 应为 [经度, 纬度]，得到 {center!r}")
    parent = props.get(parent_field) if parent_field else None
    if isinstance(parent, dict):  # DataV style {"adcode": 445300}
        parent = parent.get("adcode")
    return Area(
        code=code,
        name=str(props.get(name_field, code)),
        level=level,
        geometry=geom,
        parent_code=int(parent) if parent is not None else None,
        center=(float(center[0]), float(center[1])) if center else None,
    )


class _LevelIndex:
    """STRtree over the areas of one level."""

    def __init__(self, areas: Sequence[Area]) -> None:
        codes = [a.code for a in areas]
        if len(set(codes)) != len(codes):
            dup = sorted({c for c in codes if codes.count(c) > 1})
            raise JurisdictionError(f"重复的区划编码: {dup}")
        self.areas = list(areas)
        geoms = [a.geometry for a in self.areas]
        for g in geoms:
            shapely.prepare(g)
        self.tree = shapely.STRtree(geoms)

    def resolve(self, pt: Point, max_fallback_m: float) -> AreaMatch | None:
        hits = self.tree.query(pt, predicate="dwithin", distance=BORDER_TOLERANCE_DEG)
        if len(hits):
            touched = sorted((self.areas[int(i)] for i in hits), key=lambda a: a.code)
            # Inside exactly one area (not near any border): the usual case.
            winner = touched[0]
            if len(touched) == 1:
                return AreaMatch(winner.code, winner.name, winner.level)
            return AreaMatch(
                winner.code, winner.name, winner.level, border_with=tuple(a.code for a in touched)
            )
        if max_fallback_m <= 0:
            return None
        _, dist = self.tree.query_nearest(pt, all_matches=True, return_distance=True)
        # Tree distances are planar degrees. Ground distance >= cos(lat) x planar, so an area
        # nearer on the ground than the planar-nearest one lies within d0 / cos(lat).
        coslat = max(math.cos(math.radians(pt.y)), 1e-6)
        reach = float(dist.min()) / coslat * (1 + 1e-9) + 1e-12
        best: tuple[float, Area] | None = None
        for i in self.tree.query(pt, predicate="dwithin", distance=reach):
            area = self.areas[int(i)]
            # nearest point in a locally equidistant frame (longitudes shrunk by cos(lat))
            scaled = shapely.affinity.scale(area.geometry, xfact=coslat, yfact=1.0, origin=pt)
            near = nearest_points(scaled, pt)[0]
            d = haversine_m(pt.x, pt.y, pt.x + (near.x - pt.x) / coslat, near.y)
            if best is None or (d, area.code) < (best[0], best[1].code):
                best = (d, area)
        if best is None or best[0] > max_fallback_m:
            return None
        return AreaMatch(best[1].code, best[1].name, best[1].level, fallback=True, distance_m=best[0])


class Jurisdictions:
    """County (and optional township) lookup for points."""

    def __init__(
        self,
        counties: Sequence[Area],
        townships: Sequence[Area] = (),
        max_fallback_m: float = DEFAULT_MAX_FALLBACK_M,
    ) -> None:
        if not counties:
            raise JurisdictionError("至少需要一个县级区划")
        self.counties = _LevelIndex(counties)
        self.townships = _LevelIndex(townships) if townships else None
        self.max_fallback_m = max_fallback_m

    @classmethod
    def from_geojson(
        cls, counties_path: str | Path, townships_path: str | Path | None = None, **kw: float
    ) -> Jurisdictions:
        """Build from the county GeoJSON (and a township GeoJSON with ``code``/``name``)."""
        counties = load_areas_geojson(counties_path, "county")
        towns = (
            load_areas_geojson(townships_path, "township", code_field="code", parent_field="county")
            if townships_path
            else []
        )
        return cls(counties, towns, **kw)

    def resolve(self, lon: float, lat: float) -> Resolution:
        """County and township of a WGS 84 point (CoordinateError when out of range)."""
        check_lon_lat(lon, lat)
        pt = Point(lon, lat)
        county = self.counties.resolve(pt, self.max_fallback_m)
        town = self.townships.resolve(pt, self.max_fallback_m) if self.townships else None
        return Resolution(lon, lat, county, town)

    def county_of(self, lon: float, lat: float) -> AreaMatch | None:
        """Shortcut for ``resolve(lon, lat).county``."""
        return self.resolve(lon, lat).county

    def area(self, code: int) -> Area:
        """The area (county or township) with this code; KeyError if unknown."""
        for level in (self.counties, self.townships):
            if level is None:
                continue
            for a in level.areas:
                if a.code == code:
                    return a
        raise KeyError(code)

    def all_areas(self) -> Iterable[Area]:
        yield from self.counties.areas
        if self.townships:
            yield from self.townships.areas
