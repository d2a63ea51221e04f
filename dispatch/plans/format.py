"""The 预案 exchange format: one plan per document, TOML or JSON with the same structure
(docs/plans.md is the reference; config/demo/plans/*.toml are examples)::

    key = "flood"                                 # [a-z0-9_-]{1,40}, the plan's identity across versions
    name = "云浮市防汛防台风应急预案"
    hazards = ["flood_control", "meteorology/rainstorm"]   # incident categories (optionally /subtype)
    description = "..."
    made_up = true                                # demo data

    [levels.II]
    criteria_text = "24小时降雨量 250 毫米以上，或死亡 10–29 人"
    criteria = { rainfall_24h_mm = [250, 400], deaths = [10, 30] }   # [min, max) or [min]
    commander = "post:vice_mayor"                 # 指挥长
    members = ["post:em_director", "agency:flood_control", "agency:meteorology"]
    notify = ["post:leader_on_duty", "room:city-emergency", "user:chair", "sms:三防指挥部成员"]
    conference = "county_townships"               # none | county | county_townships | city
    propose_units = true
    warning = "暴雨橙色预警：..."                  # drafted on activation; "" = none
    resources = [{ item = "sandbag", quantity = 2000 }]
    [levels.II.tasks]                             # agency → checklist
    flood_control = ["启动防汛II级应急响应", "组织危险区域人员转移"]
    meteorology = ["每小时滚动发布雨情预报"]

Validation refuses, with the field named (``levels.II.tasks.foo: 未知部门 ...``): unknown keys,
agencies, posts, roles, measures, hazards, resource items and (when the site plan is given)
meeting rooms; levels whose criteria ranges of one measure overlap; a level without tasks.
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from dispatch.model import AGENCIES
from dispatch.plans.model import (
    MEASURES,
    ConferenceScope,
    EmergencyPlan,
    Level,
    LevelSpec,
    PlanError,
    Range,
    ResourceNeed,
    check_hazard,
    check_no_overlap,
    check_reference,
)
from dispatch.resources.model import ITEMS

_TOP = {"key", "name", "hazards", "description", "made_up", "levels"}
_LEVEL = {"criteria_text", "criteria", "commander", "members", "notify", "conference", "propose_units", "warning",
          "resources", "tasks"}
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MAX_TEXT = 2000
MAX_TASKS = 50


def _str(v: Any, field: str, required: bool = True, limit: int = 200) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v.strip()) or len(v) > limit:
        raise PlanError(f"{field}: 需要{'非空' if required else ''}字符串（≤ {limit} 字）")
    return v.strip()


def _list(v: Any, field: str, limit: int = 50) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > limit:
        raise PlanError(f"{field}: 需要列表（≤ {limit} 项）")
    return v


def _unknown(d: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise PlanError(f"{prefix}{extra[0]}: 未知字段（可用: {', '.join(sorted(allowed))}）")


def _range(v: Any, field: str) -> Range:
    nums = v if isinstance(v, list) else [v]
    if not 1 <= len(nums) <= 2 or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                          and math.isfinite(x) and x >= 0 for x in nums):
        raise PlanError(f"{field}: 需要 [下限] 或 [下限, 上限)（非负数），得到 {v!r}")
    r = Range(float(nums[0]), float(nums[1]) if len(nums) == 2 else math.inf)
    if r.high <= r.low:
        raise PlanError(f"{field}: 上限必须大于下限，得到 {v!r}")
    return r


def _level(lv: Level, raw: Any, rooms: Iterable[str] | None) -> LevelSpec:
    p = f"levels.{lv.name}."
    if not isinstance(raw, dict):
        raise PlanError(f"levels.{lv.name}: 必须是表")
    _unknown(raw, _LEVEL, p)
    crit_raw = raw.get("criteria", {})
    if not isinstance(crit_raw, dict) or not crit_raw:
        raise PlanError(f"{p}criteria: 至少需要一个启动条件（可用指标: {', '.join(MEASURES)}）")
    criteria: dict[str, Range] = {}
    for m, v in crit_raw.items():
        if m not in MEASURES:
            raise PlanError(f"{p}criteria.{m}: 未知指标（可用: {', '.join(MEASURES)}）")
        criteria[m] = _range(v, f"{p}criteria.{m}")
    commander = check_reference(_str(raw.get("commander"), f"{p}commander"), f"{p}commander", ("post", "role"))
    members = tuple(check_reference(r, f"{p}members[{i}]", ("post", "role", "agency"))
                    for i, r in enumerate(_list(raw.get("members"), f"{p}members")))
    notify = tuple(check_reference(r, f"{p}notify[{i}]", ("post", "user", "room", "sms"), rooms)
                   for i, r in enumerate(_list(raw.get("notify"), f"{p}notify")))
    try:
        conference = ConferenceScope(raw.get("conference", "county"))
    except ValueError:
        raise PlanError(f"{p}conference: 应为 {', '.join(s.value for s in ConferenceScope)}，"
                        f"得到 {raw.get('conference')!r}") from None
    propose = raw.get("propose_units", True)
    if not isinstance(propose, bool):
        raise PlanError(f"{p}propose_units: 需要 true 或 false")
    needs: list[ResourceNeed] = []
    for i, r in enumerate(_list(raw.get("resources"), f"{p}resources")):
        f = f"{p}resources[{i}]"
        if not isinstance(r, dict):
            raise PlanError(f"{f}: 需要 {{ item = ..., quantity = ... }}")
        _unknown(r, {"item", "quantity"}, f"{f}.")
        if not isinstance(r.get("item"), str) or r["item"] not in ITEMS:
            raise PlanError(f"{f}.item: 未知物资 {r.get('item')!r}（可用: {', '.join(ITEMS)}）")
        q = r.get("quantity")
        if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 1_000_000:
            raise PlanError(f"{f}.quantity: 需要 1–1000000 的整数，得到 {q!r}")
        needs.append(ResourceNeed(r["item"], q))
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, dict) or not tasks_raw:
        raise PlanError(f"{p}tasks: 至少需要一个部门的任务清单（[levels.{lv.name}.tasks] 部门 = [任务...]）")
    tasks: dict[str, tuple[str, ...]] = {}
    for agency, items in tasks_raw.items():
        f = f"{p}tasks.{agency}"
        if agency not in AGENCIES:
            raise PlanError(f"{f}: 未知部门（可用: {', '.join(AGENCIES)}）")
        titles = [_str(t, f"{f}[{i}]") for i, t in enumerate(_list(items, f, MAX_TASKS))]
        if not titles:
            raise PlanError(f"{f}: 任务清单为空")
        if len(set(titles)) != len(titles):
            raise PlanError(f"{f}: 任务重复")
        tasks[agency] = tuple(titles)
    return LevelSpec(lv, MappingProxyType(criteria), _str(raw.get("criteria_text", ""), f"{p}criteria_text", False,
                                                           MAX_TEXT),
                     commander, members, MappingProxyType(tasks), notify, conference, propose, tuple(needs),
                     _str(raw.get("warning", ""), f"{p}warning", False, MAX_TEXT))


def plan_from_dict(doc: Any, rooms: Iterable[str] | None = None) -> EmergencyPlan:
    """Validate a parsed document; ``rooms`` (the site plan's meeting room ids) checks ``room:`` references."""
    if not isinstance(doc, dict):
        raise PlanError("plan: 文档必须是一个表/对象")
    _unknown(doc, _TOP, "")
    key = doc.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise PlanError(f"key: 需要 1–40 个小写字母、数字、_ 或 -，得到 {key!r}")
    name = _str(doc.get("name"), "name")
    hazards = frozenset(check_hazard(h, f"hazards[{i}]") for i, h in enumerate(_list(doc.get("hazards"), "hazards")))
    if not hazards:
        raise PlanError("hazards: 至少需要一个灾种（警情类别）")
    levels_raw = doc.get("levels")
    if not isinstance(levels_raw, dict) or not levels_raw:
        raise PlanError("levels: 至少需要一个响应级别（[levels.I] … [levels.IV]）")
    levels: dict[Level, LevelSpec] = {}
    for k, v in levels_raw.items():
        lv = Level.parse(k, f"levels.{k}")
        levels[lv] = _level(lv, v, rooms)
    check_no_overlap(levels)
    made_up = doc.get("made_up", False)
    if not isinstance(made_up, bool):
        raise PlanError("made_up: 需要 true 或 false")
    return EmergencyPlan(key, name, hazards, MappingProxyType(dict(sorted(levels.items()))),
                         _str(doc.get("description", ""), "description", False, MAX_TEXT), made_up)


def loads(text: str, fmt: str = "toml", rooms: Iterable[str] | None = None) -> EmergencyPlan:
    """Parse a TOML or JSON plan document; PlanError naming the field (or the syntax error's line)."""
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError(f"json: 语法错误（第 {e.lineno} 行）: {e.msg}") from None
        except RecursionError:
            raise PlanError("json: 嵌套层数过多") from None
    elif fmt == "toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PlanError(f"toml: 语法错误: {e}") from None
        except RecursionError:
            raise PlanError("toml: 嵌套层数过多") from None
    else:
        raise PlanError(f"format: 应为 toml 或 json，得到 {fmt!r}")
    return plan_from_dict(doc, rooms)


def plan_to_dict(plan: EmergencyPlan) -> dict[str, Any]:
    """The document of a plan (``plan_from_dict(plan_to_dict(p)) == p``)."""
    levels: dict[str, Any] = {}
    for lv, s in plan.levels.items():
        levels[lv.name] = {
            "criteria_text": s.criteria_text, "criteria": {m: r.as_list() for m, r in s.criteria.items()},
            "commander": s.commander, "members": list(s.members), "notify": list(s.notify),
            "conference": s.conference.value, "propose_units": s.propose_units, "warning": s.warning,
            "resources": [{"item": n.item, "quantity": n.quantity} for n in s.resources],
            "tasks": {a: list(t) for a, t in s.tasks.items()},
        }
    return {"key": plan.key, "name": plan.name, "hazards": sorted(plan.hazards), "description": plan.description,
            "made_up": plan.made_up, "levels": levels}


def dumps(plan: EmergencyPlan, fmt: str = "toml") -> str:
    """The plan as TOML or JSON text (UTF-8, Chinese kept readable)."""
    doc = plan_to_dict(plan)
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if fmt != "toml":
        raise PlanError(f"format: 应为 toml 或 json，得到 {fmt!r}")
    return re.sub(r"\n{3,}", "\n\n", _toml(doc))


# ---------------------------------------------------------------- a small TOML writer (no dependency for it)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_bare(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _bare(k: str) -> str:
    return k if re.match(r"^[A-Za-z0-9_-]+$", k) else json.dumps(k, ensure_ascii=False)


def _toml(doc: dict[str, Any], prefix: str = "") -> str:
    scalars = [(k, v) for k, v in doc.items() if not isinstance(v, dict) or not v or k == "criteria"]
    tables = [(k, v) for k, v in doc.items() if isinstance(v, dict) and v and k != "criteria"]
    out = [f"{_bare(k)} = {_value(v)}" for k, v in scalars]
    for k, v in tables:
        name = f"{prefix}.{_bare(k)}" if prefix else _bare(k)
        body = _toml(v, name)
        if any(not isinstance(x, dict) or k2 == "criteria" for k2, x in v.items()):
            out.append(f"\n[{name}]")
        out.append(body)
    return "\n".join(x for x in out if x) + "\n"
