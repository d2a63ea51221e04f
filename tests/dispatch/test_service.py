"""The dispatch service on a real PostgreSQL: persistence, lifecycle, conflicts, AVL, exchange."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from core.runtime import CoreServices
from dispatch import store
from dispatch.exchange.cap import CapError, validate_cap
from dispatch.exchange.eido import EidoError
from dispatch.model import (
    IllegalTransition,
    Incident,
    IncidentStatus,
    UnitStatus,
    UnitUnavailable,
    ValidationError,
)
from dispatch.service import DispatchService
from tests.conftest import make_settings

LUODING = (111.5700, 22.7690)  # inside Luoding (445381)


@pytest.fixture
async def svc(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[DispatchService]:
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)  # no argon2 hashing
    s = DispatchService(core)
    await s.start()
    await s.set_training(False, "test")
    yield s
    await s.stop()
    await core.stop()


async def test_create_persists_and_reloads(svc: DispatchService) -> None:
    inc = await svc.create_incident(category="fire", subtype="residential", priority=1, lon=LUODING[0],
                                    lat=LUODING[1], actor="dispatcher", address="罗城街道某小区", call_id="call-1",
                                    caller_number="13800000000")
    assert inc.location.county_code == 445381 and inc.location.township_code is not None
    again = await svc.incident(inc.id)
    assert again == inc
    row = await svc.db.fetchrow("SELECT status, township_id FROM incidents WHERE id = $1", inc.id)
    assert row is not None and row["status"] == "new" and row["township_id"].startswith("445381-")
    audit = await svc.core.audit.recent(5, action="incident.create")
    assert audit and audit[0].target == inc.id


async def test_lifecycle_to_closure_and_reopen(svc: DispatchService) -> None:
    inc = await svc.create_incident(category="medical", subtype="cardiac", priority=1, lon=LUODING[0],
                                    lat=LUODING[1], actor="d1")
    name, rec = await svc.recommend(inc.id)
    assert name and rec[0].recommended, "an ALS ambulance is recommended"
    inc = await svc.dispatch_recommended(inc.id, "d1")
    uid = inc.assigned_units[0]
    assert inc.status == IncidentStatus.DISPATCHED
    await svc.set_unit_status(uid, "en_route", "d1")
    await svc.set_unit_status(uid, "on_scene", "d1")
    assert (await svc.incident(inc.id)).status == IncidentStatus.ON_SCENE
    with pytest.raises(IllegalTransition):
        await svc.close_incident(inc.id, "送医", "d1")  # unit still assigned
    await svc.set_unit_status(uid, "returning", "d1")
    inc = await svc.close_incident(inc.id, "已送医", "d1")
    assert inc.status == IncidentStatus.CLOSED and svc.unit(uid).status == UnitStatus.RETURNING
    inc = await svc.reopen_incident(inc.id, "病人再次求助", "d1")
    assert inc.status == IncidentStatus.NEW
    actions = [e.action for e in (await svc.incident(inc.id)).timeline]
    assert actions[:2] == ["created", "unit_assigned"] and "unit_arrived" in actions and actions[-1] == "reopened"
    history = await svc.db.fetch("SELECT status FROM unit_status_history WHERE unit_id = $1 ORDER BY id", uid)
    assert [r["status"] for r in history] == ["dispatched", "en_route", "on_scene", "returning"]


async def test_timeline_is_append_only(svc: DispatchService) -> None:
    inc = await svc.create_incident(category="police", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d1")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await svc.db.execute("UPDATE incident_timeline SET actor = 'x' WHERE incident_id = $1", inc.id)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await svc.db.execute("DELETE FROM incident_timeline WHERE incident_id = $1", inc.id)


async def test_joint_incident_merge_and_link(svc: DispatchService) -> None:
    a = await svc.create_incident(category="traffic", subtype="entrapment", priority=1, lon=LUODING[0],
                                  lat=LUODING[1], actor="d1")
    a = await svc.dispatch_recommended(a.id, "d1")
    assert a.joint and {"police", "fire", "medical"} <= set(a.agencies)
    b = await svc.create_incident(category="traffic", priority=2, lon=LUODING[0], lat=LUODING[1], actor="d2",
                                  call_id="call-9")
    c = await svc.create_incident(category="fire", subtype="vehicle", priority=2, lon=LUODING[0], lat=LUODING[1],
                                  actor="d2")
    await svc.link_incidents(a.id, c.id, "d1")
    a2, b2 = await svc.merge_incidents(a.id, b.id, "d1")
    a2, b2 = await svc.incident(a.id), await svc.incident(b.id)
    assert b2.merged_into == a.id and b2.status == IncidentStatus.CLOSED
    assert b.id in a2.merged_from and "call-9" in a2.calls and c.id in a2.related
    assert a.id in (await svc.incident(c.id)).related


async def test_concurrent_dispatch_of_one_unit_one_wins(svc: DispatchService) -> None:
    i1 = await svc.create_incident(category="police", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d1")
    i2 = await svc.create_incident(category="police", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d2")
    unit = "luoding-police-1"
    results = await asyncio.gather(svc.dispatch(i1.id, [unit], "d1"), svc.dispatch(i2.id, [unit], "d2"),
                                   return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 1 and isinstance(losses[0], UnitUnavailable)
    assert "不能调派" in str(losses[0])
    rows = await svc.db.fetch("SELECT incident_id FROM incident_units WHERE unit_id = $1 AND released_at IS NULL", unit)
    assert len(rows) == 1 and rows[0]["incident_id"] == wins[0].id
    loser = i2 if wins[0].id == i1.id else i1
    assert (await svc.incident(loser.id)).assigned_units == ()


async def test_avl_batch_rejects_per_item_and_stores_track(svc: DispatchService) -> None:
    now = datetime.now(UTC)
    items = [
        {"unit_id": "luoding-police-1", "lon": 111.57, "lat": 22.77, "ts": now.isoformat()},
        {"unit_id": "no-such-unit", "lon": 111.57, "lat": 22.77, "ts": now.isoformat()},
        {"unit_id": "luoding-police-2", "lon": 211.0, "lat": 22.77, "ts": now.isoformat()},
        {"unit_id": "luoding-police-2", "lon": 111.5, "lat": 22.7, "ts": (now + timedelta(hours=1)).isoformat()},
        "garbage",
        {"unit_id": "luoding-police-1", "lon": 111.56, "lat": 22.76, "ts": (now - timedelta(seconds=30)).isoformat()},
    ]
    result = await svc.ingest_avl(items, "avl-gw")
    assert len(result.accepted) == 2
    assert [(r.index, r.code) for r in result.rejected] == [
        (1, "unknown_unit"), (2, "bad_coordinates"), (3, "future_timestamp"), (4, "malformed")]
    track = await svc.db.fetch("SELECT lon FROM unit_positions WHERE unit_id = 'luoding-police-1' ORDER BY at")
    assert [r["lon"] for r in track] == [111.56, 111.57]
    row = await svc.db.fetchrow("SELECT lon, lat FROM units WHERE id = 'luoding-police-1'")
    assert row is not None and (row["lon"], row["lat"]) == (111.57, 22.77), "the older fix did not move the unit back"
    assert svc.unit("luoding-police-1").position is not None


async def test_geofence_arrival_puts_unit_on_scene(svc: DispatchService) -> None:
    inc = await svc.create_incident(category="police", priority=2, lon=LUODING[0], lat=LUODING[1], actor="d1")
    await svc.dispatch(inc.id, ["luoding-police-2"], "d1")
    t0 = datetime.now(UTC) - timedelta(seconds=10)
    far = {"unit_id": "luoding-police-2", "lon": LUODING[0] + 0.05, "lat": LUODING[1], "ts": t0.isoformat()}
    near = [{"unit_id": "luoding-police-2", "lon": LUODING[0] + 0.0005, "lat": LUODING[1],
             "ts": (t0 + timedelta(seconds=i + 1)).isoformat()} for i in range(2)]
    await svc.ingest_avl([far], "avl")
    await svc.ingest_avl([near[0]], "avl")
    assert svc.unit("luoding-police-2").status == UnitStatus.DISPATCHED, "one fix inside is not arrival"
    await svc.ingest_avl([near[1]], "avl")
    assert svc.unit("luoding-police-2").status == UnitStatus.ON_SCENE
    inc = await svc.incident(inc.id)
    assert inc.status == IncidentStatus.ON_SCENE and inc.timeline[-2].actor == "geofence"


async def test_eido_round_trip_and_bad_document(svc: DispatchService) -> None:
    inc = await svc.create_incident(category="flood_control", subtype="flood", priority=2, lon=LUODING[0],
                                    lat=LUODING[1], actor="d1", description="内涝", address="罗城")
    doc = await svc.export_eido(inc.id)
    doc["incidentComponent"]["incidentTrackingIdentifier"] = "EXT-1"
    with pytest.raises(IllegalTransition):
        await svc.import_eido(await svc.export_eido(inc.id), "d1")  # same id again
    with pytest.raises(EidoError) as err:
        await svc.import_eido({"eidoMessageIdentifier": 5}, "d1")
    assert len(err.value.errors) >= 2


async def test_cap_issue_good_and_bad(svc: DispatchService) -> None:
    square = [[111.5, 22.7], [111.6, 22.7], [111.6, 22.8], [111.5, 22.8]]
    out = await svc.issue_cap(event="暴雨", level="orange", headline="罗定暴雨橙色预警", description="强降雨",
                              instruction="注意防范", actor="d1", polygon=square)
    assert validate_cap(out["xml"]) == [] and await svc.cap_alert_xml(out["identifier"]) == out["xml"]
    with pytest.raises(CapError) as err:
        await svc.issue_cap(event="暴雨", level="purple", headline="x", description="x", instruction="x", actor="d1",
                            polygon=[[111.5, 22.7], [111.6, 22.7]])
    rules = {i.rule for i in err.value.issues}
    assert "enum" in rules
    with pytest.raises(CapError) as err:
        await svc.issue_cap(event="暴雨", level="red", headline="x", description="x", instruction="x", actor="d1",
                            polygon=[[111.5, 22.7], [111.6, 22.7]])
    assert {i.rule for i in err.value.issues} == {"polygon"}
    assert await svc.db.fetchval("SELECT count(*) FROM cap_alerts") == 1


async def test_command_conference_record_and_event(svc: DispatchService) -> None:
    inc = await svc.create_incident(category="fire", subtype="industrial", priority=1, lon=LUODING[0],
                                    lat=LUODING[1], actor="d1")
    with svc.core.bus.subscribe("conference.*") as sub:
        conf = await svc.request_conference(inc.id, "dispatcher")
        event = await asyncio.wait_for(sub.get(), 5)
    assert event.topic == "conference.command_requested" and event.payload["conference_id"] == conf.conference_id
    assert "luoding-room" in conf.rooms and conf.dispatcher == "dispatcher"
    assert conf.status == "requested" and event.payload["status"] == "requested"  # no MCU on this node
    rows = await svc.conferences(inc.id)
    assert rows[0]["conference_id"] == conf.conference_id and len(conf.conference_id) == 8


async def test_training_data_is_separate_and_excluded_from_statistics(svc: DispatchService) -> None:
    real = await svc.create_incident(category="police", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d1")
    await svc.set_training(True, "d1")
    drill = await svc.create_incident(category="police", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d1")
    assert drill.training and drill.id.startswith("DRILL")
    assert [i.id for i in await svc.incidents()] == [drill.id]
    assert all(u.training for u in svc.units())
    with pytest.raises(ValidationError):
        await svc.dispatch(drill.id, ["luoding-police-1"], "d1")  # a real unit never serves a drill
    stats = await svc.statistics()
    assert stats["incidents"] == {"new": 1}
    await svc.set_training(False, "d1")
    assert [i.id for i in await svc.incidents()] == [real.id]


async def test_bad_input_changes_nothing(svc: DispatchService) -> None:
    with pytest.raises(ValidationError):
        await svc.create_incident(category="nope", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d1")
    with pytest.raises(ValidationError):
        await svc.create_incident(category="police", priority=9, lon=LUODING[0], lat=LUODING[1], actor="d1")
    with pytest.raises(ValidationError):
        await svc.create_incident(category="police", priority=3, lon=500, lat=LUODING[1], actor="d1")
    assert await svc.db.fetchval("SELECT count(*) FROM incidents") == 0
    async with svc.db.pool.acquire() as conn:
        assert len(await store.load_units(conn)) == 112  # 56 demo units and their 演练 twins


async def test_every_version_reloads_exactly(svc: DispatchService) -> None:
    """The diff writer is lossless: after each change, the stored incident equals the model's."""
    a = await svc.create_incident(category="fire", subtype="commercial", priority=2, lon=LUODING[0],
                                  lat=LUODING[1], actor="d1", call_id="c-1", caller_number="139", caller_name="张三",
                                  uncertainty_m=25.0, address="罗城", description="商场起火")
    b = await svc.create_incident(category="fire", subtype="commercial", priority=3, lon=LUODING[0],
                                  lat=LUODING[1], actor="d2", call_id="c-2")
    assert await svc.incident(a.id) == a

    async def check(coro: Awaitable[Incident]) -> None:
        version = await coro
        assert await svc.incident(version.id) == version

    await check(svc.dispatch(a.id, ["luoding-fire-1", "luoding-medical-1"], "d1"))  # joint: medical added
    await check(svc.recall(a.id, "luoding-fire-1", "d1"))
    await svc.set_unit_status("luoding-fire-1", "available", "d1")
    await check(svc.dispatch(a.id, ["luoding-fire-1"], "d1"))  # the same unit again
    await check(svc.add_note(a.id, "二楼有被困人员", "d1"))
    await check(svc.link_call(a.id, "c-3", "d1"))
    await check(svc.set_priority(a.id, 1, "d1"))
    await check(svc.set_incident_status(a.id, "under_control", "d1", agency="medical"))
    await check(svc.set_location(a.id, LUODING[0] + 0.001, LUODING[1], "d1", 10.0, "罗城东"))
    await svc.dispatch(b.id, ["luoding-fire-2"], "d2")
    merged, dup = await svc.merge_incidents(a.id, b.id, "d1")
    assert await svc.incident(a.id) == merged
    assert await svc.incident(b.id) == dup
    stored = await svc.incident(a.id)
    assert stored.component("fire").units == ("luoding-fire-1", "luoding-fire-2")
    assert stored.component("fire").released_units == ("luoding-fire-1",)
    assert svc.unit("luoding-fire-2").incident_id == a.id  # followed the merge
    row = await svc.db.fetchval("SELECT incident_id FROM units WHERE id = 'luoding-fire-2'")
    assert row == a.id
    assert [e.seq for e in stored.timeline] == list(range(1, len(stored.timeline) + 1))
