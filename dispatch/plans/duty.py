"""The duty roster service: shifts, who is on duty at a moment, the handover log with open items
carried over, and ``people_for`` — what a plan's notification list and posts resolve to now.
Audit entries and bus events (``plan.duty_handover``) follow each change.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.runtime import CoreServices
from dispatch.model import AGENCIES
from dispatch.plans import store
from dispatch.plans.model import POSTS, PlanError
from dispatch.plans.roster import Contact, Item, Shift, carry_over, check_shift, on_duty, resolve

WINDOW = timedelta(days=2)  # shifts are at most this long: the overlap check reads this far around


def _utcnow() -> datetime:
    return datetime.now(UTC)


def shift_view(s: Shift) -> dict[str, Any]:
    return {"id": s.id, "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(),
            "posts": {p: {"name": POSTS[p], "people": list(v)} for p, v in s.posts.items()},
            "contacts": {a: {"agency_name": AGENCIES.get(a, a), "name": c.name, "phone": c.phone}
                         for a, c in s.contacts.items()}}


class DutyRoster:
    def __init__(self, core: CoreServices, clock: Callable[[], datetime] = _utcnow) -> None:
        self.core = core
        self.db = core.db
        self.clock = clock

    async def add_shift(self, starts_at: datetime, ends_at: datetime, posts: Mapping[str, Sequence[str]],
                        contacts: Mapping[str, Mapping[str, str]], actor: str, source: str = "") -> dict[str, Any]:
        """Roster a shift; PlanConflict when it overlaps another, PlanError naming a bad field."""
        for name, t in (("starts_at", starts_at), ("ends_at", ends_at)):
            if t.tzinfo is None or not 2000 <= t.year <= 2100:
                raise PlanError(f"{name}: 需要带时区、2000–2100 年之间的时间")
        if ends_at - starts_at > WINDOW:
            raise PlanError(f"ends_at: 一个班次最长 {WINDOW.days} 天")
        parsed = {a: Contact(str(c.get("name", "")), str(c.get("phone", ""))) for a, c in contacts.items()}
        async with self.db.transaction() as conn:
            await store.lock_shifts(conn)
            others = await store.shifts_between(conn, starts_at - WINDOW, ends_at + WINDOW)
            check_shift(starts_at, ends_at, posts, parsed, others)
            sid = await store.add_shift(conn, starts_at, ends_at, {k: list(v) for k, v in posts.items()},
                                        {a: {"name": c.name, "phone": c.phone} for a, c in parsed.items()}, actor)
            shift = next(s for s in await store.shifts_between(conn, starts_at, ends_at) if s.id == sid)
        await self.core.audit.record(actor, "duty.shift", str(sid), source=source,
                                     detail={"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()})
        return shift_view(shift)

    async def shift_at(self, at: datetime | None = None) -> Shift | None:
        at = at or self.clock()
        async with self.db.pool.acquire() as conn:
            return on_duty(await store.shifts_between(conn, at - WINDOW, at + WINDOW), at)

    async def shifts(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            return [shift_view(s) for s in await store.shifts_between(conn, start, end)]

    async def people_for(self, refs: Sequence[str], at: datetime | None = None) -> list[dict[str, Any]]:
        """Each reference with the people it means at ``at`` (now): posts resolve through the shift."""
        shift = await self.shift_at(at)
        return [{"ref": r, "people": list(resolve(r, shift)), "shift_id": shift.id if shift else None} for r in refs]

    async def handover(self, notes: str, items: Sequence[Mapping[str, Any]], actor: str,
                       source: str = "") -> dict[str, Any]:
        """Record a handover (交接班) from the shift on duty now: the previous handover's open items
        are carried over (unless this one marks them done), then this one's items."""
        now = self.clock()
        new = [Item(str(i.get("text", "")).strip(), bool(i.get("done", False))) for i in items]
        if any(not i.text for i in new):
            raise PlanError("items: 事项内容不能为空")
        shift = await self.shift_at(now)
        async with self.db.transaction() as conn:
            last = await store.last_handover(conn, lock=True)
            previous = [Item(i["text"], i["done"]) for i in (last["items"] if last else [])]
            merged = carry_over(previous, new)
            hid = await store.add_handover(conn, shift.id if shift else None, now, actor, notes,
                                           [{"text": i.text, "done": i.done} for i in merged])
        view = {"id": hid, "shift_id": shift.id if shift else None, "at": now.isoformat(), "by": actor,
                "notes": notes, "items": [{"text": i.text, "done": i.done} for i in merged],
                "carried_over": len(merged) - len(new)}
        await self.core.audit.record(actor, "duty.handover", str(hid), source=source,
                                     detail={"open": sum(not i.done for i in merged)})
        await self.core.bus.publish("plan.duty_handover", {"handover": view})
        return view

    async def handovers(self, limit: int = 20) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            rows = await store.handovers(conn, limit)
        return [{"id": r["id"], "shift_id": r["shift_id"], "at": r["at"].isoformat(), "by": r["by_user"],
                 "notes": r["notes"], "items": r["items"]} for r in rows]
