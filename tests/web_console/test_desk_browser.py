"""The desk flow in headless Chromium, from ring to incident, with screenshots in test-artifacts/:
SIPp calls 120 with a PIDF-LO circle in Luoding; the desk rings, shows the caller, the location
with its source, uncertainty circle and county/township, a possible duplicate; one click creates
the incident (it reaches the dispatchers' console); hang-up with disposition. A second caller
without location gets a place typed from the gazetteer and is merged into the earlier incident nearby."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import open_page, sign_in
from tests.conftest import RunningServer
from tests.dispatch.calltaking_samples import finish_sipp, free_port, sipp_call

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__TCP_PORT": str(SIP_PORT)}


def sipp(scenario: str, service: str) -> subprocess.Popen[str]:
    return sipp_call(scenario, SIP_PORT, service)


finish = finish_sipp


@pytest.fixture
def page(browser: Browser, server: RunningServer) -> Iterator[Page]:
    p, errors = open_page(browser, server, "calltaker", "/desk")
    expect(p.get_by_test_id("console-title")).to_have_text("接警台")
    expect(p.locator("#conn.up")).to_have_count(1, timeout=10_000)
    yield p
    assert errors == [], errors
    p.context.close()


def test_ring_to_incident(page: Page, server: RunningServer, artifacts_dir: Path) -> None:
    dispatcher = server.login("dispatcher")
    earlier = dispatcher.post("/api/incidents", json={"category": "medical", "priority": 2, "lon": 111.5741,
                                                      "lat": 22.7672, "description": "早先报警"})
    assert earlier.status_code in (200, 201), earlier.text
    earlier_id = earlier.json()["id"]

    page.get_by_test_id("btn-available").click()
    expect(page.get_by_test_id("position-state")).to_have_text("空闲")
    caller = sipp("emergency_pidf.xml", "120")
    ring = page.get_by_test_id("ring")
    expect(ring).to_be_visible(timeout=10_000)
    expect(page.get_by_test_id("ring-text")).to_contain_text("13800000001")
    expect(page.get_by_test_id("ring-text")).to_contain_text("医疗急救")
    page.screenshot(path=str(artifacts_dir / "desk-1-ring.png"))

    page.get_by_test_id("btn-answer").click()
    expect(ring).to_be_hidden()
    expect(page.get_by_test_id("caller-number")).to_have_text("13800000001")
    expect(page.get_by_test_id("caller-name")).to_have_text("Zhang San")
    expect(page.get_by_test_id("caller-verified")).to_have_text("✓ 网络核实")  # loopback is a trunk peer
    locations = page.get_by_test_id("locations")
    expect(locations).to_contain_text("网络定位（PIDF-LO）")
    expect(locations).to_contain_text("半径 35 m")
    expect(page.get_by_test_id("location-area")).to_contain_text("罗定市")
    expect(page.locator("path.uncertainty")).to_have_count(1)  # the uncertainty circle on the map
    expect(page.get_by_test_id("duplicates")).to_contain_text(earlier_id)
    expect(page.get_by_test_id("f-category")).to_have_value("medical")
    expect(page.get_by_test_id("position-state")).to_have_text("通话中")
    page.screenshot(path=str(artifacts_dir / "desk-2-answered.png"))

    page.get_by_test_id("f-priority").select_option("1")
    page.get_by_test_id("f-description").fill("老人胸痛，意识清醒")
    page.get_by_test_id("btn-create").click()
    expect(page.get_by_test_id("form-msg")).to_contain_text("已建立警情")
    new_id = page.get_by_test_id("form-msg").inner_text().split()[-1]
    page.screenshot(path=str(artifacts_dir / "desk-3-incident.png"))
    incidents = {i["id"]: i for i in dispatcher.get("/api/dispatch/state").json()["incidents"]}
    assert incidents[new_id]["county_code"] == 445381 and incidents[new_id]["priority"] == 1
    assert incidents[new_id]["caller"]["number"] == "13800000001"

    expect(page.get_by_test_id("disposition")).to_have_value("incident")
    page.get_by_test_id("btn-hangup").click()
    expect(page.get_by_test_id("call-panel")).to_contain_text("当前无通话")
    finish(caller)
    expect(page.get_by_test_id("position-state")).to_have_text("话后整理")

    # A second caller with no location: the call-taker types a place, then merges into the duplicate.
    page.get_by_test_id("btn-available").click()
    second = sipp("emergency_wait.xml", "120")
    expect(ring).to_be_visible(timeout=10_000)
    page.get_by_test_id("btn-answer").click()
    expect(page.get_by_test_id("locations")).to_contain_text("暂无可用位置")
    page.get_by_test_id("place-search").fill("罗城")
    page.get_by_test_id("place-option").first.click()
    expect(page.get_by_test_id("locations")).to_contain_text("接警员输入")
    expect(page.get_by_test_id("location-area")).to_contain_text("罗定市 罗城街道")
    expect(page.get_by_test_id("duplicates")).to_contain_text(earlier_id)
    page.locator(f"[data-merge='{earlier_id}']").click()
    expect(page.get_by_test_id("form-msg")).to_contain_text(f"已合并到警情 {earlier_id}")
    page.screenshot(path=str(artifacts_dir / "desk-4-merged.png"))
    page.get_by_test_id("btn-hangup").click()
    finish(second)
    merged = dispatcher.get("/api/dispatch/state").json()["incidents"]
    assert len(next(i for i in merged if i["id"] == earlier_id)["calls"]) == 1
    expect(page.get_by_test_id("dash-waiting")).to_contain_text("0")
    dispatcher.close()


def test_desk_needs_the_calltaker_role(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/api/desk/state").status_code == 401
    viewer = server.login("viewer")
    assert viewer.get("/desk").status_code == 403
    assert viewer.post("/api/aml?from=1", content="x", headers={"Content-Type": "text/plain"}).status_code == 403
    viewer.close()


def test_browser_crash_mid_call_requeues_the_caller_at_the_head(browser: Browser, server: RunningServer) -> None:
    def open_desk() -> Page:
        context = browser.new_context(locale="zh-CN")
        p = context.new_page()
        p.goto(server.url + "/desk")
        sign_in(p, "calltaker", server.passwords["calltaker"])
        expect(p.locator("#conn.up")).to_have_count(1, timeout=10_000)
        return p

    first = open_desk()
    first.get_by_test_id("btn-available").click()
    caller = sipp("emergency_wait.xml", "110")
    expect(first.get_by_test_id("ring")).to_be_visible(timeout=10_000)
    first.get_by_test_id("btn-answer").click()
    expect(first.get_by_test_id("caller-number")).to_have_text("13900000001")
    first.context.close()  # the browser dies mid-call: the caller must not be dropped

    api = server.login("calltaker")
    queued = api.get("/api/desk/state").json()["queue"]
    deadline = 50
    while not queued["calls"] and deadline:
        deadline -= 1
        time.sleep(0.1)
        queued = api.get("/api/desk/state").json()["queue"]
    assert queued["calls"][0]["queue_place"] == 1 and queued["calls"][0]["flags"], queued
    second = open_desk()
    second.get_by_test_id("btn-available").click()
    expect(second.get_by_test_id("ring")).to_be_visible(timeout=10_000)
    second.get_by_test_id("btn-answer").click()
    expect(second.get_by_test_id("call-flags")).to_have_text("席位掉线后重新排队")
    # History: this number called before (the merged call of test_ring_to_incident); its recording plays.
    expect(second.get_by_test_id("history")).to_contain_text("duplicate")
    second.get_by_test_id("btn-play").first.click()
    expect(second.locator("#history audio")).to_have_count(1)
    admin = server.login("admin")
    until = time.monotonic() + 5
    while not admin.get("/api/audit", params={"action": "call.recording_view"}).json() and time.monotonic() < until:
        time.sleep(0.1)
    viewed = admin.get("/api/audit", params={"action": "call.recording_view"}).json()
    assert viewed and viewed[0]["actor"] == "calltaker" and viewed[0]["outcome"] == "ok"
    admin.close()
    second.get_by_test_id("btn-hangup").click()
    finish(caller)
    second.context.close()
    api.close()


def test_english_desk_names_categories_in_english(page: Page, server: RunningServer) -> None:
    page.goto(server.url + "/desk?lang=en")
    form = page.locator("#incident-form")
    expect(form.locator("select[name=category] option[value=fire]")).to_have_text("Fire")
    form.locator("select[name=category]").select_option("medical")
    expect(form.locator("select[name=subtype] option[value=stroke]")).to_have_text("Stroke")
    expect(form.locator("select[name=priority] option[value='1']")).to_have_text("1 Critical")
    page.goto(server.url + "/desk?lang=zh-CN")  # the language cookie back to the default
    expect(page.get_by_test_id("console-title")).to_have_text("接警台")
