"""The plan service: versions and approval of 预案, their activation on incidents, level changes and
the agencies' task updates — each in one transaction with its bus event stored in it (the outbox:
``plan.activated``, ``plan.level_changed``, ``plan.ended``, ``plan.task_updated``, and
``plan.proposals`` once the conference and proposals are recorded), then the audit entry, so every
console updates without a reload and none misses a change across a crash or a failover.
(``plan.version_added`` and ``plan.approved`` are published after their commit.)

Activation locks the incident row first, so two activations on one incident serialise and the
second sees the first (two plans of one hazard: refused). A level change locks the activation,
then its tasks; a task update locks only that task. After the activation commits, the command
conference is opened through the ``CommandDesk`` (dispatch's own command-conference path) and the
proposals (units, resources, the drafted warning, whom to notify) are recorded on it.

Agency desks: a user listed in ``agency_desks`` works for that agency; callers pass it as
``desk_agency``. A desk sees and updates only its agency's tasks, and cannot activate plans or
change levels.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from core.bus import Event
from core.runtime import CoreServices
from dispatch.model import AGENCIES
from dispatch.plans import format as plan_format
from dispatch.plans import store
from dispatch.plans.conference import CommandDesk, area_rooms
from dispatch.plans.duty import DutyRoster
from dispatch.plans.model import (
    LEVEL_NAMES,
    LEVEL_NAMES_EN,
    POSTS,
    TASK_STATUS_NAMES,
    TASK_STATUS_NAMES_EN,
    AgencyScopeError,
    ConferenceScope,
    EmergencyPlan,
    Level,
    LevelSpec,
    PlanConflict,
    PlanError,
    PlanNotFound,
    TaskStatus,
    change_level,
    check_task_update,
    hazard_name,
    hazards_overlap,
    tasks_for,
)
from dispatch.resources.model import ITEMS

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SmsNotifier(Protocol):
    """Sends the activation notice by SMS (sms.service.SmsService; passed in by the composition root)."""

    async def notify(self, reference: str, text: str, *, users: Sequence[str] = (), groups: Sequence[str] = (),
                     actor: str, kind: str = "plan") -> dict[str, Any]: ...


class PlanService:
    def __init__(self, core: CoreServices, desk: CommandDesk, clock: Callable[[], datetime] = _utcnow,
                 sms: SmsNotifier | None = None) -> None:
        self.core = core
        self.sms = sms
        self.db = core.db
        self.desk = desk
        self.clock = clock
        self.roster = DutyRoster(core, clock)
        self.room_names = {r.id: r.name for r in core.plan.meeting_rooms}

    # ------------------------------------------------------------------ plans, versions, approval

    async def seed(self, plans: Iterable[EmergencyPlan], actor: str = "system") -> int:
        """Demo/site plans from files: a plan whose approved version differs gets a new approved
        version (a restart with unchanged files adds nothing). Returns the number of versions added."""
        added = 0
        for plan in plans:
            async with self.db.transaction() as conn:
                await store.lock_plan(conn, plan.key, plan.name)  # two nodes starting at once: one seeds
                try:
                    current, _ = await store.version(conn, plan.key)
                    if current == plan:
                        continue
                except PlanError:
                    pass
                version = await store.add_version(conn, plan, actor, self.clock())
                await store.approve(conn, plan.key, version, actor, self.clock())
                added += 1
        return added

    async def upload(self, text: str, fmt: str, actor: str, source: str = "") -> dict[str, Any]:
        """Validate a TOML/JSON document and store it as a new draft version (PlanError names the field)."""
        plan = plan_format.loads(text, fmt, self.room_names)
        async with self.db.transaction() as conn:
            version = await store.add_version(conn, plan, actor, self.clock())
        await self.core.audit.record(actor, "plan.version_add", plan.key, source=source, detail={"version": version})
        await self.core.bus.publish("plan.version_added", {"key": plan.key, "version": version, "actor": actor})
        return {"key": plan.key, "name": plan.name, "version": version, "status": "draft"}

    async def approve(self, key: str, version: int, actor: str, source: str = "") -> dict[str, Any]:
        async with self.db.transaction() as conn:
            await store.approve(conn, key, version, actor, self.clock())
        await self.core.audit.record(actor, "plan.approve", key, source=source, detail={"version": version})
        await self.core.bus.publish("plan.approved", {"key": key, "version": version, "actor": actor})
        return {"key": key, "version": version, "status": "approved"}

    async def plans(self) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            return await store.plan_list(conn)

    async def export(self, key: str, version: int | None = None, fmt: str = "toml") -> str:
        async with self.db.pool.acquire() as conn:
            plan, _ = await store.version(conn, key, version) if version is not None else await self._latest(conn, key)
        return plan_format.dumps(plan, fmt)

    async def _latest(self, conn: asyncpg.Connection, key: str) -> tuple[EmergencyPlan, int]:
        n = await conn.fetchval("SELECT max(version) FROM emergency_plan_versions WHERE plan_key = $1", key)
        if n is None:
            raise PlanNotFound(f"key: 预案 {key} 不存在")
        return await store.version(conn, key, int(n))

    async def plan_detail(self, key: str, version: int | None = None, en: bool = False) -> dict[str, Any]:
        """One version (the approved one by default, else the newest) as a document plus display names."""
        async with self.db.pool.acquire() as conn:
            try:
                plan, n = await store.version(conn, key, version)
            except PlanConflict:
                plan, n = await self._latest(conn, key)
        names = LEVEL_NAMES_EN if en else LEVEL_NAMES
        return {"version": n, "document": plan_format.plan_to_dict(plan),
                "levels": {lv.name: names[lv] for lv in plan.levels},
                "hazard_names": {h: hazard_name(h) for h in plan.hazards}}

    # ------------------------------------------------------------------ agency desks

    async def desk_agency(self, username: str) -> str | None:
        """The agency whose desk this user works at (None: not an agency desk)."""
        async with self.db.pool.acquire() as conn:
            return await store.desk_agency(conn, username)

    async def set_desk(self, username: str, agency: str | None, actor: str, source: str = "") -> None:
        if agency is not None and agency not in AGENCIES:
            raise PlanError(f"agency: 未知部门 {agency!r}（可用: {', '.join(AGENCIES)}）")
        async with self.db.transaction() as conn:
            await store.set_desk(conn, username, agency, actor)
        await self.core.audit.record(actor, "plan.desk", username, source=source, detail={"agency": agency})

    async def desks(self) -> dict[str, str]:
        async with self.db.pool.acquire() as conn:
            return await store.desks(conn)

    # ------------------------------------------------------------------ activation

    async def activate(self, incident_id: str, plan_key: str, level: object, actor: str, source: str = "",
                       desk_agency: str | None = None, reason: str = "") -> dict[str, Any]:
        """Activate the approved version of a plan on an incident at a level: the task list per
        agency, then the command conference and the proposals. PlanConflict (and nothing changes)
        when a plan of the same hazard is already active on the incident."""
        if desk_agency is not None:
            raise AgencyScopeError("desk: 部门席位不能启动预案（请由调度员或值班领导启动）")
        lv = Level.parse(level)
        now = self.clock()
        async with self.db.transaction() as conn:
            inc = await conn.fetchrow("SELECT id, status, county_code FROM incidents WHERE id = $1 FOR UPDATE",
                                      incident_id)
            if inc is None:
                raise PlanNotFound(f"incident_id: 警情 {incident_id} 不存在")
            if inc["status"] == "closed":
                raise PlanConflict(f"incident_id: 警情 {incident_id} 已结案，不能启动预案")
            plan, version = await store.version(conn, plan_key)
            spec = plan.level(lv)
            for a in await store.active_activations(conn, incident_id):
                shared = hazards_overlap(a["hazards"], plan.hazards)
                if a["plan_key"] == plan.key or shared:
                    what = "、".join(hazard_name(h) for h in sorted(shared)) or plan.name
                    raise PlanConflict(
                        f"plan_key: 警情 {incident_id} 已启动同灾种（{what}）的预案「{a['plan_name']}」"
                        f"（{Level(a['level']).name}级），不能再启动「{plan.name}」；请调整已启动预案的响应级别")
            aid = await store.insert_activation(conn, incident_id=incident_id, plan=plan, version=version, level=lv,
                                                actor=actor, at=now, reason=reason)
            await store.add_tasks(conn, aid, tasks_for(spec), lv, actor, now)
            event = await self._publish_in(conn, "plan.activated", aid, {"actor": actor})
        self.core.bus.deliver_committed(event)
        await self.core.audit.record(actor, "plan.activate", incident_id, source=source, detail={
            "activation": aid, "plan": plan.key, "version": version, "level": lv.name})
        await self._on_level(aid, incident_id, inc["county_code"], spec, None, actor, source)
        return await self.activation(aid)

    async def _publish_in(self, conn: asyncpg.Connection, topic: str, activation_id: int,
                          extra: dict[str, Any]) -> Event:
        """Store the activation's event in the write's transaction (the bus outbox): a crash after the
        commit cannot leave the consoles without it. Delivered here by the caller after the commit."""
        row = await conn.fetchrow("SELECT * FROM plan_activations WHERE id = $1", activation_id)
        view = (await self._views(conn, [row], None, False))[0]
        return await self.core.bus.publish_in(conn, topic, {"activation": view, **extra})

    async def _on_level(self, aid: int, incident_id: str, county_code: int | None, spec: LevelSpec,
                        conference_id: str | None, actor: str, source: str) -> None:
        """What a level does on activation (or when raised): the conference (once per activation),
        units and resources to propose, the warning draft and the notification list."""
        people = await self.roster.people_for([*spec.notify, spec.commander], self.clock())
        proposals: dict[str, Any] = {"level": spec.level.name,
                                     "notify": [{**self._ref_name(p["ref"]), "people": p["people"]} for p in people[:-1]],
                                     "shift_id": people[-1]["shift_id"],
                                     "commander": {**self._ref_name(spec.commander), "people": people[-1]["people"]},
                                     "members": [self._ref_name(m) for m in spec.members],
                                     "resources": [{"item": n.item, "name": ITEMS[n.item].name,
                                                    "unit": ITEMS[n.item].unit, "quantity": n.quantity}
                                                   for n in spec.resources],
                                     "warning": spec.warning, "units": []}
        if conference_id is None and spec.conference is not ConferenceScope.NONE:
            rooms = area_rooms(self.core.plan, county_code, spec.conference)
            try:
                conference_id = await self.desk.open_command_conference(incident_id, rooms, actor, source)
                proposals["rooms"] = rooms
            except Exception as e:  # noqa: BLE001 - the plan stands; the dispatcher can open it by hand
                log.exception("plans: opening the command conference of %s failed", incident_id)
                proposals["conference_error"] = str(e)
        if spec.propose_units:
            try:
                proposals["units"] = await self.desk.propose_units(incident_id)
            except Exception:  # noqa: BLE001 - proposals are advice; activation does not depend on them
                log.exception("plans: proposing units for %s failed", incident_id)
        if self.sms is not None:
            proposals["sms"] = await self._notify_sms(aid, incident_id, spec, people, actor)
        async with self.db.transaction() as conn:
            await store.set_details(conn, aid, conference_id, proposals)
            event = await self._publish_in(conn, "plan.proposals", aid, {"actor": actor})
        self.core.bus.deliver_committed(event)

    async def _notify_sms(self, aid: int, incident_id: str, spec: LevelSpec, people: Sequence[dict[str, Any]],
                          actor: str) -> dict[str, Any]:
        """The activation notice by SMS to the notification list's people and ``sms:`` groups."""
        assert self.sms is not None
        users = list(dict.fromkeys(u for p in people[:-1] for u in p["people"]))
        groups = [r.partition(":")[2] for r in spec.notify if r.startswith("sms:")]
        text = (f"【应急指挥】警情 {incident_id} 已启动{LEVEL_NAMES[spec.level]}应急响应，"
                f"请按预案立即到岗履职。")
        try:
            view = await self.sms.notify(f"plan:{aid}", text, users=users, groups=groups, actor=actor)
            return {"message_id": view["id"], "recipients": len(view["recipients"]), "skipped": view["skipped"]}
        except Exception as e:  # noqa: BLE001 - the plan stands; the notice can be sent by hand
            log.exception("plans: the SMS notice of activation %s failed", aid)
            return {"error": str(e)}

    def _ref_name(self, ref: str) -> dict[str, str]:
        kind, _, name = ref.partition(":")
        label = {"post": POSTS.get(name, name), "agency": AGENCIES.get(name, name),
                 "room": self.room_names.get(name, name)}.get(kind, name)
        return {"ref": ref, "kind": kind, "name": label}

    async def change_level(self, activation_id: int, level: object, actor: str, source: str = "",
                           desk_agency: str | None = None, reason: str = "") -> dict[str, Any]:
        """Escalate or de-escalate: tasks the new level adds are assigned, open tasks it drops are
        withdrawn (cancelled), tasks in both keep their status; every change is in the history."""
        if desk_agency is not None:
            raise AgencyScopeError("desk: 部门席位不能调整响应级别")
        to = Level.parse(level)
        now = self.clock()
        async with self.db.transaction() as conn:
            row = await store.lock_activation(conn, activation_id)
            if row["status"] != "active":
                raise PlanConflict(f"activation_id: 预案启动记录 {activation_id} 已结束")
            frm = Level(row["level"])
            if frm == to:
                raise PlanConflict(f"level: 当前已是 {to.name} 级响应")
            plan, _ = await store.version(conn, row["plan_key"], row["plan_version"])
            spec = plan.level(to)
            change = change_level(await store.tasks_of(conn, activation_id, lock=True), spec)
            why = f"响应级别 {frm.name}→{to.name}" + (f"：{reason}" if reason else "")
            await store.add_tasks(conn, activation_id, change.added, to, actor, now)
            for t in change.cancelled:
                await store.set_task_status(conn, t.id, t.status, TaskStatus.CANCELLED, actor, now, why)
            for t in change.restored:
                await store.set_task_status(conn, t.id, TaskStatus.CANCELLED, TaskStatus.ASSIGNED, actor, now, why)
            await store.set_level(conn, activation_id, frm, to, actor, now, reason)
            county = await conn.fetchval("SELECT county_code FROM incidents WHERE id = $1", row["incident_id"])
            event = await self._publish_in(conn, "plan.level_changed", activation_id,
                                           {"from": frm.name, "to": to.name, "actor": actor})
        self.core.bus.deliver_committed(event)
        await self.core.audit.record(actor, "plan.level", row["incident_id"], source=source, detail={
            "activation": activation_id, "from": frm.name, "to": to.name, "added": len(change.added),
            "cancelled": len(change.cancelled), "restored": len(change.restored)})
        await self._on_level(activation_id, row["incident_id"], county, spec, row["conference_id"], actor, source)
        return await self.activation(activation_id)

    async def end(self, activation_id: int, actor: str, source: str = "", desk_agency: str | None = None) -> dict[str, Any]:
        """Stand the response down (终止响应): the activation ends; its tasks and history stay."""
        if desk_agency is not None:
            raise AgencyScopeError("desk: 部门席位不能终止响应")
        async with self.db.transaction() as conn:
            row = await store.lock_activation(conn, activation_id)
            if row["status"] != "active":
                raise PlanConflict(f"activation_id: 预案启动记录 {activation_id} 已结束")
            await store.end_activation(conn, activation_id, actor, self.clock())
            event = await self._publish_in(conn, "plan.ended", activation_id, {"actor": actor})
        self.core.bus.deliver_committed(event)
        await self.core.audit.record(actor, "plan.end", row["incident_id"], source=source,
                                     detail={"activation": activation_id})
        return dict(event.payload["activation"])

    # ------------------------------------------------------------------ tasks

    async def update_task(self, task_id: int, status: str, actor: str, source: str = "",
                          desk_agency: str | None = None, note: str = "") -> dict[str, Any]:
        """Move a task forward (assigned → acknowledged → in progress → done) with an optional note.
        AgencyScopeError when a desk updates another agency's task; nothing changes then."""
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                task, row = await store.lock_task(conn, task_id)
                if row["activation_status"] != "active":
                    raise PlanConflict(f"task_id: 任务 {task_id} 所属的预案响应已结束")
                new = check_task_update(task, status, desk_agency)
                await store.set_task_status(conn, task_id, task.status, new, actor, now, note)
                event = await self.core.bus.publish_in(conn, "plan.task_updated", {
                    "task": await self._task_in(conn, task_id), "incident_id": row["incident_id"], "actor": actor})
        except AgencyScopeError as e:
            await self.core.audit.record(actor, "plan.task", str(task_id), outcome="denied", source=source,
                                         detail={"reason": str(e), "desk": desk_agency})
            raise
        self.core.bus.deliver_committed(event)
        await self.core.audit.record(actor, "plan.task", str(task_id), source=source, detail={
            "incident": row["incident_id"], "agency": task.agency, "from": task.status.value, "to": new.value})
        return dict(event.payload["task"])

    async def task(self, task_id: int, en: bool = False) -> dict[str, Any]:
        async with self.db.pool.acquire() as conn:
            return await self._task_in(conn, task_id, en)

    async def _task_in(self, conn: asyncpg.Connection, task_id: int, en: bool = False) -> dict[str, Any]:
        row = await conn.fetchrow("SELECT * FROM plan_tasks WHERE id = $1", task_id)
        if row is None:
            raise PlanNotFound(f"task_id: 任务 {task_id} 不存在")
        return self._task_view(row, await store.task_history(conn, [task_id]), en)

    def _task_view(self, r: asyncpg.Record, history: Sequence[asyncpg.Record], en: bool) -> dict[str, Any]:
        names = TASK_STATUS_NAMES_EN if en else TASK_STATUS_NAMES
        status = TaskStatus(r["status"])
        return {"id": r["id"], "activation_id": r["activation_id"], "agency": r["agency"],
                "agency_name": AGENCIES.get(r["agency"], r["agency"]), "title": r["title"],
                "status": status.value, "status_name": names[status], "note": r["note"],
                "level_added": Level(r["level_added"]).name, "updated_at": r["updated_at"].isoformat(),
                "updated_by": r["updated_by"],
                "history": [{"at": h["at"].isoformat(), "actor": h["actor"], "from": h["frm"], "status": h["status"],
                             "note": h["note"]} for h in history if h["task_id"] == r["id"]]}

    # ------------------------------------------------------------------ reading activations

    async def activation(self, activation_id: int, agency: str | None = None, en: bool = False) -> dict[str, Any]:
        async with self.db.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM plan_activations WHERE id = $1", activation_id)
            if row is None:
                raise PlanNotFound(f"activation_id: 预案启动记录 {activation_id} 不存在")
            return (await self._views(conn, [row], agency, en))[0]

    async def activations(self, incident_id: str, agency: str | None = None, en: bool = False) -> list[dict[str, Any]]:
        """The incident's plan activations (newest first) with their tasks; an agency desk's own only."""
        async with self.db.pool.acquire() as conn:
            if await conn.fetchval("SELECT 1 FROM incidents WHERE id = $1", incident_id) is None:
                raise PlanNotFound(f"incident_id: 警情 {incident_id} 不存在")
            rows = await conn.fetch("SELECT * FROM plan_activations WHERE incident_id = $1 ORDER BY id DESC",
                                    incident_id)
            return await self._views(conn, rows, agency, en)

    async def desk_tasks(self, agency: str, en: bool = False) -> list[dict[str, Any]]:
        """Every active activation that has tasks for this agency, with only those tasks (the desk's view)."""
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch("SELECT a.* FROM plan_activations a WHERE a.status = 'active' AND EXISTS "
                                    "(SELECT 1 FROM plan_tasks t WHERE t.activation_id = a.id AND t.agency = $1) "
                                    "ORDER BY a.id DESC", agency)
            return await self._views(conn, rows, agency, en)

    async def _views(self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], agency: str | None,
                     en: bool) -> list[dict[str, Any]]:
        ids = [r["id"] for r in rows]
        tasks = await store.task_rows(conn, ids, agency)
        history = await store.task_history(conn, [t["id"] for t in tasks])
        levels = await store.level_history(conn, ids)
        names = LEVEL_NAMES_EN if en else LEVEL_NAMES
        out = []
        for r in rows:
            mine = [self._task_view(t, history, en) for t in tasks if t["activation_id"] == r["id"]]
            by_agency: dict[str, dict[str, Any]] = {}
            for t in mine:
                g = by_agency.setdefault(t["agency"], {"agency": t["agency"], "agency_name": t["agency_name"],
                                                       "tasks": [], "done": 0, "open": 0})
                g["tasks"].append(t)
                g["done"] += t["status"] == "done"
                g["open"] += t["status"] in ("assigned", "acknowledged", "in_progress")
            proposals = r["proposals"]
            if isinstance(proposals, str):
                proposals = json.loads(proposals)
            lv = Level(r["level"])
            out.append({
                "id": r["id"], "incident_id": r["incident_id"], "plan_key": r["plan_key"],
                "plan_version": r["plan_version"], "plan_name": r["plan_name"], "hazards": list(r["hazards"]),
                "level": lv.name, "level_name": names[lv], "status": r["status"],
                "activated_at": r["activated_at"].isoformat(), "activated_by": r["activated_by"],
                "conference_id": r["conference_id"], "proposals": proposals,
                "ended_at": r["ended_at"].isoformat() if r["ended_at"] else None, "ended_by": r["ended_by"],
                "agencies": list(by_agency.values()),
                "level_history": [{"at": h["at"].isoformat(), "actor": h["actor"],
                                   "from": Level(h["frm"]).name if h["frm"] else None, "level": Level(h["level"]).name,
                                   "reason": h["reason"]} for h in levels if h["activation_id"] == r["id"]],
            })
        return out
