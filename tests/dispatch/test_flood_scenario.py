"""Issue 19's flood scenario, end to end through the API and the consoles: the real server
(`commandcenter up`, real PostgreSQL, the MCU in the same process) and headless Chromium.

A flood is logged in 罗镜镇, Luoding; the dispatcher activates the flood plan at level II from the
dispatch console; the four agencies get their task lists; the command conference opens with the
county's and the township's rooms; the agency desks, each logged in as itself, acknowledge and
complete their tasks (and one desk trying to update another agency's task is refused, changing
nothing); the level is raised to I (the task list changes, the history keeps II); the leader
follows it on the /command video wall; the situation
report shows it all (with the supplies and shelter places allocated) and exports as PDF. A screenshot of each step goes to the test's tmp dir."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from pypdf import PdfReader

from tests.browser import sign_in
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

LUOJING = {"lon": 111.6800, "lat": 22.5250}  # 罗镜镇 (445381-05, a made-up demo position), Luoding (445381)
FOUR = {"flood_control": "flood_desk", "meteorology": "meteo_desk", "emergency_mgmt": "em_desk", "fire": "fire_desk"}


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {u: server.login(u) for u in ("dispatcher", "chair", "admin", *FOUR.values())}
    yield out
    for c in out.values():
        c.close()


class Shots:
    """Numbered screenshots of the scenario's steps."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.n = 0

    def __call__(self, page: Page, name: str) -> Path:
        self.n += 1
        path = self.where / f"{self.n:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, path  # a picture, not an empty page
        return path


def console(browser: Browser, server: RunningServer, user: str, incident: str) -> tuple[Page, list[str]]:
    """``user``'s dispatch console with the incident selected and its plan panel loaded."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1600, "height": 1200}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/dispatch")
    sign_in(page, user, server.passwords[user])
    expect(page.locator("#conn.up")).to_have_count(1, timeout=20_000)
    expect(page.get_by_test_id("plan-panel")).to_have_count(1, timeout=15_000)
    page.locator(f'#queue li[data-incident-id="{incident}"]').click()
    return page, errors


def activation_of(c: httpx.Client, incident: str) -> dict[str, Any]:
    r = c.get(f"/api/incidents/{incident}/plans")
    assert r.status_code == 200, r.text
    (a,) = r.json()["activations"]
    out: dict[str, Any] = a
    return out


def tasks_by_agency(a: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {g["agency"]: g["tasks"] for g in a["agencies"]}


def test_flood_scenario_end_to_end(browser: Browser, server: RunningServer, api: dict[str, httpx.Client],
                                   tmp_path: Path) -> None:
    shot = Shots(tmp_path)
    d = api["dispatcher"]

    # 1. a flood is logged in 罗镜镇, Luoding
    r = d.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1,
                                       "address": "罗镜镇太平河堤段", "description": "河水漫堤，居民被困", **LUOJING})
    assert r.status_code == 201, r.text
    inc = r.json()
    iid = inc["id"]
    assert inc["county_code"] == 445381 and "罗镜" in inc["township_name"], inc
    page, errors = console(browser, server, "dispatcher", iid)
    panel = page.get_by_test_id("plan-panel")
    expect(panel).to_contain_text("尚未启动预案")
    shot(page, "incident-logged")

    # 2. the dispatcher activates the flood plan at level II from the console
    panel.get_by_test_id("plan-select").select_option("flood")
    panel.get_by_test_id("plan-level-new").select_option("II")
    panel.locator("input[name=reason]").fill("24小时降雨量 280 毫米")
    panel.get_by_test_id("plan-activate").click()
    activation = panel.get_by_test_id("plan-activation")
    expect(activation.get_by_test_id("plan-level")).to_have_text("II级（重大）", timeout=15_000)

    # 3. the task list appears for the four agencies
    expect(activation.get_by_test_id("plan-agency")).to_have_count(4)
    a2 = activation_of(d, iid)
    assert a2["level"] == "II" and a2["plan_key"] == "flood"
    level2 = tasks_by_agency(a2)
    assert set(level2) == set(FOUR) and all(level2.values())
    assert all(t["status"] == "assigned" for ts in level2.values() for t in ts)
    shot(page, "plan-activated-level-II")

    # 4. the command conference opens with the county's and the township's rooms of the area
    conferences = d.get(f"/api/incidents/{iid}").json()["conferences"]
    assert len(conferences) == 1 and conferences[0]["conference_id"] == a2["conference_id"]
    rooms = set(conferences[0]["rooms"])
    assert {"luoding-room", "445381-05-room"} <= rooms, rooms  # 罗定市 and 罗镜镇 video rooms
    assert all(r in ("luoding-room", "city-emergency") or r.startswith("445381-") for r in rooms), rooms
    assert conferences[0]["status"] == "running"
    state = api["chair"].get(f"/api/conferences/{a2['conference_id']}")
    assert state.status_code == 200 and state.json()["running"] is True, state.text
    expect(activation.get_by_test_id("plan-conference")).to_have_text(a2["conference_id"])

    # the dispatcher sends supplies from the nearest depot with 500 sandbags and opens shelter places
    near = d.get("/api/resources/nearest", params={"kind": "depot", "item": "sandbag", "min_quantity": 500, "k": 3,
                                                   "incident_id": iid}).json()["results"]
    assert near, "no depot with 500 sandbags"
    depot = near[0]
    shelter = d.get("/api/resources/nearest", params={"kind": "shelter", "item": "places", "min_quantity": 100,
                                                      "k": 1, "incident_id": iid}).json()["results"][0]
    for resource, item, quantity in ((depot, "sandbag", 500), (shelter, "places", 100)):
        a = d.post(f"/api/incidents/{iid}/resources", json={"resource_id": resource["id"], "item": item,
                                                            "quantity": quantity, "request_id": f"flood-{item}-{iid}"})
        assert a.status_code == 201, a.text

    # 5. the agency desks acknowledge and complete their tasks, each through its own login:
    #    two desks in their consoles (Chromium), the other two through the API
    for user, agency in (("flood_desk", "flood_control"), ("meteo_desk", "meteorology")):
        desk, desk_errors = console(browser, server, user, iid)
        dpanel = desk.get_by_test_id("plan-panel")
        expect(dpanel.get_by_test_id("plan-desk")).to_be_visible()
        expect(dpanel.get_by_test_id("plan-agency")).to_have_count(1)
        expect(dpanel.locator(f'[data-testid=plan-agency][data-agency="{agency}"]')).to_have_count(1)
        expect(dpanel.get_by_test_id("plan-activate")).to_have_count(0)
        expect(dpanel.get_by_test_id("plan-change-level")).to_have_count(0)
        first = dpanel.get_by_test_id("plan-task").first
        for button, status in (("task-acknowledged", "已签收"), ("task-in_progress", "处置中"), ("task-done", "已完成")):
            dpanel.get_by_test_id("plan-task").first.get_by_test_id(button).click()
            expect(dpanel.get_by_test_id("plan-task").first.get_by_test_id("task-status")).to_have_text(status)
        expect(first).to_have_attribute("data-status", "done")
        if len(level2[agency]) > 1:  # the next task is signed for
            dpanel.get_by_test_id("plan-task").nth(1).get_by_test_id("task-acknowledged").click()
            expect(dpanel.get_by_test_id("plan-task").nth(1).get_by_test_id("task-status")).to_have_text("已签收")
        shot(desk, f"desk-{user}")
        assert desk_errors == [], desk_errors
        desk.context.close()
    for agency in ("emergency_mgmt", "fire"):
        c = api[FOUR[agency]]
        t = level2[agency][0]
        for status in ("acknowledged", "done"):
            u = c.post(f"/api/plan-tasks/{t['id']}", json={"status": status, "note": f"{FOUR[agency]} {status}"})
            assert u.status_code == 200, u.text
    # ... and the dispatcher's console followed (plan.task_updated events)
    expect(activation.locator('[data-agency="flood_control"] [data-testid=plan-task]').first) \
        .to_have_attribute("data-status", "done", timeout=10_000)
    shot(page, "desks-worked")

    # 6. one desk trying to update another agency's task is refused and changes nothing
    victim = tasks_by_agency(activation_of(d, iid))["fire"][-1]
    refused = api["meteo_desk"].post(f"/api/plan-tasks/{victim['id']}", json={"status": "done", "note": "越权"})
    assert refused.status_code == 403 and "消防" in refused.json()["detail"], refused.text
    after = next(t for t in tasks_by_agency(activation_of(d, iid))["fire"] if t["id"] == victim["id"])
    assert after["status"] == victim["status"] and after["history"] == victim["history"] and after["note"] == victim["note"]
    denied = api["admin"].get("/api/audit", params={"action": "plan.task"}).json()
    assert any(e["target"] == str(victim["id"]) and e["outcome"] == "denied" and e["actor"] == "meteo_desk"
               for e in denied)

    # 7. the level is raised to I from the console: the task list changes, the history keeps II
    worked = activation_of(d, iid)
    activation.get_by_test_id("plan-level-select").select_option("I")
    activation.get_by_test_id("plan-change-level").click()
    expect(panel.get_by_test_id("plan-activation").get_by_test_id("plan-level")).to_have_text("I级（特别重大）",
                                                                                              timeout=15_000)
    a1 = activation_of(d, iid)
    level1 = tasks_by_agency(a1)
    assert set(level1) > set(FOUR)  # more agencies at level I
    expect(panel.get_by_test_id("plan-agency")).to_have_count(len(level1))
    before = {t["id"]: t for ts in tasks_by_agency(worked).values() for t in ts}
    now = {t["id"]: t for ts in level1.values() for t in ts}
    assert set(before) < set(now)  # tasks were added, none lost
    assert all(now[i]["status"] == "done" for i, t in before.items() if t["status"] == "done")  # done stays done
    assert [(h["from"], h["level"], h["actor"]) for h in a1["level_history"]] == [
        (None, "II", "dispatcher"), ("II", "I", "dispatcher")]
    assert a1["conference_id"] == a2["conference_id"]  # the same conference carries on
    shot(page, "level-raised-to-I")
    assert errors == [], errors
    page.context.close()

    # 8. the leader on the video wall (/command, 1920×1080): the activation at level I, each agency's
    #    progress as the desks left it, the incident on the map, the figures the summary gives
    leader = browser.new_context(locale="zh-CN", viewport={"width": 1920, "height": 1080}).new_page()
    leader_errors: list[str] = []
    leader.on("pageerror", lambda e: leader_errors.append(str(e)))
    leader.goto(server.url + "/command")
    sign_in(leader, "leader", server.passwords["leader"])
    expect(leader.locator("#conn.up")).to_have_count(1, timeout=20_000)
    wall = leader.locator(f'[data-testid=activation][data-activation="{a1["id"]}"]')
    expect(wall).to_have_attribute("data-level", "I", timeout=15_000)
    for agency, tasks in level1.items():
        live = [t for t in tasks if t["status"] != "cancelled"]
        if not live:
            continue
        row = wall.locator(f'[data-testid=agency-progress][data-agency="{agency}"]')
        expect(row).to_have_attribute("data-total", str(len(live)))
        expect(row).to_have_attribute("data-done", str(sum(t["status"] == "done" for t in live)))
    assert any(sum(t["status"] == "done" for t in level1[a]) for a in FOUR)  # the desks' work shows
    lc = server.login("leader")
    figures = lc.get("/api/command/summary").json()["figures"]
    lc.close()
    expect(leader.get_by_test_id("figure-open-incidents-value")).to_have_text(str(figures["open_incidents"]["total"]))
    assert leader.locator("#command-map path.cmd-incident").count() > 0
    assert leader.locator("#command-map path.cmd-plan").count() > 0
    expect(leader.get_by_test_id("join-conference")).to_have_attribute("href", f"/join/{a1['conference_id']}")
    shot(leader, "leaders-command-view")
    assert leader_errors == [], leader_errors
    leader.context.close()

    # 9. the situation report shows it all, and exports as PDF (the chair, the leader, reads it)
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    report = context.new_page()
    report_errors: list[str] = []
    report.on("pageerror", lambda e: report_errors.append(str(e)))
    report.goto(server.url + f"/dispatch/incidents/{iid}/report")
    sign_in(report, "chair", server.passwords["chair"])
    expect(report.get_by_test_id("situation-report")).to_be_visible(timeout=15_000)
    expect(report.get_by_test_id("report-plan-level")).to_have_text("I级（特别重大）")
    expect(report.get_by_test_id("report-level-change")).to_have_count(2)
    expect(report.get_by_test_id("report-level-change").first).to_contain_text("II级（重大）")
    expect(report.get_by_test_id("report-task")).to_have_count(len(now))
    expect(report.locator('[data-testid=report-task][data-status="done"]')).to_have_count(
        sum(t["status"] == "done" for t in now.values()))
    expect(report.locator('[data-testid=report-room][data-room="445381-05-room"]')).to_have_text("罗镜镇视频会议室")
    expect(report.get_by_test_id("report-conference-status")).to_have_text("进行中")
    expect(report.locator(f'[data-testid=report-allocation][data-resource="{depot["id"]}"]')).to_contain_text("500 袋")
    expect(report.locator(f'[data-testid=report-allocation][data-resource="{shelter["id"]}"]')).to_contain_text(
        shelter["name"])
    shot(report, "situation-report")
    with report.expect_download(timeout=90_000) as download:
        report.get_by_test_id("report-pdf").click()
    pdf_path = tmp_path / "situation-report.pdf"  # (kept beside the screenshots)
    download.value.save_as(pdf_path)
    reader = PdfReader(io.BytesIO(pdf_path.read_bytes()))
    text = "".join("".join((p.extract_text() or "").split()) for p in reader.pages)
    for title in ("预案启动情况", "响应级别调整记录", "各部门任务清单", "资源调拨", "指挥会议", "罗镜镇视频会议室",
                  "".join(depot["name"].split())):
        assert title in text, title
    for t in now.values():
        assert "".join(t["title"].split()) in text, t["title"]
    assert report_errors == [], report_errors
    context.close()
