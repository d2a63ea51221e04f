"""Plan activation on a real PostgreSQL: the task list per agency, the command conference through
dispatch's own path, agency desks kept to their tasks, escalation with history, and refusals that
change nothing."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.runtime import CoreServices
from dispatch.plans.conference import DispatchCommandDesk
from dispatch.plans.model import AgencyScopeError, PlanConflict, PlanError, PlanNotFound
from dispatch.plans.service import PlanService
from dispatch.plans.setup import start_plans
from dispatch.service import DispatchService
from tests.conftest import make_settings

LUODING = (111.5700, 22.7690)  # inside Luoding (445381), whose township 罗镜镇 has a room
FOUR = {"flood_control", "meteorology", "emergency_mgmt", "fire"}


@pytest.fixture
async def svc(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[DispatchService, PlanService]]:
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    d = DispatchService(core)
    await d.start()
    await d.set_training(False, "test")
    plans = await start_plans(core, d)  # the demo plans and desks beside the demo site plan
    yield d, plans
    await d.stop()
    await core.stop()


async def flood_incident(d: DispatchService) -> str:
    inc = await d.create_incident(category="flood_control", subtype="flood", priority=1, lon=LUODING[0],
                                  lat=LUODING[1], actor="dispatcher")
    return inc.id


def tasks(view: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(t["agency"], t["title"]): t["status"] for g in view["agencies"] for t in g["tasks"]}


async def test_activation_creates_tasks_per_agency_and_opens_the_conference(
        svc: tuple[DispatchService, PlanService]) -> None:
    d, plans = svc
    listed = {p["key"]: p for p in await plans.plans()}
    assert set(listed) == {"flood", "fire", "traffic", "epidemic", "earthquake"}
    assert all(p["approved_version"] == 1 for p in listed.values())
    inc = await flood_incident(d)
    with d.core.bus.subscribe("plan.*") as sub:
        view = await plans.activate(inc, "flood", "II", "dispatcher", reason="24小时雨量 280 毫米")
        event = await asyncio.wait_for(sub.get(), 5)
    assert event.topic == "plan.activated" and event.payload["activation"]["id"] == view["id"]
    assert view["level"] == "II" and view["status"] == "active" and view["plan_version"] == 1
    assert {g["agency"] for g in view["agencies"]} == FOUR
    assert set(tasks(view).values()) == {"assigned"}
    # the command conference: dispatch's own record, with the county and township rooms of the area
    confs = await d.conferences(inc)
    assert [c["conference_id"] for c in confs] == [view["conference_id"]]
    assert {"luoding-room", "445381-05-room", "city-emergency"} <= set(confs[0]["rooms"])
    p = view["proposals"]
    assert p["warning"].startswith("暴雨橙色预警") and p["resources"][0]["item"] == "sandbag"
    assert p["commander"]["name"] == "分管副市长" and any(n["ref"] == "room:city-emergency" for n in p["notify"])
    assert p["units"]  # the run card's recommendation, for the dispatcher to confirm
    assert view["level_history"][0]["level"] == "II" and view["level_history"][0]["reason"] == "24小时雨量 280 毫米"
    # the same plan again, or another plan of the same hazard: refused, nothing changes
    with pytest.raises(PlanConflict, match="已启动同灾种"):
        await plans.activate(inc, "flood", "I", "dispatcher")
    assert len(await plans.activations(inc)) == 1
    assert await d.db.fetchval("SELECT count(*) FROM plan_tasks") == sum(len(g["tasks"]) for g in view["agencies"])
    # a plan of another hazard may run beside it (a fire in the flooded area)
    fire = await plans.activate(inc, "fire", "IV", "chair")
    assert fire["conference_id"] is None and {g["agency"] for g in fire["agencies"]} == {"fire"}


async def test_agency_desks_update_only_their_tasks(svc: tuple[DispatchService, PlanService]) -> None:
    d, plans = svc
    inc = await flood_incident(d)
    view = await plans.activate(inc, "flood", "II", "dispatcher")
    assert await plans.desk_agency("meteo_desk") == "meteorology"
    mine = await plans.activations(inc, agency="meteorology")
    meteo = mine[0]["agencies"]
    assert [g["agency"] for g in meteo] == ["meteorology"]
    task = meteo[0]["tasks"][0]
    t = await plans.update_task(task["id"], "acknowledged", "meteo_desk", desk_agency="meteorology")
    t = await plans.update_task(task["id"], "in_progress", "meteo_desk", desk_agency="meteorology", note="已发布")
    t = await plans.update_task(task["id"], "done", "meteo_desk", desk_agency="meteorology")
    assert t["status"] == "done" and [h["status"] for h in t["history"]] == ["assigned", "acknowledged",
                                                                              "in_progress", "done"]
    assert t["note"] == "已发布" and t["updated_by"] == "meteo_desk"
    flood_task = next(g for g in view["agencies"] if g["agency"] == "flood_control")["tasks"][0]
    with pytest.raises(AgencyScopeError, match="三防"):
        await plans.update_task(flood_task["id"], "acknowledged", "meteo_desk", desk_agency="meteorology")
    assert (await plans.task(flood_task["id"]))["status"] == "assigned"  # unchanged
    with pytest.raises(PlanConflict):
        await plans.update_task(task["id"], "acknowledged", "meteo_desk", desk_agency="meteorology")
    with pytest.raises(AgencyScopeError):
        await plans.activate(inc, "fire", "IV", "meteo_desk", desk_agency="meteorology")
    with pytest.raises(AgencyScopeError):
        await plans.change_level(view["id"], "I", "meteo_desk", desk_agency="meteorology")
    desk = await plans.desk_tasks("meteorology")
    assert [a["id"] for a in desk] == [view["id"]] and [g["agency"] for g in desk[0]["agencies"]] == ["meteorology"]
    denied = await d.db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'plan.task' AND outcome = 'denied'")
    assert denied == 1


async def test_escalation_ii_to_i_changes_tasks_and_keeps_history(svc: tuple[DispatchService, PlanService]) -> None:
    d, plans = svc
    inc = await flood_incident(d)
    view = await plans.activate(inc, "flood", "II", "dispatcher")
    first = tasks(view)
    done = next(t for g in view["agencies"] for t in g["tasks"] if t["title"] == "组织危险区域人员转移")
    await plans.update_task(done["id"], "done", "flood_desk", desk_agency="flood_control")
    up = await plans.change_level(view["id"], "I", "chair", reason="死亡 31 人")
    now = tasks(up)
    assert up["level"] == "I" and {g["agency"] for g in up["agencies"]} == FOUR | {"police", "medical", "health"}
    assert now[("flood_control", "组织危险区域人员转移")] == "done"  # done stays done
    assert now[("flood_control", "加密巡查堤防水库")] == "cancelled"  # not in level I: withdrawn
    assert now[("meteorology", "发布暴雨红色预警")] == "assigned"  # new at level I
    assert now[("fire", "组织水域救援力量前置")] == "assigned"  # in both: kept
    assert set(first) < set(now)  # nothing is deleted: the history stays
    assert [(h["from"], h["level"]) for h in up["level_history"]] == [(None, "II"), ("II", "I")]
    withdrawn = next(t for g in up["agencies"] for t in g["tasks"] if t["title"] == "加密巡查堤防水库")
    assert withdrawn["history"][-1]["note"].startswith("响应级别 II→I")
    assert up["conference_id"] == view["conference_id"]  # one conference per activation
    assert up["proposals"]["rooms"] == view["proposals"]["rooms"]  # its rooms stay on the record
    assert up["proposals"]["level"] == "I"
    down = await plans.change_level(view["id"], "II", "chair")
    assert tasks(down)[("flood_control", "加密巡查堤防水库")] == "assigned"  # back on the list
    assert tasks(down)[("police", "对危险路段实施交通管制")] == "cancelled"
    with pytest.raises(PlanConflict, match="当前已是 II 级"):
        await plans.change_level(view["id"], "II", "chair")
    ended = await plans.end(view["id"], "chair")
    assert ended["status"] == "ended"
    with pytest.raises(PlanConflict):
        await plans.update_task(withdrawn["id"], "acknowledged", "flood_desk", desk_agency="flood_control")
    again = await plans.activate(inc, "flood", "III", "dispatcher")  # the response ended: a new one may start
    assert again["level"] == "III"


async def test_versions_and_approval(svc: tuple[DispatchService, PlanService]) -> None:
    d, plans = svc
    text = await plans.export("fire")
    changed = text.replace("辖区站点扑救", "辖区站点扑救并报告火情")
    added = await plans.upload(changed, "toml", "admin")
    assert added == {"key": "fire", "name": "云浮市火灾事故应急预案（演示）", "version": 2, "status": "draft"}
    inc = await d.create_incident(category="fire", subtype="residential", priority=2, lon=LUODING[0],
                                  lat=LUODING[1], actor="dispatcher")
    before = await plans.activate(inc.id, "fire", "IV", "dispatcher")
    assert before["plan_version"] == 1  # the draft is not used before it is approved
    await plans.end(before["id"], "dispatcher")
    await plans.approve("fire", 2, "admin")
    after = await plans.activate(inc.id, "fire", "IV", "dispatcher")
    assert after["plan_version"] == 2 and "辖区站点扑救并报告火情" in {t["title"] for t in after["agencies"][0]["tasks"]}
    fire = next(p for p in await plans.plans() if p["key"] == "fire")
    assert fire["approved_version"] == 2 and [v["status"] for v in fire["versions"]] == ["approved", "superseded"]
    with pytest.raises(PlanError, match="^levels.IV.tasks.navy: "):
        await plans.upload(changed.replace("fire = [\"辖区站点扑救并报告火情\"]", "navy = [\"x\"]"), "toml", "admin")
    with pytest.raises(PlanNotFound):
        await plans.approve("fire", 9, "admin")
    assert len(fire["versions"]) == 2
    json_text = await plans.export("fire", 2, "json")
    assert (await plans.upload(json_text, "json", "admin"))["version"] == 3


async def test_duty_roster_resolves_notifications_at_a_shift_change(svc: tuple[DispatchService, PlanService]) -> None:
    d, seeded = svc
    now = [datetime(2026, 7, 1, 19, 59, tzinfo=UTC)]
    plans = PlanService(d.core, DispatchCommandDesk(d), clock=lambda: now[0])
    day = datetime(2026, 7, 1, 8, tzinfo=UTC)
    await plans.roster.add_shift(day, day + timedelta(hours=12),
                                 {"leader_on_duty": ["chair"], "duty_officer": ["dispatcher"],
                                  "vice_mayor": ["vice_mayor_li"]},
                                 {"meteorology": {"name": "气象值班 王", "phone": "0766-0000001"}}, "admin")
    await plans.roster.add_shift(day + timedelta(hours=12), day + timedelta(hours=24),
                                 {"leader_on_duty": ["leader_zhao"], "duty_officer": ["dispatcher2"]}, {}, "admin")
    with pytest.raises(PlanConflict, match="重叠"):
        await plans.roster.add_shift(day + timedelta(hours=20), day + timedelta(hours=30),
                                     {"leader_on_duty": ["x"], "duty_officer": ["y"]}, {}, "admin")
    with pytest.raises(PlanError, match="^posts.duty_officer: "):
        await plans.roster.add_shift(day + timedelta(days=3), day + timedelta(days=3, hours=8),
                                     {"leader_on_duty": ["x"]}, {}, "admin")
    inc = await flood_incident(d)
    first = await plans.activate(inc, "flood", "II", "dispatcher")
    notify = {n["ref"]: n["people"] for n in first["proposals"]["notify"]}
    assert notify["post:leader_on_duty"] == ["chair"] and notify["user:chair"] == ["chair"]
    assert notify["post:vice_mayor"] == ["vice_mayor_li"] and first["proposals"]["commander"]["people"] == ["vice_mayor_li"]
    now[0] = datetime(2026, 7, 1, 20, 1, tzinfo=UTC)  # the night shift took over
    up = await plans.change_level(first["id"], "I", "chair")
    notify = {n["ref"]: n["people"] for n in up["proposals"]["notify"]}
    assert notify["post:leader_on_duty"] == ["leader_zhao"] and notify["post:mayor"] == []  # nobody rostered
    assert up["proposals"]["shift_id"] != first["proposals"]["shift_id"]


async def test_handover_carries_open_items_over(svc: tuple[DispatchService, PlanService]) -> None:
    _, plans = svc
    h1 = await plans.roster.handover("白班交接", [{"text": "罗定水库水位持续关注"}, {"text": "补充沙袋", "done": True}],
                                     "dispatcher")
    assert h1["carried_over"] == 0
    h2 = await plans.roster.handover("夜班交接", [{"text": "联系气象台确认雨量"}], "dispatcher2")
    assert [i["text"] for i in h2["items"]] == ["罗定水库水位持续关注", "联系气象台确认雨量"] and h2["carried_over"] == 1
    h3 = await plans.roster.handover("", [{"text": "罗定水库水位持续关注", "done": True}], "dispatcher")
    assert h3["items"] == [{"text": "联系气象台确认雨量", "done": False}, {"text": "罗定水库水位持续关注", "done": True}]
    assert [h["id"] for h in await plans.roster.handovers()] == [h3["id"], h2["id"], h1["id"]]


async def test_two_leaders_activate_at_once_one_wins(svc: tuple[DispatchService, PlanService]) -> None:
    d, plans = svc
    inc = await flood_incident(d)
    outcomes = await asyncio.gather(plans.activate(inc, "flood", "II", "dispatcher"),
                                    plans.activate(inc, "flood", "I", "chair"), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["PlanConflict", "dict"], outcomes
    assert len(await plans.activations(inc)) == 1


async def test_activation_event_survives_a_failure_after_the_commit(
        svc: tuple[DispatchService, PlanService], monkeypatch: pytest.MonkeyPatch) -> None:
    """The activation's event is stored in its transaction (the outbox): when the node fails right after
    the commit (here: while it opens the conference), the consoles still get ``plan.activated``, and the
    event is in the table other nodes and reconnecting consoles replay from."""
    d, plans = svc
    inc = await flood_incident(d)

    async def node_dies(*_: object) -> list[dict[str, Any]]:
        raise RuntimeError("the node died after the commit")

    monkeypatch.setattr(plans.roster, "people_for", node_dies)
    with d.core.bus.subscribe("plan.*") as sub:
        with pytest.raises(RuntimeError):
            await plans.activate(inc, "flood", "II", "dispatcher")
        event = await asyncio.wait_for(sub.get(), 5)
    assert event.topic == "plan.activated" and event.payload["activation"]["incident_id"] == inc
    assert {g["agency"] for g in event.payload["activation"]["agencies"]} == FOUR
    stored = await d.core.db.fetchval("SELECT payload FROM events WHERE id = $1", event.id)
    assert stored["activation"]["id"] == event.payload["activation"]["id"]


DEMO_PATTERN = Path(__file__).resolve().parents[2] / "config" / "demo" / "duty_roster.toml"


@pytest.mark.parametrize("beijing_hour", [2, 7, 9, 21])
async def test_the_demo_pattern_has_someone_on_duty_at_any_hour(fresh_db_url: str, tmp_path: Path,
                                                                  beijing_hour: int) -> None:
    """Rostered at any hour, the pattern covers now: between midnight and 08:00 Beijing time the
    night shift that began yesterday evening is on duty (CI once started at 01:00 and found none)."""
    from dispatch.plans.duty import DutyRoster
    from dispatch.plans.setup import roster_pattern

    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    try:
        now = datetime(2026, 7, 1, beijing_hour, 30, tzinfo=UTC) - timedelta(hours=8)
        roster = DutyRoster(core, clock=lambda: now)
        added = await roster_pattern(roster, DEMO_PATTERN, now)
        shift = await roster.shift_at(now)
        assert shift is not None and list(shift.posts["leader_on_duty"]) == ["chair"], shift
        # yesterday's, today's and two more days' shifts, less those already over
        assert added == {2: 7, 7: 7, 9: 6, 21: 5}[beijing_hour]
        assert await roster_pattern(roster, DEMO_PATTERN, now) == 0  # a restart adds nothing
    finally:
        await core.stop()
