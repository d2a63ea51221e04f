"""The site plan: the city's areas, meeting rooms, service halls, stations, units and demo users.

A plan is a TOML file (see `config/demo/yunfu.toml`). Positions are `[longitude, latitude]`
in WGS 84; every position says how good it is (`surveyed`, `approximate` or `made-up`), so
demo data is never mistaken for real data.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError, describe_validation_error, load_toml
from core.roles import ROLES

PositionQuality = Literal["surveyed", "approximate", "made-up"]


def _check_position(v: tuple[float, float]) -> tuple[float, float]:
    lon, lat = v
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"position {list(v)} is not [longitude, latitude] in WGS 84")
    return v


Position = Annotated[tuple[float, float], Field(description="[longitude, latitude], WGS 84")]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Located(_Item):
    position: Position
    position_quality: PositionQuality

    @field_validator("position")
    @classmethod
    def _valid_position(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_position(v)


class City(_Item):
    name: str
    name_en: str
    adcode: str
    boundaries: str = Field(description="GeoJSON of county boundaries, relative to the plan file")


class County(Located):
    adcode: str
    name: str
    name_en: str


class Township(Located):
    id: str
    name: str
    county: str
    kind: Literal["town", "subdistrict", "township"]


class Endpoint(_Item):
    protocol: Literal["sip", "h323", "webrtc", "demo"]
    address: str = ""
    name: str = ""


class MeetingRoom(_Item):
    id: str
    name: str
    area: str = Field(description="city adcode, county adcode or township id")
    role: Literal["leader", "participant"] = "participant"
    endpoints: list[Endpoint] = Field(default_factory=list)


class Camera(_Item):
    id: str
    label: str
    rtsp_url: str = Field(description="rtsp://... or 'demo:' for a synthetic test camera")
    credentials: str = Field("", description="name of a credential in var/keys, never the secret itself")


class HallWindow(_Item):
    id: str
    name: str
    cameras: list[Camera] = Field(default_factory=list)


class Hall(Located):
    id: str
    name: str
    area: str
    windows: list[HallWindow] = Field(default_factory=list)


Agency = Literal["police", "fire", "medical", "flood_control"]


class Station(Located):
    id: str
    name: str
    agency: Agency
    county: str


class Unit(_Item):
    id: str
    call_sign: str
    agency: Agency
    type: str
    capabilities: list[str] = Field(default_factory=list)
    station: str
    crew: int = Field(2, ge=0, le=50)


class Facility(Located):
    """Hydrants, flood gauges, shelters: fixed points for the map."""
    id: str
    name: str
    kind: Literal["hydrant", "flood_gauge", "shelter", "hospital"]


class SeedUser(_Item):
    username: str
    role: str
    display_name: str = ""

    @field_validator("role")
    @classmethod
    def _known_role(cls, v: str) -> str:
        if v not in ROLES:
            raise ValueError(f"unknown role {v!r}; expected one of: {', '.join(ROLES)}")
        return v


class ConferencePlan(_Item):
    id: str
    name: str
    pin: str = ""
    guests: bool = False
    standing: bool = False
    sites: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _numeric_id(cls, v: str) -> str:
        if not (v.isdigit() and 4 <= len(v) <= 12):
            raise ValueError("conference id must be 4-12 digits")
        return v

    @field_validator("pin")
    @classmethod
    def _numeric_pin(cls, v: str) -> str:
        if v and not (v.isdigit() and 4 <= len(v) <= 12):
            raise ValueError("PIN must be 4-12 digits (or empty)")
        return v


class SitePlan(_Item):
    model_config = ConfigDict(extra="forbid", frozen=False)

    city: City
    counties: list[County]
    townships: list[Township] = Field(default_factory=list)
    meeting_rooms: list[MeetingRoom] = Field(default_factory=list)
    halls: list[Hall] = Field(default_factory=list)
    stations: list[Station] = Field(default_factory=list)
    units: list[Unit] = Field(default_factory=list)
    facilities: list[Facility] = Field(default_factory=list)
    users: list[SeedUser] = Field(default_factory=list)
    conferences: list[ConferencePlan] = Field(default_factory=list)
    source_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> SitePlan:
        problems: list[str] = []

        def unique(kind: str, ids: list[str]) -> None:
            seen: set[str] = set()
            for i in ids:
                if i in seen:
                    problems.append(f"{kind} id {i!r} appears twice")
                seen.add(i)

        counties = {c.adcode for c in self.counties}
        townships = {t.id for t in self.townships}
        areas = counties | townships | {self.city.adcode}
        unique("county", [c.adcode for c in self.counties])
        unique("township", [t.id for t in self.townships])
        unique("meeting room", [r.id for r in self.meeting_rooms])
        unique("hall", [h.id for h in self.halls])
        unique("camera", [c.id for h in self.halls for w in h.windows for c in w.cameras])
        unique("station", [s.id for s in self.stations])
        unique("unit", [u.id for u in self.units])
        unique("user", [u.username for u in self.users])
        unique("conference", [c.id for c in self.conferences])
        for t in self.townships:
            if t.county not in counties:
                problems.append(f"township {t.id!r}: unknown county {t.county!r}")
        for r in self.meeting_rooms:
            if r.area not in areas:
                problems.append(f"meeting room {r.id!r}: unknown area {r.area!r}")
        for h in self.halls:
            if h.area not in areas:
                problems.append(f"hall {h.id!r}: unknown area {h.area!r}")
        stations = {s.id: s for s in self.stations}
        for s in self.stations:
            if s.county not in counties:
                problems.append(f"station {s.id!r}: unknown county {s.county!r}")
        for u in self.units:
            if u.station not in stations:
                problems.append(f"unit {u.id!r}: unknown station {u.station!r}")
        rooms = {r.id for r in self.meeting_rooms}
        for c in self.conferences:
            for site in c.sites:
                if site not in rooms:
                    problems.append(f"conference {c.id!r}: unknown meeting room {site!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived views --------------------------------------------------------------------
    @cached_property
    def boundaries_geojson(self) -> dict[str, Any]:
        """The county boundaries file as a GeoJSON dict."""
        base = self.source_path.parent if self.source_path else Path(".")
        with open(base / self.city.boundaries, encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
        return data

    def county(self, adcode: str) -> County:
        return next(c for c in self.counties if c.adcode == adcode)

    def townships_of(self, adcode: str) -> list[Township]:
        return [t for t in self.townships if t.county == adcode]

    def positions_outside_their_county(self) -> list[str]:
        """Townships/stations whose position is not inside their county polygon (plan sanity)."""
        from shapely.geometry import Point, shape

        polygons = {str(f["properties"]["adcode"]): shape(f["geometry"])
                    for f in self.boundaries_geojson["features"]}
        bad = []
        for item, county in [(t, t.county) for t in self.townships] + [(s, s.county) for s in self.stations]:
            poly = polygons.get(county)
            if poly is not None and not poly.buffer(0.002).contains(Point(item.position)):
                bad.append(f"{item.id} ({item.name}) at {list(item.position)} is outside county {county}")
        return bad


def load_site_plan(path: Path | str) -> SitePlan:
    """Load and validate a site plan; ConfigError naming file, line and field on any problem."""
    path = Path(path)
    data, text = load_toml(path)
    try:
        plan = SitePlan(**data)
    except ValidationError as err:
        raise ConfigError(path, describe_validation_error(err, text)) from None
    plan.source_path = path.resolve()
    try:
        plan.boundaries_geojson  # noqa: B018 - load now so a missing file is a config error
    except (OSError, ValueError) as exc:
        raise ConfigError(path, [f" field 'city.boundaries': cannot read {plan.city.boundaries!r}: {exc}"]) from None
    return plan
