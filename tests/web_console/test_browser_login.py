"""Headless Chromium: every demo role logs in and sees its landing page; wrong password; session expiry."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, sign_in
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

# A short idle timeout so the expiry test does not wait half an hour.
SERVER_ENV = {"CC_HTTP__SESSION_IDLE_SECONDS": "4"}

# What each role's landing page must offer (console keys), and must not.
LANDING = {
    "admin": {"conference", "watch", "desk", "dispatch", "inspect", "command", "warnings", "sms", "users", "audit",
              "docs"},
    "chair": {"conference", "watch", "dispatch", "command", "warnings"},  # dispatch: read-only (issue 19)
    "operator": {"conference", "watch"},
    "calltaker": {"desk"},
    "dispatcher": {"dispatch", "warnings", "sms"},  # warnings: drafts them; sms: the SMS console (issue 20)
    "inspector": {"inspect"},
    "viewer": {"watch"},
    "leader": {"command", "dispatch", "warnings", "sms"},  # issue 19: the command view, the dispatch map read-only; approves warnings; reads /sms
    "responder": {"field"},  # issue 20: the field phone page
}
for _role in ("admin", "chair", "operator", "viewer"):  # issue 18: replaying recorded conferences
    LANDING[_role] = LANDING[_role] | {"replay"}
LANDING["admin"] = LANDING["admin"] | {"field", "crews"}  # issue 20: admins open every console
ROLE_NAMES = {"admin": "系统管理员", "chair": "会议主席", "operator": "会控操作员", "calltaker": "接警员",
              "dispatcher": "调度员", "inspector": "纪检监察员", "viewer": "观察员",
              "leader": "领导", "responder": "单兵"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def log_in(page: Page, server: RunningServer, username: str, password: str) -> None:
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login?next=/")
    sign_in(page, username, password)


@pytest.mark.parametrize("role", list(LANDING))
def test_each_role_sees_its_landing_page(browser: Browser, server: RunningServer, artifacts_dir: Path,
                                         role: str) -> None:
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    try:
        log_in(page, server, role, server.passwords[role])
        expect(page).to_have_url(server.url + "/")
        expect(page.get_by_test_id("role")).to_have_text(ROLE_NAMES[role])
        consoles = set(page.locator("[data-console]").evaluate_all("els => els.map(e => e.dataset.console)"))
        assert consoles == LANDING[role]
        # the live events stream connects (the hello event appears in the list)
        expect(page.locator("#events li[data-topic='system.hello']")).to_have_count(1, timeout=5000)
        page.screenshot(path=str(artifacts_dir / f"landing-{role}.png"), full_page=True)
        # a console the role may not open shows the forbidden page
        forbidden = "/admin/users" if role != "admin" else None
        if forbidden:
            response = page.goto(server.url + forbidden)
            assert response is not None and response.status == 403
            expect(page.get_by_test_id("error")).to_have_text("无权访问该页面")
    finally:
        context.close()


def test_wrong_password_shows_an_error_and_english_switch(browser: Browser, server: RunningServer,
                                                         artifacts_dir: Path) -> None:
    page = browser.new_page()
    try:
        log_in(page, server, "dispatcher", "definitely-wrong-1")
        expect(page.get_by_test_id("login-error")).to_have_text("用户名或密码错误")
        page.screenshot(path=str(artifacts_dir / "login-wrong-password.png"))
        page.get_by_test_id("lang-switch").click()
        expect(page.locator("h1")).to_have_text("Sign in")
        sign_in(page, "dispatcher", server.passwords["dispatcher"])
        expect(page.get_by_test_id("role")).to_have_text("Dispatcher")  # the language choice sticks
        page.screenshot(path=str(artifacts_dir / "landing-dispatcher-en.png"))
    finally:
        page.close()


def test_session_expires_after_idle_time(browser: Browser, server: RunningServer, artifacts_dir: Path) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        log_in(page, server, "inspector", server.passwords["inspector"])
        expect(page.get_by_test_id("role")).to_be_visible()
        page.goto(server.url + "/inspect")
        expect(page.get_by_test_id("console-title")).to_be_visible()
        page.close()  # stop the events websocket, which is activity of its own
        time.sleep(5)  # idle timeout is 4 s in this module's server
        page = context.new_page()
        page.goto(server.url + "/inspect")
        expect(page).to_have_url(server.url + "/login?next=/inspect&expired=1")
        expect(page.get_by_test_id("login-error")).to_have_text("会话已过期，请重新登录")
        page.screenshot(path=str(artifacts_dir / "session-expired.png"))
    finally:
        context.close()


def test_admin_creates_a_user_in_the_browser(browser: Browser, server: RunningServer, artifacts_dir: Path) -> None:
    page = browser.new_page()
    try:
        log_in(page, server, "admin", server.passwords["admin"])
        page.goto(server.url + "/admin/users")
        form = page.get_by_test_id("create-user")
        form.locator("input[name=username]").fill("wang.fang")
        form.locator("input[name=display_name]").fill("王芳")
        form.locator("input[name=password]").fill("Township-42x")
        form.locator("select[name=role]").select_option("operator")
        form.locator("button[type=submit]").click()
        expect(page.locator("tr[data-username='wang.fang']")).to_contain_text("会控操作员")
        # a duplicate is refused with a clear message and nothing changes
        form = page.get_by_test_id("create-user")
        form.locator("input[name=username]").fill("wang.fang")
        form.locator("input[name=password]").fill("Township-42x")
        form.locator("button[type=submit]").click()
        expect(page.get_by_test_id("users-error")).to_contain_text("already exists")
        expect(page.locator("tr[data-username='wang.fang']")).to_have_count(1)
        page.screenshot(path=str(artifacts_dir / "admin-users.png"), full_page=True)
    finally:
        page.close()
