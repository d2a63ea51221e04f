"""The running monitoring service: readings in, evaluated, stored in batches; alarms out.

Both ways in (MQTT, `mqtt.py`; HTTP, web_console/monitoring_console.py) hand parsed readings to
`submit` and rejections to `reject`. `submit` is synchronous and cheap: it runs the gauge's alarm
machine (monitoring/alarms.py) and appends the reading to a buffer; a flush task writes the buffer
with one COPY every `flush_interval` seconds (or sooner when it is large), so thousands of readings
a second cost a few round trips. Alarm transitions go to a queue worked in order by one task:
store the alarm, publish ``monitoring.alarm_raised`` / ``monitoring.alarm_cleared``, and for a raised
threshold with an action, open the incident or propose the plan through the `FloodResponse`.

No accepted reading is dropped. A failed flush puts its batch back at the head of the buffer and
retries (after 1 s). While the buffer holds `max_buffer` readings or more (a database outage) the
service is `saturated`: the ways in push back instead of losing readings — the MQTT ingest leaves
the broker, whose persistent QoS 1 session keeps queuing for it, until the buffer is back under half
(`wait_for_room`); the HTTP push answers 503 with ``Retry-After``. A reading already taken is always
kept, so the buffer may pass `max_buffer` by what was in flight. Nothing here raises into the ways in.

Profiled under `python -m bench monitoring` (docs/monitoring.md): evaluating and buffering a reading
costs a few µs; the per-message cost is the MQTT client's (see monitoring/mqtt.py), not this.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.runtime import CoreServices
from core.tasks import cancel_and_wait
from monitoring import store
from monitoring.alarms import Alarm, GaugeMachine
from monitoring.gauges import Gauge, GaugeSet
from monitoring.payload import Reading, Rejected
from monitoring.response import AlarmNotice, FloodResponse

log = logging.getLogger(__name__)
ACTOR = "monitoring"


@dataclass
class IngestCounters:
    accepted: int = 0
    stored: int = 0
    late: int = 0
    saturations: int = 0  # times the buffer reached max_buffer and the ways in were told to push back
    rejected: Counter[str] = field(default_factory=Counter)

    def view(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "stored": self.stored, "late": self.late, "saturations": self.saturations,
                "rejected": dict(self.rejected), "rejected_total": sum(self.rejected.values())}


class MonitoringService:
    def __init__(self, core: CoreServices, gauges: GaugeSet, response: FloodResponse | None = None, *,
                 clock: Callable[[], float] = time.time, flush_interval: float = 0.2, batch_max: int = 20000,
                 max_buffer: int = 500_000, tick_interval: float = 1.0, live_interval: float = 1.0) -> None:
        self.core = core
        self.db = core.db
        self.gauges = gauges
        self.response = response
        self.clock = clock
        self.flush_interval = flush_interval
        self.batch_max = batch_max
        self.max_buffer = max_buffer
        self.tick_interval = tick_interval
        self.live_interval = live_interval
        self.counters = IngestCounters()
        now = clock()
        self.machines = {g.id: GaugeMachine(g, now) for g in gauges}
        self._buffer: list[tuple[str, float, float]] = []
        self._changed: set[str] = set()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._pushback = asyncio.Event()
        self._alarms: asyncio.Queue[Alarm] = asyncio.Queue()
        self._pending_alarms = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- life -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore open alarms and the newest readings, then run the flush, tick, alarm and live tasks."""
        for gauge_id, kind, key in await store.open_alarms(self.db):
            machine = self.machines.get(gauge_id)
            if machine is not None:
                machine.active.add((kind, key))
        for gauge_id, (at, value) in (await store.latest(self.db, self.machines)).items():
            m = self.machines[gauge_id]
            m.last_at, m.last_value, m._same_since = at, value, at
        self._tasks = [asyncio.create_task(loop(), name=f"monitoring-{loop.__name__}")
                       for loop in (self._flush_loop, self._tick_loop, self._alarm_loop, self._live_loop)]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks, swallow_errors=True)
        self._tasks = []
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - stopping; what is left is logged
            log.exception("monitoring: %d readings not stored at stop", len(self._buffer))

    # -- the ways in ----------------------------------------------------------------------
    def submit(self, reading: Reading) -> None:
        """Evaluate and buffer one accepted reading (never raises, never blocks)."""
        machine = self.machines[reading.gauge_id]
        outcome = machine.reading(reading.value, reading.at)
        self.counters.accepted += 1
        if outcome.late:
            self.counters.late += 1
        for alarm in outcome.alarms:
            self._enqueue(alarm)
        self._buffer.append((reading.gauge_id, reading.at, reading.value))
        self._changed.add(reading.gauge_id)
        n = len(self._buffer)
        if n >= self.batch_max:
            self._full.set()
        if n >= self.max_buffer and self._room.is_set():
            self._room.clear()
            self._pushback.set()
            self.counters.saturations += 1
            log.warning("monitoring: %d readings waiting for the database; the ways in push back", n)

    @property
    def saturated(self) -> bool:
        """True from when the buffer reaches `max_buffer` until it is back under half of it."""
        return not self._room.is_set()

    async def wait_saturated(self) -> None:
        """Return once the service is saturated."""
        await self._pushback.wait()

    async def wait_for_room(self) -> None:
        """Return once the service takes readings again (at once when it is not saturated)."""
        await self._room.wait()

    def _update_room(self) -> None:
        if not self._room.is_set() and len(self._buffer) < self.max_buffer // 2:
            self._room.set()
            self._pushback.clear()
            log.info("monitoring: buffer back to %d readings; taking readings again", len(self._buffer))

    def reject(self, rejected: Rejected, via: str) -> None:
        """Count a rejected payload; log the first few of each reason, then every 1000th."""
        self.counters.rejected[rejected.reason] += 1
        n = self.counters.rejected[rejected.reason]
        if n <= 10 or n % 1000 == 0:
            log.warning("monitoring: %s reading rejected (%s, #%d): %s", via, rejected.reason, n, rejected.detail)

    # -- storing --------------------------------------------------------------------------
    async def flush(self) -> int:
        """Write the buffered readings (one COPY); they stay buffered if the database fails."""
        if not self._buffer:
            return 0
        batch, self._buffer = self._buffer, []
        try:
            n = await store.insert_readings(self.db, batch)
        except BaseException:
            self._buffer[:0] = batch
            raise
        self.counters.stored += n
        self._update_room()
        return n

    async def drained(self, wait_s: float = 10.0) -> None:
        """Wait until everything submitted so far is stored and its alarms handled (tests, bench)."""
        async def settle() -> None:
            while self._buffer or self._pending_alarms:
                self._full.set()
                await asyncio.sleep(0.02)
        await asyncio.wait_for(settle(), wait_s)

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._full.clear()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the database may be down: keep the buffer, retry
                log.exception("monitoring: storing %d readings failed; will retry", len(self._buffer))
                await asyncio.sleep(1.0)

    # -- time -----------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.tick(self.clock())

    def tick(self, now: float) -> None:
        for machine in self.machines.values():
            for alarm in machine.tick(now):
                self._enqueue(alarm)

    async def _live_loop(self) -> None:
        """Live markers: the gauges that changed, at most once per `live_interval`."""
        while True:
            await asyncio.sleep(self.live_interval)
            if not self._changed:
                continue
            changed, self._changed = self._changed, set()
            try:
                await self.core.bus.publish("monitoring.readings", {"gauges": [self._live(g) for g in sorted(changed)]})
            except Exception:  # noqa: BLE001 - the next round carries newer values
                log.exception("monitoring: publishing live readings failed")

    def _live(self, gauge_id: str) -> dict[str, Any]:
        m = self.machines[gauge_id]
        return {"id": gauge_id, "value": m.last_value, "at": m.last_at, "state": m.state()}

    # -- alarms ---------------------------------------------------------------------------
    def _enqueue(self, alarm: Alarm) -> None:
        self._pending_alarms += 1
        self._alarms.put_nowait(alarm)

    async def _alarm_loop(self) -> None:
        while True:
            alarm = await self._alarms.get()
            try:
                await self._handle(alarm)
            except Exception:  # noqa: BLE001 - one alarm's failure must not stop the others
                log.exception("monitoring: handling %s failed", alarm)
            finally:
                self._pending_alarms -= 1

    async def _handle(self, alarm: Alarm) -> None:
        gauge = self.machines[alarm.gauge_id].gauge
        if not alarm.raised:
            alarm_id = await store.clear_alarm(self.db, alarm.gauge_id, alarm.kind, alarm.key, alarm.value, alarm.at)
            if alarm_id is not None:
                await self.core.bus.publish("monitoring.alarm_cleared", {"alarm": await store.alarm(self.db, alarm_id),
                                                                         **self._names(gauge, alarm)})
            return
        alarm_id = await store.open_alarm(self.db, alarm.gauge_id, alarm.kind, alarm.key, alarm.severity,
                                          alarm.value, alarm.at)
        if alarm_id is None:
            return  # already open (restored after a restart)
        await self.core.audit.record(ACTOR, f"monitoring.{alarm.kind}_raised", alarm.gauge_id, detail={
            "alarm": alarm_id, "key": alarm.key, "value": alarm.value, "severity": alarm.severity})
        await self.core.bus.publish("monitoring.alarm_raised", {"alarm": await store.alarm(self.db, alarm_id),
                                                                **self._names(gauge, alarm)})
        threshold = gauge.threshold(alarm.key) if alarm.kind == "threshold" else None
        if threshold is None or threshold.action == "none":
            return
        if self.response is None:
            await store.set_response(self.db, alarm_id, None, None, "no dispatch service on this node")
            return
        notice = AlarmNotice(alarm_id, gauge.id, gauge.name, gauge.county, gauge.position[0], gauge.position[1],
                             threshold.name, threshold.value, alarm.value if alarm.value is not None else 0.0,
                             gauge.unit, alarm.severity, alarm.at)
        incident_id: str | None = None
        proposal: dict[str, Any] | None = None
        try:
            incident_id = await store.open_incident_of(self.db, gauge.id) or await self.response.open_incident(notice)
            await store.set_response(self.db, alarm_id, incident_id, None)
            if threshold.action == "propose_plan":
                proposal = await self.response.propose_plan(incident_id, threshold.plan, threshold.level, notice)
        except Exception as exc:  # noqa: BLE001 - the alarm stands; the dispatcher acts by hand
            log.exception("monitoring: responding to alarm %d failed", alarm_id)
            await store.set_response(self.db, alarm_id, incident_id, proposal, str(exc)[:500])
            return
        await store.set_response(self.db, alarm_id, incident_id, proposal)
        await self.core.audit.record(ACTOR, "monitoring.response", alarm.gauge_id, detail={
            "alarm": alarm_id, "incident": incident_id, "proposal": proposal})
        await self.core.bus.publish("monitoring.alarm_response", {"alarm": await store.alarm(self.db, alarm_id),
                                                                  **self._names(gauge, alarm)})

    @staticmethod
    def _names(gauge: Gauge, alarm: Alarm) -> dict[str, Any]:
        t = gauge.threshold(alarm.key)
        return {"gauge": {"id": gauge.id, "name": gauge.name, "name_en": gauge.name_en, "unit": gauge.unit},
                "threshold": None if t is None else {"key": t.key, "name": t.name, "name_en": t.name_en,
                                                     "value": t.value}}

    async def acknowledge(self, alarm_id: int, actor: str, source: str = "", note: str = "") -> dict[str, Any] | None:
        """A person acknowledges an alarm (audited). None: no such alarm; {} : acknowledged before."""
        result = await store.acknowledge(self.db, alarm_id, actor, note)
        if result:
            await self.core.audit.record(actor, "monitoring.acknowledge", str(alarm_id), source=source,
                                         detail={"gauge": result["gauge_id"], "key": result["key"], "note": note})
            await self.core.bus.publish("monitoring.alarm_acknowledged", {"alarm": result, "actor": actor})
        return result

    # -- views ----------------------------------------------------------------------------
    def gauge_views(self) -> list[dict[str, Any]]:
        """Every gauge with its newest reading and state, for the map."""
        out = []
        for m in self.machines.values():
            g = m.gauge
            out.append({
                "id": g.id, "name": g.name, "name_en": g.name_en, "kind": g.kind, "unit": g.unit, "county": g.county,
                "position": list(g.position), "position_quality": g.position_quality, "period_s": g.period_s,
                "thresholds": [{"key": t.key, "name": t.name, "name_en": t.name_en, "value": t.value,
                                "window_s": t.window_s, "severity": t.severity, "direction": t.direction}
                               for t in g.thresholds],
                "value": m.last_value, "at": m.last_at, "state": m.state(),
                "active": sorted(f"{kind}:{key}" for kind, key in m.active),
                "accumulated": {t.key: m.accumulated(t.key, self.clock()) for t in g.thresholds if t.window_s > 0},
            })
        return out

    async def series(self, gauge_id: str, span: str) -> list[store.Bucket]:
        seconds, bucket = store.SPANS[span]
        now = self.clock()
        return await store.series(self.db, gauge_id, now - seconds, now + 1, bucket)
