"""The dispatch service: the model, persisted in PostgreSQL, audited and published on the bus.

Every command runs in one transaction: it locks the incident row (and the unit rows it touches,
always incident first, then units by id, so two commands never deadlock), applies a pure model
function, writes the difference (``dispatch.store``) and stores its bus event in the same
transaction (the bus outbox, ``Bus.publish_in``: a failover can't leave an incident without its
event), commits, then delivers the event locally and records the audit entry. Two dispatchers sending the same unit: the second waits on the
unit's row lock, then sees it dispatched and gets ``UnitUnavailable`` (HTTP 409); nothing of its
request is written.

Unit positions and statuses are also kept in memory in a ``Recommender`` (spatial indexes per
capability), so a recommendation needs one incident read and no unit reads. Other processes'
unit changes arrive over the bus and are reloaded from the database.

The emergency desk (issue 8) creates incidents with ``create_incident``.

Size: about 670 lines because this is the incidents' one write path: every change to an
incident or unit goes through one transaction here, with its audit row and bus event.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from core.bus import Event
from core.runtime import CoreServices
from dispatch import model as m
from dispatch import store
from dispatch.avl import ArrivalDetector, AvlBatchResult, validate_batch
from dispatch.conference import BusConferenceStarter, CommandConference, ConferenceStarter
from dispatch.duplicates import find_duplicates
from dispatch.exchange import cap as capmod
from dispatch.exchange import eido
from dispatch.model import (
    DispatchError,
    Incident,
    IncidentStatus,
    Location,
    Unit,
    UnitStatus,
    ValidationError,
)
from dispatch.recommendation import Recommender, RequirementResult, recommended_unit_ids
from dispatch.response_plans import ResponsePlans
from dispatch.site import (
    gazetteer_from_plan,
    jurisdictions_from_plan,
    leader_rooms,
    nearest_township,
    stations_from_plan,
    townships_from_plan,
    units_from_plan,
)
from dispatch.views import incident_view, unit_view
from gis.routing import EtaEstimator

log = logging.getLogger(__name__)

DEFAULT_PLANS = Path(__file__).resolve().parent / "response_plans_default.toml"
Clock = Callable[[], datetime]
TRACK_COLUMNS = ("unit_id", "at", "lon", "lat", "speed_kmh", "heading_deg", "accuracy_m")


class IncidentNotFound(DispatchError):
    pass


def _utcnow() -> datetime:
    return datetime.now(UTC)


def training_default(core: CoreServices) -> bool:
    """Training mode at first start: ``dispatch.training`` wins when set; else on in the demo
    configuration, except under the test suite (``CC_TESTING``) where a simulator would add noise."""
    if core.settings.dispatch.training is not None:
        return core.settings.dispatch.training
    return core.settings.demo.enabled and not os.environ.get("CC_TESTING")


class DispatchService:
    """Incidents, units, recommendation, AVL, exchange formats and command conferences."""

    def __init__(self, core: CoreServices, *, plans: ResponsePlans | None = None, eta: EtaEstimator | None = None,
                 clock: Clock = _utcnow, conference: ConferenceStarter | None = None,
                 stale_after_s: float = 300.0) -> None:
        self.core = core
        self.db = core.db
        self.plan = core.plan
        self.clock = clock
        self.plans = plans or ResponsePlans.load(DEFAULT_PLANS)
        self.jurisdictions = jurisdictions_from_plan(core.plan)
        self.county_names = {a.code: a.name for a in self.jurisdictions.counties.areas}
        self.townships = townships_from_plan(core.plan)
        self.township_names = {t.code: t.name for t in self.townships}
        self.gazetteer = gazetteer_from_plan(core.plan, list(self.jurisdictions.counties.areas))
        self.stations = {s.id: s for s in stations_from_plan(core.plan)}
        self.stale_after_s = stale_after_s
        self.recommender = Recommender(eta or EtaEstimator(), self.stations, stale_after_s=stale_after_s)
        self.arrivals = ArrivalDetector()
        # the MCU's starter when the composition root passes one; otherwise only asked for on the bus
        self.conference = conference or BusConferenceStarter(core.bus)
        self.training = False
        self._open_locations: dict[str, tuple[float, float]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._avl_lock = asyncio.Lock()
        self.on_training_change: list[Callable[[bool], Awaitable[None]]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Seed stations and units from the plan (real and 演练 twins), load state, follow the bus."""
        async with self.db.transaction() as conn:
            await store.seed_stations_and_units(
                conn, self.stations.values(), units_from_plan(self.plan) + units_from_plan(self.plan, training=True))
            flag = await conn.fetchval("SELECT value FROM dispatch_settings WHERE key = 'training'")
            if flag is None or self.core.settings.dispatch.training is not None:
                flag = training_default(self.core)
                await conn.execute("INSERT INTO dispatch_settings (key, value) VALUES ('training', $1) "
                                   "ON CONFLICT (key) DO UPDATE SET value = $1", flag)
            self.training = bool(flag)
            units = await store.load_units(conn)
            rows = await conn.fetch("SELECT id, lon, lat FROM incidents WHERE status <> 'closed'")
        self.recommender.upsert_many(units)
        self._open_locations = {r["id"]: (r["lon"], r["lat"]) for r in rows}
        self._listener = asyncio.create_task(self._follow_bus(), name="dispatch-bus")

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _follow_bus(self) -> None:
        """Follow other processes: reload the units their events name, track their incidents."""
        with self.core.bus.subscribe("*", maxsize=10_000) as sub:
            async for event in sub:
                if event.origin == self.core.bus.node_id:
                    continue
                if event.topic in ("incident.created", "incident.updated"):
                    self._track_view(event.payload.get("incident"))
                    continue
                if event.topic == "system.training_mode" and isinstance(event.payload.get("enabled"), bool):
                    self.training = event.payload["enabled"]  # switched on another node
                    for hook in self.on_training_change:
                        await hook(self.training)
                    continue
                if not event.topic.startswith("unit."):
                    continue
                try:
                    await self._reload_from(event)
                except (OSError, asyncpg.PostgresError):
                    log.exception("dispatch: reloading units after %s failed", event.topic)

    def _track_view(self, view: Any) -> None:
        if isinstance(view, dict) and isinstance(view.get("id"), str):
            if view.get("status") == IncidentStatus.CLOSED.value:
                self._open_locations.pop(view["id"], None)
            elif isinstance(view.get("lon"), float) and isinstance(view.get("lat"), float):
                self._open_locations[view["id"]] = (view["lon"], view["lat"])

    async def _reload_from(self, event: Event) -> None:
        ids = [u["id"] for u in event.payload.get("units", []) if isinstance(u, dict) and "id" in u]
        ids += [p[0] for p in event.payload.get("positions", []) if isinstance(p, list) and p]
        if ids:
            async with self.db.pool.acquire() as conn:
                self.recommender.upsert_many(await store.load_units(conn, ids))

    # ------------------------------------------------------------------ views

    def view(self, inc: Incident) -> dict[str, Any]:
        return incident_view(inc, self.county_names, self.township_names)

    def unit_json(self, u: Unit) -> dict[str, Any]:
        return unit_view(u, self.stations, self.clock(), self.stale_after_s)

    def units(self, training: bool | None = None) -> list[Unit]:
        t = self.training if training is None else training
        return sorted((u for u in self.recommender.units.values() if u.training == t), key=lambda u: u.id)

    def unit(self, unit_id: str) -> Unit:
        try:
            return self.recommender.units[unit_id]
        except KeyError:
            raise ValidationError(f"未知力量 {unit_id}") from None

    async def incident(self, incident_id: str) -> Incident:
        async with self.db.pool.acquire() as conn:
            inc = await store.load_incident(conn, incident_id)
        if inc is None:
            raise IncidentNotFound(f"警情 {incident_id} 不存在")
        return inc

    async def incidents(self, training: bool | None = None, open_only: bool = False, limit: int = 500) -> list[Incident]:
        t = self.training if training is None else training
        async with self.db.pool.acquire() as conn:
            return await store.load_incidents(conn, training=t, open_only=open_only, limit=limit)

    async def statistics(self) -> dict[str, Any]:
        """Counts of real incidents and units (training data is excluded)."""
        rows = await self.db.fetch(
            "SELECT status, count(*) AS n FROM incidents WHERE NOT training GROUP BY status")
        units = await self.db.fetch("SELECT status, count(*) AS n FROM units WHERE NOT training GROUP BY status")
        return {"incidents": {r["status"]: r["n"] for r in rows}, "units": {r["status"]: r["n"] for r in units},
                "training_excluded": True}

    # ------------------------------------------------------------------ plumbing

    async def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        await self.core.bus.publish(topic, payload)

    async def _audit(self, actor: str, action: str, target: str, source: str, detail: dict[str, Any] | None = None,
                     outcome: str = "ok") -> None:
        await self.core.audit.record(actor, action, target, outcome=outcome, source=source, detail=detail)

    def _track(self, inc: Incident) -> None:
        if inc.status == IncidentStatus.CLOSED:
            self._open_locations.pop(inc.id, None)
        else:
            self._open_locations[inc.id] = (inc.location.lon, inc.location.lat)

    async def _publish_in(self, conn: asyncpg.Connection, actor: str, action: str, new: Incident,
                          units: Sequence[Unit] = (), topic: str = "incident.updated") -> list[Event]:
        """Inside the write's transaction: store its events with it (the outbox; delivered after commit)."""
        events = [await self.core.bus.publish_in(
            conn, topic, {"incident": self.view(new), "action": action, "actor": actor})]
        if units:
            events.append(await self.core.bus.publish_in(
                conn, "unit.status", {"units": [self.unit_json(u) for u in units], "actor": actor}))
        return events

    async def _commit_incident(self, actor: str, action: str, source: str, new: Incident,
                               units: Sequence[Unit] = (), detail: dict[str, Any] | None = None,
                               topic: str = "incident.updated", events: Sequence[Event] = ()) -> Incident:
        """After the commit: caches, the outbox's events delivered here, the audit entry."""
        self._track(new)
        self.recommender.upsert_many(units)
        self.core.bus.deliver_committed(*events)
        await self._audit(actor, action, new.id, source, detail)
        return new

    def resolve_location(self, lon: float, lat: float, uncertainty_m: float | None = None, source: str = "manual",
                         address: str = "") -> tuple[Location, str | None]:
        """A Location with its county (boundaries) and township (nearest centre in the county)."""
        try:
            county = self.jurisdictions.county_of(lon, lat)
        except ValueError as e:
            raise ValidationError(str(e)) from None
        code = county.code if county else None
        town = nearest_township(self.townships, code, lon, lat) if code else None
        loc = Location(lon, lat, uncertainty_m, source, address, code, town.code if town else None)
        return loc, town.id if town else None

    async def _next_id(self, conn: asyncpg.Connection, training: bool) -> str:
        n = await conn.fetchval("SELECT nextval('incident_seq')")
        prefix = "DRILL" if training else "JQ"
        return f"{prefix}{self.clock().astimezone(capmod.BEIJING):%Y%m%d}-{n:05d}"

    # ------------------------------------------------------------------ incidents

    async def create_incident(
        self, *, category: str, subtype: str = "general", priority: int, lon: float, lat: float, actor: str,
        uncertainty_m: float | None = None, address: str = "", description: str = "", caller_number: str = "",
        caller_name: str = "", call_id: str | None = None, agencies: Iterable[str] = (),
        training: bool | None = None, location_source: str = "manual", source: str = "",
    ) -> Incident:
        """Log a new incident (the desk and the console call this). ValidationError on bad input."""
        training = self.training if training is None else training
        loc, township_id = self.resolve_location(lon, lat, uncertainty_m, location_source, address)
        now = self.clock()
        async with self.db.transaction() as conn:
            inc = m.new_incident(await self._next_id(conn, training), category, subtype, priority, loc, now, actor,
                                 description=description, caller=m.Caller(caller_number, caller_name),
                                 call_id=call_id, agencies=agencies, training=training)
            await store.save_incident(conn, inc, None, township_id)
            events = await self._publish_in(conn, actor, "incident.create", inc, topic="incident.created")
        return await self._commit_incident(actor, "incident.create", source, inc, topic="incident.created",
                                           detail={"category": category, "priority": priority, "training": training},
                                           events=events)

    async def save_new(self, inc: Incident, actor: str, source: str = "", action: str = "incident.import") -> Incident:
        """Store a fully formed incident (EIDO import, training); its id must be new."""
        _loc, township_id = self.resolve_location(inc.location.lon, inc.location.lat)
        async with self.db.transaction() as conn:
            if await conn.fetchval("SELECT 1 FROM incidents WHERE id = $1", inc.id):
                raise m.IllegalTransition(f"警情 {inc.id} 已存在")
            unknown = [u for u in inc.assigned_units if u not in self.recommender.units]
            if unknown:
                raise ValidationError(f"未知力量: {', '.join(unknown)}")
            if inc.assigned_units:
                raise ValidationError("导入的警情不能带有在岗力量（请导入后再调派）")
            await store.save_incident(conn, inc, None, township_id)
            events = await self._publish_in(conn, actor, action, inc, topic="incident.created")
        return await self._commit_incident(actor, action, source, inc, topic="incident.created", events=events)

    async def mutate(self, incident_id: str, change: Callable[[Incident, datetime], Incident], actor: str,
                     action: str, source: str = "", detail: dict[str, Any] | None = None,
                     township_id: str | None = None) -> Incident:
        """Apply a pure model change to one incident in a transaction (row locked)."""
        async with self.db.transaction() as conn:
            old = await store.load_incident(conn, incident_id, for_update=True)
            if old is None:
                raise IncidentNotFound(f"警情 {incident_id} 不存在")
            new = change(old, self.clock())
            await store.save_incident(conn, new, old, township_id)
            events = await self._publish_in(conn, actor, action, new)
        return await self._commit_incident(actor, action, source, new, detail=detail, events=events)

    async def set_incident_status(self, incident_id: str, status: str, actor: str, agency: str | None = None,
                                  source: str = "") -> Incident:
        to = _incident_status(status)

        def change(inc: Incident, now: datetime) -> Incident:
            if agency:
                return m.set_component_status(inc, agency, to, now, actor)
            return m.set_status(inc, to, now, actor)
        return await self.mutate(incident_id, change, actor, "incident.status", source,
                                 {"status": to.value, "agency": agency})

    async def close_incident(self, incident_id: str, disposition: str, actor: str, source: str = "") -> Incident:
        return await self.mutate(incident_id, lambda i, t: m.close_incident(i, disposition, t, actor), actor,
                                 "incident.close", source, {"disposition": disposition})

    async def reopen_incident(self, incident_id: str, reason: str, actor: str, source: str = "") -> Incident:
        return await self.mutate(incident_id, lambda i, t: m.reopen_incident(i, reason, t, actor), actor,
                                 "incident.reopen", source, {"reason": reason})

    async def set_location(self, incident_id: str, lon: float, lat: float, actor: str, uncertainty_m: float | None = None,
                           address: str = "", location_source: str = "manual", source: str = "") -> Incident:
        """A better location (a new fix from the caller, a corrected address): county/township again."""
        loc, township_id = self.resolve_location(lon, lat, uncertainty_m, location_source, address)
        return await self.mutate(incident_id, lambda i, t: m.set_location(i, loc, t, actor), actor,
                                 "incident.location", source, {"lon": lon, "lat": lat}, township_id)

    async def add_note(self, incident_id: str, text: str, actor: str, source: str = "") -> Incident:
        return await self.mutate(incident_id, lambda i, t: m.add_note(i, text, t, actor), actor, "incident.note", source)

    async def link_call(self, incident_id: str, call_id: str, actor: str, source: str = "") -> Incident:
        return await self.mutate(incident_id, lambda i, t: m.link_call(i, call_id, t, actor), actor,
                                 "incident.link_call", source, {"call": call_id})

    async def set_priority(self, incident_id: str, priority: int, actor: str, source: str = "") -> Incident:
        return await self.mutate(incident_id, lambda i, t: m.set_priority(i, priority, t, actor), actor,
                                 "incident.priority", source, {"priority": priority})

    async def add_component(self, incident_id: str, agency: str, actor: str, source: str = "") -> Incident:
        return await self.mutate(incident_id, lambda i, t: m.add_component(i, agency, t, actor), actor,
                                 "incident.component", source, {"agency": agency})

    async def _pair(self, a_id: str, b_id: str, actor: str, action: str, source: str,
                    change: Callable[[Incident, Incident, datetime], tuple[Incident, Incident]]) -> tuple[Incident, Incident]:
        if a_id == b_id:
            raise ValidationError("不能对同一警情操作")
        async with self.db.transaction() as conn:
            first, second = sorted((a_id, b_id))  # lock order
            locked = {i: await store.load_incident(conn, i, for_update=True) for i in (first, second)}
            a, b = locked[a_id], locked[b_id]
            if a is None or b is None:
                raise IncidentNotFound(f"警情 {a_id if a is None else b_id} 不存在")
            a2, b2 = change(a, b, self.clock())
            await store.save_incident(conn, a2, a)
            await store.save_incident(conn, b2, b)
            moved = [u for u in await store.load_units(conn, list(b.assigned_units), for_update=True)
                     if u.incident_id == b.id] if action == "incident.merge" else []
            moved = m.units_after_merge(moved, a2, b.id)
            for u in moved:
                await conn.execute("UPDATE units SET incident_id = $2 WHERE id = $1", u.id, u.incident_id)
            b_events = await self._publish_in(conn, actor, action, b2)
            a_events = await self._publish_in(conn, actor, action, a2, moved)
        await self._commit_incident(actor, action, source, b2, detail={"other": a_id}, events=b_events)
        await self._commit_incident(actor, action, source, a2, units=moved, detail={"other": b_id}, events=a_events)
        return a2, b2

    async def link_incidents(self, a_id: str, b_id: str, actor: str, source: str = "") -> tuple[Incident, Incident]:
        return await self._pair(a_id, b_id, actor, "incident.link", source,
                                lambda a, b, t: m.link_incidents(a, b, t, actor))

    async def merge_incidents(self, primary_id: str, dup_id: str, actor: str, source: str = "") -> tuple[Incident, Incident]:
        return await self._pair(primary_id, dup_id, actor, "incident.merge", source,
                                lambda a, b, t: m.merge_incidents(a, b, t, actor))

    async def possible_duplicates(self, lon: float, lat: float, category: str,
                                  training: bool | None = None) -> list[dict[str, Any]]:
        """Open incidents near a new call that may be the same event (for the desk, issue 8)."""
        m.category(category)  # ValidationError for an unknown category
        open_ = await self.incidents(training=training, open_only=True)
        by_id = {i.id: i for i in open_}
        return [{"incident": self.view(by_id[d.incident_id]), "distance_m": round(d.distance_m),
                 "age_s": round(d.age_s), "same_category": d.same_category}
                for d in find_duplicates(lon, lat, category, self.clock(), open_)]

    # ------------------------------------------------------------------ recommendation and dispatch

    async def recommend(self, incident_id: str, exclude: Iterable[str] = ()) -> tuple[str, list[RequirementResult]]:
        """The run card's name and ranked candidates per requirement."""
        inc = await self.incident(incident_id)
        return self.recommend_for(inc, exclude)

    def recommend_for(self, inc: Incident, exclude: Iterable[str] = ()) -> tuple[str, list[RequirementResult]]:
        codes = [c for c in (inc.location.county_code, inc.location.township_code) if c]
        card = self.plans.select(inc.category, inc.subtype, inc.priority, codes)
        if card is None:
            return "", []
        return card.name, self.recommender.recommend(inc, card, self.clock(), exclude)

    async def dispatch(self, incident_id: str, unit_ids: Sequence[str], actor: str, source: str = "") -> Incident:
        """Send units (all or nothing). UnitUnavailable when any is already taken (HTTP 409)."""
        if not unit_ids:
            raise ValidationError("未选择力量")
        async with self.db.transaction() as conn:
            old = await store.load_incident(conn, incident_id, for_update=True)
            if old is None:
                raise IncidentNotFound(f"警情 {incident_id} 不存在")
            units = await store.load_units(conn, sorted(set(unit_ids)), for_update=True)
            unknown = set(unit_ids) - {u.id for u in units}
            if unknown:
                raise ValidationError(f"未知力量: {', '.join(sorted(unknown))}")
            by_id = {u.id: u for u in units}
            new, sent = m.assign_units(old, [by_id[i] for i in unit_ids], self.clock(), actor)
            await store.save_incident(conn, new, old)
            for before, after in zip([by_id[i] for i in unit_ids], sent, strict=True):
                await store.save_unit(conn, after, before, actor, source or "console")
            events = await self._publish_in(conn, actor, "incident.dispatch", new, sent)
        return await self._commit_incident(actor, "incident.dispatch", source, new, sent, {"units": list(unit_ids)},
                                           events=events)

    async def dispatch_recommended(self, incident_id: str, actor: str, source: str = "") -> Incident:
        inc = await self.incident(incident_id)
        ids = recommended_unit_ids(self.recommend_for(inc)[1])
        if not ids:
            raise m.UnitUnavailable("没有可推荐的力量")
        return await self.dispatch(incident_id, ids, actor, source)

    async def _unit_and_incident(self, conn: asyncpg.Connection, unit_id: str,
                                 incident_id: str | None = None) -> tuple[Unit, Incident | None]:
        """Lock incident then unit (the dispatch order); retry if the unit moved in between."""
        for _ in range(5):
            current = await conn.fetchval("SELECT incident_id FROM units WHERE id = $1", unit_id)
            if current is None and not await conn.fetchval("SELECT 1 FROM units WHERE id = $1", unit_id):
                raise ValidationError(f"未知力量 {unit_id}")
            target = incident_id or current
            inc = await store.load_incident(conn, target, for_update=True) if target else None
            if target and inc is None:
                raise IncidentNotFound(f"警情 {target} 不存在")
            unit = (await store.load_units(conn, [unit_id], for_update=True))[0]
            if unit.incident_id == current:
                return unit, inc
        raise m.UnitUnavailable(f"力量 {unit_id} 状态正在变化，请重试")

    async def recall(self, incident_id: str, unit_id: str, actor: str, source: str = "") -> Incident:
        """Recall (召回) a unit from an incident; it returns to its station."""
        async with self.db.transaction() as conn:
            unit, inc = await self._unit_and_incident(conn, unit_id, incident_id)
            assert inc is not None
            new, unit2 = m.release_unit(inc, unit, self.clock(), actor, recall=True)
            await store.save_incident(conn, new, inc)
            await store.save_unit(conn, unit2, unit, actor, source or "console")
            events = await self._publish_in(conn, actor, "incident.recall", new, [unit2])
        return await self._commit_incident(actor, "incident.recall", source, new, [unit2], {"unit": unit_id},
                                           events=events)

    async def set_unit_status(self, unit_id: str, status: str, actor: str, source: str = "console") -> Unit:
        """A status change from the console or a mobile post; arrival and clearing update the incident."""
        try:
            to = UnitStatus(status)
        except ValueError:
            raise ValidationError(f"未知力量状态 {status!r}，应为: {', '.join(UnitStatus)}") from None
        now = self.clock()
        async with self.db.transaction() as conn:
            unit, inc = await self._unit_and_incident(conn, unit_id)
            new_inc = inc
            if to == UnitStatus.DISPATCHED:
                raise ValidationError("调派请在警情中选择力量")
            if inc is not None and to == UnitStatus.ON_SCENE:
                new_inc, unit2 = m.unit_arrived(inc, unit, now, actor)
            elif inc is not None and to in (UnitStatus.RETURNING, UnitStatus.AVAILABLE):
                if to not in m.UNIT_TRANSITIONS[unit.status]:
                    m.change_unit_status(unit, to, now)  # raises the model's message
                new_inc, unit2 = m.release_unit(inc, unit, now, actor)
                if to == UnitStatus.AVAILABLE:
                    unit2 = dataclasses.replace(unit2, status=UnitStatus.AVAILABLE)
            else:
                unit2 = m.change_unit_status(unit, to, now)
                if inc is not None and to == UnitStatus.EN_ROUTE:
                    comp = inc.component(unit.agency)
                    if comp.status == IncidentStatus.DISPATCHED:
                        new_inc = m.set_component_status(inc, unit.agency, IncidentStatus.EN_ROUTE, now, actor)
            if new_inc is not None and new_inc is not inc:
                await store.save_incident(conn, new_inc, inc)
            await store.save_unit(conn, unit2, unit, actor, source)
            changed = new_inc is not None and new_inc is not inc
            if changed:
                assert new_inc is not None
                events = await self._publish_in(conn, actor, "unit.status", new_inc, [unit2])
            else:
                events = [await self.core.bus.publish_in(
                    conn, "unit.status", {"units": [self.unit_json(unit2)], "actor": actor})]
        if changed:
            assert new_inc is not None
            await self._commit_incident(actor, "unit.status", source, new_inc, [unit2], {"unit": unit_id, "status": to.value},
                                        events=events)
        else:
            self.recommender.upsert(unit2)
            self.core.bus.deliver_committed(*events)
            await self._audit(actor, "unit.status", unit_id, source, {"from": unit.status.value, "to": to.value})
        return unit2

    # ------------------------------------------------------------------ AVL

    async def ingest_avl(self, items: Any, actor: str, source: str = "avl") -> AvlBatchResult:
        """Validate a batch, store every accepted fix, move units, detect geofence arrival."""
        now = self.clock()
        units = self.recommender.units
        result = validate_batch(items, units, now, _LastFixes(units))
        if not result.accepted:
            return result
        fixes = result.accepted
        latest = [f for f in fixes if f.latest]
        async with self._avl_lock, self.db.transaction() as conn:
            await conn.copy_records_to_table(  # binary COPY: the cheapest way to append the track
                "unit_positions", columns=TRACK_COLUMNS,
                records=[(f.unit_id, f.position.at, f.position.lon, f.position.lat, f.position.speed_kmh,
                          f.position.heading_deg, f.accuracy_m) for f in fixes])
            await conn.execute(
                "UPDATE units u SET lon = v.lon, lat = v.lat, fix_at = v.at, speed_kmh = v.s, heading_deg = v.h "
                "FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], $6::float8[]) "
                "AS v(id, at, lon, lat, s, h) WHERE u.id = v.id AND (u.fix_at IS NULL OR u.fix_at <= v.at)",
                [f.unit_id for f in latest], [f.position.at for f in latest], [f.position.lon for f in latest],
                [f.position.lat for f in latest], [f.position.speed_kmh for f in latest],
                [f.position.heading_deg for f in latest])
        arrivals = []
        for f in latest:
            u = dataclasses.replace(units[f.unit_id], position=f.position)
            self.recommender.upsert(u)
            arrival = self.arrivals.observe(u.id, u.status, u.incident_id, f.position, self._open_locations.get)
            if arrival:
                arrivals.append(arrival)
        await self._publish("unit.positions", {
            "positions": [[f.unit_id, f.position.lon, f.position.lat, f.position.at.isoformat()] for f in latest],
            "source": source})
        for a in arrivals:
            try:
                await self.set_unit_status(a.unit_id, UnitStatus.ON_SCENE.value, "geofence", source="geofence")
            except DispatchError as e:  # a console change got there first: nothing to do
                log.info("geofence arrival of %s ignored: %s", a.unit_id, e)
        return result

    # ------------------------------------------------------------------ exchange formats

    async def export_eido(self, incident_id: str) -> dict[str, Any]:
        inc = await self.incident(incident_id)
        units = {u: self.recommender.units[u] for u in (*inc.assigned_units,
                 *(r for c in inc.components for r in c.released_units)) if u in self.recommender.units}
        return eido.export_incident(inc, units, now=self.clock())

    async def import_eido(self, doc: Any, actor: str, source: str = "") -> Incident:
        """EidoError (listing every problem) on a bad document; the incident is stored as is."""
        inc = eido.import_incident(doc)
        return await self.save_new(inc, actor, source)

    async def issue_cap(self, *, event: str, level: str, headline: str, description: str, instruction: str,
                        actor: str, polygon: Sequence[Sequence[float]] | None = None, county_code: int | None = None,
                        incident_id: str | None = None, area_desc: str = "", source: str = "") -> dict[str, Any]:
        """Build, check and store a CAP 1.2 alert (GB/T 35965.1 mapping). CapError lists the issues."""
        issues: list[capmod.CapIssue] = []
        try:
            warning_level = capmod.WarningLevel(level)
        except ValueError:
            issues.append(capmod.CapIssue("level", "enum", f"预警级别应为: {', '.join(capmod.WarningLevel)}"))
            warning_level = capmod.WarningLevel.BLUE
        areas: list[capmod.CapArea] = []
        if polygon:
            try:
                pts = [(float(p[0]), float(p[1])) for p in polygon]
            except (TypeError, ValueError, IndexError):
                issues.append(capmod.CapIssue("polygon", "polygon", "多边形顶点必须是 [经度, 纬度]"))
            else:
                areas.append(capmod.area_from_polygon(area_desc or "预警区域", pts))
        if county_code is not None:
            try:
                areas.append(capmod.area_from_admin(self.jurisdictions.area(county_code)))
            except KeyError:
                issues.append(capmod.CapIssue("county_code", "required", f"未知区划 {county_code}"))
        if not areas and not issues:
            issues.append(capmod.CapIssue("area", "required", "需要绘制预警区域或选择行政区"))
        cat = None
        inc = await self.incident(incident_id) if incident_id else None
        if inc is not None:
            cat = m.CATEGORIES[inc.category]
        draft = capmod.WarningDraft(
            adcode=int(self.plan.city.adcode), org_code="000", sender_name=f"{self.plan.city.name}应急指挥中心",
            event=event, gbt35561_code=(cat.code if cat else "90") + "000", level=warning_level, headline=headline,
            description=description, instruction=instruction, areas=tuple(areas),
            status="Exercise" if self.training else "Actual")
        now = self.clock()
        seq = int(await self.db.fetchval("SELECT count(*) FROM cap_alerts")) % 10
        alert = draft.to_alert(now, seq)
        xml = ""
        try:
            xml = capmod.build_cap(alert)  # refuses a document that breaks any CAP rule
        except capmod.CapError as e:
            issues += e.issues
        if issues:  # every problem at once, for the 422
            raise capmod.CapError(issues)
        area_json = [{"desc": a.desc, "polygons": [list(map(list, r)) for r in a.polygons],
                      "geocodes": [list(g) for g in a.geocodes]} for a in areas]
        try:
            await self.db.execute(
                "INSERT INTO cap_alerts (identifier, incident_id, issued_at, actor, event, level, area, xml, training) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                alert.identifier, incident_id, now, actor, event, warning_level.value, area_json, xml, self.training)
        except asyncpg.UniqueViolationError:  # GB/T identifiers allow 10 alerts per second
            raise m.IllegalTransition(f"预警编号 {alert.identifier} 已被占用，请稍后重试") from None
        if incident_id:
            await self.mutate(incident_id, lambda i, t: m.add_note(i, f"发布预警 {alert.identifier}：{headline}", t, actor),
                              actor, "incident.note", source)
        await self._audit(actor, "cap.issue", alert.identifier, source, {"event": event, "level": warning_level.value})
        out = {"identifier": alert.identifier, "xml": xml, "incident_id": incident_id, "areas": area_json,
               "training": self.training}
        await self._publish("incident.cap_issued", {k: v for k, v in out.items() if k != "xml"})
        return out

    async def cap_alert_xml(self, identifier: str) -> str | None:
        xml: str | None = await self.db.fetchval("SELECT xml FROM cap_alerts WHERE identifier = $1", identifier)
        return xml

    # ------------------------------------------------------------------ command conference

    async def request_conference(self, incident_id: str, actor: str, source: str = "",
                                 rooms: Sequence[str] | None = None) -> CommandConference:
        """Create the command conference record for an incident and ask the MCU to start it (with the
        county leaders' rooms, or ``rooms`` when given: a response plan's affected area)."""
        inc = await self.incident(incident_id)
        rooms = list(rooms) if rooms is not None else leader_rooms(self.plan, inc.location.county_code)
        async with self.db.transaction() as conn:
            n = await conn.fetchval("SELECT nextval('command_conference_seq')")
            conf_id = f"{90000000 + n:08d}"
            await conn.execute(
                "INSERT INTO command_conferences (conference_id, incident_id, county_code, rooms, dispatcher, training) "
                "VALUES ($1, $2, $3, $4, $5, $6)", conf_id, inc.id, inc.location.county_code, rooms, actor, inc.training)
        county = self.county_names.get(inc.location.county_code or 0, "")
        conf = CommandConference(conf_id, inc.id, f"{'【演练】' if inc.training else ''}{county}指挥会议 {inc.id}",
                                 inc.location.county_code, tuple(rooms), actor, inc.training)
        await self.mutate(inc.id, lambda i, t: m.add_note(i, f"启动指挥会议 {conf_id}（{'、'.join(rooms)}）", t, actor),
                          actor, "incident.conference", source, {"conference_id": conf_id})
        await self._audit(actor, "conference.command_request", conf_id, source, {"incident": inc.id, "rooms": rooms})
        status = await self.conference.start(conf)
        await self.db.execute("UPDATE command_conferences SET status = $2 WHERE conference_id = $1", conf_id, status)
        await self._publish("incident.conference_requested", {**conf.as_json(), "status": status})
        return dataclasses.replace(conf, status=status)

    async def conferences(self, incident_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT conference_id, incident_id, county_code, rooms, dispatcher, requested_at, status "
            "FROM command_conferences WHERE incident_id = $1 ORDER BY requested_at", incident_id)
        return [{**dict(r), "rooms": list(r["rooms"]), "requested_at": r["requested_at"].isoformat()} for r in rows]

    # ------------------------------------------------------------------ training mode

    async def set_training(self, enabled: bool, actor: str, source: str = "") -> None:
        await self.db.execute("INSERT INTO dispatch_settings (key, value) VALUES ('training', $1) "
                              "ON CONFLICT (key) DO UPDATE SET value = $1", enabled)
        self.training = enabled
        await self._audit(actor, "dispatch.training", "training", source, {"enabled": enabled})
        await self._publish("system.training_mode", {"enabled": enabled, "actor": actor})
        for hook in self.on_training_change:
            await hook(enabled)

    def search_places(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        return [{"id": s.place.id, "name": s.place.name, "label": s.label, "kind": s.place.kind,
                 "lon": s.place.lon, "lat": s.place.lat, "score": round(s.score, 1), "matched": s.matched,
                 "approximate": s.place.approximate} for s in self.gazetteer.search(query, limit)]


class _LastFixes(Mapping[str, datetime]):
    """Time of each unit's newest fix, read from the unit cache without copying it per batch."""

    def __init__(self, units: Mapping[str, Unit]) -> None:
        self._units = units

    def __getitem__(self, unit_id: str) -> datetime:
        pos = self._units[unit_id].position
        if pos is None:
            raise KeyError(unit_id)
        return pos.at

    def __iter__(self) -> Iterator[str]:
        return (uid for uid, u in self._units.items() if u.position is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _incident_status(status: str) -> IncidentStatus:
    try:
        return IncidentStatus(status)
    except ValueError:
        raise ValidationError(f"未知警情状态 {status!r}，应为: {', '.join(IncidentStatus)}") from None
