"""The administrators' crew-binding screen (/admin/crews, issue 20) in headless Chromium against a
running server: which responder login is the crew of which unit. The demo's binding is listed; a new
responder login is bound to 罗定消02 through the form (the row in ``unit_crew_logins``, the audit row
``field.crew_bind``, and the field API now answers that login with its unit), then unbound (row gone,
``field.crew_unbind`` audited). A form post for a login that is not a responder, or an unknown unit,
is refused with a clear message and changes nothing. English is selectable."""
from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from playwright.sync_api import Browser, expect

from tests.browser import open_page
from tests.conftest import RunningServer, new_database, private_tmp_dir, run_async, start_server, stop_server

pytestmark = pytest.mark.browser
UNIT, OTHER = "luoding-fire-1", "luoding-fire-2"


@pytest.fixture(scope="module")
def server(pg_url: str) -> Iterator[RunningServer]:
    """The shared fixture's server, with more time to start (the machine is shared and loaded)."""
    var = private_tmp_dir("cc-var-")
    running = start_server(new_database(pg_url, "m_"), var, timeout=180)
    yield running
    stop_server(running)
    shutil.rmtree(var, ignore_errors=True)


def db(server: RunningServer, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.db_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return run_async(go())


def test_admin_binds_and_unbinds_a_crew(browser: Browser, server: RunningServer) -> None:
    admin = server.login("admin")
    name = "crew" + uuid.uuid4().hex[:6]
    assert admin.post("/api/users", json={"username": name, "password": "Str0ngPassw0rd!", "role": "responder",
                                          "display_name": "李班长"}).status_code == 201
    page, errors = open_page(browser, server, "admin", "/admin/crews")
    expect(page.locator("h1")).to_have_text("单兵绑定")
    expect(page.locator("tr[data-username='responder']")).to_have_attribute("data-unit-id", UNIT)
    expect(page.locator("tr[data-username='responder']")).to_contain_text("罗定消01")

    page.get_by_test_id("bind-username").select_option(name)
    page.get_by_test_id("bind-unit").select_option(OTHER)
    page.get_by_test_id("bind-submit").click()
    expect(page.get_by_test_id("crews-notice")).to_have_text(f"已将 {name} 绑定到力量")
    row = page.locator(f"tr[data-username='{name}']")
    expect(row).to_have_attribute("data-unit-id", OTHER)
    expect(row).to_contain_text("罗定消02")
    expect(row).to_contain_text("李班长")
    assert [dict(r) for r in db(server, "SELECT unit_id, bound_by FROM unit_crew_logins WHERE username = $1", name)] == [
        {"unit_id": OTHER, "bound_by": "admin"}]
    audit = db(server, "SELECT actor, detail FROM audit_log WHERE action = 'field.crew_bind' AND target = $1", name)
    assert len(audit) == 1 and audit[0]["actor"] == "admin" and OTHER in str(audit[0]["detail"])
    crew = server.login(name, "Str0ngPassw0rd!")
    assert crew.get("/api/field/state").json()["unit"]["id"] == OTHER

    # refused form posts: a clear message, nothing changes
    before = db(server, "SELECT username, unit_id FROM unit_crew_logins ORDER BY username")
    not_responder = admin.post("/admin/crews", data={"username": "dispatcher", "unit_id": OTHER,
                                                     "csrf_token": admin.headers["X-CSRF-Token"]})
    assert not_responder.status_code == 422 and "不是单兵" in not_responder.text, not_responder.text[:300]
    unknown = admin.post("/admin/crews", data={"username": name, "unit_id": "no-such-unit",
                                               "csrf_token": admin.headers["X-CSRF-Token"]})
    assert unknown.status_code == 404 and "未知力量 no-such-unit" in unknown.text
    assert db(server, "SELECT username, unit_id FROM unit_crew_logins ORDER BY username") == before

    page.get_by_test_id(f"remove-{name}").click()
    expect(page.get_by_test_id("crews-notice")).to_have_text(f"已解除 {name} 的绑定")
    expect(page.locator(f"tr[data-username='{name}']")).to_have_count(0)
    assert db(server, "SELECT 1 FROM unit_crew_logins WHERE username = $1", name) == []
    assert len(db(server, "SELECT 1 FROM audit_log WHERE action = 'field.crew_unbind' AND actor = 'admin' "
                          "AND target = $1", name)) == 1
    assert crew.get("/api/field/state").json() == {"unit": None, "incident": None}

    page.goto(server.url + "/admin/crews?lang=en")
    expect(page.locator("h1")).to_have_text("Crew bindings")
    expect(page.get_by_test_id("bind-submit")).to_have_text("Bind")
    assert errors == [], errors
    crew.close()
    admin.close()
