"""The demo's synthetic flood scenario: the pure curve, and the publisher started by a test over a
real mosquitto raising the demo alarm (it never runs in tests otherwise: CC_TESTING turns it off)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from commandcenter.node import start_node
from config.site_plan import load_site_plan
from core.runtime import CoreServices
from monitoring import store
from monitoring.demo_publisher import flood_gauge, scenario_value
from monitoring.gauges import GaugeSet, load_gauges
from tests.conftest import free_port, make_settings


def demo_gauges() -> GaugeSet:
    return load_gauges(load_site_plan("config/demo/yunfu.toml"))


def test_the_river_crosses_its_warning_level_at_three_quarters_of_the_rise_then_recedes() -> None:
    gauges = demo_gauges()
    river = flood_gauge(gauges)
    assert river is not None and river.id == "gauge-luoding-river"
    warning_t, guaranteed_t = river.threshold("warning"), river.threshold("guaranteed")
    assert warning_t is not None and guaranteed_t is not None
    warning = warning_t.value
    rise = 180.0
    level = [scenario_value(river, True, t, rise) for t in range(0, 721, 5)]
    crossed = next(i * 5 for i, v in enumerate(level) if v >= warning)
    assert 0.7 * rise <= crossed <= 0.8 * rise
    assert max(level) < guaranteed_t.value  # the demo stops at the warning level
    assert level[-1] < warning - 0.2  # receded below the hysteresis band: the alarm clears
    others = [g for g in gauges if g.kind == "river_level" and g is not river]
    for g in others:  # the other rivers stay quiet
        assert all(scenario_value(g, False, t, rise) < g.threshold("warning").value - 0.2 for t in range(0, 3600, 60))


def test_rain_stays_below_the_demo_rain_thresholds() -> None:
    rain = next(g for g in demo_gauges() if g.kind == "rainfall")
    per_hour = sum(scenario_value(rain, False, t, 180) for t in range(0, 3600, rain.period_s))
    assert 0 < per_hour < rain.threshold("rain_1h").value
    per_day = sum(scenario_value(rain, False, t, 180) for t in range(0, 86400, rain.period_s))
    assert per_day < rain.threshold("rain_24h").value


async def test_a_test_started_publisher_raises_the_demo_alarm(seeded_db_url: str, tmp_path: Path) -> None:
    settings = make_settings(seeded_db_url, tmp_path, monitoring={
        "broker": "managed", "mqtt_port": free_port(), "demo_publisher": True, "demo_rise_minutes": 0.5})
    core = await CoreServices.start(settings)
    node = await start_node(core, "web")
    try:
        assert node.monitoring is not None and node.monitoring.publisher is not None
        deadline = time.monotonic() + 60
        alarms: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not alarms:
            await asyncio.sleep(0.5)
            alarms = [a for a in await store.alarms(core.db) if a["key"] == "warning" and a["incident_id"]]
        assert alarms and alarms[0]["gauge_id"] == "gauge-luoding-river", await store.alarms(core.db)
        assert node.monitoring.publisher.published >= 4
        assert await store.count_readings(core.db) >= 4
    finally:
        await node.stop()
