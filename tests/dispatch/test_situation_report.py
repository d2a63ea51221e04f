"""The situation report (态势报告) against a running `commandcenter up` (real PostgreSQL, real HTTP):
a flood incident with the flood plan at level II raised to I, desks working their tasks, supplies,
a team and shelter places allocated, and the command conference — every one of them appears as rows
of the report page, in zh-CN and in English; who may read it; an unknown incident is 404."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.dispatch.report_html import elements, pdf_text_and_fonts

LUODING = {"lon": 111.5700, "lat": 22.7690}  # Luoding (445381): county and township 罗镜镇 rooms
ROLES = ("admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer", "leader")


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {r: server.login(r) for r in (*ROLES, "flood_desk", "meteo_desk")}
    yield out
    for c in out.values():
        c.close()


def allocate(c: httpx.Client, inc: str, resource: str, item: str, quantity: int) -> dict[str, Any]:
    r = c.post(f"/api/incidents/{inc}/resources", json={"resource_id": resource, "item": item, "quantity": quantity,
                                                         "request_id": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture(scope="module")
def flood(clients: dict[str, httpx.Client]) -> dict[str, Any]:
    """A flood incident worked for a while: plan II (tasks acknowledged and done by the desks),
    supplies, a team and shelter places allocated (one allocation released), raised to I."""
    d, chair = clients["dispatcher"], clients["chair"]
    r = d.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1,
                                       "address": "罗镜镇河堤", **LUODING})
    assert r.status_code == 201, r.text
    inc = r.json()["id"]
    act = d.post(f"/api/incidents/{inc}/plans", json={"plan_key": "flood", "level": "II", "reason": "雨量 280 毫米"})
    assert act.status_code == 201, act.text
    view = act.json()
    tasks = {t["agency"]: t for g in view["agencies"] for t in g["tasks"][:1]}
    flood_task, meteo_task = tasks["flood_control"]["id"], tasks["meteorology"]["id"]
    for status, note in (("acknowledged", "已签收，正在集结"), ("done", "危险区 320 人已转移")):
        u = clients["flood_desk"].post(f"/api/plan-tasks/{flood_task}", json={"status": status, "note": note})
        assert u.status_code == 200, u.text
    assert clients["meteo_desk"].post(f"/api/plan-tasks/{meteo_task}",
                                      json={"status": "acknowledged"}).status_code == 200
    sandbags = allocate(d, inc, "depot-luocheng", "sandbag", 500)
    allocate(d, inc, "depot-luojing", "life_jacket", 40)
    allocate(d, inc, "team-luoding-collapse", "team", 1)
    allocate(d, inc, "shelter-luojing", "places", 120)
    pumps = allocate(d, inc, "depot-luocheng", "pump", 2)
    assert d.post(f"/api/resource-allocations/{pumps['allocation']['id']}/release").status_code == 200
    up = chair.post(f"/api/plan-activations/{view['id']}/level", json={"level": "I", "reason": "水位超警戒 2 米"})
    assert up.status_code == 200, up.text
    return {"id": inc, "activation": up.json(), "rooms": view["proposals"]["rooms"], "sandbags": sandbags,
            "flood_task": flood_task}


def test_report_shows_plan_levels_tasks_resources_and_conference(clients: dict[str, httpx.Client],
                                                                 flood: dict[str, Any]) -> None:
    page = clients["dispatcher"].get(f"/dispatch/incidents/{flood['id']}/report")
    assert page.status_code == 200, page.text
    html = page.text
    for title in ("预案启动情况", "响应级别调整记录", "各部门任务清单", "资源调拨", "指挥会议"):
        assert title in html, title

    (act,) = elements(html, "report-activation")
    assert act.attrs["data-plan"] == "flood" and act.attrs["data-level"] == "I"
    assert "云浮市防汛防台风应急预案" in elements(html, "report-plan-name")[0].text
    assert elements(html, "report-plan-version")[0].text == "v1"
    assert elements(html, "report-plan-level")[0].text == "I级（特别重大）"
    # the level history keeps II (who activated it, why) and the raise to I (who, why)
    history = elements(html, "report-level-change")
    assert [(h.attrs["data-from"], h.attrs["data-level"]) for h in history] == [("", "II"), ("II", "I")]
    assert "dispatcher" in history[0].text and "雨量 280 毫米" in history[0].text
    assert "chair" in history[1].text and "II级（重大） → I级（特别重大）" in history[1].text
    assert "水位超警戒 2 米" in history[1].text

    # every task of the activation is a row, with its agency, status, times and notes
    api_tasks = [t for g in flood["activation"]["agencies"] for t in g["tasks"]]
    rows = elements(html, "report-task")
    assert len(rows) == len(api_tasks) > 4
    agencies = {e.attrs["data-agency"] for e in elements(html, "report-agency")}
    assert {"flood_control", "meteorology", "emergency_mgmt", "fire"} <= agencies
    done = [r for r in rows if r.attrs["data-status"] == "done"]
    assert len(done) == 1 and done[0].attrs["data-agency"] == "flood_control"
    assert "已完成" in done[0].text and "危险区 320 人已转移" in done[0].text and "已签收，正在集结" in done[0].text
    assert "flood_desk" in done[0].text
    acked = [r for r in rows if r.attrs["data-status"] == "acknowledged"]
    assert [r.attrs["data-agency"] for r in acked] == ["meteorology"] and "已签收" in acked[0].text
    statuses = sorted(r.attrs["data-status"] for r in rows)
    assert statuses == sorted(t["status"] for t in api_tasks)  # withdrawn (II only) tasks too
    assert not any("data-overdue" in r.attrs for r in rows)  # minutes old: nothing is overdue yet

    # resources: supplies with quantities and depots (the released one says so), the team, the shelter
    allocs = elements(html, "report-allocation")
    by = {(a.attrs["data-kind"], a.attrs["data-resource"], i): a for i, a in enumerate(allocs)}
    supplies = [a for (k, _, _), a in by.items() if k == "depot"]
    assert any("沙袋" in a.text and "500 袋" in a.text and "罗定市应急物资仓库" in a.text for a in supplies)
    assert any("救生衣" in a.text and "40 件" in a.text and "罗镜镇物资储备点" in a.text for a in supplies)
    released = [a for a in supplies if "抽水泵" in a.text]
    assert len(released) == 1 and "dispatcher" in released[0].text.split("·")[-1]
    (team,) = [a for (k, _, _), a in by.items() if k == "team"]
    assert "罗定市建筑坍塌搜救队" in team.text
    (shelter,) = [a for (k, _, _), a in by.items() if k == "shelter"]
    assert "罗镜镇中学安置点" in shelter.text and "120 人" in shelter.text
    assert elements(html, "report-occupancy")[0].text == "120/350"
    assert len(elements(html, "report-expert")) == 3

    # the command conference the plan opened, with the county and township rooms of the area
    (conf,) = elements(html, "report-conference")
    assert conf.attrs["data-conference"] == flood["activation"]["conference_id"]
    rooms = {e.attrs["data-room"] for e in elements(html, "report-room")}
    assert set(flood["rooms"]) == rooms and {"luoding-room", "445381-05-room"} <= rooms
    assert "罗定市视频会议室" in conf.text and "罗镜镇视频会议室" in conf.text
    assert "云浮市防汛防台风应急预案" in conf.text


def test_report_in_english(clients: dict[str, httpx.Client], flood: dict[str, Any]) -> None:
    html = clients["dispatcher"].get(f"/dispatch/incidents/{flood['id']}/report?lang=en").text
    for title in ("Plan activations", "Level history", "Tasks by agency", "Resources allocated",
                  "Command conferences"):
        assert title in html, title
    assert elements(html, "report-plan-level")[0].text == "Level I (extremely serious)"
    assert "Flood control" in " ".join(e.text for e in elements(html, "report-agency"))
    done = [r for r in elements(html, "report-task") if r.attrs["data-status"] == "done"]
    assert "Done" in done[0].text
    assert any("Sandbags" in a.text for a in elements(html, "report-allocation"))


def test_who_may_read_the_report(clients: dict[str, httpx.Client], flood: dict[str, Any]) -> None:
    codes = {r: clients[r].get(f"/dispatch/incidents/{flood['id']}/report").status_code for r in ROLES}
    allowed = {"admin", "chair", "dispatcher", "calltaker", "leader"}
    assert codes == {r: 200 if r in allowed else 403 for r in ROLES}, codes
    assert clients["leader"].get(f"/dispatch/incidents/{flood['id']}/report/map").status_code == 200


@pytest.mark.parametrize("bad,code", [("NOPE-1", 404), ("x" * 300, 404), ("..%2F..%2Fetc%2Fpasswd", 404),
                                      ("%00", 422)])  # a NUL is refused by the request guard, naming it
def test_unknown_incident_is_refused(clients: dict[str, httpx.Client], bad: str, code: int) -> None:
    r = clients["dispatcher"].get(f"/dispatch/incidents/{bad}/report")
    assert r.status_code == code, (bad, r.status_code)
    assert "Traceback" not in r.text


# ---------------------------------------------------------------- the PDF (headless Chromium)


def test_pdf_export(clients: dict[str, httpx.Client], flood: dict[str, Any], tmp_path: Path) -> None:
    r = clients["chair"].get(f"/dispatch/incidents/{flood['id']}/report.pdf", timeout=90)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")
    assert "attachment" in r.headers["content-disposition"]
    (tmp_path / "report.pdf").write_bytes(r.content)
    text, fonts = pdf_text_and_fonts(r.content)
    squashed = "".join(text.split())  # a table cell may wrap a line anywhere
    for title in ("警情态势报告", "预案启动情况", "响应级别调整记录", "各部门任务清单", "资源调拨", "指挥会议", "态势图"):
        assert title in squashed, title
    for g in flood["activation"]["agencies"]:  # every task row is in the document
        for t in g["tasks"]:
            assert "".join(t["title"].split()) in squashed, t["title"]
    assert "危险区320人已转移" in squashed and "罗定市应急物资仓库" in squashed and "罗镜镇视频会议室" in squashed
    assert any("WenQuanYi" in f or "Noto" in f or "Droid" in f for f in fonts), fonts  # a CJK font, embedded
    audit = clients["admin"].get("/api/audit", params={"action": "incident.report_pdf"}).json()
    assert any(a["target"] == flood["id"] and a["actor"] == "chair" for a in audit)


def test_pdf_in_english(clients: dict[str, httpx.Client], flood: dict[str, Any]) -> None:
    r = clients["dispatcher"].get(f"/dispatch/incidents/{flood['id']}/report.pdf?lang=en", timeout=90)
    assert r.status_code == 200, r.text
    text, _ = pdf_text_and_fonts(r.content)
    assert "Plan activations" in text and "Tasks by agency" in text


def test_pdf_of_an_unknown_incident_is_404(clients: dict[str, httpx.Client]) -> None:
    r = clients["dispatcher"].get("/dispatch/incidents/NOPE-404/report.pdf")
    assert r.status_code == 404 and "NOPE-404" in r.json()["detail"]


def test_who_may_export_the_pdf(clients: dict[str, httpx.Client], flood: dict[str, Any]) -> None:
    for role in ("operator", "inspector", "viewer"):
        assert clients[role].get(f"/dispatch/incidents/{flood['id']}/report.pdf").status_code == 403, role
