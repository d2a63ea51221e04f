"""Monitoring in headless Chromium against a running server with its managed mosquitto: readings
published over MQTT move the gauge's marker on the dispatch map live (its colour is its state), the
alarm appears in the list with its incident and is acknowledged there; the leader's /command view
shows the gauges and a chart and cannot acknowledge; English texts. Screenshots to test-artifacts/."""
from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import open_page as browser_page
from tests.conftest import RunningServer, free_port

pytestmark = pytest.mark.browser

MQTT_PORT = free_port()
SERVER_ENV = {"CC_MONITORING__BROKER": "managed", "CC_MONITORING__MQTT_PORT": str(MQTT_PORT)}
RIVER = "gauge-luoding-river"  # 警戒水位 12.0
MARKER = '[data-testid=gauge-marker][data-gauge="{}"]'


open_page = functools.partial(browser_page, viewport={"width": 1600, "height": 1000})


def publish(gauge: str, value: float, at: float) -> None:
    mqtt_publish.single(f"cc/gauges/{gauge}/reading", json.dumps({"value": value, "at": at}), qos=1,
                        hostname="127.0.0.1", port=MQTT_PORT)


def shoot(page: Page, name: str, tmp_path: Path, artifacts_dir: Path) -> None:
    page.screenshot(path=str(tmp_path / name))
    shutil.copy(tmp_path / name, artifacts_dir / name)


def test_rising_river_turns_the_marker_and_raises_an_alarm_acknowledged_on_the_map(
        browser: Browser, server: RunningServer, tmp_path: Path, artifacts_dir: Path) -> None:
    page, errors = open_page(browser, server, "dispatcher", "/dispatch")
    expect(page.locator("[data-testid=gauge-marker]")).to_have_count(4, timeout=20_000)
    marker = page.locator(MARKER.format(RIVER))
    expect(marker).to_have_attribute("data-state", "nodata")
    expect(page.locator("[data-testid=monitoring-alarms]")).to_contain_text("暂无告警")

    # The three readings (20 s apart at most) must share one chart bucket (5 min, 30 min: aligned to
    # the epoch): not too soon after a bucket's start, or they straddle two and the chart has 2 points.
    while time.time() % 300 < 25:
        time.sleep(0.5)
    now = time.time()
    for i, v in enumerate([10.5, 11.2]):
        publish(RIVER, v, now - 20 + i)
    expect(marker).to_have_attribute("data-state", "normal", timeout=15_000)  # live, no reload
    publish(RIVER, 12.4, now - 10)
    expect(marker).to_have_attribute("data-state", "warning", timeout=15_000)
    alarm = page.locator("[data-testid=monitoring-alarm]").first
    expect(alarm).to_contain_text("罗定江罗城水位站", timeout=15_000)
    expect(alarm).to_contain_text("警戒水位")
    expect(alarm.locator("[data-testid=alarm-incident]")).to_be_visible(timeout=15_000)
    # the chart: click the marker
    marker.click()
    expect(page.locator("[data-testid=gauge-name]")).to_have_text("罗定江罗城水位站")
    expect(page.locator("[data-testid=gauge-state]")).to_have_attribute("data-state", "warning")
    expect(page.locator("[data-testid=gauge-value]")).to_have_text("12.4")
    chart = page.locator("[data-testid=gauge-chart]")
    expect(chart).to_have_attribute("data-points", "1", timeout=10_000)  # 3 readings in one 5-minute bucket
    page.click("[data-testid=span-7d]")
    expect(page.locator("[data-testid=gauge-chart]")).to_have_attribute("data-points", "1", timeout=10_000)
    shoot(page, "monitoring_dispatch.png", tmp_path, artifacts_dir)

    alarm.locator("[data-testid=alarm-ack]").click()
    expect(alarm.locator("[data-testid=alarm-acked]")).to_contain_text("dispatcher", timeout=10_000)
    expect(page.locator("[data-testid=alarm-ack]")).to_have_count(0)
    assert not errors, errors


def test_command_view_shows_gauges_and_chart_read_only_in_english(
        browser: Browser, server: RunningServer, tmp_path: Path, artifacts_dir: Path) -> None:
    publish("gauge-xijiang-ducheng", 21.0, time.time() - 5)
    page, errors = open_page(browser, server, "leader", "/command?lang=en")
    expect(page.locator("[data-testid=gauge-marker]")).to_have_count(4, timeout=30_000)
    expect(page.locator(".leaflet-control-layers")).to_contain_text("Gauges")
    marker = page.locator(MARKER.format("gauge-xijiang-ducheng"))
    expect(marker).to_have_attribute("data-state", "normal", timeout=15_000)
    marker.click(force=True)
    expect(page.locator("[data-testid=gauge-name]")).to_have_text("Xijiang river at Ducheng")
    expect(page.locator("[data-testid=monitoring-panel]")).to_contain_text("warning level 24 m")
    expect(page.locator("[data-testid=gauge-chart]")).to_have_attribute("data-points", "1", timeout=10_000)
    expect(page.locator("[data-testid=monitoring-panel] h2")).to_contain_text("Hydrological monitoring")
    expect(page.locator("[data-testid=alarm-ack]")).to_have_count(0)  # leaders read
    shoot(page, "monitoring_command.png", tmp_path, artifacts_dir)
    assert not errors, errors
