"""Possible duplicates: open incidents near a new call, of a related category, recently created.

Several people call about the same fire or crash. The call-taker sees open incidents within
``radius_m`` (default 500 m) created within ``window`` (default 30 min) whose category is the
same or related, nearest first, and can merge with one click (``model.merge_incidents``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatch.model import Incident, IncidentStatus
from gis.geodesy import haversine_m

# categories whose incidents are often the same event reported differently
RELATED_CATEGORIES: Mapping[str, frozenset[str]] = {
    "traffic": frozenset({"traffic", "medical", "fire", "police"}),
    "medical": frozenset({"medical", "traffic", "fire"}),
    "fire": frozenset({"fire", "traffic", "medical", "flood_control"}),
    "police": frozenset({"police", "traffic"}),
    "flood_control": frozenset({"flood_control", "fire"}),
    "other": frozenset({"other"}),
}


@dataclass(frozen=True)
class DuplicateCandidate:
    incident_id: str
    distance_m: float
    age_s: float
    same_category: bool


def find_duplicates(
    lon: float,
    lat: float,
    category: str,
    at: datetime,
    open_incidents: Iterable[Incident],
    radius_m: float = 500.0,
    window: timedelta = timedelta(minutes=30),
    related: Mapping[str, frozenset[str]] = RELATED_CATEGORIES,
) -> list[DuplicateCandidate]:
    """Open, non-merged incidents near (lon, lat), related by category, created within ``window``."""
    cats = related.get(category, frozenset({category}))
    out = []
    for inc in open_incidents:
        if inc.status == IncidentStatus.CLOSED or inc.merged_into or inc.category not in cats:
            continue
        age = (at - inc.created_at).total_seconds()
        if not -60 <= age <= window.total_seconds():  # a minute of clock skew between desks
            continue
        d = haversine_m(lon, lat, inc.location.lon, inc.location.lat)
        if d <= radius_m:
            out.append(DuplicateCandidate(inc.id, d, max(age, 0.0), inc.category == category))
    out.sort(key=lambda c: (not c.same_category, c.distance_m, c.age_s))
    return out
