"""A caller location as the desk shows it: a point, an uncertainty radius, its source and validity."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CallerLocation:
    """Where the caller is, according to one source.

    ``valid`` is False when the source sent something we could not use; ``reason`` says why
    (zh-CN, shown to the call-taker) and ``raw`` keeps the original data unchanged.
    """

    source: str  # "pidf-lo" | "aml-sms" | "aml-https" | "manual"
    lon: float | None = None
    lat: float | None = None
    radius_m: float | None = None
    shape: str = ""  # Point, Circle, Ellipse, Polygon, civic
    civic: dict[str, str] = field(default_factory=dict)
    valid: bool = True
    reason: str = ""
    raw: str = ""

    @property
    def has_point(self) -> bool:
        """True when a usable coordinate is present."""
        return self.valid and self.lon is not None and self.lat is not None

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the API and the database."""
        return asdict(self)

    @classmethod
    def invalid(cls, source: str, reason: str, raw: str) -> CallerLocation:
        """A location that could not be used, kept with its reason and raw data."""
        return cls(source=source, valid=False, reason=reason, raw=raw)


def check_wgs84(lat: float, lon: float) -> str:
    """Empty when lat/lon are possible WGS 84 values, else the reason (zh-CN)."""
    if not (-90.0 <= lat <= 90.0):
        return f"纬度超出范围: {lat}"
    if not (-180.0 <= lon <= 180.0):
        return f"经度超出范围: {lon}"
    return ""
