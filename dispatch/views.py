"""JSON views of incidents, units and recommendations for the REST API, the bus and the console.

One place decides what a client sees, so the REST answers and the live events carry the same
shape and the map can upsert either without knowing where it came from.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dispatch.avl import is_stale
from dispatch.model import (
    AGENCIES,
    CATEGORIES,
    INCIDENT_STATUS_NAMES,
    PRIORITY_NAMES,
    UNIT_STATUS_COLOURS,
    UNIT_STATUS_NAMES,
    UNIT_TYPES,
    Incident,
    Station,
    Unit,
)
from dispatch.recommendation import RequirementResult
from gis.map_builder import PRIORITY_COLOURS


def incident_view(inc: Incident, county_names: Mapping[int, str] | None = None,
                  township_names: Mapping[int, str] | None = None) -> dict[str, Any]:
    cat = CATEGORIES[inc.category]
    loc = inc.location
    return {
        "id": inc.id, "category": inc.category, "category_name": cat.name, "subtype": inc.subtype,
        "subtype_name": cat.subtypes.get(inc.subtype, inc.subtype), "priority": inc.priority,
        "priority_name": PRIORITY_NAMES[inc.priority], "colour": PRIORITY_COLOURS[inc.priority],
        "status": inc.status.value, "status_name": INCIDENT_STATUS_NAMES[inc.status],
        "lon": loc.lon, "lat": loc.lat, "uncertainty_m": loc.uncertainty_m, "address": loc.address,
        "location_source": loc.source, "county_code": loc.county_code,
        "county_name": (county_names or {}).get(loc.county_code or 0, ""),
        "township_code": loc.township_code, "township_name": (township_names or {}).get(loc.township_code or 0, ""),
        "description": inc.description, "caller": {"number": inc.caller.number, "name": inc.caller.name},
        "components": [{"agency": c.agency, "agency_name": AGENCIES.get(c.agency, c.agency), "status": c.status.value,
                        "status_name": INCIDENT_STATUS_NAMES[c.status], "units": list(c.units),
                        "released_units": list(c.released_units)} for c in inc.components],
        "joint": inc.joint, "units": list(inc.assigned_units), "calls": list(inc.calls), "notes": list(inc.notes),
        "related": list(inc.related), "merged_into": inc.merged_into, "merged_from": list(inc.merged_from),
        "disposition": inc.disposition, "training": inc.training, "created_at": inc.created_at.isoformat(),
    }


def timeline_view(inc: Incident) -> list[dict[str, Any]]:
    return [{"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "detail": dict(e.detail)}
            for e in inc.timeline]


def unit_view(u: Unit, stations: Mapping[str, Station], now: datetime, stale_after_s: float = 300.0) -> dict[str, Any]:
    st = stations.get(u.station_id)
    lon: float | None
    lat: float | None
    if u.has_avl and u.position is not None:
        lon, lat, source = u.position.lon, u.position.lat, "avl"
        stale = is_stale(u.position, now, stale_after_s)
    else:
        lon, lat, source, stale = (st.lon if st else None), (st.lat if st else None), "station", False
    return {
        "id": u.id, "callsign": u.callsign, "type": u.type, "type_name": UNIT_TYPES[u.type].name, "agency": u.agency,
        "agency_name": AGENCIES.get(u.agency, u.agency), "capabilities": sorted(c.value for c in u.capabilities),
        "status": u.status.value, "status_name": UNIT_STATUS_NAMES[u.status], "colour": UNIT_STATUS_COLOURS[u.status],
        "incident_id": u.incident_id, "lon": lon, "lat": lat, "position_source": source, "stale": stale,
        "fix_at": u.position.at.isoformat() if u.position else None, "station_id": u.station_id,
        "station_name": st.name if st else "", "crew": len(u.crew), "training": u.training,
    }


def recommendation_view(results: list[RequirementResult]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        out.append({
            "capability": r.requirement.capability.value, "count": r.requirement.count,
            "already_assigned": list(r.already_assigned), "shortfall": r.shortfall,
            "candidates": [{
                "unit_id": c.unit_id, "callsign": c.callsign, "unit_type": c.unit_type,
                "eta_s": round(c.eta.seconds, 1), "eta_method": c.eta.method, "assumption": c.eta.assumption,
                "distance_m": round(c.eta.distance_m), "straight_m": round(c.straight_m),
                "position_source": c.position_source, "recommended": c.recommended, "explanation": c.explanation,
            } for c in r.candidates[:8]],
        })
    return out
