"""Response plans (run cards) from TOML: what to send, by category × subtype × priority × area.

Example (``config/demo/response_plans.toml`` is the lead's)::

    [[plan]]
    name = "住宅火灾 一级"
    category = "fire"
    subtype = "residential"      # a subtype key, or "*" for any
    priority = [1, 2]            # an int, a list, or omitted = any
    area = [445381]              # optional: county/township codes where this card applies
    [[plan.require]]
    capability = "engine"
    count = 2
    [[plan.require]]
    capability = "ladder"
    count = 1

Selection picks the most specific matching card: an area match beats no area, an exact subtype
beats "*", an explicit priority beats "any". Two cards that could both match with the same
specificity are rejected at load time, so selection is never a coin toss. Every error names the
file, the line and the field.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatch.model import CATEGORIES, Capability

_PLAN_KEYS = {"name", "category", "subtype", "priority", "area", "require"}
_REQ_KEYS = {"capability", "count"}


class PlanError(ValueError):
    """A bad response-plan file: ``file:line: field: message``."""

    def __init__(self, source: str, line: int | None, field: str, message: str) -> None:
        self.source, self.line, self.field, self.message = source, line, field, message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field}: {message}")


@dataclass(frozen=True)
class Requirement:
    capability: Capability
    count: int


@dataclass(frozen=True)
class Plan:
    name: str
    category: str
    subtype: str  # "*" = any
    priorities: frozenset[int]  # empty = any
    areas: frozenset[int]  # empty = anywhere
    requirements: tuple[Requirement, ...]
    source: str
    line: int | None

    def matches(self, category: str, subtype: str, priority: int, area_codes: Iterable[int]) -> bool:
        return (
            self.category == category
            and self.subtype in ("*", subtype)
            and (not self.priorities or priority in self.priorities)
            and (not self.areas or bool(self.areas & set(area_codes)))
        )

    @property
    def specificity(self) -> tuple[bool, bool, bool]:
        return (bool(self.areas), self.subtype != "*", bool(self.priorities))


class _Lines:
    """Line numbers of [[plan]] / [[plan.require]] tables and their keys (tomllib has none)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.plans: list[int] = []  # 0-based line index of each [[plan]]
        self.reqs: list[list[int]] = []
        for i, ln in enumerate(self.lines):
            s = ln.strip()
            if re.match(r"^\[\[\s*plan\s*\]\]", s):
                self.plans.append(i)
                self.reqs.append([])
            elif re.match(r"^\[\[\s*plan\s*\.\s*require\s*\]\]", s) and self.reqs:
                self.reqs[-1].append(i)

    def _end(self, start: int) -> int:
        for j in range(start + 1, len(self.lines)):
            if self.lines[j].strip().startswith("["):
                return j
        return len(self.lines)

    def _key(self, start: int | None, key: str) -> int | None:
        if start is None:
            return None
        for j in range(start + 1, self._end(start)):
            if re.match(rf"^\s*{re.escape(key)}\s*=", self.lines[j]):
                return j + 1
        return start + 1

    def plan(self, i: int, key: str | None = None) -> int | None:
        start = self.plans[i] if i < len(self.plans) else None
        return (start + 1 if start is not None else None) if key is None else self._key(start, key)

    def req(self, i: int, r: int, key: str | None = None) -> int | None:
        starts = self.reqs[i] if i < len(self.reqs) else []
        start = starts[r] if r < len(starts) else None
        if key is None:
            return start + 1 if start is not None else self.plan(i)
        return self._key(start, key) or self.plan(i)


def _int_set(v: Any, field: str, src: str, line: int | None, lo: int, hi: int | None) -> frozenset[int]:
    vals = v if isinstance(v, list) else [v]
    out = set()
    for x in vals:
        if not isinstance(x, int) or isinstance(x, bool) or x < lo or (hi is not None and x > hi):
            rng = f"{lo}–{hi}" if hi is not None else f"≥ {lo}"
            raise PlanError(src, line, field, f"需要 {rng} 的整数（或其列表），得到 {x!r}")
        out.add(x)
    return frozenset(out)


def _parse_plan(i: int, raw: Any, src: str, lines: _Lines) -> Plan:
    if not isinstance(raw, dict):
        raise PlanError(src, lines.plan(i), "plan", "必须是表 [[plan]]")
    unknown = set(raw) - _PLAN_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise PlanError(src, lines.plan(i, k), k, f"未知字段（可用: {', '.join(sorted(_PLAN_KEYS))}）")
    name = raw.get("name", f"plan[{i}]")
    if not isinstance(name, str) or not name.strip():
        raise PlanError(src, lines.plan(i, "name"), "name", "需要非空字符串")
    cat = raw.get("category", "")
    if not isinstance(cat, str) or cat not in CATEGORIES:
        raise PlanError(src, lines.plan(i, "category"), "category", f"未知类别 {cat!r}（应为 {', '.join(CATEGORIES)}）")
    sub = raw.get("subtype", "*")
    if not isinstance(sub, str) or (sub != "*" and sub not in CATEGORIES[cat].subtypes):
        raise PlanError(src, lines.plan(i, "subtype"), "subtype",
                        f"类别 {cat} 没有子类 {sub!r}（应为 * 或 {', '.join(CATEGORIES[cat].subtypes)}）")
    prios = _int_set(raw["priority"], "priority", src, lines.plan(i, "priority"), 1, 5) if "priority" in raw else frozenset()
    areas = _int_set(raw["area"], "area", src, lines.plan(i, "area"), 1, None) if "area" in raw else frozenset()
    reqs_raw = raw.get("require")
    if not isinstance(reqs_raw, list) or not reqs_raw:
        raise PlanError(src, lines.plan(i), "require", "至少需要一个 [[plan.require]]")
    reqs: list[Requirement] = []
    seen: set[Capability] = set()
    for r, req in enumerate(reqs_raw):
        if not isinstance(req, dict):
            raise PlanError(src, lines.req(i, r), "require", "必须是表 [[plan.require]]")
        unknown = set(req) - _REQ_KEYS
        if unknown:
            k = sorted(unknown)[0]
            raise PlanError(src, lines.req(i, r, k), f"require.{k}", "未知字段（可用: capability, count）")
        cap_raw = req.get("capability", "")
        try:
            if not isinstance(cap_raw, str):
                raise ValueError(cap_raw)
            cap = Capability(cap_raw)
        except ValueError:
            raise PlanError(src, lines.req(i, r, "capability"), "require.capability",
                            f"未知能力 {cap_raw!r}（应为 {', '.join(c.value for c in Capability)}）") from None
        if cap in seen:
            raise PlanError(src, lines.req(i, r, "capability"), "require.capability", f"能力 {cap.value} 重复")
        seen.add(cap)
        count = req.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 50:
            raise PlanError(src, lines.req(i, r, "count"), "require.count", f"需要 1–50 的整数，得到 {count!r}")
        reqs.append(Requirement(cap, count))
    return Plan(name, cat, sub, prios, areas, tuple(reqs), src, lines.plan(i))


def _overlap(a: Plan, b: Plan) -> bool:
    return (
        a.category == b.category
        and a.subtype == b.subtype
        and (not a.priorities or not b.priorities or bool(a.priorities & b.priorities))
        and (not a.areas or not b.areas or bool(a.areas & b.areas))
        and a.specificity == b.specificity
    )


class ResponsePlans:
    """A set of run cards with most-specific-match selection."""

    def __init__(self, plans: Sequence[Plan]) -> None:
        for i, a in enumerate(plans):
            for b in plans[:i]:
                if _overlap(a, b):
                    raise PlanError(a.source, a.line, "plan",
                                    f"与第 {b.line} 行的「{b.name}」条件重叠，无法确定使用哪一个")
        self.plans = tuple(plans)

    @classmethod
    def loads(cls, text: str, source: str = "<string>") -> ResponsePlans:
        """Parse TOML text (``source`` names it in errors)."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"line (\d+)", str(e))
            raise PlanError(source, int(m.group(1)) if m else None, "toml", f"语法错误: {e}") from None
        unknown = set(doc) - {"plan"}
        if unknown:
            raise PlanError(source, None, sorted(unknown)[0], "未知顶层字段（只允许 [[plan]]）")
        raw = doc.get("plan", [])
        if not isinstance(raw, list):
            raise PlanError(source, None, "plan", "必须写成 [[plan]] 表数组")
        lines = _Lines(text)
        return cls([_parse_plan(i, p, source, lines) for i, p in enumerate(raw)])

    @classmethod
    def load(cls, path: str | Path) -> ResponsePlans:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise PlanError(str(p), None, "file", f"无法读取: {e}") from None
        return cls.loads(text, str(p))

    def select(self, category: str, subtype: str, priority: int, area_codes: Iterable[int] = ()) -> Plan | None:
        """The most specific card for an incident, or None when no card applies."""
        codes = list(area_codes)
        best = [p for p in self.plans if p.matches(category, subtype, priority, codes)]
        if not best:
            return None
        return max(best, key=lambda p: p.specificity)
