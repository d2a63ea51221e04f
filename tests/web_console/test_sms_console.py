"""The SMS console page /sms in headless Chromium against a running system with real Kannel +
fakesmsc: a message sent from the page shows pending, then delivered with its report time; with the
gateway stopped a message shows pending with Kannel's error, survives a restart of the app and is
delivered once the gateway is back (the restarted app starts Kannel again)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, sign_in
from tests.conftest import RunningServer, private_tmp_dir, run_async, start_server, stop_server, with_database
from tests.sms.conftest import require_kannel

SERVER_ENV = {"CC_SMS__ENABLED": "true", "CC_SMS__THROUGHPUT": "20"}
DOWN_ENV = {**SERVER_ENV, "CC_SMS__RETRY_BASE_SECONDS": "0.5", "CC_SMS__RETRY_MAX": "50"}

# every status the page showed for a message row, in order (a MutationObserver on the outbox)
WATCH = """() => { window.smsSeen = {}; const note = () => document.querySelectorAll('#outbox tr.msg').forEach((r) => {
  const s = (window.smsSeen[r.dataset.id] ||= []); if (s[s.length - 1] !== r.dataset.status) s.push(r.dataset.status); });
  new MutationObserver(note).observe(document.getElementById('outbox'), {childList: true, subtree: true, attributes: true});
  note(); }"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def open_console(browser: Browser, server: RunningServer, user: str, password: str) -> Page:
    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(server.url + "/sms")
    sign_in(page, user, password)
    expect(page).to_have_url(server.url + "/sms")
    expect(page.get_by_test_id("live")).to_have_attribute("data-up", "true", timeout=10000)
    page.evaluate(WATCH)
    return page


def send_from_page(page: Page, number: str, text: str) -> int:
    page.get_by_test_id("send-numbers").fill(number)
    page.get_by_test_id("send-text").fill(text)
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("send-result")).to_contain_text("#", timeout=10000)
    return int(page.get_by_test_id("send-result").inner_text().split("#")[1])


def test_a_message_shows_pending_then_delivered(browser: Browser, server: RunningServer, artifacts_dir: Path) -> None:
    require_kannel()
    page = open_console(browser, server, "dispatcher", server.passwords["dispatcher"])
    try:
        expect(page.get_by_test_id("gateway-state")).to_have_attribute("data-up", "true", timeout=15000)
        expect(page.get_by_test_id("gateway-state")).to_have_text("正常")
        mid = send_from_page(page, "13800009001", "【情况通报】西江水位回落，请各单位继续值守。")
        expect(page.get_by_test_id(f"msg-{mid}")).to_have_attribute("data-status", "delivered", timeout=30000)
        seen = page.evaluate(f"window.smsSeen['{mid}']")
        assert seen[0] == "queued" and seen[-1] == "delivered", seen  # pending first, then delivered
        expect(page.get_by_test_id(f"source-{mid}")).to_have_text("人工发送")
        page.get_by_test_id(f"msg-{mid}").click()
        rec = page.get_by_test_id("recipient-13800009001")
        expect(rec).to_have_attribute("data-status", "delivered")
        assert page.get_by_test_id("reported-13800009001").inner_text().strip()  # the delivery report's time
        # filters: a delivered manual message is under 已送达 and 人工发送, not under 失败 or 预警
        page.get_by_test_id("filter-status").select_option("failed")
        expect(page.get_by_test_id(f"msg-{mid}")).to_have_count(0)
        page.get_by_test_id("filter-status").select_option("delivered")
        expect(page.get_by_test_id(f"msg-{mid}")).to_have_count(1)
        page.get_by_test_id("filter-source").select_option("warning")
        expect(page.get_by_test_id(f"msg-{mid}")).to_have_count(0)
        page.get_by_test_id("filter-source").select_option("manual")
        expect(page.get_by_test_id(f"msg-{mid}")).to_have_count(1)
        page.screenshot(path=str(artifacts_dir / "sms-console.png"), full_page=True)
    finally:
        page.context.close()


def test_english_and_read_only_for_the_leader(browser: Browser, server: RunningServer) -> None:
    page = open_console(browser, server, "leader", server.passwords["leader"])
    try:
        expect(page.get_by_test_id("send-form")).to_have_count(0)  # leaders read
        page.goto(server.url + "/sms?lang=en")
        expect(page.get_by_role("heading", name="Outbox")).to_be_visible()
        expect(page.get_by_test_id("gateway-state")).to_have_text("up", timeout=15000)
    finally:
        page.context.close()


def kannel_pids(server: RunningServer) -> list[int]:
    """bearerbox and smsbox: children of the app process this test started."""
    pids = []
    for task in Path(f"/proc/{server.process.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            if comm in ("bearerbox", "smsbox"):
                pids.append(int(child))
    return pids


@pytest.fixture
def own_database(pg_url: str) -> Iterator[tuple[str, Path]]:
    name = "smscons_" + uuid.uuid4().hex[:10]

    async def create() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_async(create())
    var = private_tmp_dir("cc-var-smsconsole-")
    yield with_database(pg_url, name), var
    shutil.rmtree(var, ignore_errors=True)


def test_gateway_down_pending_survives_restart_then_delivered(browser: Browser, own_database: tuple[str, Path],
                                                              artifacts_dir: Path) -> None:
    require_kannel()
    db_url, var = own_database
    server = start_server(db_url, var, extra_env=DOWN_ENV)
    passwords = dict(server.passwords)
    try:
        page = open_console(browser, server, "dispatcher", passwords["dispatcher"])
        expect(page.get_by_test_id("gateway-state")).to_have_attribute("data-up", "true", timeout=15000)
        pids = kannel_pids(server)
        assert len(pids) == 2, pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        expect(page.get_by_test_id("gateway-state")).to_have_attribute("data-up", "false", timeout=15000)
        mid = send_from_page(page, "13800009002", "【会议通知】今晚八时召开防汛视频会商会。")
        page.get_by_test_id(f"msg-{mid}").click()
        rec = page.get_by_test_id("recipient-13800009002")
        expect(rec).to_have_attribute("data-status", "queued", timeout=10000)
        expect(rec).to_contain_text("Kannel unreachable", timeout=15000)  # retried with the error shown
        expect(page.get_by_test_id(f"msg-{mid}")).to_have_attribute("data-status", "queued")
        expect(page.get_by_test_id("waiting")).to_have_attribute("data-n", "1", timeout=10000)  # our queue holds it
        page.screenshot(path=str(artifacts_dir / "sms-console-gateway-down.png"), full_page=True)
        page.context.close()
        stop_server(server)  # SIGTERM: the app shuts down (Kannel stopped with it)

        server = start_server(db_url, var, extra_env=DOWN_ENV)
        page = open_console(browser, server, "dispatcher", passwords["dispatcher"])
        expect(page.get_by_test_id("gateway-state")).to_have_attribute("data-up", "true", timeout=15000)
        row = page.get_by_test_id(f"msg-{mid}")
        expect(row).to_have_count(1)  # still there after the restart
        expect(row).to_have_attribute("data-status", "delivered", timeout=60000)
        row.click()
        expect(page.get_by_test_id("recipient-13800009002")).to_have_attribute("data-status", "delivered")
        received = (var / "sms" / "fakesmsc.log").read_text(errors="replace")
        assert "13800009002" in received
        page.context.close()
    finally:
        stop_server(server)


def test_the_scheduling_form_sends_the_meeting_notice(browser: Browser, server: RunningServer) -> None:
    """The conference console's scheduling form: the SMS notice box follows the chosen rooms' contacts;
    scheduling sends the notice (name and Beijing time) to the rooms' contacts, delivered by fakesmsc."""
    require_kannel()
    page = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai").new_page()
    try:
        page.goto(server.url + "/conference")
        sign_in(page, "chair", server.passwords["chair"])
        page.get_by_test_id("create-details").locator("summary").click()
        page.get_by_test_id("create-name").fill("罗定防汛调度会")
        page.fill("input[name=starts_at]", "2030-06-01T09:30")
        page.fill("input[name=ends_at]", "2030-06-01T10:30")
        page.select_option("select[name=sites]", ["yuncheng-room"])  # no contacts: off
        expect(page.get_by_test_id("create-sms-notice")).not_to_be_checked()
        page.select_option("select[name=sites]", ["445381-05-room", "yuncheng-room"])  # 罗镜镇 has contacts: on
        expect(page.get_by_test_id("create-sms-notice")).to_be_checked()
        page.uncheck("input[name=start_now]")
        page.get_by_test_id("create-submit").click()
        with contextlib.closing(server.login("dispatcher")) as c:
            deadline = time.monotonic() + 30
            found: dict[str, object] = {}
            while time.monotonic() < deadline and not found:
                for m in c.get("/api/sms/messages?source=meeting").json()["messages"]:
                    if "罗定防汛调度会" in m["text"] and m["recipients"] and m["delivered"] == m["recipients"]:
                        found = m
                time.sleep(0.3)
            assert found, c.get("/api/sms/messages?source=meeting").json()
            assert "6月1日 09:30–10:30" in str(found["text"]) and str(found["text"]).startswith("【会议通知】")
            numbers = {r["number"] for r in c.get(f"/api/sms/messages/{found['id']}").json()["recipients"]}
            assert "13800005101" in numbers, numbers  # 罗镜镇视频会议室's contact
    finally:
        page.context.close()
