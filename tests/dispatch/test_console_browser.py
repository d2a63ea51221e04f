"""The dispatch map console in headless Chromium: live markers, click-to-dispatch, command conference,
training banner. Screenshots go to test-artifacts/."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from dispatch.model import UNIT_STATUS_COLOURS, UnitStatus
from tests.browser import open_page, sign_in
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

LUODING = {"lon": 111.5700, "lat": 22.7690}


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    c = server.login("dispatcher")
    yield c
    c.close()


@pytest.fixture
def page(browser: Browser, server: RunningServer) -> Iterator[Page]:
    p, errors = open_page(browser, server, "dispatcher", "/dispatch", viewport={"width": 1500, "height": 950})
    expect(p.get_by_test_id("console-title")).to_have_text("调度指挥地图")
    expect(p.locator("#conn.up")).to_have_count(1, timeout=10_000)  # events websocket open
    yield p
    assert errors == [], errors
    p.context.close()


def rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def test_new_incident_marker_appears_within_a_second(page: Page, api: httpx.Client, artifacts_dir: Path) -> None:
    expect(page.locator(".unit-marker")).to_have_count(56)  # the plan's real units, at their stations
    started = time.monotonic()
    r = api.post("/api/incidents", json={"category": "fire", "subtype": "residential", "priority": 1, **LUODING})
    assert r.status_code == 201
    inc = r.json()
    page.wait_for_selector(f".inc-marker[data-incident-id='{inc['id']}']", timeout=5000)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"marker appeared after {elapsed:.2f} s"
    expect(page.locator(f"#queue li[data-incident-id='{inc['id']}']")).to_have_count(1)
    page.screenshot(path=str(artifacts_dir / "dispatch-new-incident.png"))


def test_click_dispatch_turns_the_unit_colour(page: Page, api: httpx.Client, artifacts_dir: Path) -> None:
    inc = api.post("/api/incidents", json={"category": "police", "subtype": "theft", "priority": 2, **LUODING}).json()
    page.click(f"#queue li[data-incident-id='{inc['id']}']")
    expect(page.get_by_test_id("detail-id")).to_have_text(inc["id"])
    unit = "luoding-police-1"
    marker = page.locator(f".unit-marker[data-unit-id='{unit}']")
    assert marker.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(UNIT_STATUS_COLOURS[UnitStatus.AVAILABLE])
    marker.dispatch_event("click")
    page.get_by_test_id("popup-dispatch").click()
    expect(marker).to_have_attribute("data-status", "dispatched", timeout=2000)
    assert marker.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(UNIT_STATUS_COLOURS[UnitStatus.DISPATCHED])
    expect(page.locator(f"#board tr[data-unit-id='{unit}']")).to_have_attribute("data-status", "dispatched")
    assert unit in api.get(f"/api/incidents/{inc['id']}").json()["units"]
    page.screenshot(path=str(artifacts_dir / "dispatch-click-dispatch.png"))
    # change the unit's status on the status board: on scene
    page.locator(f"#board tr[data-unit-id='{unit}'] select").select_option("on_scene")
    expect(marker).to_have_attribute("data-status", "on_scene", timeout=2000)
    assert marker.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(UNIT_STATUS_COLOURS[UnitStatus.ON_SCENE])
    expect(page.get_by_test_id("detail-status")).to_have_text("到场")
    page.get_by_test_id("component-status").first.select_option("under_control")
    expect(page.get_by_test_id("detail-status")).to_have_text("已控制")
    # the same unit again, from the API as another session would: refused with a clear message
    other = api.post("/api/incidents", json={"category": "police", "priority": 3, **LUODING}).json()
    refused = api.post(f"/api/incidents/{other['id']}/dispatch", json={"unit_ids": [unit]})
    assert refused.status_code == 409 and "不能调派" in refused.json()["detail"]


def test_command_conference_button_links_a_conference(page: Page, api: httpx.Client, artifacts_dir: Path,
                                                       browser: Browser, server: RunningServer) -> None:
    # the chair's console (its landing page, with the live event list) is open meanwhile
    chair_context = browser.new_context(locale="zh-CN")
    chair = chair_context.new_page()
    chair.goto(server.url + "/login")
    sign_in(chair, "chair", server.passwords["chair"])
    expect(chair.locator("#events li[data-topic='system.hello']")).to_have_count(1, timeout=5000)
    inc = api.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1,
                                           **LUODING}).json()
    page.click(f"#queue li[data-incident-id='{inc['id']}']")
    expect(page.get_by_test_id("detail-id")).to_have_text(inc["id"])
    page.get_by_test_id("start-conference").click()
    link = page.get_by_test_id("conference-link")
    expect(link).to_have_count(1, timeout=5000)
    requested = chair.locator("#events li[data-topic='conference.command_requested']")
    expect(requested).to_have_count(1, timeout=5000)
    expect(requested).to_contain_text("luoding-room")
    chair.screenshot(path=str(artifacts_dir / "dispatch-conference-on-chair-console.png"))
    chair_context.close()
    conferences = api.get(f"/api/incidents/{inc['id']}").json()["conferences"]
    assert len(conferences) == 1 and "luoding-room" in conferences[0]["rooms"]
    expect(link.locator("a")).to_have_attribute("href", f"/join/{conferences[0]['conference_id']}")
    page.screenshot(path=str(artifacts_dir / "dispatch-command-conference.png"))
    report = page.context.new_page()
    report.goto(page.url.replace("/dispatch", f"/dispatch/incidents/{inc['id']}/report"))
    expect(report.get_by_test_id("report-timeline")).to_contain_text("created")
    report.frame_locator("[data-testid=report-map]").locator(".leaflet-control-layers").wait_for(timeout=10_000)
    report.screenshot(path=str(artifacts_dir / "dispatch-situation-report.png"), full_page=True)


def test_draw_warning_polygon_issues_cap(page: Page, artifacts_dir: Path) -> None:
    page.get_by_test_id("btn-draw-warning").click()
    box = page.locator("#map").bounding_box()
    assert box is not None
    for dx, dy in ((0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)):
        page.mouse.click(box["x"] + box["width"] * dx, box["y"] + box["height"] * dy)
    page.get_by_test_id("btn-draw-warning").click()  # finish
    page.get_by_test_id("cap-issue").click()
    expect(page.get_by_test_id("cap-identifier")).to_have_count(1, timeout=5000)
    page.screenshot(path=str(artifacts_dir / "dispatch-cap-issued.png"))


def test_training_mode_is_marked(page: Page, api: httpx.Client, artifacts_dir: Path) -> None:
    expect(page.get_by_test_id("training-banner")).to_be_hidden()
    try:
        assert api.post("/api/dispatch/training", json={"enabled": True}).status_code == 200
        # every console reloads into training mode
        expect(page.get_by_test_id("training-banner")).to_be_visible(timeout=5000)
        expect(page.locator(".unit-marker[data-unit-id^='DRILL-']").first).to_be_attached(timeout=5000)
        page.screenshot(path=str(artifacts_dir / "dispatch-training.png"))
    finally:
        api.post("/api/dispatch/training", json={"enabled": False})
    expect(page.get_by_test_id("training-banner")).to_be_hidden(timeout=5000)


def test_english_console(page: Page, api: httpx.Client, server: RunningServer) -> None:
    inc = api.post("/api/incidents", json={"category": "medical", "subtype": "stroke", "priority": 2, **LUODING}).json()
    page.goto(server.url + "/dispatch?lang=en")
    expect(page.get_by_test_id("console-title")).to_have_text("Dispatch map")
    page.click(f"#queue li[data-incident-id='{inc['id']}']")
    expect(page.get_by_test_id("dispatch-all")).to_have_text("Dispatch all recommended")
    expect(page.get_by_test_id("start-conference")).to_have_text("Start command conference")
    # The model's zh-CN names are shown in English too: category, subtype, priority, status, unit types.
    queue_item = page.locator(f"#queue li[data-incident-id='{inc['id']}']")
    expect(queue_item).to_contain_text("Medical emergency/Stroke")
    expect(queue_item.get_by_test_id("queue-status")).to_have_text("New")
    expect(page.locator("#legend")).to_contain_text("Available")
    assert "医疗急救" not in queue_item.inner_text() and "新警情" not in queue_item.inner_text()
    page.goto(server.url + "/dispatch?lang=zh-CN")  # the language cookie back to the default
    expect(page.get_by_test_id("console-title")).to_have_text("调度指挥地图")
