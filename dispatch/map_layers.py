"""Map layers for incidents (coloured by priority) and units (coloured by status).

Bridges the dispatch model to ``gis.map_builder`` (gis never imports dispatch). Used for the
situation report map and any server-rendered map; the live console draws the same colours.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from dispatch.avl import is_stale
from dispatch.model import (
    CATEGORIES,
    INCIDENT_STATUS_NAMES,
    PRIORITY_NAMES,
    UNIT_STATUS_NAMES,
    UNIT_TYPES,
    Incident,
    Station,
    Unit,
)
from gis.map_builder import PRIORITY_COLOURS, MapPoint

STALE_COLOUR = "#8c959f"


def incident_points(incidents: Iterable[Incident]) -> list[MapPoint]:
    """One point per incident, coloured by priority; training incidents are marked 【演练】."""
    out = []
    for inc in incidents:
        cat = CATEGORIES[inc.category]
        name = f"{'【演练】' if inc.training else ''}{inc.id} {cat.name}/{cat.subtypes[inc.subtype]}"
        detail = f"{PRIORITY_NAMES[inc.priority]} · {INCIDENT_STATUS_NAMES[inc.status]}"
        if inc.location.address:
            detail += f" · {inc.location.address}"
        out.append(MapPoint(inc.id, name, inc.location.lon, inc.location.lat, PRIORITY_COLOURS[inc.priority], detail))
    return out


def unit_points(
    units: Iterable[Unit], stations: Mapping[str, Station], now: datetime, stale_after_s: float = 300.0
) -> list[MapPoint]:
    """One point per unit at its fix (or station), coloured by status; stale fixes are greyed."""
    out = []
    for u in units:
        if u.has_avl and u.position is not None:
            lon, lat = u.position.lon, u.position.lat
            stale = is_stale(u.position, now, stale_after_s)
        elif u.station_id in stations:
            st = stations[u.station_id]
            lon, lat, stale = st.lon, st.lat, False
        else:
            continue  # nowhere to draw it; the status board still lists it
        detail = f"{UNIT_TYPES[u.type].name} · {UNIT_STATUS_NAMES[u.status]}"
        if stale:
            detail += " · 定位过期"
        elif not (u.has_avl and u.position is not None):
            detail += " · 驻地位置"
        out.append(MapPoint(u.id, u.callsign, lon, lat, STALE_COLOUR if stale else u.colour, detail))
    return out
