"""The duty roster (值班): shifts with the people at each duty post (带班领导, 值班员, ...) and the
agencies' on-duty contacts; the handover log (交接班) whose open items carry over to the next
shift; and the resolution of a plan's ``post:`` references to the people on duty at a moment.

Pure: times are arguments. Shifts of one roster may not overlap (a moment has one shift), so
"who is on duty now" has one answer. Errors are ``PlanError`` naming the field.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from dispatch.model import AGENCIES
from dispatch.plans.model import POSTS, PlanConflict, PlanError


@dataclass(frozen=True)
class Contact:
    name: str
    phone: str = ""


@dataclass(frozen=True)
class Shift:
    id: int
    starts_at: datetime
    ends_at: datetime
    posts: Mapping[str, tuple[str, ...]]  # duty post → usernames
    contacts: Mapping[str, Contact] = field(default_factory=dict)  # agency → its on-duty contact

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class Item:
    """An item of a handover: done, or open and carried over to the next shift."""

    text: str
    done: bool = False


def check_shift(starts_at: datetime, ends_at: datetime, posts: Mapping[str, Sequence[str]],
                contacts: Mapping[str, Contact], others: Iterable[Shift]) -> None:
    """A valid new shift: timezone-aware times, start before end, known posts and agencies, at
    least a leader on duty and a duty officer, no overlap with another shift."""
    for name, t in (("starts_at", starts_at), ("ends_at", ends_at)):
        if t.tzinfo is None:
            raise PlanError(f"{name}: 时间必须带时区")
    if ends_at <= starts_at:
        raise PlanError("ends_at: 交班时间必须晚于接班时间")
    for post, people in posts.items():
        if post not in POSTS:
            raise PlanError(f"posts.{post}: 未知岗位（可用: {', '.join(POSTS)}）")
        if not people or not all(isinstance(p, str) and p for p in people):
            raise PlanError(f"posts.{post}: 需要至少一名值班人员（用户名）")
    for post in ("leader_on_duty", "duty_officer"):
        if post not in posts:
            raise PlanError(f"posts.{post}: 每个班次都需要{POSTS[post]}")
    for agency in contacts:
        if agency not in AGENCIES:
            raise PlanError(f"contacts.{agency}: 未知部门（可用: {', '.join(AGENCIES)}）")
    for s in others:
        if starts_at < s.ends_at and s.starts_at < ends_at:
            raise PlanConflict(f"starts_at: 与班次 {s.id}（{s.starts_at.isoformat()} – {s.ends_at.isoformat()}）重叠")


def on_duty(shifts: Iterable[Shift], at: datetime) -> Shift | None:
    """The shift covering ``at`` (None: nobody is rostered then)."""
    return next((s for s in shifts if s.covers(at)), None)


def resolve(ref: str, shift: Shift | None) -> tuple[str, ...]:
    """The usernames a ``post:``/``user:`` reference means at a shift; () for other references or
    a post nobody holds (the caller shows the post itself then)."""
    kind, _, name = ref.partition(":")
    if kind == "user":
        return (name,)
    if kind == "post" and shift is not None:
        return shift.posts.get(name, ())
    return ()


def carry_over(previous: Sequence[Item], new: Sequence[Item]) -> tuple[Item, ...]:
    """The items of a handover: the previous handover's open items first (unless the new list
    settles them: the same text marked done), then the new ones."""
    settled = {i.text for i in new}
    carried = tuple(i for i in previous if not i.done and i.text not in settled)
    return carried + tuple(new)


def frozen_posts(posts: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({k: tuple(v) for k, v in posts.items()})
