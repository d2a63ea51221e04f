"""Response plans (预案) as data: validation names the field, levels' criteria may not overlap, the
TOML/JSON round trip is exact, level changes diff the task list, tasks move forward only and an
agency desk may touch only its own agency's tasks."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from dispatch.plans import format as plan_format
from dispatch.plans.model import (
    AgencyScopeError,
    Level,
    PlanConflict,
    PlanError,
    Task,
    TaskStatus,
    change_level,
    check_task_update,
    hazards_overlap,
    tasks_for,
)

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "plans"
ROOMS = ["city-emergency", "city-main", "luoding-room"]


def flood() -> dict[str, Any]:
    return plan_format.plan_to_dict(plan_format.loads((DEMO / "flood.toml").read_text(encoding="utf-8")))


def test_demo_plans_load_and_round_trip_through_toml_and_json() -> None:
    files = sorted(DEMO.glob("*.toml"))
    assert {f.stem for f in files} == {"flood", "fire", "traffic", "epidemic", "earthquake"}
    for f in files:
        plan = plan_format.loads(f.read_text(encoding="utf-8"))
        assert plan.made_up
        assert plan_format.loads(plan_format.dumps(plan, "toml")) == plan
        assert plan_format.loads(plan_format.dumps(plan, "json"), "json") == plan


def test_suggested_level_from_figures() -> None:
    plan = plan_format.plan_from_dict(flood())
    assert plan.suggest_level({"rainfall_24h_mm": 300}) == Level.II
    assert plan.suggest_level({"rainfall_24h_mm": 300, "deaths": 31}) == Level.I  # the most severe met
    assert plan.suggest_level({"rainfall_24h_mm": 20}) is None
    assert plan.covers("flood_control", "typhoon") and plan.covers("meteorology", "rainstorm")
    assert not plan.covers("meteorology", "fog")


def _edit(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(flood())
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("path,value,field,words", [
    ("levels.II.criteria", {"rainfall_24h_mm": [200, 400]}, "levels.III.criteria.rainfall_24h_mm", "与 II 级"),
    ("levels.III.criteria", {"deaths": [5, 12]}, "levels.III.criteria.deaths", "重叠"),
    ("levels.II.tasks", {"navy": ["出海"]}, "levels.II.tasks.navy", "未知部门"),
    ("levels.II.commander", "post:king", "levels.II.commander", "未知岗位"),
    ("levels.II.members", ["agency:flood_control", "post:wizard"], "levels.II.members[1]", "未知岗位"),
    ("levels.II.notify", ["room:moon-base"], "levels.II.notify[0]", "会议室"),
    ("levels.II.notify", ["fax:123"], "levels.II.notify[0]", "引用类型"),
    ("levels.II.criteria", {"happiness": [1]}, "levels.II.criteria.happiness", "未知指标"),
    ("levels.II.criteria", {"deaths": [30, 10]}, "levels.II.criteria.deaths", "上限"),
    ("levels.II.conference", "moon", "levels.II.conference", "county"),
    ("levels.II.resources", [{"item": "gold", "quantity": 1}], "levels.II.resources[0].item", "未知物资"),
    ("levels.II.tasks", {}, "levels.II.tasks", "任务清单"),
    ("levels.V", {}, "levels.V", "响应级别"),
    ("hazards", ["volcano"], "hazards[0]", "未知灾种"),
    ("key", "Flood Plan!", "key", "小写"),
    ("colour", "red", "colour", "未知字段"),
])
def test_bad_plans_are_refused_with_the_field_named(path: str, value: Any, field: str, words: str) -> None:
    with pytest.raises(PlanError) as e:
        plan_format.plan_from_dict(_edit(path, value), ROOMS)
    assert str(e.value).startswith(f"{field}: ") and words in str(e.value), str(e.value)


def test_syntax_errors_name_the_format() -> None:
    with pytest.raises(PlanError, match="^toml: 语法错误"):
        plan_format.loads("key = ", "toml")
    with pytest.raises(PlanError, match="^json: 语法错误"):
        plan_format.loads("{", "json")


def test_escalation_diff_keeps_status_adds_and_withdraws() -> None:
    plan = plan_format.plan_from_dict(flood())
    ii = [Task(t.agency, t.title, TaskStatus.DONE if t.title == "组织危险区域人员转移" else t.status, id=i + 1)
          for i, t in enumerate(tasks_for(plan.level(Level.II)))]
    up = change_level(ii, plan.level(Level.I))
    assert {t.agency for t in up.added} >= {"police", "medical", "health"}
    assert ("flood_control", "组织危险区域人员全部转移") in {(t.agency, t.title) for t in up.added}
    # II's tasks that I does not list are withdrawn unless done
    assert {t.title for t in up.cancelled} == {"启动防汛II级应急响应", "加密巡查堤防水库", "发布暴雨橙色预警", "开放避难场所"}
    assert "组织危险区域人员转移" not in {t.title for t in up.cancelled}  # done stays done
    back = change_level([*[t for t in ii if t.title != "加密巡查堤防水库"],
                         Task("flood_control", "加密巡查堤防水库", TaskStatus.CANCELLED, id=99)], plan.level(Level.II))
    assert [t.id for t in back.restored] == [99] and not back.added


def test_task_moves_forward_only_and_desks_keep_to_their_agency() -> None:
    t = Task("meteorology", "发布预警", TaskStatus.ASSIGNED, id=1)
    assert check_task_update(t, "acknowledged", "meteorology") == TaskStatus.ACKNOWLEDGED
    assert check_task_update(t, "done", None) == TaskStatus.DONE  # a dispatcher may skip steps
    with pytest.raises(AgencyScopeError, match="气象"):
        check_task_update(t, "acknowledged", "flood_control")
    with pytest.raises(PlanConflict, match="不能从「已完成」改为「处置中」"):
        check_task_update(Task("fire", "x", TaskStatus.DONE), "in_progress", None)
    with pytest.raises(PlanConflict):
        check_task_update(Task("fire", "x", TaskStatus.CANCELLED), "done", None)
    with pytest.raises(PlanError, match="^status: "):
        check_task_update(t, "finished", None)


def test_hazards_overlap_by_category_and_subtype() -> None:
    assert hazards_overlap(["flood_control"], ["flood_control/typhoon"]) == {"flood_control/typhoon"}
    assert hazards_overlap(["fire"], ["traffic"]) == set()
    assert Level.parse("ii") == Level.II and Level.parse(1) == Level.I
