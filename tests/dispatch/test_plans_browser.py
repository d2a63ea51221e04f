"""Response plans in headless Chromium (real server, real PostgreSQL): a dispatcher activates the
flood plan on an incident from the dispatch console and sees the task list per agency; the
meteorology desk sees only its tasks and acknowledges one; the level is raised to I; the admins'
plan library lists the demo plans. Screenshots go to test-artifacts/."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import open_page, sign_in
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

LUODING = {"lon": 111.5700, "lat": 22.7690}


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    c = server.login("dispatcher")
    yield c
    c.close()


def open_console(browser: Browser, server: RunningServer, user: str, lang: str = "zh-CN") -> tuple[Page, list[str]]:
    p, errors = open_page(browser, server, user, "/dispatch" + ("?lang=en" if lang == "en" else ""), lang,
                          {"width": 1600, "height": 1200})
    expect(p.locator("#conn.up")).to_have_count(1, timeout=15_000)
    expect(p.get_by_test_id("plan-panel")).to_have_count(1, timeout=10_000)
    return p, errors


def test_activate_a_plan_and_work_the_task_list(browser: Browser, server: RunningServer, api: httpx.Client,
                                                artifacts_dir: Path) -> None:
    inc = api.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1, **LUODING})
    assert inc.status_code == 201
    iid = inc.json()["id"]
    page, errors = open_console(browser, server, "dispatcher")
    page.locator(f'#queue li[data-incident-id="{iid}"]').click()
    panel = page.get_by_test_id("plan-panel")
    expect(panel).to_contain_text("尚未启动预案")
    panel.get_by_test_id("plan-select").select_option("flood")
    panel.get_by_test_id("plan-level-new").select_option("II")
    panel.get_by_test_id("plan-activate").click()
    activation = panel.get_by_test_id("plan-activation")
    expect(activation).to_have_count(1)
    expect(activation.get_by_test_id("plan-level")).to_have_text("II级（重大）")
    expect(activation.get_by_test_id("plan-agency")).to_have_count(4)
    expect(activation.locator('[data-agency="meteorology"] h4')).to_contain_text("气象")
    expect(activation.get_by_test_id("plan-conference")).to_have_count(1)
    page.screenshot(path=str(artifacts_dir / "plans_activated.png"), full_page=True)

    # the meteorology desk: only its own tasks, and it acknowledges one
    desk, desk_errors = open_console(browser, server, "meteo_desk")
    desk.locator(f'#queue li[data-incident-id="{iid}"]').click()
    dpanel = desk.get_by_test_id("plan-panel")
    expect(dpanel.get_by_test_id("plan-desk")).to_contain_text("气象")
    expect(dpanel.get_by_test_id("plan-agency")).to_have_count(1)
    expect(dpanel.get_by_test_id("plan-activate")).to_have_count(0)
    first = dpanel.get_by_test_id("plan-task").first
    first.get_by_test_id("task-acknowledged").click()
    expect(dpanel.get_by_test_id("plan-task").first.get_by_test_id("task-status")).to_have_text("已签收")
    desk.screenshot(path=str(artifacts_dir / "plans_meteo_desk.png"), full_page=True)
    # ... and the dispatcher's panel follows (plan.task_updated)
    expect(activation.locator('[data-agency="meteorology"] [data-testid=plan-task]').first
           .get_by_test_id("task-status")).to_have_text("已签收", timeout=10_000)

    # raise the level to I: seven agencies, withdrawn tasks shown as such
    activation.get_by_test_id("plan-level-select").select_option("I")
    activation.get_by_test_id("plan-change-level").click()
    expect(panel.get_by_test_id("plan-activation").get_by_test_id("plan-level")).to_have_text("I级（特别重大）")
    expect(panel.get_by_test_id("plan-agency")).to_have_count(7)
    expect(panel.locator('[data-testid=plan-task][data-status="cancelled"]').first).to_contain_text("已撤销")
    page.screenshot(path=str(artifacts_dir / "plans_level_I.png"), full_page=True)
    assert errors == [] and desk_errors == [], (errors, desk_errors)
    desk.context.close()
    page.context.close()


def test_panel_in_english(browser: Browser, server: RunningServer, api: httpx.Client) -> None:
    inc = api.post("/api/incidents", json={"category": "earthquake", "subtype": "destructive", "priority": 1,
                                           **LUODING})
    iid = inc.json()["id"]
    api.post(f"/api/incidents/{iid}/plans", json={"plan_key": "earthquake", "level": "III"}).raise_for_status()
    page, errors = open_console(browser, server, "dispatcher", lang="en")
    page.locator(f'#queue li[data-incident-id="{iid}"]').click()
    panel = page.get_by_test_id("plan-panel")
    expect(panel.get_by_test_id("plan-level")).to_have_text("Level III (major)")
    expect(panel.locator('[data-agency="earthquake"] h4')).to_contain_text("Earthquake agency")
    expect(panel.get_by_test_id("task-acknowledged").first).to_have_text("Acknowledge")
    assert errors == [], errors
    page.context.close()


def test_admins_plan_library(browser: Browser, server: RunningServer, artifacts_dir: Path) -> None:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/plans")
    sign_in(page, "admin", server.passwords["admin"])
    expect(page.get_by_test_id("plans-title")).to_have_text("预案库")
    expect(page.locator('[data-testid=plan-version][data-status="approved"]')).to_have_count(5)
    # a bad document is refused with the field named
    page.get_by_test_id("plan-text").fill('key = "x"\nname = "x"\nhazards = ["volcano"]\n')
    page.get_by_test_id("plan-submit").click()
    expect(page.get_by_test_id("plan-msg")).to_contain_text("hazards[0]")
    page.screenshot(path=str(artifacts_dir / "plans_library.png"), full_page=True)
    assert errors == [], errors
    context.close()
