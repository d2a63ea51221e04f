"""Training mode never swallows a real emergency call, seen in headless Chromium (issue 14 item 1).

The system starts as `make run` does: dispatch in training mode (演练), the drill running. The
call-taker signs on as a training position; SIPp calls 120 from the network. The real call is not
offered to the trainee: it waits, and the alarm shows on the desk (zh-CN) and on the dispatch map
(English). The call-taker leaves training; the real call rings, is answered, and its incident is a
real one (JQ…), listed on the dispatch console (still in training mode) flagged real; the desk's
real figures count it. Screenshots in test-artifacts/.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import sign_in
from tests.conftest import RunningServer
from tests.dispatch.calltaking_samples import free_port, sipp_call

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__TCP_PORT": str(SIP_PORT),
              "CC_DISPATCH__TRAINING": "true"}  # as `make run` starts: training mode on


def sipp(scenario: str, service: str) -> subprocess.Popen[str]:
    return sipp_call(scenario, SIP_PORT, service, timeout="120s")


def open_page(browser: Browser, server: RunningServer, path: str, user: str) -> Page:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1600, "height": 950})
    page = context.new_page()
    page.goto(server.url + path)
    sign_in(page, user, server.passwords[user])
    expect(page.locator("#conn.up")).to_have_count(1, timeout=15_000)
    return page


def real_call(queue: dict[str, Any], number: str) -> dict[str, Any] | None:
    return next((c for c in queue["calls"] + queue["active"] if c["number"] == number), None)


def test_real_call_in_training_mode_waits_with_alarm_then_is_a_real_incident(
        browser: Browser, server: RunningServer, artifacts_dir: Path) -> None:
    taker = server.login("calltaker")
    assert server.login("dispatcher").get("/api/dispatch/state").json()["training"] is True
    desk = open_page(browser, server, "/desk", "calltaker")
    errors: list[str] = []
    desk.on("pageerror", lambda e: errors.append(str(e)))
    dispatch = open_page(browser, server, "/dispatch?lang=en", "dispatcher")
    expect(dispatch.get_by_test_id("training-banner")).to_be_visible()
    expect(dispatch.get_by_test_id("real-alarm")).to_be_hidden()

    toggle = desk.get_by_test_id("btn-training-position")
    toggle.click()  # signs on as a training position
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(desk.get_by_test_id("position-state")).not_to_have_text("未签入")
    alarm = desk.get_by_test_id("training-alarm")
    expect(alarm).to_be_hidden()

    caller = sipp("emergency_wait.xml", "120")
    try:
        expect(alarm).to_be_visible(timeout=15_000)
        expect(alarm).to_contain_text("1 个真实报警正在排队")
        expect(alarm).to_contain_text("演练模式")
        board = dispatch.get_by_test_id("real-alarm")
        expect(board).to_be_visible(timeout=10_000)
        expect(board).to_contain_text("1 real emergency call(s) waiting at the desk")
        desk.screenshot(path=str(artifacts_dir / "desk-training-alarm.png"))
        dispatch.screenshot(path=str(artifacts_dir / "dispatch-training-alarm-en.png"))
        call = real_call(taker.get("/api/desk/state").json()["queue"], "13900000001")
        assert call is not None and call["training"] is False and call["state"] == "queued", call
        assert taker.get("/api/desk/dashboard").json()["training_alarm"]["active"] is True
        # (the drill may ring a training call at the trainee meanwhile: flagged, and never the real one)
        if desk.get_by_test_id("ring").is_visible():
            expect(desk.get_by_test_id("ring-text")).to_contain_text("【演练】")

        toggle.click()  # leave training: the real call rings here now
        expect(toggle).to_have_attribute("aria-pressed", "false")
        expect(alarm).to_be_hidden(timeout=10_000)
        expect(board).to_be_hidden(timeout=10_000)
        ring = desk.get_by_test_id("ring")
        expect(ring).to_be_visible(timeout=10_000)
        expect(desk.get_by_test_id("ring-text")).to_contain_text("13900000001")
        expect(desk.get_by_test_id("ring-text")).not_to_contain_text("演练")
        desk.get_by_test_id("btn-answer").click()
        expect(desk.get_by_test_id("caller-number")).to_have_text("13900000001")
        desk.get_by_test_id("place-search").fill("罗城")
        desk.get_by_test_id("place-option").first.click()
        expect(desk.get_by_test_id("locations")).to_contain_text("接警员输入")
        desk.get_by_test_id("f-priority").select_option("1")
        desk.get_by_test_id("btn-create").click()
        expect(desk.get_by_test_id("form-msg")).to_contain_text("已建立警情")
        incident_id = desk.get_by_test_id("form-msg").inner_text().split()[-1]
        assert incident_id.startswith("JQ"), incident_id  # a real incident, not DRILL…

        # The dispatch console is still in training mode, and shows the real incident, flagged real.
        item = dispatch.locator(f"#queue li[data-incident-id='{incident_id}']")
        expect(item).to_be_visible(timeout=10_000)
        expect(item.get_by_test_id("tag-real")).to_have_text("REAL")
        expect(board).to_contain_text(incident_id)
        dispatch.screenshot(path=str(artifacts_dir / "dispatch-training-real-incident-en.png"))
        recs = server.login("dispatcher").get(f"/api/incidents/{incident_id}/recommendations").json()
        assert recs["recommended"] and not any(u.startswith("DRILL") for u in recs["recommended"]), recs

        desk.get_by_test_id("btn-hangup").click()
        expect(desk.get_by_test_id("call-panel")).to_contain_text("当前无通话")
        out, _ = caller.communicate(timeout=30)
        assert caller.returncode == 0, out[-3000:]
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    deadline = time.monotonic() + 10
    while taker.get("/api/desk/dashboard").json()["answered"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    dash = taker.get("/api/desk/dashboard").json()
    assert (dash["offered"], dash["answered"], dash["abandoned"]) == (1, 1, 0), dash
    expect(desk.get_by_test_id("dash-answered")).to_contain_text("1")
    expect(desk.get_by_test_id("dash-offered")).to_contain_text("1")
    desk.screenshot(path=str(artifacts_dir / "desk-training-real-figures.png"))
    assert errors == [], errors
    desk.context.close()
    dispatch.context.close()
    taker.close()
