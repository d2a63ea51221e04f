"""Training mode (演练) driver: runs ``dispatch.training.TrainingSimulator`` against the service.

Every tick the 演练 units move along their routes; their fixes go through the normal AVL path
(``DispatchService.ingest_avl``), so geofence arrival, the track and the live map behave exactly as
with real units. It invents a 演练 incident now and then, dispatches the recommended 演练 units to
incidents no trainee picked up, clears units after a while on scene, sends them home, and closes
the incident. Everything it touches is flagged training; real units and incidents are never used.

With a call-taking desk attached (``desk``), it also rings training calls (演练来电): simulated
callers flagged training when it makes them, offered only to positions in training mode, and made
only while such a position is signed on. A caller nobody answers hangs up after
``call_patience_s`` (a training abandoned call and callback). These are the only training calls:
a call from the network is always real, whatever mode the consoles are in.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from dispatch.model import NUMBER_CATEGORY, DispatchError, IncidentStatus, UnitStatus
from dispatch.service import DispatchService
from dispatch.training import TrainingSimulator
from gis.routing import DEFAULT_TYPE_SPEEDS_KMH

log = logging.getLogger(__name__)
ACTOR = "演练"
DRILL_LOCK_KEY = 0x6472696C  # "dril"
DIALLED_FOR = {cat: number for number, cat in NUMBER_CATEGORY.items()}


class TrainingDesk(Protocol):
    """What the runner needs from the call-taking desk (``dispatch.calltaking.service.DeskService``)."""

    def training_positions(self) -> int: ...

    def call_state(self, call_id: str) -> str | None: ...

    async def offer_training_call(self, number: str, dialled: str, lon: float, lat: float,
                                  address: str = "") -> str: ...

    async def caller_hung_up_training(self, call_id: str) -> None: ...


@dataclass
class TrainingRunner:
    service: DispatchService
    tick_s: float = 1.0
    incident_every_s: float = 40.0
    max_open: int = 4
    auto_dispatch_after_s: float = 20.0
    on_scene_s: float = 40.0
    seed: int = 7
    _sim: TrainingSimulator = field(init=False)
    _rng: random.Random = field(init=False)
    _task: asyncio.Task[None] | None = None
    _on_scene_since: dict[str, datetime] = field(default_factory=dict)
    _last_incident: datetime | None = None
    track_keep_s: float = 3600.0  # the drill's AVL track is pruned after an hour (a live demo runs for days)
    _steps: int = 0
    desk: TrainingDesk | None = None  # set by the desk capability: the runner then rings training calls
    call_every_s: float = 60.0
    call_patience_s: float = 90.0  # an unanswered training caller hangs up after this
    _calls: dict[str, datetime] = field(default_factory=dict)  # the training calls it made → when
    _last_call: datetime | None = None

    def __post_init__(self) -> None:
        spots = [(t.lon, t.lat) for t in self.service.townships] or [(s.lon, s.lat) for s in self.service.stations.values()]
        self._sim = TrainingSimulator(spots, seed=self.seed)
        self._rng = random.Random(self.seed)  # which idle units go on patrol

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dispatch-training")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # Several web nodes may run the service; one drill at a time: the node holding the
        # advisory lock drives it, the others wait (and take over if it goes away).
        conn = await self.service.db.dedicated_connection()
        try:
            while True:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", DRILL_LOCK_KEY):
                    break
                await asyncio.sleep(10 * self.tick_s)  # a lock held elsewhere has no event to await
            await self._loop()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()  # releases the lock

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed step must not end the drill
                log.exception("training step failed")
            await asyncio.sleep(self.tick_s)

    def _here(self, unit_id: str) -> tuple[float, float]:
        u = self.service.recommender.units[unit_id]
        if u.position is not None:
            return u.position.lon, u.position.lat
        st = self.service.stations[u.station_id]
        return st.lon, st.lat

    async def step(self) -> None:
        """One tick: move, arrive, clear, return, invent and auto-dispatch."""
        svc = self.service
        now = svc.clock()
        units = {u.id: u for u in svc.units(training=True)}
        speed = {uid: DEFAULT_TYPE_SPEEDS_KMH.get(u.type, 40.0) * 1.5 for uid, u in units.items()}
        # dispatched units head for their incident
        for uid, u in units.items():
            if u.status == UnitStatus.DISPATCHED and u.incident_id in svc._open_locations:
                self._sim.send(uid, self._here(uid), svc._open_locations[u.incident_id], speed[uid], now)
                await self._safe(svc.set_unit_status(uid, UnitStatus.EN_ROUTE.value, ACTOR, source="training"))
            elif u.status == UnitStatus.AVAILABLE and uid not in self._sim.routes and self._rng.random() < 0.05:
                self._sim.patrol(uid, self._here(uid), speed[uid] / 2, now)
        fixes, arrived = self._sim.tick(now)
        if fixes:
            items = [{"unit_id": uid, "lon": p.lon, "lat": p.lat, "ts": p.at.isoformat(), "speed_kmh": p.speed_kmh}
                     for uid, p in fixes]
            await svc.ingest_avl(items, ACTOR, source="training")
        units = {u.id: u for u in svc.units(training=True)}
        for uid in arrived:
            done = units.get(uid)
            if done and done.status in (UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE):
                await self._safe(svc.set_unit_status(uid, UnitStatus.ON_SCENE.value, ACTOR, source="training"))
            elif done and done.status == UnitStatus.RETURNING:
                await self._safe(svc.set_unit_status(uid, UnitStatus.AVAILABLE.value, ACTOR, source="training"))
        # clear units that have been on scene long enough; send them home
        for uid, u in units.items():
            if u.status == UnitStatus.ON_SCENE:
                since = self._on_scene_since.setdefault(uid, now)
                if (now - since).total_seconds() >= self.on_scene_s:
                    self._on_scene_since.pop(uid, None)
                    if await self._safe(svc.set_unit_status(uid, UnitStatus.RETURNING.value, ACTOR, source="training")):
                        st = svc.stations[u.station_id]
                        self._sim.send(uid, self._here(uid), (st.lon, st.lat), speed[uid], now)
        await self._incidents(now)
        await self._training_calls(now)
        self._steps += 1
        if self._steps % 300 == 0:
            await svc.db.execute("DELETE FROM unit_positions WHERE unit_id LIKE 'DRILL-%' AND at < $1",
                                 now - timedelta(seconds=self.track_keep_s))

    async def _incidents(self, now: datetime) -> None:
        svc = self.service
        open_ = await svc.incidents(training=True, open_only=True, limit=50)
        for inc in open_:
            age = (now - inc.created_at).total_seconds()
            if inc.status == IncidentStatus.NEW and age >= self.auto_dispatch_after_s:
                await self._safe(svc.dispatch_recommended(inc.id, ACTOR, source="training"))
            elif (inc.status in (IncidentStatus.ON_SCENE, IncidentStatus.UNDER_CONTROL, IncidentStatus.DISPATCHED,
                                 IncidentStatus.EN_ROUTE)
                  and not inc.assigned_units and age > self.auto_dispatch_after_s):
                await self._safe(svc.close_incident(inc.id, "演练处置完毕", ACTOR, source="training"))
        due = self._last_incident is None or (now - self._last_incident).total_seconds() >= self.incident_every_s
        if due and len(open_) < self.max_open:
            self._last_incident = now
            demo = self._sim.incident(now, ACTOR)
            await self._safe(svc.create_incident(
                category=demo.category, subtype=demo.subtype, priority=demo.priority, lon=demo.location.lon,
                lat=demo.location.lat, uncertainty_m=demo.location.uncertainty_m, address=demo.location.address,
                description=demo.description, actor=ACTOR, training=True, location_source="training",
                source="training"))

    async def _training_calls(self, now: datetime) -> None:
        """Ring a training call now and then while a training position is signed on; unanswered
        callers give up after a while."""
        desk = self.desk
        if desk is None:
            return
        for call_id, made in list(self._calls.items()):
            state = desk.call_state(call_id)
            if state is None:
                del self._calls[call_id]
            elif state in ("queued", "offered") and (now - made).total_seconds() >= self.call_patience_s:
                del self._calls[call_id]
                await desk.caller_hung_up_training(call_id)
        waiting = any(desk.call_state(c) in ("queued", "offered") for c in self._calls)
        due = self._last_call is None or (now - self._last_call).total_seconds() >= self.call_every_s
        if due and not waiting and desk.training_positions() > 0:
            self._last_call = now
            demo = self._sim.incident(now, ACTOR)  # a plausible place and kind of emergency
            number = f"1990000{self._rng.randint(0, 9999):04d}"
            call_id = await desk.offer_training_call(number, DIALLED_FOR.get(demo.category, "110"),
                                                     demo.location.lon, demo.location.lat, demo.location.address)
            self._calls[call_id] = now

    @staticmethod
    async def _safe(coro: object) -> bool:
        """Run a service call; a model refusal (someone else acted first) is not an error here."""
        try:
            await coro  # type: ignore[misc]
        except DispatchError as e:
            log.debug("training: %s", e)
            return False
        return True
