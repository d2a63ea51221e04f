"""The dispatch model: incidents, joint components, units, stations, and their state machines.

Everything here is pure: frozen dataclasses and functions that return new values. An illegal
change raises a ``DispatchError`` subclass with a zh-CN message for the UI and changes nothing
(the caller still holds the old value). The timeline is a tuple that functions only extend, so it
is append-only by construction; the database layer stores each new entry as a row.

Incident lifecycle (per agency component; the incident's status is derived, see ``Incident.status``)::

    new → dispatched → en_route → on_scene → under_control → closed
      └──────┴────────────┴──────────┴─────────────┴──────→ closed (cancelled / stood down)
    closed → new (reopen, with a reason)

Skipping forward (dispatched → on_scene, the unit arrived before anyone pressed en route) is
allowed; going backward is not, except reopen.

Categories follow GB/T 35561-2017 (突发事件分类与编码) in spirit: the first digit of our code is its
top-level class (1 自然灾害, 2 事故灾难, 3 公共卫生事件, 4 社会安全事件, 9 其他), the rest is ours.

Size: about 700 lines because the incident's types, its one transition table and the
category/agency tables it validates against change together; splitting them would put one rule
in several files.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from gis.geodesy import CoordinateError, check_lon_lat


class DispatchError(ValueError):
    """Base class of model errors; ``str(e)`` is a zh-CN message for the UI."""


class IllegalTransition(DispatchError):
    pass


class UnitUnavailable(DispatchError):
    pass


class ValidationError(DispatchError):
    pass


# ---------------------------------------------------------------- categories


@dataclass(frozen=True)
class Category:
    key: str
    code: str
    name: str  # zh-CN
    gbt_class: int  # GB/T 35561 top-level class
    lead_agency: str
    subtypes: Mapping[str, str]  # key → zh-CN name; "general" always exists


def _cat(key: str, code: str, name: str, gbt: int, agency: str, subs: dict[str, str]) -> Category:
    return Category(key, code, name, gbt, agency, MappingProxyType({"general": "一般", **subs}))


CATEGORIES: Mapping[str, Category] = MappingProxyType(
    {
        c.key: c
        for c in (
            _cat("police", "41", "治安警情", 4, "police",
                 {"theft": "盗窃", "robbery": "抢劫", "assault": "打架斗殴", "disturbance": "纠纷", "missing": "人员走失"}),
            _cat("fire", "22", "火灾", 2, "fire",
                 {"residential": "住宅火灾", "commercial": "商业场所火灾", "industrial": "工厂火灾",
                  "vehicle": "车辆火灾", "forest": "森林火灾", "rescue": "抢险救援"}),
            _cat("medical", "31", "医疗急救", 3, "medical",
                 {"cardiac": "心脏骤停/胸痛", "trauma": "创伤", "stroke": "卒中", "maternity": "分娩", "poisoning": "中毒"}),
            _cat("flood_control", "11", "三防（防汛防台抗旱）", 1, "flood_control",
                 {"flood": "洪涝", "typhoon": "台风", "drought": "干旱", "landslide": "山体滑坡", "dyke": "堤防险情"}),
            _cat("traffic", "21", "交通事故", 2, "police",
                 {"collision": "车辆碰撞", "entrapment": "人员被困", "hazmat": "危化品车辆"}),
            # issue 19: the agencies beyond dispatch (气象, 地震, 卫健/疫情, 应急管理/安全生产)
            _cat("meteorology", "12", "气象灾害", 1, "meteorology",
                 {"rainstorm": "暴雨", "thunderstorm": "雷雨大风", "heat": "高温", "cold": "寒潮低温",
                  "fog": "大雾", "hail": "冰雹"}),
            _cat("earthquake", "13", "地震灾害", 1, "earthquake",
                 {"destructive": "破坏性地震", "felt": "有感地震", "aftershock": "强余震", "secondary": "地震次生灾害"}),
            _cat("epidemic", "32", "公共卫生事件（疫情）", 3, "health",
                 {"infectious": "传染病疫情", "unknown_disease": "不明原因疾病", "food_poisoning": "群体性食物中毒",
                  "occupational": "职业中毒", "animal": "动物疫情"}),
            _cat("work_safety", "24", "安全生产事故", 2, "emergency_mgmt",
                 {"mine": "矿山事故", "chemical": "危险化学品事故", "construction": "建筑施工事故",
                  "gas": "燃气事故", "special_equipment": "特种设备事故"}),
            _cat("other", "90", "其他", 9, "police", {}),
        )
    }
)

AGENCIES: Mapping[str, str] = MappingProxyType(
    {"police": "公安", "fire": "消防救援", "medical": "医疗急救", "flood_control": "三防", "traffic": "交警",
     "meteorology": "气象", "earthquake": "地震", "health": "卫健", "emergency_mgmt": "应急管理"}
)

# default category preset by the dialled emergency number (DESIGN: the number presets the category)
NUMBER_CATEGORY: Mapping[str, str] = MappingProxyType({"110": "police", "119": "fire", "120": "medical", "122": "traffic"})


def category(key: str) -> Category:
    """The category with this key, or ValidationError listing the valid keys."""
    try:
        return CATEGORIES[key]
    except KeyError:
        raise ValidationError(f"未知警情类别 {key!r}，应为: {', '.join(CATEGORIES)}") from None


def check_subtype(cat: str, subtype: str) -> None:
    c = category(cat)
    if subtype not in c.subtypes:
        raise ValidationError(f"类别 {c.name} 没有子类 {subtype!r}，应为: {', '.join(c.subtypes)}")


# ---------------------------------------------------------------- incidents


class IncidentStatus(StrEnum):
    NEW = "new"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    UNDER_CONTROL = "under_control"
    CLOSED = "closed"


INCIDENT_STATUS_NAMES: Mapping[IncidentStatus, str] = MappingProxyType(
    {
        IncidentStatus.NEW: "新警情",
        IncidentStatus.DISPATCHED: "已调派",
        IncidentStatus.EN_ROUTE: "途中",
        IncidentStatus.ON_SCENE: "到场",
        IncidentStatus.UNDER_CONTROL: "已控制",
        IncidentStatus.CLOSED: "已结案",
    }
)
_ORDER = list(IncidentStatus)
PRIORITY_NAMES: Mapping[int, str] = MappingProxyType({1: "特急", 2: "紧急", 3: "较急", 4: "一般", 5: "咨询"})


def incident_transition_allowed(frm: IncidentStatus, to: IncidentStatus) -> bool:
    """Forward along the chain (skips allowed), anything → closed, closed → new (reopen)."""
    if frm == IncidentStatus.CLOSED:
        return to == IncidentStatus.NEW
    return _ORDER.index(to) > _ORDER.index(frm)


@dataclass(frozen=True)
class Location:
    lon: float
    lat: float
    uncertainty_m: float | None = None
    source: str = "manual"  # manual | pidf-lo | aml | gazetteer | avl
    address: str = ""
    county_code: int | None = None
    township_code: int | None = None

    def __post_init__(self) -> None:
        try:
            check_lon_lat(self.lon, self.lat)
        except CoordinateError as e:
            raise ValidationError(str(e)) from None
        if self.uncertainty_m is not None and not self.uncertainty_m >= 0:
            raise ValidationError(f"定位误差必须 ≥ 0: {self.uncertainty_m}")


@dataclass(frozen=True)
class Caller:
    number: str = ""
    name: str = ""


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: datetime
    actor: str
    action: str  # machine key, e.g. "created", "status", "unit_assigned"
    detail: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    """One agency's part of an incident (联动): its own status and units."""

    agency: str
    status: IncidentStatus = IncidentStatus.NEW
    units: tuple[str, ...] = ()  # currently assigned
    released_units: tuple[str, ...] = ()  # assigned earlier, recalled or cleared


@dataclass(frozen=True)
class Incident:
    id: str
    category: str
    subtype: str
    priority: int
    location: Location
    created_at: datetime
    description: str = ""
    caller: Caller = Caller()
    components: tuple[Component, ...] = ()
    calls: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    related: tuple[str, ...] = ()  # linked incidents (both sides record the link)
    merged_into: str | None = None
    merged_from: tuple[str, ...] = ()
    disposition: str = ""
    training: bool = False  # 演练 data: never mixed with real data
    timeline: tuple[TimelineEntry, ...] = ()

    @property
    def status(self) -> IncidentStatus:
        """Least advanced status among open components; closed when every component is closed."""
        open_ = [c.status for c in self.components if c.status != IncidentStatus.CLOSED]
        if not self.components:
            return IncidentStatus.NEW
        if not open_:
            return IncidentStatus.CLOSED
        return min(open_, key=_ORDER.index)

    @property
    def agencies(self) -> tuple[str, ...]:
        return tuple(c.agency for c in self.components)

    @property
    def joint(self) -> bool:
        return len(self.components) > 1

    @property
    def assigned_units(self) -> tuple[str, ...]:
        return tuple(u for c in self.components for u in c.units)

    def component(self, agency: str) -> Component:
        for c in self.components:
            if c.agency == agency:
                return c
        raise ValidationError(f"警情 {self.id} 没有 {AGENCIES.get(agency, agency)} 分警")


def _check_time(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError("时间必须带时区")


def _log(inc: Incident, at: datetime, actor: str, action: str, **detail: object) -> Incident:
    _check_time(at)
    if not actor:
        raise ValidationError("操作人不能为空")
    entry = TimelineEntry(len(inc.timeline) + 1, at, actor, action, {k: str(v) for k, v in detail.items()})
    return dataclasses.replace(inc, timeline=inc.timeline + (entry,))


def _check_priority(p: int) -> None:
    if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 5:
        raise ValidationError(f"优先级必须是 1–5 的整数: {p!r}")


def _check_agency(agency: str) -> None:
    if agency not in AGENCIES:
        raise ValidationError(f"未知部门 {agency!r}，应为: {', '.join(AGENCIES)}")


def new_incident(
    id: str,
    category_key: str,
    subtype: str,
    priority: int,
    location: Location,
    at: datetime,
    actor: str,
    description: str = "",
    caller: Caller | None = None,
    call_id: str | None = None,
    agencies: Iterable[str] = (),
    training: bool = False,
) -> Incident:
    """A new incident with a component for the category's lead agency (plus ``agencies``)."""
    if not id:
        raise ValidationError("警情编号不能为空")
    check_subtype(category_key, subtype)
    _check_priority(priority)
    _check_time(at)
    agency_list = list(dict.fromkeys([CATEGORIES[category_key].lead_agency, *agencies]))
    for a in agency_list:
        _check_agency(a)
    inc = Incident(
        id=id,
        category=category_key,
        subtype=subtype,
        priority=priority,
        location=location,
        created_at=at,
        description=description,
        caller=caller or Caller(),
        components=tuple(Component(a) for a in agency_list),
        calls=(call_id,) if call_id else (),
        training=training,
    )
    return _log(inc, at, actor, "created", category=category_key, subtype=subtype, priority=priority)


def _replace_component(inc: Incident, comp: Component) -> Incident:
    return dataclasses.replace(
        inc, components=tuple(comp if c.agency == comp.agency else c for c in inc.components)
    )


def _require_open(inc: Incident) -> None:
    if inc.status == IncidentStatus.CLOSED:
        raise IllegalTransition(f"警情 {inc.id} 已结案，请先重新打开")


def add_component(inc: Incident, agency: str, at: datetime, actor: str) -> Incident:
    """Make the incident joint (联动) by adding an agency component."""
    _check_agency(agency)
    _require_open(inc)
    if agency in inc.agencies:
        raise ValidationError(f"警情 {inc.id} 已有 {AGENCIES[agency]} 分警")
    inc = dataclasses.replace(inc, components=inc.components + (Component(agency),))
    return _log(inc, at, actor, "component_added", agency=agency)


def set_component_status(inc: Incident, agency: str, to: IncidentStatus, at: datetime, actor: str) -> Incident:
    """Move one agency's component along the lifecycle."""
    to = IncidentStatus(to)
    comp = inc.component(agency)
    if to == IncidentStatus.NEW or comp.status == IncidentStatus.CLOSED:
        raise IllegalTransition(f"{AGENCIES[agency]} 分警不能从「{INCIDENT_STATUS_NAMES[comp.status]}」改为「{INCIDENT_STATUS_NAMES[to]}」（重新打开请用 reopen）")
    if not incident_transition_allowed(comp.status, to):
        raise IllegalTransition(
            f"{AGENCIES[agency]} 分警不能从「{INCIDENT_STATUS_NAMES[comp.status]}」改为「{INCIDENT_STATUS_NAMES[to]}」"
        )
    if to == IncidentStatus.CLOSED and comp.units:
        raise IllegalTransition(f"{AGENCIES[agency]} 分警仍有力量未撤回: {', '.join(comp.units)}")
    if to in (IncidentStatus.DISPATCHED, IncidentStatus.EN_ROUTE, IncidentStatus.ON_SCENE) and not comp.units:
        raise IllegalTransition(f"{AGENCIES[agency]} 分警尚未调派力量")
    inc = _replace_component(inc, dataclasses.replace(comp, status=to))
    return _log(inc, at, actor, "status", agency=agency, frm=comp.status.value, to=to.value)


def set_status(inc: Incident, to: IncidentStatus, at: datetime, actor: str) -> Incident:
    """Move a single-agency incident; a joint incident needs ``set_component_status``."""
    if inc.joint:
        raise IllegalTransition(f"警情 {inc.id} 为多部门联动，请指定部门")
    return set_component_status(inc, inc.components[0].agency, to, at, actor)


def close_incident(inc: Incident, disposition: str, at: datetime, actor: str) -> Incident:
    """Close every open component (no units may remain assigned)."""
    _require_open(inc)
    if not disposition.strip():
        raise ValidationError("结案需要填写处置结果")
    busy = inc.assigned_units
    if busy:
        raise IllegalTransition(f"警情 {inc.id} 仍有力量未撤回: {', '.join(busy)}")
    for c in inc.components:
        if c.status != IncidentStatus.CLOSED:
            inc = set_component_status(inc, c.agency, IncidentStatus.CLOSED, at, actor)
    inc = dataclasses.replace(inc, disposition=disposition)
    return _log(inc, at, actor, "closed", disposition=disposition)


def reopen_incident(inc: Incident, reason: str, at: datetime, actor: str) -> Incident:
    """closed → new for every component, with a reason on the timeline."""
    if inc.status != IncidentStatus.CLOSED:
        raise IllegalTransition(f"警情 {inc.id} 未结案，无需重新打开")
    if inc.merged_into:
        raise IllegalTransition(f"警情 {inc.id} 已并入 {inc.merged_into}，请打开主警情")
    if not reason.strip():
        raise ValidationError("重新打开需要填写原因")
    inc = dataclasses.replace(
        inc, components=tuple(dataclasses.replace(c, status=IncidentStatus.NEW) for c in inc.components), disposition=""
    )
    return _log(inc, at, actor, "reopened", reason=reason)


def set_priority(inc: Incident, priority: int, at: datetime, actor: str) -> Incident:
    _check_priority(priority)
    _require_open(inc)
    old = inc.priority
    return _log(dataclasses.replace(inc, priority=priority), at, actor, "priority", frm=old, to=priority)


def set_location(inc: Incident, loc: Location, at: datetime, actor: str) -> Incident:
    _require_open(inc)
    return _log(dataclasses.replace(inc, location=loc), at, actor, "location", lon=loc.lon, lat=loc.lat, source=loc.source)


def add_note(inc: Incident, text: str, at: datetime, actor: str) -> Incident:
    if not text.strip():
        raise ValidationError("备注不能为空")
    return _log(dataclasses.replace(inc, notes=inc.notes + (text,)), at, actor, "note", text=text)


def link_call(inc: Incident, call_id: str, at: datetime, actor: str) -> Incident:
    if call_id in inc.calls:
        raise ValidationError(f"呼叫 {call_id} 已关联到警情 {inc.id}")
    return _log(dataclasses.replace(inc, calls=inc.calls + (call_id,)), at, actor, "call_linked", call=call_id)


def link_incidents(a: Incident, b: Incident, at: datetime, actor: str) -> tuple[Incident, Incident]:
    """Record a relation on both incidents (each keeps its own lifecycle)."""
    if a.id == b.id:
        raise ValidationError("不能关联警情自身")
    if b.id in a.related:
        raise ValidationError(f"警情 {a.id} 与 {b.id} 已关联")
    a2 = _log(dataclasses.replace(a, related=a.related + (b.id,)), at, actor, "linked", other=b.id)
    b2 = _log(dataclasses.replace(b, related=b.related + (a.id,)), at, actor, "linked", other=a.id)
    return a2, b2


def merge_incidents(primary: Incident, dup: Incident, at: datetime, actor: str) -> tuple[Incident, Incident]:
    """Merge ``dup`` into ``primary``: calls, notes and agencies move over; dup is closed as merged.

    Units still assigned to ``dup`` move to the same agency component of ``primary``. Both
    timelines keep their history; ``dup.merged_into`` points at the primary.
    """
    if primary.id == dup.id:
        raise ValidationError("不能合并警情自身")
    _require_open(primary)
    if dup.merged_into:
        raise IllegalTransition(f"警情 {dup.id} 已并入 {dup.merged_into}")
    if dup.status == IncidentStatus.CLOSED:
        raise IllegalTransition(f"警情 {dup.id} 已结案，不能合并")
    p = primary
    for c in dup.components:
        if c.agency not in p.agencies:
            p = dataclasses.replace(p, components=p.components + (Component(c.agency),))
        if c.units:
            pc = p.component(c.agency)
            status = pc.status if pc.status != IncidentStatus.NEW else IncidentStatus.DISPATCHED
            p = _replace_component(p, dataclasses.replace(pc, units=pc.units + c.units, status=status))
    p = dataclasses.replace(
        p,
        calls=p.calls + tuple(c for c in dup.calls if c not in p.calls),
        notes=p.notes + dup.notes,
        merged_from=p.merged_from + (dup.id,),
        priority=min(p.priority, dup.priority),
    )
    p = _log(p, at, actor, "merged_from", other=dup.id, calls=len(dup.calls))
    d = dataclasses.replace(
        dup,
        components=tuple(
            dataclasses.replace(c, status=IncidentStatus.CLOSED, units=(), released_units=c.released_units + c.units)
            for c in dup.components
        ),
        merged_into=primary.id,
        disposition=f"并入 {primary.id}",
    )
    d = _log(d, at, actor, "merged_into", other=primary.id)
    return p, d


# ---------------------------------------------------------------- units and stations


class Capability(StrEnum):
    ENGINE = "engine"  # pumper, first-line firefighting
    WATER_TENDER = "water_tender"
    LADDER = "ladder"
    RESCUE = "rescue"
    ALS = "als"  # advanced life support
    BLS = "bls"  # basic life support
    BOAT = "boat"
    PUMP = "pump"  # high-capacity drainage pump
    PATROL = "patrol"  # police patrol
    FLOOD_TEAM = "flood_team"  # sandbags, dyke crew
    WEATHER_OBS = "weather_obs"  # mobile weather observation at the scene
    QUAKE_SURVEY = "quake_survey"  # earthquake field survey (intensity, damage assessment)
    USAR = "usar"  # urban search and rescue (collapsed structures)
    EPIDEMIOLOGY = "epidemiology"  # outbreak investigation, sampling
    DISINFECTION = "disinfection"
    HAZMAT = "hazmat"  # hazardous chemicals
    MINE_RESCUE = "mine_rescue"


CAPABILITY_NAMES: Mapping[Capability, str] = MappingProxyType(
    {
        Capability.ENGINE: "水罐/泡沫车", Capability.WATER_TENDER: "供水车", Capability.LADDER: "登高车",
        Capability.RESCUE: "抢险救援", Capability.ALS: "高级生命支持", Capability.BLS: "基础生命支持",
        Capability.BOAT: "冲锋舟", Capability.PUMP: "排涝泵", Capability.PATROL: "巡逻警力",
        Capability.FLOOD_TEAM: "防汛抢险队", Capability.WEATHER_OBS: "现场气象观测",
        Capability.QUAKE_SURVEY: "地震现场调查", Capability.USAR: "城市搜救", Capability.EPIDEMIOLOGY: "流行病学调查",
        Capability.DISINFECTION: "消毒消杀", Capability.HAZMAT: "危化品处置", Capability.MINE_RESCUE: "矿山救护",
    }
)


@dataclass(frozen=True)
class UnitType:
    key: str
    name: str
    agency: str
    capabilities: frozenset[Capability]


UNIT_TYPES: Mapping[str, UnitType] = MappingProxyType(
    {
        t.key: t
        for t in (
            UnitType("police_car", "警车", "police", frozenset({Capability.PATROL})),
            UnitType("fire_engine", "水罐消防车", "fire", frozenset({Capability.ENGINE})),
            UnitType("water_tender", "供水消防车", "fire", frozenset({Capability.WATER_TENDER})),
            UnitType("ladder", "登高平台消防车", "fire", frozenset({Capability.LADDER})),
            UnitType("rescue", "抢险救援消防车", "fire", frozenset({Capability.RESCUE})),
            UnitType("ambulance_als", "监护型救护车", "medical", frozenset({Capability.ALS, Capability.BLS})),
            UnitType("ambulance_bls", "普通救护车", "medical", frozenset({Capability.BLS})),
            UnitType("flood_team", "防汛抢险队", "flood_control", frozenset({Capability.FLOOD_TEAM})),
            UnitType("pump", "排涝泵车", "flood_control", frozenset({Capability.PUMP})),
            UnitType("boat", "冲锋舟", "flood_control", frozenset({Capability.BOAT, Capability.RESCUE})),
            UnitType("weather_vehicle", "气象应急观测车", "meteorology", frozenset({Capability.WEATHER_OBS})),
            UnitType("quake_survey_team", "地震现场工作队", "earthquake", frozenset({Capability.QUAKE_SURVEY})),
            UnitType("usar_team", "地震灾害紧急救援队", "earthquake", frozenset({Capability.USAR, Capability.RESCUE})),
            UnitType("epi_team", "流行病学调查队", "health", frozenset({Capability.EPIDEMIOLOGY})),
            UnitType("disinfection_team", "卫生消杀队", "health", frozenset({Capability.DISINFECTION})),
            UnitType("hazmat_team", "危化品应急救援队", "emergency_mgmt", frozenset({Capability.HAZMAT, Capability.RESCUE})),
            UnitType("mine_rescue_team", "矿山救护队", "emergency_mgmt",
                     frozenset({Capability.MINE_RESCUE, Capability.RESCUE})),
        )
    }
)


class UnitStatus(StrEnum):
    AVAILABLE = "available"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    TRANSPORTING = "transporting"
    AT_HOSPITAL = "at_hospital"
    RETURNING = "returning"
    OUT_OF_SERVICE = "out_of_service"


UNIT_STATUS_NAMES: Mapping[UnitStatus, str] = MappingProxyType(
    {
        UnitStatus.AVAILABLE: "待命", UnitStatus.DISPATCHED: "已调派", UnitStatus.EN_ROUTE: "出动途中",
        UnitStatus.ON_SCENE: "到场", UnitStatus.TRANSPORTING: "转运中", UnitStatus.AT_HOSPITAL: "到达医院",
        UnitStatus.RETURNING: "返队", UnitStatus.OUT_OF_SERVICE: "停用",
    }
)
# colours used by the map console and the status board (colour-blind-friendly order)
UNIT_STATUS_COLOURS: Mapping[UnitStatus, str] = MappingProxyType(
    {
        UnitStatus.AVAILABLE: "#2da44e", UnitStatus.DISPATCHED: "#bf8700", UnitStatus.EN_ROUTE: "#fb8500",
        UnitStatus.ON_SCENE: "#cf222e", UnitStatus.TRANSPORTING: "#8250df", UnitStatus.AT_HOSPITAL: "#6639ba",
        UnitStatus.RETURNING: "#0969da", UnitStatus.OUT_OF_SERVICE: "#6e7781",
    }
)

_S = UnitStatus
UNIT_TRANSITIONS: Mapping[UnitStatus, frozenset[UnitStatus]] = MappingProxyType(
    {
        _S.AVAILABLE: frozenset({_S.DISPATCHED, _S.OUT_OF_SERVICE}),
        _S.DISPATCHED: frozenset({_S.EN_ROUTE, _S.ON_SCENE, _S.AVAILABLE, _S.RETURNING}),
        _S.EN_ROUTE: frozenset({_S.ON_SCENE, _S.RETURNING, _S.AVAILABLE}),
        _S.ON_SCENE: frozenset({_S.TRANSPORTING, _S.RETURNING, _S.AVAILABLE}),
        _S.TRANSPORTING: frozenset({_S.AT_HOSPITAL, _S.RETURNING}),
        _S.AT_HOSPITAL: frozenset({_S.RETURNING, _S.AVAILABLE}),
        # a returning unit may be sent straight to another incident
        _S.RETURNING: frozenset({_S.AVAILABLE, _S.DISPATCHED, _S.OUT_OF_SERVICE}),
        _S.OUT_OF_SERVICE: frozenset({_S.AVAILABLE}),
    }
)
DISPATCHABLE: frozenset[UnitStatus] = frozenset({_S.AVAILABLE, _S.RETURNING})
# statuses in which the unit is attached to an incident
ATTACHED: frozenset[UnitStatus] = frozenset({_S.DISPATCHED, _S.EN_ROUTE, _S.ON_SCENE, _S.TRANSPORTING, _S.AT_HOSPITAL})


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    agency: str
    lon: float
    lat: float
    county_code: int | None = None
    approximate: bool = False


@dataclass(frozen=True)
class Position:
    lon: float
    lat: float
    at: datetime
    speed_kmh: float | None = None
    heading_deg: float | None = None


@dataclass(frozen=True)
class Unit:
    id: str
    callsign: str
    type: str  # key of UNIT_TYPES
    station_id: str
    crew: tuple[str, ...] = ()
    extra_capabilities: frozenset[Capability] = frozenset()
    status: UnitStatus = UnitStatus.AVAILABLE
    incident_id: str | None = None
    position: Position | None = None  # last AVL fix; None = no AVL (use the station)
    has_avl: bool = True
    last_dispatched_at: datetime | None = None  # for rotation (fair share of calls)
    training: bool = False

    def __post_init__(self) -> None:
        if self.type not in UNIT_TYPES:
            raise ValidationError(f"力量 {self.id}: 未知类型 {self.type!r}，应为: {', '.join(UNIT_TYPES)}")

    @property
    def agency(self) -> str:
        return UNIT_TYPES[self.type].agency

    @property
    def capabilities(self) -> frozenset[Capability]:
        return UNIT_TYPES[self.type].capabilities | self.extra_capabilities

    @property
    def colour(self) -> str:
        return UNIT_STATUS_COLOURS[self.status]


def change_unit_status(
    unit: Unit, to: UnitStatus, at: datetime, incident_id: str | None = None
) -> Unit:
    """Move a unit along its status machine; dispatch needs an incident, available clears it."""
    to = UnitStatus(to)
    _check_time(at)
    if to not in UNIT_TRANSITIONS[unit.status]:
        raise IllegalTransition(
            f"力量 {unit.callsign} 不能从「{UNIT_STATUS_NAMES[unit.status]}」改为「{UNIT_STATUS_NAMES[to]}」"
        )
    if to == UnitStatus.DISPATCHED:
        if not incident_id:
            raise ValidationError("调派需要指定警情")
        return dataclasses.replace(unit, status=to, incident_id=incident_id, last_dispatched_at=at)
    if to in (UnitStatus.AVAILABLE, UnitStatus.OUT_OF_SERVICE, UnitStatus.RETURNING):
        return dataclasses.replace(unit, status=to, incident_id=None)
    return dataclasses.replace(unit, status=to)


def assign_units(
    inc: Incident, units: Iterable[Unit], at: datetime, actor: str
) -> tuple[Incident, list[Unit]]:
    """Dispatch units to an incident ("dispatch all recommended" or a partial pick).

    All or nothing: if any unit is not dispatchable, UnitUnavailable names it and nothing changes.
    A unit of an agency without a component adds that component (the incident becomes joint).
    """
    _require_open(inc)
    units = list(units)
    if not units:
        raise ValidationError("未选择力量")
    ids = [u.id for u in units]
    if len(set(ids)) != len(ids):
        raise ValidationError("重复选择了同一力量")
    for u in units:
        if u.status not in DISPATCHABLE:
            where = f"（已在警情 {u.incident_id}）" if u.incident_id else ""
            raise UnitUnavailable(f"力量 {u.callsign} 当前状态「{UNIT_STATUS_NAMES[u.status]}」，不能调派{where}")
        if u.training != inc.training:
            raise ValidationError(f"力量 {u.callsign} 与警情的演练标志不一致")
    new_units = [change_unit_status(u, UnitStatus.DISPATCHED, at, inc.id) for u in units]
    for u in units:
        if u.agency not in inc.agencies:
            inc = add_component(inc, u.agency, at, actor)
        comp = inc.component(u.agency)
        status = comp.status
        if status in (IncidentStatus.NEW, IncidentStatus.CLOSED):
            status = IncidentStatus.DISPATCHED
        inc = _replace_component(inc, dataclasses.replace(comp, units=comp.units + (u.id,), status=status))
        inc = _log(inc, at, actor, "unit_assigned", unit=u.id, agency=u.agency)
    return inc, new_units


def release_unit(
    inc: Incident, unit: Unit, at: datetime, actor: str, recall: bool = False
) -> tuple[Incident, Unit]:
    """Detach a unit: a recall (召回, before it finishes) or clearing after the job; it returns."""
    for comp in inc.components:
        if unit.id in comp.units:
            break
    else:
        raise ValidationError(f"力量 {unit.callsign} 未调派到警情 {inc.id}")
    if unit.incident_id != inc.id:
        raise ValidationError(f"力量 {unit.callsign} 当前不属于警情 {inc.id}")
    new_unit = change_unit_status(unit, UnitStatus.RETURNING, at)
    comp2 = dataclasses.replace(
        comp, units=tuple(u for u in comp.units if u != unit.id), released_units=comp.released_units + (unit.id,)
    )
    inc = _replace_component(inc, comp2)
    inc = _log(inc, at, actor, "unit_recalled" if recall else "unit_cleared", unit=unit.id, agency=comp.agency)
    return inc, new_unit


def unit_arrived(inc: Incident, unit: Unit, at: datetime, actor: str = "geofence") -> tuple[Incident, Unit]:
    """A unit reached the scene (console button, mobile post or geofence): the unit goes on scene,
    its agency component moves to on scene unless it is already further along."""
    if unit.incident_id != inc.id or unit.id not in inc.assigned_units:
        raise ValidationError(f"力量 {unit.callsign} 未调派到警情 {inc.id}")
    new_unit = change_unit_status(unit, UnitStatus.ON_SCENE, at)
    comp = inc.component(unit.agency)
    inc = _log(inc, at, actor, "unit_arrived", unit=unit.id, agency=comp.agency)
    if _ORDER.index(comp.status) < _ORDER.index(IncidentStatus.ON_SCENE):
        inc = set_component_status(inc, comp.agency, IncidentStatus.ON_SCENE, at, actor)
    return inc, new_unit


def units_after_merge(units: Iterable[Unit], primary: Incident, dup_id: str) -> list[Unit]:
    """Units that were on the merged duplicate now belong to the primary incident."""
    return [
        dataclasses.replace(u, incident_id=primary.id) if u.incident_id == dup_id and u.id in primary.assigned_units else u
        for u in units
    ]
