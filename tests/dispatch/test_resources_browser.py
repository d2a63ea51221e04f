"""Resource layers and the allocation panel on the dispatch map, in headless Chromium (real server,
real PostgreSQL). Screenshots go to test-artifacts/."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from dispatch.resources.model import load_catalogue
from tests.browser import open_page
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

CATALOGUE = load_catalogue(Path(__file__).resolve().parents[2] / "config" / "demo" / "resources.toml")
LUOCHENG = {"lon": 111.5700, "lat": 22.7690}


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    c = server.login("dispatcher")
    yield c
    c.close()


def click_resource(page: Page, rid: str) -> None:
    """Zoom to the resource (unit markers at a nearby station move apart) and click its marker."""
    r = next(r for r in CATALOGUE if r.id == rid)
    page.evaluate("([lat, lon]) => window.dispatchConsole.map.setView([lat, lon], 16, {animate: false})", [r.lat, r.lon])
    page.locator(f'.res-marker[data-resource-id="{rid}"]').click()


def open_console(browser: Browser, server: RunningServer, lang: str = "zh-CN") -> tuple[Page, list[str]]:
    p, errors = open_page(browser, server, "dispatcher", "/dispatch" + ("?lang=en" if lang == "en" else ""), lang,
                          {"width": 1600, "height": 1000})
    expect(p.locator("#conn.up")).to_have_count(1, timeout=10_000)
    return p, errors


def test_resource_layers_show_toggle_and_pop_up(browser: Browser, server: RunningServer, artifacts_dir: Path) -> None:
    page, errors = open_console(browser, server)
    per_kind = Counter(r.kind.value for r in CATALOGUE)
    expect(page.locator(".res-marker")).to_have_count(len(CATALOGUE), timeout=10_000)
    for kind, n in per_kind.items():
        expect(page.locator(f".res-marker[data-kind={kind}]")).to_have_count(n)
    page.screenshot(path=str(artifacts_dir / "resources_layers.png"))
    # toggle the depots layer off and on again (Leaflet's layer control)
    toggle = page.locator(".leaflet-control-layers-overlays label", has=page.get_by_test_id("layer-depot")).locator("input")
    toggle.uncheck()
    expect(page.locator(".res-marker[data-kind=depot]")).to_have_count(0)
    expect(page.locator(".res-marker")).to_have_count(len(CATALOGUE) - per_kind["depot"])
    toggle.check()
    expect(page.locator(".res-marker[data-kind=depot]")).to_have_count(per_kind["depot"])
    # a shelter's popup shows capacity and occupancy
    click_resource(page, "shelter-liudu-square")
    popup = page.locator(".leaflet-popup-content .res-popup")
    expect(popup).to_contain_text("六都镇文化广场避难场所")
    expect(popup).to_contain_text("容量 800")
    expect(popup.get_by_test_id("res-occupancy")).to_have_text("120")
    page.screenshot(path=str(artifacts_dir / "resources_popup.png"))
    assert errors == [], errors
    page.context.close()


def test_allocate_from_the_incident_panel_updates_the_map(browser: Browser, server: RunningServer, api: httpx.Client,
                                                          artifacts_dir: Path) -> None:
    page, errors = open_console(browser, server)
    expect(page.locator(".res-marker")).to_have_count(len(CATALOGUE), timeout=10_000)
    inc = api.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1, **LUOCHENG})
    assert inc.status_code == 201
    iid = inc.json()["id"]
    page.locator(f'#queue li[data-incident-id="{iid}"]').click()
    panel = page.get_by_test_id("resource-panel")
    panel.get_by_test_id("res-min").fill("500")
    panel.get_by_test_id("res-find").click()
    results = panel.get_by_test_id("res-result")
    expect(results).to_have_count(3)
    assert [results.nth(i).get_attribute("data-resource-id") for i in range(3)] == [
        "depot-luocheng", "depot-liantan", "depot-ducheng"]
    before = next(r.stock["sandbag"] for r in CATALOGUE if r.id == "depot-luocheng")
    results.nth(0).get_by_test_id("res-qty").fill("600")
    results.nth(0).get_by_test_id("res-allocate").click()
    expect(panel.get_by_test_id("allocation")).to_have_count(1)
    expect(panel.get_by_test_id("allocation")).to_contain_text("沙袋 600 袋")
    # the live event updated the depot's popup
    click_resource(page, "depot-luocheng")
    expect(page.locator(".leaflet-popup-content").get_by_test_id("res-stock")).to_contain_text(f"沙袋 {before - 600} 袋")
    page.screenshot(path=str(artifacts_dir / "resources_allocated.png"))
    # a fresh search is a fresh request: allocating again adds a second allocation
    page.keyboard.press("Escape")
    panel.get_by_test_id("res-find").click()
    expect(results).to_have_count(3)
    results.nth(0).get_by_test_id("res-allocate").click()
    expect(panel.get_by_test_id("allocation")).to_have_count(2)
    # more than the stock: refused with the reason, nothing allocated
    panel.get_by_test_id("res-find").click()
    expect(results).to_have_count(3)
    results.nth(2).get_by_test_id("res-qty").fill("999999")
    results.nth(2).get_by_test_id("res-allocate").click()
    expect(panel.get_by_test_id("res-msg")).to_contain_text("库存不足")
    expect(panel.get_by_test_id("allocation")).to_have_count(2)
    panel.get_by_test_id("release").first.click()
    expect(panel.locator('[data-testid=allocation][data-released="1"]')).to_have_count(1)
    assert errors == [], errors
    page.context.close()


def test_layers_in_english(browser: Browser, server: RunningServer) -> None:
    page, errors = open_console(browser, server, "en")
    expect(page.get_by_test_id("layer-shelter")).to_contain_text("Shelters")
    expect(page.get_by_test_id("resource-panel")).to_contain_text("Resource allocation")
    assert errors == [], errors
    page.context.close()
