"""The demo's synthetic flood scenario: a small MQTT publisher so a newcomer sees an alarm.

Started by the monitoring capability under `make run` (``[monitoring] demo_publisher``, on with the
demo data, off under tests unless a test starts it). Every gauge of the plan gets a plausible reading
each period; one river gauge (the fastest-reporting ``river_level`` gauge with a ``warning``
threshold, in the demo 罗定江罗城) rises from 1.5 m below its warning level to 0.5 m above it in ``rise_minutes``
(crossing 警戒水位 at three quarters of it), holds for as long, and recedes over twice as long; rain falls at the rain gauges meanwhile.
All made up, and labelled so in the site plan. The readings go through the broker like any gauge's.

`scenario_value` is pure (time in, value out) so the curve is tested without a broker.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable

import aiomqtt

from monitoring.gauges import Gauge, GaugeSet

log = logging.getLogger(__name__)


def flood_gauge(gauges: GaugeSet) -> Gauge | None:
    """The river gauge that floods: the fastest-reporting one with a ``warning`` threshold (plan order on ties)."""
    rivers = [g for g in gauges if g.kind == "river_level" and g.threshold("warning") is not None]
    return min(rivers, key=lambda g: g.period_s) if rivers else None


def scenario_value(gauge: Gauge, flooding: bool, elapsed: float, rise_s: float) -> float:
    """The value of `gauge` `elapsed` seconds into the scenario (pure)."""
    lo, hi = gauge.valid_range
    wobble = 0.03 * math.sin(elapsed / 37.0)
    if gauge.kind == "rainfall":  # mm since the last report: light rain, 1-5 mm/h (below the demo thresholds)
        rate_mm_h = 3.0 + 2.0 * math.sin(elapsed / 600.0)
        return max(lo, min(hi, round(rate_mm_h * gauge.period_s / 3600.0, 3)))
    warning = gauge.threshold("warning")
    base = (warning.value - 1.5) if warning is not None else lo + 0.3 * (hi - lo)
    if not flooding:
        return max(lo, min(hi, round(base - 0.5 + wobble, 3)))
    # rise 2.0 m over rise_s (warning crossed at 75 %), hold for rise_s, recede over 2 × rise_s, repeat
    phase = elapsed % (4 * rise_s)
    if phase < rise_s:
        level = base + 2.0 * phase / rise_s
    elif phase < 2 * rise_s:
        level = base + 2.0
    else:
        level = base + 2.0 * (1 - (phase - 2 * rise_s) / (2 * rise_s))
    return max(lo, min(hi, round(level + wobble, 3)))


class DemoPublisher:
    def __init__(self, gauges: GaugeSet, host: str, port: int, prefix: str, rise_minutes: float, *,
                 clock: Callable[[], float] = time.time, step_s: float = 5.0) -> None:
        self.gauges, self.host, self.port, self.prefix = gauges, host, port, prefix.rstrip("/")
        self.rise_s = rise_minutes * 60.0
        self.clock = clock
        self.step_s = step_s
        self.flooding = flood_gauge(gauges)
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="monitoring-demo-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
            self._task = None

    async def _run(self) -> None:
        started = self.clock()
        due = {g.id: 0.0 for g in self.gauges}
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=f"commandcenter-demo-{id(self):x}") as client:
                    log.info("monitoring: demo flood scenario publishing to %s:%d (%s rises)", self.host, self.port,
                             self.flooding.id if self.flooding else "no river gauge")
                    while True:
                        now = self.clock()
                        for g in self.gauges:
                            if now < due[g.id]:
                                continue
                            due[g.id] = now + max(float(g.period_s), self.step_s)
                            value = scenario_value(g, g is self.flooding, now - started, self.rise_s)
                            await client.publish(f"{self.prefix}/{g.id}/reading",
                                                 json.dumps({"value": value, "at": round(now, 3)}), qos=1)
                            self.published += 1
                        await asyncio.sleep(1.0)
            except aiomqtt.MqttError as exc:
                log.warning("monitoring: demo publisher: %s; retrying", exc)
                await asyncio.sleep(2.0)
