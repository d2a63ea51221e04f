"""The warnings page in headless Chromium (real server, real PostgreSQL, the MCU in the same process):
a dispatcher drafts a warning for 云城区 on the form and submits it; the leader approves it on the
page; the warning's area is drawn on the page's map, on the dispatch map and on the leaders' view;
the CAP XML link downloads a valid document; the delivery to the county's meeting room is listed;
the page speaks English when asked. Screenshots go to test-artifacts/."""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from dispatch.exchange.cap import validate_cap
from tests.browser import open_page as browser_page
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser
VIEW = {"width": 1600, "height": 1000}


open_page = functools.partial(browser_page, viewport=VIEW)


def test_draft_approve_map_and_download(browser: Browser, server: RunningServer, tmp_path: Path,
                                        artifacts_dir: Path) -> None:
    page, errors = open_page(browser, server, "dispatcher", "/warnings")
    expect(page.get_by_test_id("warnings-page")).to_be_visible()
    form = page.get_by_test_id("draft-form")
    form.locator("input[name=headline]").fill("云城区暴雨橙色预警")
    form.locator("textarea[name=description]").fill("未来6小时云城区将出现暴雨。")
    form.locator("select[name=severity]").select_option("Severe")
    # no area chosen: refused with the field named, nothing stored
    page.get_by_test_id("save-draft").click()
    expect(page.get_by_test_id("draft-error")).to_contain_text("areas")
    page.get_by_test_id("area-445302").check()
    page.get_by_test_id("save-draft").click()
    card = page.locator("[data-testid^=warning-W]").first
    expect(card).to_have_attribute("data-state", "draft")
    wid = (card.get_attribute("data-testid") or "").removeprefix("warning-")
    expect(page.get_by_test_id(f"approve-{wid}")).to_have_count(0)  # a dispatcher has no approve button
    page.get_by_test_id(f"submit-{wid}").click()
    expect(page.get_by_test_id(f"state-{wid}")).to_have_text("待审批")
    shutil.copy(_shot(page, "warnings-dispatcher.png", tmp_path), artifacts_dir / "warnings-dispatcher.png")

    leader, lerrors = open_page(browser, server, "leader", "/warnings")
    leader.get_by_test_id(f"approve-{wid}").click()
    expect(leader.get_by_test_id(f"state-{wid}")).to_have_text("生效中")
    expect(leader.locator("#warning-map path.warning-area").first).to_be_attached(timeout=15000)
    expect(leader.get_by_test_id("cap-Alert")).to_be_visible()
    expect(leader.get_by_test_id("delivery-yuncheng-room")).to_be_visible(timeout=20000)
    href = leader.get_by_test_id("cap-Alert").get_attribute("href")
    assert href
    xml = leader.request.get(server.url + href)
    assert xml.status == 200 and validate_cap(xml.text()) == []
    assert "<geocode>" in xml.text() and "445302" in xml.text() and "<polygon>" in xml.text()
    shutil.copy(_shot(leader, "warnings-leader.png", tmp_path), artifacts_dir / "warnings-leader.png")

    # the area on the dispatch map and on the leaders' view
    page.goto(server.url + "/dispatch")
    expect(page.locator("path.warning-area").first).to_be_attached(timeout=20000)
    leader.goto(server.url + "/command")
    expect(leader.locator("path.warning-area").first).to_be_attached(timeout=20000)
    shutil.copy(_shot(leader, "warnings-command.png", tmp_path), artifacts_dir / "warnings-command.png")

    # English
    leader.goto(server.url + "/warnings?lang=en")
    expect(leader.get_by_test_id(f"state-{wid}")).to_have_text("In force")
    assert errors == [] and lerrors == [], (errors, lerrors)


def _shot(page: Page, name: str, tmp_path: Path) -> Path:
    page.screenshot(path=str(tmp_path / name))
    return tmp_path / name


def test_other_roles_get_403(browser: Browser, server: RunningServer) -> None:
    page, _ = open_page(browser, server, "operator", "/warnings")
    response = page.goto(server.url + "/warnings")
    assert response is not None and response.status == 403
    r = page.request.get(server.url + "/api/warnings")
    assert r.status == 403
