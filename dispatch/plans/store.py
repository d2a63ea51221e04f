"""PostgreSQL persistence of plans, their versions, activations, tasks and history
(migration ``dispatch/migrations/0016_plans.sql``). Every function runs on the caller's connection,
inside the caller's transaction; the service decides the locking order (incident, then activation,
then tasks), so two commands on one incident serialise instead of deadlocking.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from dispatch.plans.format import plan_from_dict, plan_to_dict
from dispatch.plans.model import EmergencyPlan, Level, PlanConflict, PlanNotFound, Task, TaskStatus
from dispatch.plans.roster import Contact, Shift, frozen_posts

# ---------------------------------------------------------------- plans and versions


async def lock_plan(conn: asyncpg.Connection, key: str, name: str) -> None:
    """Create the plan's row if needed and lock it: its versions are numbered and approved in order."""
    await conn.execute("INSERT INTO emergency_plans (key, name) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, name)
    await conn.execute("SELECT 1 FROM emergency_plans WHERE key = $1 FOR UPDATE", key)


async def add_version(conn: asyncpg.Connection, plan: EmergencyPlan, actor: str, at: datetime) -> int:
    """Store a new draft version of the plan; returns its number (1 for a new plan)."""
    await lock_plan(conn, plan.key, plan.name)
    await conn.execute("UPDATE emergency_plans SET name = $2 WHERE key = $1", plan.key, plan.name)
    version = int(await conn.fetchval(
        "SELECT coalesce(max(version), 0) + 1 FROM emergency_plan_versions WHERE plan_key = $1", plan.key))
    await conn.execute(
        "INSERT INTO emergency_plan_versions (plan_key, version, document, hazards, created_at, created_by) "
        "VALUES ($1, $2, $3, $4, $5, $6)", plan.key, version, plan_to_dict(plan),
        sorted(plan.hazards), at, actor)
    return version


async def approve(conn: asyncpg.Connection, key: str, version: int, actor: str, at: datetime) -> None:
    """Make ``version`` the approved one (the previously approved version is superseded)."""
    await conn.execute("SELECT 1 FROM emergency_plans WHERE key = $1 FOR UPDATE", key)
    status = await conn.fetchval("SELECT status FROM emergency_plan_versions WHERE plan_key = $1 AND version = $2",
                                 key, version)
    if status is None:
        raise PlanNotFound(f"version: 预案 {key} 没有第 {version} 版")
    if status == "approved":
        raise PlanConflict(f"version: 预案 {key} 第 {version} 版已是批准版本")
    await conn.execute("UPDATE emergency_plan_versions SET status = 'superseded' WHERE plan_key = $1 "
                       "AND status = 'approved'", key)
    await conn.execute("UPDATE emergency_plan_versions SET status = 'approved', approved_at = $3, approved_by = $4 "
                       "WHERE plan_key = $1 AND version = $2", key, version, at, actor)


def _plan(row: asyncpg.Record) -> EmergencyPlan:
    return plan_from_dict(row["document"])  # jsonb comes back as Python objects (core/db/pool.py)


async def version(conn: asyncpg.Connection, key: str, number: int | None = None) -> tuple[EmergencyPlan, int]:
    """A version of the plan (the approved one when ``number`` is None) and its number."""
    if number is None:
        row = await conn.fetchrow("SELECT document, version FROM emergency_plan_versions WHERE plan_key = $1 "
                                  "AND status = 'approved'", key)
        if row is None:
            exists = await conn.fetchval("SELECT 1 FROM emergency_plans WHERE key = $1", key)
            raise (PlanConflict(f"plan_key: 预案 {key} 尚无批准版本，不能启动") if exists
                   else PlanNotFound(f"plan_key: 预案 {key} 不存在"))
    else:
        row = await conn.fetchrow("SELECT document, version FROM emergency_plan_versions WHERE plan_key = $1 "
                                  "AND version = $2", key, number)
        if row is None:
            raise PlanNotFound(f"version: 预案 {key} 没有第 {number} 版")
    return _plan(row), int(row["version"])


async def plan_list(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every plan with its versions (newest first)."""
    rows = await conn.fetch(
        "SELECT p.key, p.name, v.version, v.status, v.hazards, v.created_at, v.created_by, v.approved_at, "
        "v.approved_by FROM emergency_plans p JOIN emergency_plan_versions v ON v.plan_key = p.key "
        "ORDER BY p.key, v.version DESC")
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        p = out.setdefault(r["key"], {"key": r["key"], "name": r["name"], "approved_version": None,
                                      "hazards": list(r["hazards"]), "versions": []})
        if r["status"] == "approved":
            p["approved_version"] = r["version"]
            p["hazards"] = list(r["hazards"])
        p["versions"].append({
            "version": r["version"], "status": r["status"], "created_at": r["created_at"].isoformat(),
            "created_by": r["created_by"], "approved_by": r["approved_by"],
            "approved_at": r["approved_at"].isoformat() if r["approved_at"] else None})
    return list(out.values())


async def approved_plans(conn: asyncpg.Connection) -> list[tuple[EmergencyPlan, int]]:
    rows = await conn.fetch("SELECT document, version FROM emergency_plan_versions WHERE status = 'approved' "
                            "ORDER BY plan_key")
    return [(_plan(r), int(r["version"])) for r in rows]


# ---------------------------------------------------------------- activations and tasks


async def active_activations(conn: asyncpg.Connection, incident_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM plan_activations WHERE incident_id = $1 AND status = 'active' "
                                 "ORDER BY id", incident_id))


async def insert_activation(conn: asyncpg.Connection, *, incident_id: str, plan: EmergencyPlan, version: int,
                            level: Level, actor: str, at: datetime, reason: str) -> int:
    aid = int(await conn.fetchval(
        "INSERT INTO plan_activations (incident_id, plan_key, plan_version, plan_name, hazards, level, activated_at, "
        "activated_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING id", incident_id, plan.key, version, plan.name,
        sorted(plan.hazards), int(level), at, actor))
    await conn.execute("INSERT INTO plan_level_history (activation_id, at, actor, frm, level, reason) "
                       "VALUES ($1, $2, $3, NULL, $4, $5)", aid, at, actor, int(level), reason)
    return aid


async def lock_activation(conn: asyncpg.Connection, activation_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM plan_activations WHERE id = $1 FOR UPDATE", activation_id)
    if row is None:
        raise PlanNotFound(f"activation_id: 预案启动记录 {activation_id} 不存在")
    return row


async def set_level(conn: asyncpg.Connection, activation_id: int, frm: Level, to: Level, actor: str, at: datetime,
                    reason: str) -> None:
    await conn.execute("UPDATE plan_activations SET level = $2 WHERE id = $1", activation_id, int(to))
    await conn.execute("INSERT INTO plan_level_history (activation_id, at, actor, frm, level, reason) "
                       "VALUES ($1, $2, $3, $4, $5, $6)", activation_id, at, actor, int(frm), int(to), reason)


async def set_details(conn: asyncpg.Connection, activation_id: int, conference_id: str | None,
                      proposals: dict[str, Any]) -> None:
    """Record the conference and this level's proposals. The rooms called into the conference stay on
    the record when a level change does not open a conference again (it keeps the one it has)."""
    await conn.execute("UPDATE plan_activations SET conference_id = coalesce($2, conference_id), proposals = "
                       "CASE WHEN $3::jsonb ? 'rooms' OR NOT proposals ? 'rooms' THEN $3::jsonb "
                       "ELSE $3::jsonb || jsonb_build_object('rooms', proposals -> 'rooms') END "
                       "WHERE id = $1", activation_id, conference_id, proposals)


async def end_activation(conn: asyncpg.Connection, activation_id: int, actor: str, at: datetime) -> None:
    await conn.execute("UPDATE plan_activations SET status = 'ended', ended_at = $2, ended_by = $3 WHERE id = $1",
                       activation_id, at, actor)


async def add_tasks(conn: asyncpg.Connection, activation_id: int, tasks: Sequence[Task], level: Level, actor: str,
                    at: datetime) -> None:
    for t in tasks:
        tid = await conn.fetchval(
            "INSERT INTO plan_tasks (activation_id, agency, title, position, level_added, created_at, updated_at, "
            "updated_by) VALUES ($1,$2,$3,$4,$5,$6,$6,$7) RETURNING id", activation_id, t.agency, t.title, t.position,
            int(level), at, actor)
        await conn.execute("INSERT INTO plan_task_history (task_id, at, actor, frm, status, note) "
                           "VALUES ($1, $2, $3, NULL, 'assigned', $4)", tid, at, actor, f"{level.name}级响应")


async def set_task_status(conn: asyncpg.Connection, task_id: int, frm: TaskStatus, to: TaskStatus, actor: str,
                          at: datetime, note: str) -> None:
    await conn.execute("UPDATE plan_tasks SET status = $2, updated_at = $3, updated_by = $4, "
                       "note = CASE WHEN $5 = '' THEN note ELSE $5 END WHERE id = $1", task_id, to.value, at, actor, note)
    await conn.execute("INSERT INTO plan_task_history (task_id, at, actor, frm, status, note) "
                       "VALUES ($1, $2, $3, $4, $5, $6)", task_id, at, actor, frm.value, to.value, note)


def _task(r: asyncpg.Record) -> Task:
    return Task(r["agency"], r["title"], TaskStatus(r["status"]), r["id"], r["note"], r["position"])


async def tasks_of(conn: asyncpg.Connection, activation_id: int, lock: bool = False) -> list[Task]:
    rows = await conn.fetch("SELECT * FROM plan_tasks WHERE activation_id = $1 ORDER BY agency, position, id"
                            + (" FOR UPDATE" if lock else ""), activation_id)
    return [_task(r) for r in rows]


async def lock_task(conn: asyncpg.Connection, task_id: int) -> tuple[Task, asyncpg.Record]:
    row = await conn.fetchrow("SELECT t.*, a.status AS activation_status, a.incident_id FROM plan_tasks t "
                              "JOIN plan_activations a ON a.id = t.activation_id WHERE t.id = $1 FOR UPDATE OF t",
                              task_id)
    if row is None:
        raise PlanNotFound(f"task_id: 任务 {task_id} 不存在")
    return _task(row), row


async def task_rows(conn: asyncpg.Connection, activation_ids: Sequence[int], agency: str | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT * FROM plan_tasks WHERE activation_id = ANY($1) AND ($2::text IS NULL OR agency = $2) "
        "ORDER BY activation_id, agency, position, id", list(activation_ids), agency))


async def task_history(conn: asyncpg.Connection, task_ids: Sequence[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM plan_task_history WHERE task_id = ANY($1) ORDER BY id",
                                 list(task_ids)))


async def level_history(conn: asyncpg.Connection, activation_ids: Sequence[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM plan_level_history WHERE activation_id = ANY($1) ORDER BY id",
                                 list(activation_ids)))


# ---------------------------------------------------------------- agency desks


async def desk_agency(conn: asyncpg.Connection, username: str) -> str | None:
    agency: str | None = await conn.fetchval("SELECT agency FROM agency_desks WHERE username = $1", username)
    return agency


async def set_desk(conn: asyncpg.Connection, username: str, agency: str | None, actor: str) -> None:
    if agency is None:
        await conn.execute("DELETE FROM agency_desks WHERE username = $1", username)
    else:
        await conn.execute("INSERT INTO agency_desks (username, agency, updated_by) VALUES ($1, $2, $3) "
                           "ON CONFLICT (username) DO UPDATE SET agency = $2, updated_by = $3, updated_at = now()",
                           username, agency, actor)


async def desks(conn: asyncpg.Connection) -> dict[str, str]:
    return {r["username"]: r["agency"] for r in await conn.fetch("SELECT username, agency FROM agency_desks")}


# ---------------------------------------------------------------- the duty roster


def _shift(r: asyncpg.Record) -> Shift:
    return Shift(r["id"], r["starts_at"], r["ends_at"], frozen_posts(r["posts"]),
                 {a: Contact(c.get("name", ""), c.get("phone", "")) for a, c in r["contacts"].items()})


async def shifts_between(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[Shift]:
    rows = await conn.fetch("SELECT * FROM duty_shifts WHERE starts_at < $2 AND ends_at > $1 ORDER BY starts_at",
                            start, end)
    return [_shift(r) for r in rows]


async def lock_shifts(conn: asyncpg.Connection) -> None:
    """Serialise rostering (taken before the overlap check, so two nodes cannot both pass it)."""
    await conn.execute("LOCK TABLE duty_shifts IN SHARE ROW EXCLUSIVE MODE")


async def add_shift(conn: asyncpg.Connection, starts_at: datetime, ends_at: datetime, posts: dict[str, list[str]],
                    contacts: dict[str, dict[str, str]], actor: str) -> int:
    return int(await conn.fetchval(
        "INSERT INTO duty_shifts (starts_at, ends_at, posts, contacts, created_by) VALUES ($1,$2,$3,$4,$5) "
        "RETURNING id", starts_at, ends_at, posts, contacts, actor))


async def last_handover(conn: asyncpg.Connection, lock: bool = False) -> asyncpg.Record | None:
    if lock:
        await conn.execute("LOCK TABLE duty_handovers IN SHARE ROW EXCLUSIVE MODE")  # one handover at a time
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM duty_handovers ORDER BY id DESC LIMIT 1")
    return row


async def add_handover(conn: asyncpg.Connection, shift_id: int | None, at: datetime, by: str, notes: str,
                       items: list[dict[str, object]]) -> int:
    return int(await conn.fetchval("INSERT INTO duty_handovers (shift_id, at, by_user, notes, items) "
                                   "VALUES ($1,$2,$3,$4,$5) RETURNING id", shift_id, at, by, notes, items))


async def handovers(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM duty_handovers ORDER BY id DESC LIMIT $1", limit))
