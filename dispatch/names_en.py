"""English names for the dispatch model's zh-CN names (categories, statuses, unit types...).

The model speaks zh-CN (its names go into events, reports and exchange formats). The consoles
show English when the user picks it: the page receives `english_names()` (zh-CN → English)
and translates every name it displays, including names arriving later on /ws/events.
"""
from __future__ import annotations

from collections.abc import Mapping

from dispatch.model import (
    AGENCIES,
    CAPABILITY_NAMES,
    CATEGORIES,
    INCIDENT_STATUS_NAMES,
    PRIORITY_NAMES,
    UNIT_STATUS_NAMES,
    UNIT_TYPES,
    Capability,
    IncidentStatus,
    UnitStatus,
)

CATEGORY_EN: Mapping[str, str] = {
    "police": "Public order", "fire": "Fire", "medical": "Medical emergency",
    "flood_control": "Flood, typhoon and drought", "traffic": "Traffic accident", "other": "Other",
    "meteorology": "Meteorological disaster", "earthquake": "Earthquake", "epidemic": "Public health (epidemic)",
    "work_safety": "Work safety accident",
}
SUBTYPE_EN: Mapping[str, str] = {
    "general": "General", "theft": "Theft", "robbery": "Robbery", "assault": "Fight/assault",
    "disturbance": "Dispute", "missing": "Missing person", "residential": "Residential fire",
    "commercial": "Commercial premises fire", "industrial": "Factory fire", "vehicle": "Vehicle fire",
    "forest": "Forest fire", "rescue": "Technical rescue", "cardiac": "Cardiac arrest/chest pain",
    "trauma": "Trauma", "stroke": "Stroke", "maternity": "Childbirth", "poisoning": "Poisoning",
    "flood": "Flooding", "typhoon": "Typhoon", "drought": "Drought", "landslide": "Landslide",
    "dyke": "Dyke breach risk", "collision": "Collision", "entrapment": "Person trapped",
    "hazmat": "Hazardous-goods vehicle",
    "rainstorm": "Rainstorm", "thunderstorm": "Thunderstorm and gale", "heat": "Heat wave", "cold": "Cold wave",
    "fog": "Dense fog", "hail": "Hail", "destructive": "Destructive earthquake", "felt": "Felt earthquake",
    "aftershock": "Strong aftershock", "secondary": "Secondary disaster of an earthquake",
    "infectious": "Infectious disease outbreak", "unknown_disease": "Disease of unknown cause",
    "food_poisoning": "Mass food poisoning", "occupational": "Occupational poisoning", "animal": "Animal epidemic",
    "mine": "Mine accident", "chemical": "Hazardous chemicals accident", "construction": "Construction accident",
    "gas": "Gas accident", "special_equipment": "Special equipment accident",
}
AGENCY_EN: Mapping[str, str] = {
    "police": "Police", "fire": "Fire and rescue", "medical": "Medical emergency",
    "flood_control": "Flood control", "traffic": "Traffic police", "meteorology": "Meteorology",
    "earthquake": "Earthquake agency", "health": "Health commission", "emergency_mgmt": "Emergency management",
}
INCIDENT_STATUS_EN: Mapping[IncidentStatus, str] = {
    IncidentStatus.NEW: "New", IncidentStatus.DISPATCHED: "Dispatched", IncidentStatus.EN_ROUTE: "En route",
    IncidentStatus.ON_SCENE: "On scene", IncidentStatus.UNDER_CONTROL: "Under control",
    IncidentStatus.CLOSED: "Closed",
}
PRIORITY_EN: Mapping[int, str] = {1: "Critical", 2: "Urgent", 3: "High", 4: "General", 5: "Enquiry"}
UNIT_TYPE_EN: Mapping[str, str] = {
    "police_car": "Patrol car", "fire_engine": "Fire engine (water)", "water_tender": "Water tender",
    "ladder": "Aerial ladder platform", "rescue": "Rescue tender", "ambulance_als": "ALS ambulance",
    "ambulance_bls": "BLS ambulance", "flood_team": "Flood response team", "pump": "Drainage pump truck",
    "boat": "Assault boat", "weather_vehicle": "Mobile weather observation vehicle",
    "quake_survey_team": "Earthquake field team", "usar_team": "Earthquake search and rescue team",
    "epi_team": "Epidemiological investigation team", "disinfection_team": "Disinfection team",
    "hazmat_team": "Hazmat rescue team", "mine_rescue_team": "Mine rescue team",
}
UNIT_STATUS_EN: Mapping[UnitStatus, str] = {
    UnitStatus.AVAILABLE: "Available", UnitStatus.DISPATCHED: "Dispatched", UnitStatus.EN_ROUTE: "En route",
    UnitStatus.ON_SCENE: "On scene", UnitStatus.TRANSPORTING: "Transporting", UnitStatus.AT_HOSPITAL: "At hospital",
    UnitStatus.RETURNING: "Returning", UnitStatus.OUT_OF_SERVICE: "Out of service",
}
CAPABILITY_EN: Mapping[Capability, str] = {
    Capability.ENGINE: "Engine/foam", Capability.WATER_TENDER: "Water supply", Capability.LADDER: "Aerial",
    Capability.RESCUE: "Technical rescue", Capability.ALS: "Advanced life support",
    Capability.BLS: "Basic life support", Capability.BOAT: "Assault boat", Capability.PUMP: "Drainage pump",
    Capability.PATROL: "Patrol", Capability.FLOOD_TEAM: "Flood response team",
    Capability.WEATHER_OBS: "On-site weather observation", Capability.QUAKE_SURVEY: "Earthquake field survey",
    Capability.USAR: "Urban search and rescue", Capability.EPIDEMIOLOGY: "Epidemiological investigation",
    Capability.DISINFECTION: "Disinfection", Capability.HAZMAT: "Hazmat response", Capability.MINE_RESCUE: "Mine rescue",
}


def english_names() -> dict[str, str]:
    """Every zh-CN name of the dispatch model → its English name (a KeyError means a table is missing one)."""
    pairs: list[tuple[str, str]] = []
    for key, cat in CATEGORIES.items():
        pairs.append((cat.name, CATEGORY_EN[key]))
        pairs += [(name, SUBTYPE_EN[sub]) for sub, name in cat.subtypes.items()]
    pairs += [(name, AGENCY_EN[key]) for key, name in AGENCIES.items()]
    pairs += [(name, INCIDENT_STATUS_EN[key]) for key, name in INCIDENT_STATUS_NAMES.items()]
    pairs += [(name, PRIORITY_EN[key]) for key, name in PRIORITY_NAMES.items()]
    pairs += [(t.name, UNIT_TYPE_EN[key]) for key, t in UNIT_TYPES.items()]
    pairs += [(name, UNIT_STATUS_EN[key]) for key, name in UNIT_STATUS_NAMES.items()]
    pairs += [(name, CAPABILITY_EN[key]) for key, name in CAPABILITY_NAMES.items()]
    names: dict[str, str] = {}
    for zh, en in pairs:
        if names.setdefault(zh, en) != en:  # one zh-CN word, two meanings: the page could not tell them apart
            raise ValueError(f"{zh!r} has two English names: {names[zh]!r} and {en!r}")
    return names
