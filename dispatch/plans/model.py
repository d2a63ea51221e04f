"""Emergency response plans (应急预案) as data: hazards, response levels with their activation
criteria, command structure, agencies and their task checklists, whom to notify, what happens on
activation; and the rules of an activation's task list.

Pure: frozen dataclasses and functions, no I/O, no clock (times are arguments). Errors are
``PlanError`` subclasses whose message starts with the field it is about (``levels.II.tasks.x: ...``)
in zh-CN for the UI.

Response levels follow the national scheme: I 特别重大 (most severe) … IV 一般. A level's criteria
are half-open ranges ``[min, max)`` of named measures (deaths, rainfall, magnitude...); the ranges
of one measure must not overlap between levels, so the figures of an incident suggest one level.

Task statuses::

    assigned → acknowledged → in_progress → done        (forward; skipping a step is allowed)
    any open status → cancelled                         (the level changed and the task left the list)
    cancelled → assigned                                (the level changed back: the task returns)

References in a plan name what exists: ``post:<duty post>``, ``role:<user role>``,
``agency:<agency>``, ``user:<username>``, ``room:<meeting room id>``, ``sms:<group name>``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType

from dispatch.model import AGENCIES, CATEGORIES, DispatchError


class PlanError(DispatchError):
    """A plan, activation or task change that is refused; ``str(e)`` starts with the field."""


class PlanNotFound(PlanError):
    pass


class PlanConflict(PlanError):
    """Refused because of the current state (two plans of one hazard, a closed activation...)."""


class AgencyScopeError(PlanError):
    """An agency desk touched another agency's task."""


class Level(IntEnum):
    I = 1  # noqa: E741 - the national name of the level
    II = 2
    III = 3
    IV = 4

    @classmethod
    def parse(cls, value: object, field_name: str = "level") -> Level:
        """``"II"``, ``2`` or ``Level.II`` → Level.II; PlanError naming the field otherwise."""
        if isinstance(value, Level):
            return value
        if isinstance(value, str) and value.strip().upper() in cls.__members__:
            return cls[value.strip().upper()]
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4:
            return cls(value)
        raise PlanError(f"{field_name}: 响应级别应为 I、II、III 或 IV，得到 {value!r}")


LEVEL_NAMES: Mapping[Level, str] = MappingProxyType(
    {Level.I: "I级（特别重大）", Level.II: "II级（重大）", Level.III: "III级（较大）", Level.IV: "IV级（一般）"})
LEVEL_NAMES_EN: Mapping[Level, str] = MappingProxyType(
    {Level.I: "Level I (extremely serious)", Level.II: "Level II (serious)", Level.III: "Level III (major)",
     Level.IV: "Level IV (general)"})

# What a level's criteria may measure (key → zh-CN name with its unit).
MEASURES: Mapping[str, str] = MappingProxyType({
    "deaths": "死亡人数", "missing": "失踪人数", "injured": "受伤人数", "trapped": "被困人数",
    "affected": "受灾人数", "evacuated": "转移安置人数", "economic_loss_10k_yuan": "直接经济损失（万元）",
    "rainfall_24h_mm": "24小时降雨量（毫米）", "wind_force": "风力（级）", "water_above_warning_m": "超警戒水位（米）",
    "magnitude": "震级", "cases": "病例数", "burned_area_ha": "过火面积（公顷）", "vehicles": "涉事车辆数",
})

# Duty posts a plan's command structure and notification lists may name. The duty roster (值班)
# resolves a post to the people on duty now.
POSTS: Mapping[str, str] = MappingProxyType({
    "mayor": "市长", "executive_vice_mayor": "常务副市长", "vice_mayor": "分管副市长",
    "secretary_general": "市政府秘书长", "leader_on_duty": "带班领导", "duty_officer": "值班员",
    "em_director": "应急管理局局长", "agency_head": "成员单位负责人", "county_head": "县（市、区）主要负责人",
    "township_head": "镇（街）主要负责人", "command_room": "应急指挥中心值班室",
})
ROLES_REFERABLE = frozenset({"admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer", "leader"})


class ConferenceScope(StrEnum):
    NONE = "none"
    COUNTY = "county"  # the county leaders' rooms (+ the city emergency room)
    COUNTY_TOWNSHIPS = "county_townships"  # ... and the township rooms of that county
    CITY = "city"  # every leader room of the city


class TaskStatus(StrEnum):
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


TASK_STATUS_NAMES: Mapping[TaskStatus, str] = MappingProxyType({
    TaskStatus.ASSIGNED: "已下达", TaskStatus.ACKNOWLEDGED: "已签收", TaskStatus.IN_PROGRESS: "处置中",
    TaskStatus.DONE: "已完成", TaskStatus.CANCELLED: "已撤销"})
TASK_STATUS_NAMES_EN: Mapping[TaskStatus, str] = MappingProxyType({
    TaskStatus.ASSIGNED: "Assigned", TaskStatus.ACKNOWLEDGED: "Acknowledged", TaskStatus.IN_PROGRESS: "In progress",
    TaskStatus.DONE: "Done", TaskStatus.CANCELLED: "Withdrawn"})
_FORWARD = (TaskStatus.ASSIGNED, TaskStatus.ACKNOWLEDGED, TaskStatus.IN_PROGRESS, TaskStatus.DONE)
OPEN_TASK = frozenset({TaskStatus.ASSIGNED, TaskStatus.ACKNOWLEDGED, TaskStatus.IN_PROGRESS})


@dataclass(frozen=True)
class Range:
    """``[low, high)`` of one measure; ``high`` is infinite when the plan gives only a minimum."""

    low: float
    high: float = math.inf

    def overlaps(self, other: Range) -> bool:
        return self.low < other.high and other.low < self.high

    def contains(self, value: float) -> bool:
        return self.low <= value < self.high

    def as_list(self) -> list[float]:
        return [self.low] if math.isinf(self.high) else [self.low, self.high]


@dataclass(frozen=True)
class ResourceNeed:
    item: str  # dispatch.resources.model.ITEMS key
    quantity: int


@dataclass(frozen=True)
class LevelSpec:
    level: Level
    criteria: Mapping[str, Range]  # measure → range; any one met suggests this level
    criteria_text: str  # the plan's own words (what the criteria say in prose)
    commander: str  # 指挥长: a post:/role: reference
    members: tuple[str, ...]  # 成员: post:/role:/agency: references
    tasks: Mapping[str, tuple[str, ...]]  # agency → its checklist, in order
    notify: tuple[str, ...]  # post:/user:/room:/sms: references
    conference: ConferenceScope = ConferenceScope.COUNTY
    propose_units: bool = True
    resources: tuple[ResourceNeed, ...] = ()
    warning: str = ""  # the warning to draft on activation ("" = none)


@dataclass(frozen=True)
class EmergencyPlan:
    """One version of a 预案 (the store keeps every version and which one is approved)."""

    key: str
    name: str
    hazards: frozenset[str]  # incident categories it covers: "flood_control" or "category/subtype"
    levels: Mapping[Level, LevelSpec]
    description: str = ""
    made_up: bool = False  # demo data

    def level(self, level: Level) -> LevelSpec:
        spec = self.levels.get(level)
        if spec is None:
            have = "、".join(lv.name for lv in sorted(self.levels))
            raise PlanError(f"level: 预案「{self.name}」没有 {level.name} 级响应（有: {have}）")
        return spec

    def covers(self, category: str, subtype: str) -> bool:
        return category in self.hazards or f"{category}/{subtype}" in self.hazards

    def suggest_level(self, figures: Mapping[str, float]) -> Level | None:
        """The most severe level any of whose criteria the figures meet (None when none is met)."""
        met = [lv for lv, spec in self.levels.items()
               if any(m in figures and r.contains(figures[m]) for m, r in spec.criteria.items())]
        return min(met) if met else None


def hazards_overlap(a: Iterable[str], b: Iterable[str]) -> set[str]:
    """Hazards two plans share; "flood_control" covers "flood_control/typhoon" too."""
    sa, sb = set(a), set(b)
    out = sa & sb
    out |= {h for h in sa if "/" in h and h.split("/")[0] in sb}
    out |= {h for h in sb if "/" in h and h.split("/")[0] in sa}
    return out


def hazard_name(hazard: str) -> str:
    cat, _, sub = hazard.partition("/")
    c = CATEGORIES.get(cat)
    if c is None:
        return hazard
    return f"{c.name}/{c.subtypes.get(sub, sub)}" if sub else c.name


# ---------------------------------------------------------------- validation helpers (format.py uses them)


def check_reference(ref: str, field_name: str, kinds: Sequence[str], rooms: Iterable[str] | None = None) -> str:
    """``post:x``/``role:x``/``agency:x``/``user:x``/``room:x``/``sms:x`` with x known; PlanError otherwise."""
    if not isinstance(ref, str) or ":" not in ref:
        raise PlanError(f"{field_name}: 引用应写成 {'/'.join(k + ':名称' for k in kinds)}，得到 {ref!r}")
    kind, _, name = ref.partition(":")
    if kind not in kinds:
        raise PlanError(f"{field_name}: 不支持的引用类型 {kind!r}（可用: {', '.join(kinds)}）")
    if not name:
        raise PlanError(f"{field_name}: {kind}: 后缺少名称")
    if kind == "post" and name not in POSTS:
        raise PlanError(f"{field_name}: 未知岗位 {name!r}（可用: {', '.join(POSTS)}）")
    if kind == "role" and name not in ROLES_REFERABLE:
        raise PlanError(f"{field_name}: 未知角色 {name!r}（可用: {', '.join(sorted(ROLES_REFERABLE))}）")
    if kind == "agency" and name not in AGENCIES:
        raise PlanError(f"{field_name}: 未知部门 {name!r}（可用: {', '.join(AGENCIES)}）")
    if kind == "room" and rooms is not None and name not in set(rooms):
        raise PlanError(f"{field_name}: 站点规划中没有会议室 {name!r}")
    return ref


def check_hazard(hazard: str, field_name: str) -> str:
    cat, _, sub = hazard.partition("/") if isinstance(hazard, str) else ("", "", "")
    if cat not in CATEGORIES:
        raise PlanError(f"{field_name}: 未知灾种 {hazard!r}（应为警情类别 {', '.join(CATEGORIES)}，可加 /子类）")
    if sub and sub not in CATEGORIES[cat].subtypes:
        raise PlanError(f"{field_name}: 类别 {cat} 没有子类 {sub!r}（应为 {', '.join(CATEGORIES[cat].subtypes)}）")
    return hazard


def check_no_overlap(levels: Mapping[Level, LevelSpec]) -> None:
    """Refuse two levels whose ranges of one measure overlap: the figures would suggest both."""
    ordered = sorted(levels)
    for i, a in enumerate(ordered):
        for b in ordered[:i]:
            for measure, ra in levels[a].criteria.items():
                rb = levels[b].criteria.get(measure)
                if rb is not None and ra.overlaps(rb):
                    raise PlanError(f"levels.{a.name}.criteria.{measure}: {MEASURES[measure]} 的范围 "
                                    f"{_fmt(ra)} 与 {b.name} 级的 {_fmt(rb)} 重叠，无法确定响应级别")


def _fmt(r: Range) -> str:
    return f"[{r.low:g}, {'∞' if math.isinf(r.high) else f'{r.high:g}'})"


# ---------------------------------------------------------------- an activation's task list


@dataclass(frozen=True)
class Task:
    agency: str
    title: str
    status: TaskStatus = TaskStatus.ASSIGNED
    id: int = 0  # the store's id (0 before it is stored)
    note: str = ""
    position: int = 0  # order in the agency's checklist


@dataclass(frozen=True)
class TaskChange:
    """What a level change does to the task list (the service stores each as history)."""

    added: tuple[Task, ...] = ()  # new tasks (status assigned)
    cancelled: tuple[Task, ...] = ()  # open tasks the new level no longer has
    restored: tuple[Task, ...] = ()  # cancelled tasks the new level has again (→ assigned)
    kept: tuple[Task, ...] = field(default=())


def tasks_for(spec: LevelSpec) -> list[Task]:
    """The task list a level creates: every agency's checklist, in the plan's order."""
    return [Task(agency, title, position=i) for agency, titles in spec.tasks.items() for i, title in enumerate(titles)]


def change_level(current: Sequence[Task], spec: LevelSpec) -> TaskChange:
    """Diff the current tasks against the new level's list. A task is the same task when agency and
    title match: it keeps its status (done stays done). Open tasks not in the new level are
    cancelled; cancelled tasks that the new level lists again come back as assigned."""
    wanted = {(t.agency, t.title): t for t in tasks_for(spec)}
    have = {(t.agency, t.title): t for t in current}
    added = tuple(t for k, t in wanted.items() if k not in have)
    cancelled = tuple(t for k, t in have.items() if k not in wanted and t.status in OPEN_TASK)
    restored = tuple(t for k, t in have.items() if k in wanted and t.status == TaskStatus.CANCELLED)
    kept = tuple(t for k, t in have.items() if k in wanted and t.status != TaskStatus.CANCELLED)
    return TaskChange(added, cancelled, restored, kept)


def check_task_update(task: Task, to: TaskStatus | str, desk_agency: str | None) -> TaskStatus:
    """The new status of a task updated by a desk (``desk_agency`` None = a dispatcher/leader who may
    update any agency's task). Forward only, skipping allowed; a cancelled task cannot be updated."""
    try:
        new = TaskStatus(to)
    except ValueError:
        raise PlanError(f"status: 任务状态应为 {', '.join(s.value for s in _FORWARD)}，得到 {to!r}") from None
    if desk_agency is not None and desk_agency != task.agency:
        raise AgencyScopeError(
            f"task: 该任务属于{AGENCIES.get(task.agency, task.agency)}，"
            f"{AGENCIES.get(desk_agency, desk_agency)}席位只能更新本部门的任务")
    if task.status == TaskStatus.CANCELLED or new == TaskStatus.CANCELLED:
        raise PlanConflict(f"status: 任务「{task.title}」已撤销或只能随响应级别调整撤销")
    if _FORWARD.index(new) <= _FORWARD.index(task.status):
        raise PlanConflict(f"status: 任务「{task.title}」不能从「{TASK_STATUS_NAMES[task.status]}」"
                           f"改为「{TASK_STATUS_NAMES[new]}」")
    return new
