"""Small geodesy helpers shared by the gis and dispatch packages (WGS 84, degrees, metres)."""
from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius; error < 0.5 % versus the ellipsoid, fine for ETAs


class CoordinateError(ValueError):
    """A longitude/latitude pair outside WGS 84 ranges or not a finite number."""


def check_lon_lat(lon: float, lat: float) -> None:
    """Raise CoordinateError unless -180 <= lon <= 180 and -90 <= lat <= 90 (finite floats)."""
    if not (isinstance(lon, int | float) and isinstance(lat, int | float)):
        raise CoordinateError(f"坐标必须是数字: lon={lon!r}, lat={lat!r}")
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise CoordinateError(f"坐标不是有限数: lon={lon}, lat={lat}")
    if not -180.0 <= lon <= 180.0:
        raise CoordinateError(f"经度超出范围 [-180, 180]: {lon}")
    if not -90.0 <= lat <= 90.0:
        raise CoordinateError(f"纬度超出范围 [-90, 90]: {lat}")


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two WGS 84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Metres per degree of longitude and of latitude at a latitude (local equirectangular scale)."""
    m_lat = math.pi * EARTH_RADIUS_M / 180.0
    return m_lat * math.cos(math.radians(lat)), m_lat
