"""The site plan as the dispatch model sees it: stations, units, jurisdictions, places, leader rooms.

The plan (config/site_plan.py) names unit types the way the plan's authors do (``patrol``,
``engine``, ``ambulance``, ``pump_team``); the model has its own ``UNIT_TYPES``. ``PLAN_UNIT_TYPES``
maps one to the other, and the plan's capability lists become the unit's extra capabilities.
Townships have a position but no boundary in the plan, so a point's township is the nearest
township centre inside its county.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.site_plan import SitePlan
from dispatch.model import Capability, Station, Unit
from gis.gazetteer import Gazetteer, Place, places_from_areas
from gis.geodesy import haversine_m
from gis.jurisdictions import Area, Jurisdictions, load_areas_geojson

# plan unit type (+ first capability for ambulances) → model unit type
PLAN_UNIT_TYPES: dict[str, str] = {
    "patrol": "police_car", "engine": "fire_engine", "ladder": "ladder", "rescue": "rescue",
    "water_tender": "water_tender", "boat": "boat", "pump_team": "pump", "pump": "pump",
    "flood_team": "flood_team", "ambulance": "ambulance_bls", "weather_vehicle": "weather_vehicle",
    "quake_survey_team": "quake_survey_team", "usar_team": "usar_team", "epi_team": "epi_team",
    "disinfection_team": "disinfection_team", "hazmat_team": "hazmat_team", "mine_rescue_team": "mine_rescue_team",
}
TRAINING_PREFIX = "DRILL-"


def model_unit_type(plan_type: str, capabilities: list[str]) -> str:
    if plan_type == "ambulance":
        return "ambulance_als" if "als" in capabilities else "ambulance_bls"
    if plan_type not in PLAN_UNIT_TYPES:
        raise ValueError(f"站点规划中的未知力量类型 {plan_type!r}，应为: {', '.join(PLAN_UNIT_TYPES)}")
    return PLAN_UNIT_TYPES[plan_type]


def stations_from_plan(plan: SitePlan) -> list[Station]:
    return [Station(s.id, s.name, s.agency, s.position[0], s.position[1], int(s.county),
                    s.position_quality != "surveyed") for s in plan.stations]


def units_from_plan(plan: SitePlan, training: bool = False) -> list[Unit]:
    """The plan's units; with ``training`` their 演练 twins (ids prefixed ``DRILL-``, flagged training)."""
    valid = {c.value for c in Capability}
    out = []
    for u in plan.units:
        caps = frozenset(Capability(c) for c in u.capabilities if c in valid)
        crew = tuple(f"队员{i + 1}" for i in range(u.crew))
        out.append(Unit(
            id=f"{TRAINING_PREFIX}{u.id}" if training else u.id,
            callsign=f"【演练】{u.call_sign}" if training else u.call_sign,
            type=model_unit_type(u.type, u.capabilities), station_id=u.station, crew=crew,
            extra_capabilities=caps, training=training))
    return out


def jurisdictions_from_plan(plan: SitePlan) -> Jurisdictions:
    base = plan.source_path.parent if plan.source_path else Path(".")
    counties = load_areas_geojson(base / plan.city.boundaries, "county")
    return Jurisdictions(counties)


@dataclass(frozen=True)
class TownshipRef:
    id: str
    code: int  # the id's digits (445381-05 → 44538105)
    name: str
    county_code: int
    lon: float
    lat: float


def townships_from_plan(plan: SitePlan) -> list[TownshipRef]:
    return [TownshipRef(t.id, int(t.id.replace("-", "")), t.name, int(t.county), t.position[0], t.position[1])
            for t in plan.townships]


def nearest_township(townships: list[TownshipRef], county_code: int | None, lon: float, lat: float) -> TownshipRef | None:
    """The nearest township centre in the county (plan townships have no boundaries)."""
    pool = [t for t in townships if county_code is None or t.county_code == county_code]
    if not pool:
        return None
    return min(pool, key=lambda t: (haversine_m(lon, lat, t.lon, t.lat), t.id))


def gazetteer_from_plan(plan: SitePlan, counties: list[Area]) -> Gazetteer:
    """Counties, townships, stations and facilities of the plan as searchable places."""
    places = places_from_areas(counties)
    names = {int(c.adcode): c.name for c in plan.counties}
    for t in plan.townships:
        places.append(Place(f"township-{t.id}", t.name, "township", t.position[0], t.position[1], int(t.county),
                            names.get(int(t.county)), approximate=t.position_quality != "surveyed"))
    for s in plan.stations:
        places.append(Place(f"station-{s.id}", s.name, "landmark", s.position[0], s.position[1], int(s.county),
                            names.get(int(s.county)), approximate=s.position_quality != "surveyed"))
    for f in plan.facilities:
        places.append(Place(f"facility-{f.id}", f.name, "landmark", f.position[0], f.position[1],
                            approximate=f.position_quality != "surveyed"))
    return Gazetteer(places)


def leader_rooms(plan: SitePlan, county_code: int | None) -> list[str]:
    """Meeting rooms of the county's leaders (role ``leader``, area = the county), plus the city's
    emergency command room when the plan has one."""
    rooms = [r.id for r in plan.meeting_rooms if r.role == "leader" and county_code is not None
             and r.area == str(county_code)]
    rooms += [r.id for r in plan.meeting_rooms if r.role == "leader" and r.area == plan.city.adcode
              and "emergency" in r.id]
    return rooms
