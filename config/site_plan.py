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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.errors import ConfigError, describe_validation_error, load_toml
from config.roles import ROLES

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


# A line's rate in kbit/s (the MCU's rate budget clamps to the same range, mcu/legs/rate_budget.py).
MIN_LINE_KBPS = 64
MAX_LINE_KBPS = 100_000
LineKbps = Annotated[int, Field(ge=MIN_LINE_KBPS, le=MAX_LINE_KBPS,
                                description="the line's rate in kbit/s (e.g. 768 for a 768 kbit/s leased line)")]
LineProtocol = Literal["sip", "h323", "webrtc", "demo", "cascade"]


class LineDefaults(_Item):
    """The line rate of a site or link whose plan entry names none, per way in (kbit/s)."""

    sip: LineKbps = 2048
    h323: LineKbps = 2048
    webrtc: LineKbps = 2048
    demo: LineKbps = 2048
    cascade: LineKbps = 2048

    def for_protocol(self, protocol: LineProtocol) -> int:
        """The default for one way in."""
        return {"sip": self.sip, "h323": self.h323, "webrtc": self.webrtc, "demo": self.demo,
                "cascade": self.cascade}[protocol]


class Endpoint(_Item):
    protocol: Literal["sip", "h323", "webrtc", "demo"]
    address: str = ""
    name: str = ""
    line_kbps: LineKbps | None = Field(
        None, description="the rate of this endpoint's line in kbit/s; unset = lines.<protocol>, an unknown "
                          "line (SIP video starts at 640x360 and probes up)")


class MeetingRoom(_Item):
    id: str
    name: str
    area: str = Field(description="city adcode, county adcode or township id")
    role: Literal["leader", "participant"] = "participant"
    endpoints: list[Endpoint] = Field(default_factory=list)
    contacts: list[str] = Field(default_factory=list, max_length=50, description=(
        "who gets the room's meeting notices by SMS: usernames, post:<duty post> or numbers"))


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


Agency = Literal["police", "fire", "medical", "flood_control", "meteorology", "earthquake", "health", "emergency_mgmt"]


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
    phone: str = Field("", max_length=32, description="mobile number for SMS (sms/)")
    unit: str = Field("", description="role responder: the unit whose crew this login is (the field page)")

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
    nodes: list[str] = Field(
        default_factory=list, description="cascade: the nodes this conference runs on (each hosts its own sites "
                                          "and joins its parent's instance); empty = not cascaded")

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


_NODE_NAME = r"^[a-z][a-z0-9-]{0,31}$"


class Node(_Item):
    """One commandcenter node of a cascade (city MCU, county sub-MCU, telecom bridge stand-in).

    Nodes are listed only when conferences are cascaded; a plan without ``[[nodes]]`` is one node.
    Every node reads the same plan and finds itself by ``settings.node_name``.
    """
    name: str = Field(pattern=_NODE_NAME, description="matches `commandcenter up --node-name`")
    kind: Literal["mcu", "bridge"] = Field(
        "mcu", description="bridge: the telecom conference system's stand-in (no chair, no control channel)")
    parent: str = Field("", description="the node this one cascades up to; empty for the root (city)")
    standby_parents: list[str] = Field(
        default_factory=list, max_length=8,
        description="child nodes: further MCU nodes to cascade into, in order, when `parent` stops answering "
                    "(e.g. a standby city node); tried before the telecom backup is relied on for good "
                    "(mcu/cascade/parent_choice.py, docs/cascade.md)")
    area: str = Field("", description="city adcode, county adcode or township id whose meeting rooms it hosts")
    sip: str = Field(description="host:port of this node's SIP listener as its peers reach it (private line)")
    control: str = Field("", description="host:port where this node listens for its children's cascade control "
                                          "channel (a websocket served by the cascade capability, any role)")
    line_kbps: LineKbps | None = Field(
        None, description="child nodes: the rate of the private line to the parent in kbit/s (the cascade "
                          "link's budget); unset = lines.cascade")
    backup: str = Field(
        "", description="child nodes: SIP URI template of the telecom bridge conference used when the private "
                        "line fails; '{conference}' is replaced by the conference id, e.g. sip:9{conference}@10.9.0.2:5060")

    @field_validator("sip", "control")
    @classmethod
    def _host_port(cls, v: str, info: ValidationInfo) -> str:
        host, sep, port = v.rpartition(":")
        if v and (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536):
            raise ValueError(f"{info.field_name} must be host:port, got {v!r}")
        return v

    @field_validator("backup")
    @classmethod
    def _backup_template(cls, v: str) -> str:
        if v and not (v.startswith(("sip:", "sips:")) and "{conference}" in v):
            raise ValueError(f"backup must be a sip: URI containing '{{conference}}', got {v!r}")
        return v

    def conference_uri(self, conference_id: str) -> str:
        """This node's SIP URI for a conference over the private line."""
        return f"sip:{conference_id}@{self.sip}"

    def backup_uri(self, conference_id: str) -> str:
        """The telecom bridge's URI for a conference ('' when this node has no backup route)."""
        return self.backup.replace("{conference}", conference_id) if self.backup else ""


class SmsGroup(_Item):
    """An SMS notification list (plans' ``sms:<name>``): usernames, ``post:<duty post>`` or numbers.
    ``areas`` (division codes: the city, county adcodes, township ids) tie it to places: a public
    warning for those areas reaches it (docs/sms.md, "Groups tied to areas")."""
    name: str = Field(min_length=1, max_length=64)
    members: list[str] = Field(min_length=1, max_length=1000)
    areas: list[str] = Field(default_factory=list, max_length=200)


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
    gauges: list[dict[str, Any]] = Field(
        default_factory=list, description="monitoring gauges; validated by monitoring/gauges.py (load_gauges)")
    users: list[SeedUser] = Field(default_factory=list)
    conferences: list[ConferencePlan] = Field(default_factory=list)
    nodes: list[Node] = Field(default_factory=list)
    sms_groups: list[SmsGroup] = Field(default_factory=list)
    lines: LineDefaults = Field(default_factory=LineDefaults)
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
        unique("SMS group", [g.name for g in self.sms_groups])
        for t in self.townships:
            if t.county not in counties:
                problems.append(f"township {t.id!r}: unknown county {t.county!r}")
        for r in self.meeting_rooms:
            if r.area not in areas:
                problems.append(f"meeting room {r.id!r}: unknown area {r.area!r}")
        for g in self.sms_groups:
            problems += [f"SMS group {g.name!r}: unknown area {a!r}" for a in g.areas if a not in areas]
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
        unit_ids = {u.id for u in self.units}
        for su in self.users:
            if su.unit and (su.unit not in unit_ids or su.role != "responder"):
                problems.append(f"user {su.username!r}: unit {su.unit!r} needs a known unit and role responder")
        rooms = {r.id for r in self.meeting_rooms}
        for c in self.conferences:
            for site in c.sites:
                if site not in rooms:
                    problems.append(f"conference {c.id!r}: unknown meeting room {site!r}")
        problems += self._node_problems(areas)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _node_problems(self, areas: set[str]) -> list[str]:
        problems: list[str] = []
        nodes = {n.name: n for n in self.nodes}
        if len(nodes) != len(self.nodes):
            problems.append("a node name appears twice")
        roots = [n.name for n in self.nodes if n.kind == "mcu" and not n.parent]
        if self.nodes and len(roots) != 1:
            problems.append(f"exactly one MCU node must have no parent, found {roots}")
        for n in self.nodes:
            if n.area and n.area not in areas:
                problems.append(f"node {n.name!r}: unknown area {n.area!r}")
            if n.kind == "bridge" and (n.parent or n.backup):
                problems.append(f"node {n.name!r}: a bridge has no parent and no backup")
            if n.parent and (n.parent not in nodes or nodes[n.parent].kind != "mcu"):
                problems.append(f"node {n.name!r}: parent {n.parent!r} is not an MCU node")
            elif n.parent and not nodes[n.parent].control:
                problems.append(f"node {n.name!r}: its parent {n.parent!r} needs a control address")
            if n.standby_parents and not n.parent:
                problems.append(f"node {n.name!r}: standby_parents need a parent")
            if len(set(n.standby_parents)) != len(n.standby_parents):
                problems.append(f"node {n.name!r}: standby_parents repeat a node")
            for sp in n.standby_parents:
                if sp not in nodes or nodes[sp].kind != "mcu":
                    problems.append(f"node {n.name!r}: standby parent {sp!r} is not an MCU node")
                elif sp in (n.name, n.parent):
                    problems.append(f"node {n.name!r}: standby parent {sp!r} is itself or its parent")
                elif nodes[sp].parent == n.name:
                    problems.append(f"node {n.name!r}: standby parent {sp!r} is its own child")
            seen, cur = {n.name}, n
            while cur.parent and cur.parent in nodes:
                if cur.parent in seen:
                    problems.append(f"node {n.name!r}: parent chain loops")
                    break
                seen.add(cur.parent)
                cur = nodes[cur.parent]
        for c in self.conferences:
            for name in c.nodes:
                if name not in nodes or nodes[name].kind != "mcu":
                    problems.append(f"conference {c.id!r}: {name!r} is not an MCU node")
        return problems

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

    def node(self, name: str) -> Node | None:
        """The plan's node of that name (None when absent)."""
        return next((n for n in self.nodes if n.name == name), None)

    def link_children(self, name: str) -> list[Node]:
        """Nodes that may cascade into node ``name``: its children, and nodes listing it among their
        `standby_parents` (a standby city node admits the counties' links)."""
        return [n for n in self.nodes if n.parent == name or name in n.standby_parents]

    def node_of_area(self, area: str) -> Node | None:
        """The MCU node hosting an area: its own node, else its county's, else the root; None without nodes."""
        by_area = {n.area: n for n in self.nodes if n.kind == "mcu" and n.area}
        township = next((t for t in self.townships if t.id == area), None)
        for candidate in (area, township.county if township else None):
            if candidate in by_area:
                return by_area[candidate]
        return next((n for n in self.nodes if n.kind == "mcu" and not n.parent), None)

    def line_kbps(self, protocol: LineProtocol, room_id: str | None = None, address: str | None = None,
                  node: str | None = None) -> int:
        """The line rate of a site or link: the plan's endpoint of that protocol in meeting room
        ``room_id`` (or with that ``address``), the cascade line of ``node``, else ``lines.<protocol>``."""
        configured = self.configured_line_kbps(protocol, room_id=room_id, address=address, node=node)
        return configured if configured is not None else self.lines.for_protocol(protocol)

    def configured_line_kbps(self, protocol: LineProtocol, room_id: str | None = None, address: str | None = None,
                             node: str | None = None) -> int | None:
        """The line rate the plan names for that site or link (see :meth:`line_kbps`); None when only
        the protocol's default stands in (an unknown line: its video starts low and probes up)."""
        if protocol == "cascade":
            found = self.node(node) if node else None
            return found.line_kbps if found is not None and found.line_kbps else None
        for room in self.meeting_rooms if room_id is not None or address else ():
            if room_id is not None and room.id != room_id:
                continue
            for ep in room.endpoints:
                if ep.protocol == protocol and ep.line_kbps and (not address or ep.address == address):
                    return ep.line_kbps
        return None

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
