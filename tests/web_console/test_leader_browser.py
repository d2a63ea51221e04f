"""The leaders' command view (/command) in headless Chromium at 1920×1080 (real server, real
PostgreSQL, the MCU in the same process): a flood plan activated at level II and raised to I shows
at level I with its progress per agency, which follows a desk's acknowledgement live (no reload);
the key figures match the summary; every map layer has its markers; the command conference's
receive-only preview decodes frames with real (non-black) pixels while the dispatcher is in it from
the join page with Chromium's fake camera; the leader takes and revokes the content token there, and
the camera control greys a site without FECC; the page does not scroll; other roles get 403.
Screenshots go to the test's tmp dir (and test-artifacts/)."""
from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import open_page as browser_page
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

LUODING = {"lon": 111.5700, "lat": 22.7690}
WALL = {"width": 1920, "height": 1080}

FRAMES = """async () => {
  const pc = window.ccPreview; if (!pc) return 0;
  let n = 0; (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0; });
  return n;
}"""
# The share of the preview's pixels that are not (nearly) black, read back through a canvas.
LIT = """() => {
  const v = document.querySelector('[data-testid=preview-video]');
  if (!v || !v.videoWidth) return 0;
  const c = document.createElement('canvas'); c.width = 160; c.height = 90;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0, 160, 90);
  const d = g.getImageData(0, 0, 160, 90).data; let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
  return lit / (160 * 90);
}"""


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {r: server.login(r) for r in ("dispatcher", "meteo_desk", "leader")}
    yield out
    for c in out.values():
        c.close()


open_page = functools.partial(browser_page, viewport=WALL)


def shoot(page: Page, name: str, tmp_path: Path, artifacts_dir: Path) -> None:
    page.screenshot(path=str(tmp_path / name))
    shutil.copy(tmp_path / name, artifacts_dir / name)


def test_flood_at_level_one_live_progress_map_and_preview(browser: Browser, server: RunningServer,
                                                          api: dict[str, httpx.Client], tmp_path: Path,
                                                          artifacts_dir: Path) -> None:
    d = api["dispatcher"]
    inc = d.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1, **LUODING})
    assert inc.status_code == 201, inc.text
    iid = inc.json()["id"]
    act = d.post(f"/api/incidents/{iid}/plans", json={"plan_key": "flood", "level": "II", "reason": "雨量 280 毫米"})
    assert act.status_code == 201, act.text
    view: dict[str, Any] = act.json()

    page, errors = open_page(browser, server, "leader", "/command")
    expect(page.locator("#conn.up")).to_have_count(1, timeout=15_000)
    activation = page.locator(f'[data-testid=activation][data-activation="{view["id"]}"]')
    expect(activation).to_have_count(1, timeout=10_000)
    expect(activation).to_have_attribute("data-level", "II")
    expect(activation.get_by_test_id("agency-progress")).to_have_count(len(view["agencies"]))
    # raised to level I while the leader watches: the page follows without a reload
    page.evaluate("() => { window.__notReloaded = true; }")
    up = d.post(f"/api/plan-activations/{view['id']}/level", json={"level": "I", "reason": "死亡 31 人"})
    assert up.status_code == 200, up.text
    raised = up.json()
    open_agencies = {g["agency"]: sum(t["status"] != "cancelled" for t in g["tasks"]) for g in raised["agencies"]}
    open_agencies = {a: n for a, n in open_agencies.items() if n}
    expect(activation).to_have_attribute("data-level", "I", timeout=10_000)
    expect(activation.get_by_test_id("activation-level")).to_have_text("I级响应")
    expect(activation.get_by_test_id("agency-progress")).to_have_count(len(open_agencies))
    for agency, total in open_agencies.items():
        row = activation.locator(f'[data-testid=agency-progress][data-agency="{agency}"]')
        expect(row).to_have_attribute("data-total", str(total))
        expect(row).to_have_attribute("data-acknowledged", "0")

    # the key figures are the summary's
    s = api["leader"].get("/api/command/summary").json()
    f = s["figures"]
    expect(page.get_by_test_id("figure-open-incidents-value")).to_have_text(str(f["open_incidents"]["total"]))
    expect(page.get_by_test_id("figure-units-deployed-value")).to_have_text(str(f["units_deployed"]))
    expect(page.get_by_test_id("figure-calls-waiting-value")).to_have_text(str(f["calls_waiting"]))
    expect(page.get_by_test_id("figure-tasks-overdue-value")).to_have_text(str(f["tasks_overdue"]))
    expect(page.locator('[data-testid=figure-by-level] [data-level="I"]')).to_have_count(1)

    # every layer of the map has its markers; the plan's ring carries its level
    for layer in ("cmd-incident", "cmd-unit", "cmd-depot", "cmd-shelter", "cmd-plan"):
        assert page.locator(f"#command-map path.{layer}").count() > 0, layer
    expect(page.locator(".cmd-plan-label").first).to_contain_text("I级响应")
    # one screen: nothing scrolls at 1920×1080
    scroll = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight,"
                           " window.innerWidth, window.innerHeight]")
    assert scroll[0] <= scroll[2] and scroll[1] <= scroll[3], scroll
    # three charts drawn
    for chart in ("chart-incidents", "chart-answer", "chart-resources"):
        assert page.get_by_test_id(chart).evaluate("c => c.width > 0 && c.height > 0"), chart
    # read-only but for the command conference: no control but the map's layer switches, the link that
    # opens the join page and the leader's conference controls (content token, deck, camera; issue 18)
    controls = page.locator("#command button, #command form, #command input, #command select, #command textarea")
    ours = page.locator("#leader-controls button, #leader-controls input, #leader-controls select")
    assert controls.count() - ours.count() == page.locator(".leaflet-control-layers input[type=checkbox]").count() == 7  # 6 + the gauges layer (issue 20)
    join = page.get_by_test_id("join-conference")
    expect(join).to_have_attribute("href", f"/join/{view['conference_id']}")

    # the dispatcher joins the command conference from the join page (fake camera): the preview shows it
    joiner, joiner_errors = open_page(browser, server, "dispatcher", f"/login?next=/join/{view['conference_id']}",
                                      viewport={"width": 1280, "height": 800})
    joiner.get_by_test_id("join-button").click()
    expect(joiner.locator("#call")).to_be_visible(timeout=20_000)
    page.wait_for_function(FRAMES, timeout=30_000, polling=500)
    page.wait_for_function(f"({LIT}) () > 0.05", timeout=30_000, polling=500)
    expect(page.locator("#no-conference")).to_be_hidden()
    frames = page.evaluate(FRAMES)
    assert frames > 0
    assert page.evaluate(LIT) > 0.05
    shoot(page, "command-view-level-I.png", tmp_path, artifacts_dir)

    # the leader's controls (issue 18): take the content token, revoke it; the deck button is greyed
    # with a tooltip while no deck is uploaded; the dispatcher's browser has no FECC: the camera
    # buttons are greyed with the reason as tooltip
    expect(page.get_by_test_id("leader-controls")).to_be_visible()
    expect(page.get_by_test_id("content-holder")).to_have_text("无人演示", timeout=10_000)
    expect(page.get_by_test_id("deck-show")).to_be_disabled()
    expect(page.get_by_test_id("deck-show")).to_have_attribute("title", "本会议尚未上传讲稿")
    page.get_by_test_id("content-take").click()
    expect(page.get_by_test_id("content-holder")).to_have_attribute("data-holder", "chair:leader", timeout=10_000)
    content = api["leader"].get(f"/api/conferences/{view['conference_id']}/content").json()
    assert content["holder"] == "chair:leader"
    page.get_by_test_id("content-revoke").click()
    expect(page.get_by_test_id("content-holder")).to_have_attribute("data-holder", "", timeout=10_000)
    assert api["leader"].get(f"/api/conferences/{view['conference_id']}/content").json()["holder"] is None
    site = page.locator("[data-testid=camera-site] option:not([value=''])").first
    expect(site).to_have_count(1, timeout=10_000)
    page.get_by_test_id("camera-site").select_option(site.get_attribute("value"))
    expect(page.get_by_test_id("camera-panel")).to_have_attribute("data-available", "false", timeout=10_000)
    expect(page.get_by_test_id("camera-pan_left")).to_be_disabled()
    expect(page.get_by_test_id("camera-pan_left")).to_have_attribute("title", "该会场未协商远端摄像机控制（FECC）")

    # a desk acknowledges a task: the progress follows live (the page is not reloaded)
    task = next(t for g in raised["agencies"] if g["agency"] == "meteorology" for t in g["tasks"]
                if t["status"] == "assigned")
    ack = api["meteo_desk"].post(f"/api/plan-tasks/{task['id']}", json={"status": "acknowledged"})
    assert ack.status_code == 200, ack.text
    meteo = activation.locator('[data-testid=agency-progress][data-agency="meteorology"]')
    expect(meteo).to_have_attribute("data-acknowledged", "1", timeout=10_000)
    for status in ("in_progress", "done"):
        assert api["meteo_desk"].post(f"/api/plan-tasks/{task['id']}", json={"status": status}).status_code == 200
    expect(meteo).to_have_attribute("data-done", "1", timeout=10_000)
    assert page.evaluate("() => window.__notReloaded === true")
    shoot(page, "command-view-progress.png", tmp_path, artifacts_dir)
    assert (tmp_path / "command-view-progress.png").stat().st_size > 10_000
    joiner.get_by_test_id("leave").click() if joiner.get_by_test_id("leave").count() else None
    assert not errors and not joiner_errors, (errors, joiner_errors)
    joiner.context.close()
    page.context.close()


def test_english_and_other_roles_refused(browser: Browser, server: RunningServer, tmp_path: Path,
                                         artifacts_dir: Path) -> None:
    page, errors = open_page(browser, server, "chair", "/command?lang=en")
    expect(page.get_by_test_id("key-figures")).to_contain_text("Open incidents", timeout=10_000)
    expect(page.get_by_test_id("plan-progress")).to_contain_text("Plan progress")
    expect(page.get_by_test_id("activation-level").first).to_have_text("Level I")
    expect(page.locator("#conn.up")).to_have_count(1, timeout=15_000)
    shoot(page, "command-view-en.png", tmp_path, artifacts_dir)
    assert not errors, errors
    page.context.close()
    # the leader opens the dispatch map read-only: the map and the queue, no control that changes anything
    leader, leader_errors = open_page(browser, server, "leader", "/dispatch")
    expect(leader.get_by_test_id("read-only")).to_be_visible(timeout=10_000)
    expect(leader.locator("#conn.up")).to_have_count(1, timeout=15_000)
    first = leader.locator("#queue li[data-incident-id]").first
    expect(first).to_be_visible(timeout=10_000)
    first.click()
    expect(leader.get_by_test_id("incident-detail")).to_contain_text(first.get_attribute("data-incident-id") or "?")
    visible = leader.locator(".dispatch-page button:visible, .dispatch-page select:visible, .dispatch-page form:visible")
    assert visible.count() == 0, visible.all_inner_texts()
    shoot(leader, "command-dispatch-read-only.png", tmp_path, artifacts_dir)
    assert not leader_errors, leader_errors
    leader.context.close()
    for role in ("viewer", "dispatcher", "calltaker", "operator"):
        other, _ = open_page(browser, server, role, "/")
        response = other.goto(server.url + "/command")
        assert response is not None and response.status == 403, role
        other.context.close()
