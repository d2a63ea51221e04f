"""Emergency resources as data, and the rules that decide what may be done with them.

Pure: nothing here reads a clock, a database or a file except ``load_catalogue`` (which is given
the path). The rules:

* Five kinds of resource, each at a position: **depot** (仓库, holds supplies), **team** (救援队伍:
  headcount and skills), **expert** (专家: specialty and contact), **shelter** (避难场所: capacity and
  current occupancy), **hospital** (医院: beds total and free, specialties).
* Everything that can be allocated is **stock**: a quantity of an item at a resource.
  Supplies at a depot are items of ``SUPPLY_ITEMS`` (sandbags, pumps, life jackets, tents ...) with
  their unit (袋, 台, 件, 顶). A shelter's free places are the item ``places`` (occupancy =
  capacity − free places); a hospital's free beds are the item ``beds``; a team is the item
  ``team`` with quantity 1 while it is not deployed. So one allocation rule covers all of them.
* An allocation takes a positive whole quantity of one item of one resource for one incident.
  It is refused (``ResourceConflict``) when the stock is smaller than the quantity asked — the
  stock never goes negative — or when the same request (its ``request_id``) was already made.
  Release gives the whole allocation back, once; releasing it again is refused.
* Quantities are integers from 1 to ``MAX_QUANTITY``; names and contacts are bounded strings.
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dispatch.model import DispatchError, ValidationError
from gis.geodesy import CoordinateError, check_lon_lat

MAX_QUANTITY = 10_000_000


class ResourceKind(StrEnum):
    DEPOT = "depot"
    TEAM = "team"
    EXPERT = "expert"
    SHELTER = "shelter"
    HOSPITAL = "hospital"


KIND_NAMES: dict[ResourceKind, str] = {
    ResourceKind.DEPOT: "物资仓库", ResourceKind.TEAM: "救援队伍", ResourceKind.EXPERT: "专家",
    ResourceKind.SHELTER: "避难场所", ResourceKind.HOSPITAL: "医院",
}
KIND_NAMES_EN: dict[ResourceKind, str] = {
    ResourceKind.DEPOT: "Supply depot", ResourceKind.TEAM: "Rescue team", ResourceKind.EXPERT: "Expert",
    ResourceKind.SHELTER: "Shelter", ResourceKind.HOSPITAL: "Hospital",
}


@dataclass(frozen=True)
class Item:
    key: str
    name: str  # zh-CN
    name_en: str
    unit: str  # zh-CN counting unit


SUPPLY_ITEMS: dict[str, Item] = {i.key: i for i in (
    Item("sandbag", "沙袋", "Sandbags", "袋"),
    Item("pump", "抽水泵", "Pumps", "台"),
    Item("life_jacket", "救生衣", "Life jackets", "件"),
    Item("tent", "帐篷", "Tents", "顶"),
    Item("boat", "冲锋舟", "Assault boats", "艘"),
    Item("generator", "发电机", "Generators", "台"),
    Item("water", "饮用水", "Drinking water", "箱"),
    Item("quilt", "棉被", "Quilts", "床"),
)}
# The stock item of the other kinds (see the module docstring).
PLACES = Item("places", "安置床位", "Shelter places", "人")
BEDS = Item("beds", "空余病床", "Free beds", "张")
TEAM = Item("team", "队伍出动", "Team deployment", "支")
ITEMS: dict[str, Item] = {**SUPPLY_ITEMS, PLACES.key: PLACES, BEDS.key: BEDS, TEAM.key: TEAM}
KIND_ITEM: dict[ResourceKind, Item] = {ResourceKind.SHELTER: PLACES, ResourceKind.HOSPITAL: BEDS,
                                       ResourceKind.TEAM: TEAM}

TEAM_SKILLS: dict[str, str] = {
    "water_rescue": "水域救援", "rope_rescue": "绳索救援", "collapse_rescue": "建筑坍塌搜救",
    "flood_fighting": "抗洪抢险", "mountain_rescue": "山地救援", "medical": "医疗救护",
    "hazmat": "危化品处置", "firefighting": "森林灭火", "power_repair": "电力抢修", "epidemic": "防疫消杀",
}


class ResourceConflict(DispatchError):
    """A refused allocation or release (HTTP 409): not enough stock, a repeated request, released twice."""


class ResourceNotFound(DispatchError):
    """An unknown resource, item or allocation (HTTP 404)."""


@dataclass(frozen=True)
class Resource:
    """One resource at a position. ``stock``: item key → quantity available now."""

    id: str
    kind: ResourceKind
    name: str
    lon: float
    lat: float
    county_code: str = ""
    agency: str = ""
    contact: str = ""  # name and phone
    headcount: int | None = None  # team
    skills: tuple[str, ...] = ()  # team
    specialty: str = ""  # expert
    capacity: int | None = None  # shelter: places in total
    beds_total: int | None = None  # hospital
    specialties: tuple[str, ...] = ()  # hospital
    stock: Mapping[str, int] = field(default_factory=dict)
    made_up: bool = True

    @property
    def occupancy(self) -> int | None:
        """Shelter places taken (capacity − free places)."""
        if self.kind is not ResourceKind.SHELTER or self.capacity is None:
            return None
        return self.capacity - self.stock.get(PLACES.key, 0)

    def with_stock(self, item: str, quantity: int) -> Resource:
        return Resource(**{**self.__dict__, "stock": {**self.stock, item: quantity}})


def check_quantity(value: object, field_name: str = "quantity") -> int:
    """A whole quantity 1..MAX_QUANTITY (ValidationError naming the field otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUANTITY:
        raise ValidationError(f"{field_name}: 数量必须是 1–{MAX_QUANTITY} 的整数")
    return value


def check_item(resource: Resource, item: str) -> Item:
    """The item ``resource`` can give (ResourceNotFound naming both otherwise)."""
    spec = ITEMS.get(item)
    if spec is None or item not in resource.stock:
        raise ResourceNotFound(f"item: {resource.name} 没有可调拨的 {spec.name if spec else item!r}")
    return spec


def check_allocation(resource: Resource, item: str, quantity: int) -> Item:
    """Refuse an allocation the stock cannot cover (the database enforces the same atomically)."""
    spec = check_item(resource, item)
    check_quantity(quantity)
    have = resource.stock[item]
    if have < quantity:
        raise ResourceConflict(shortage_message(resource.name, spec, have, quantity))
    return spec


def shortage_message(name: str, spec: Item, have: int, asked: int) -> str:
    return f"库存不足：{name} 的{spec.name}现有 {have} {spec.unit}，申请 {asked} {spec.unit}，未调拨"


def duplicate_message(request_id: str) -> str:
    return f"重复的调拨请求 {request_id}：该请求已处理过，未再次调拨"


def released_message(allocation_id: int) -> str:
    return f"调拨记录 {allocation_id} 已归还，不能重复归还"


# ---------------------------------------------------------------- the catalogue file


class CatalogueError(ValueError):
    """A bad resources file: ``file: [[kind]] #n id: field: problem``."""


_COMMON = {"id", "name", "position", "county", "agency", "contact", "position_quality"}
_FIELDS: dict[ResourceKind, set[str]] = {
    ResourceKind.DEPOT: _COMMON | {"supplies"},
    ResourceKind.TEAM: _COMMON | {"headcount", "skills"},
    ResourceKind.EXPERT: _COMMON | {"specialty"},
    ResourceKind.SHELTER: _COMMON | {"capacity", "occupancy"},
    ResourceKind.HOSPITAL: _COMMON | {"beds_total", "beds_free", "specialties"},
}
_SECTIONS = {"depots": ResourceKind.DEPOT, "teams": ResourceKind.TEAM, "experts": ResourceKind.EXPERT,
             "shelters": ResourceKind.SHELTER, "hospitals": ResourceKind.HOSPITAL}


def _int(raw: Mapping[str, Any], key: str, lo: int = 0) -> int:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_QUANTITY:
        raise ValueError(f"{key}: 必须是 {lo}–{MAX_QUANTITY} 的整数")
    return v


def _str(raw: Mapping[str, Any], key: str, max_len: int = 200, required: bool = False) -> str:
    v = raw.get(key, "")
    if not isinstance(v, str) or len(v) > max_len or "\x00" in v or (required and not v.strip()):
        raise ValueError(f"{key}: 必须是不超过 {max_len} 字的文本" + ("且不能为空" if required else ""))
    return v


def _strs(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    v = raw.get(key, [])
    if not isinstance(v, list) or not all(isinstance(s, str) and 0 < len(s) <= 100 for s in v):
        raise ValueError(f"{key}: 必须是文本列表")
    return tuple(v)


def resource_from_dict(kind: ResourceKind, raw: Mapping[str, Any]) -> Resource:
    """One resource from its TOML table (ValueError naming the field)."""
    unknown = sorted(set(raw) - _FIELDS[kind])
    if unknown:
        raise ValueError(f"{unknown[0]}: 未知字段")
    rid = _str(raw, "id", 64, required=True)
    pos = raw.get("position")
    if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(x, int | float) for x in pos)):
        raise ValueError("position: 必须是 [经度, 纬度]")
    try:
        check_lon_lat(float(pos[0]), float(pos[1]))
    except CoordinateError as e:
        raise ValueError(f"position: {e}") from None
    common: dict[str, Any] = {
        "id": rid, "kind": kind, "name": _str(raw, "name", 100, required=True),
        "lon": float(pos[0]), "lat": float(pos[1]), "county_code": _str(raw, "county", 12),
        "agency": _str(raw, "agency", 40), "contact": _str(raw, "contact", 200),
        "made_up": raw.get("position_quality", "made-up") == "made-up",
    }
    if kind is ResourceKind.DEPOT:
        supplies = raw.get("supplies", {})
        if not isinstance(supplies, dict):
            raise ValueError("supplies: 必须是 物资 = 数量 的表")
        for item in supplies:
            if item not in SUPPLY_ITEMS:
                raise ValueError(f"supplies.{item}: 未知物资（可选 {', '.join(SUPPLY_ITEMS)}）")
        return Resource(**common, stock={k: _int(supplies, k) for k in supplies})
    if kind is ResourceKind.TEAM:
        skills = _strs(raw, "skills")
        for s in skills:
            if s not in TEAM_SKILLS:
                raise ValueError(f"skills: 未知技能 {s!r}（可选 {', '.join(TEAM_SKILLS)}）")
        return Resource(**common, headcount=_int(raw, "headcount", 1), skills=skills, stock={TEAM.key: 1})
    if kind is ResourceKind.EXPERT:
        return Resource(**common, specialty=_str(raw, "specialty", 100, required=True))
    if kind is ResourceKind.SHELTER:
        cap = _int(raw, "capacity", 1)
        occ = _int(raw, "occupancy") if "occupancy" in raw else 0
        if occ > cap:
            raise ValueError(f"occupancy: 当前安置人数 {occ} 超过容量 {cap}")
        return Resource(**common, capacity=cap, stock={PLACES.key: cap - occ})
    total = _int(raw, "beds_total", 1)
    free = _int(raw, "beds_free") if "beds_free" in raw else total
    if free > total:
        raise ValueError(f"beds_free: 空余病床 {free} 超过总床位 {total}")
    return Resource(**common, beds_total=total, specialties=_strs(raw, "specialties"), stock={BEDS.key: free})


def parse_catalogue(doc: Mapping[str, Any], source: str = "resources") -> list[Resource]:
    """Every resource of a catalogue document (``[[depots]]``, ``[[teams]]`` ...)."""
    out: list[Resource] = []
    seen: set[str] = set()
    for section in doc:
        if section not in _SECTIONS:
            raise CatalogueError(f"{source}: [{section}]: 未知的资源类别（可选 {', '.join(_SECTIONS)}）")
    for section, kind in _SECTIONS.items():
        rows = doc.get(section, [])
        if not isinstance(rows, list):
            raise CatalogueError(f"{source}: [[{section}]] 必须是表数组")
        for n, raw in enumerate(rows, 1):
            where = f"{source}: [[{section}]] #{n} {raw.get('id', '?') if isinstance(raw, dict) else '?'}"
            if not isinstance(raw, dict):
                raise CatalogueError(f"{where}: 必须是表")
            try:
                r = resource_from_dict(kind, raw)
            except ValueError as e:
                raise CatalogueError(f"{where}: {e}") from None
            if r.id in seen:
                raise CatalogueError(f"{where}: id: 重复的资源编号")
            seen.add(r.id)
            out.append(r)
    return out


def load_catalogue(path: Path) -> list[Resource]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CatalogueError(f"{path}: {e}") from None
    return parse_catalogue(doc, str(path))


def resource_view(r: Resource, en: bool = False) -> dict[str, Any]:
    """A resource as JSON for the consoles (stock with names and units)."""
    stock = [{"item": k, "name": ITEMS[k].name_en if en else ITEMS[k].name, "unit": ITEMS[k].unit, "quantity": q}
             for k, q in sorted(r.stock.items(), key=lambda kv: list(ITEMS).index(kv[0]))]
    out: dict[str, Any] = {
        "id": r.id, "kind": r.kind.value, "kind_name": KIND_NAMES[r.kind], "name": r.name, "lon": r.lon,
        "lat": r.lat, "county_code": r.county_code, "agency": r.agency, "contact": r.contact, "stock": stock,
        "made_up": r.made_up,
    }
    if r.kind is ResourceKind.TEAM:
        out.update(headcount=r.headcount, skills=list(r.skills), skill_names=[TEAM_SKILLS[s] for s in r.skills],
                   deployed=r.stock.get(TEAM.key, 0) == 0)
    elif r.kind is ResourceKind.EXPERT:
        out["specialty"] = r.specialty
    elif r.kind is ResourceKind.SHELTER:
        out.update(capacity=r.capacity, occupancy=r.occupancy)
    elif r.kind is ResourceKind.HOSPITAL:
        out.update(beds_total=r.beds_total, beds_free=r.stock.get(BEDS.key, 0), specialties=list(r.specialties))
    return out


def kinds_of(values: Sequence[str]) -> set[ResourceKind]:
    out = set()
    for v in values:
        try:
            out.add(ResourceKind(v))
        except ValueError:
            raise ValidationError(f"kind: 未知资源类别 {v!r}（可选 {', '.join(k.value for k in ResourceKind)}）") from None
    return out
