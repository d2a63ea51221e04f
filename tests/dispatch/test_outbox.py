"""The bus outbox (issue 17): an incident's event is stored in the incident's own transaction, so a
failover between the write and the event can't leave an incident that no console ever hears of."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.bus import Event
from core.runtime import CoreServices
from dispatch.service import DispatchService
from tests.conftest import make_settings

LUODING = (111.5700, 22.7690)


@pytest.fixture
async def svc(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[DispatchService]:
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    s = DispatchService(core)
    await s.start()
    await s.set_training(False, "test")
    yield s
    await s.stop()
    await core.stop()


class Failover(Exception):
    """The connection dies after the event row is written, before the commit."""


async def _stored(svc: DispatchService, topic: str) -> list[dict[str, Any]]:
    rows = await svc.db.fetch("SELECT payload FROM events WHERE topic = $1 ORDER BY id", topic)
    return [r["payload"] for r in rows]


async def _drain(sub: Any, seconds: float) -> list[Event]:
    got: list[Event] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            got.append(await asyncio.wait_for(sub.get(), left))
        except TimeoutError:
            break
    return got


async def test_a_rolled_back_create_leaves_neither_incident_nor_event(
        svc: DispatchService, monkeypatch: pytest.MonkeyPatch) -> None:
    real = svc.core.bus.publish_in

    async def then_fail(conn: asyncpg.Connection, topic: str, payload: dict[str, Any] | None = None) -> Event:
        event = await real(conn, topic, payload)
        assert await conn.fetchval("SELECT count(*) FROM events WHERE id = $1", event.id) == 1  # written...
        raise Failover  # ...but never committed

    monkeypatch.setattr(svc.core.bus, "publish_in", then_fail)
    with svc.core.bus.subscribe("incident.*") as sub:
        with pytest.raises(Failover):
            await svc.create_incident(category="fire", priority=1, lon=LUODING[0], lat=LUODING[1], actor="d1")
        assert await svc.db.fetchval("SELECT count(*) FROM incidents") == 0
        assert await _stored(svc, "incident.created") == []
        assert await _drain(sub, 2.5) == []  # nothing delivered, not by NOTIFY nor by a replay


async def test_a_committed_create_has_its_event_delivered_once(svc: DispatchService) -> None:
    with svc.core.bus.subscribe("incident.*") as sub:
        inc = await svc.create_incident(category="fire", priority=1, lon=LUODING[0], lat=LUODING[1], actor="d1")
        stored = await _stored(svc, "incident.created")
        assert [p["incident"]["id"] for p in stored] == [inc.id]
        # delivered after the commit here, and again offered by its NOTIFY and the 2 s replay: once
        got = await _drain(sub, 3.0)
    assert [(e.topic, e.payload["incident"]["id"]) for e in got] == [("incident.created", inc.id)]


async def test_dispatch_stores_incident_and_unit_events_with_the_units(svc: DispatchService) -> None:
    inc = await svc.create_incident(category="fire", subtype="residential", priority=1, lon=LUODING[0],
                                    lat=LUODING[1], actor="d1")
    with svc.core.bus.subscribe("*") as sub:
        sent = await svc.dispatch_recommended(inc.id, "d1")
        got = await _drain(sub, 3.0)
    topics = [e.topic for e in got if e.topic.startswith(("incident.", "unit."))]
    assert topics == ["incident.updated", "unit.status"]
    assert len({e.id for e in got}) == len(got)
    unit_rows = await svc.db.fetch("SELECT id FROM units WHERE incident_id = $1", inc.id)
    assert sorted(r["id"] for r in unit_rows) == sorted(sent.assigned_units)
    assert sorted(u["id"] for u in got[topics.index("unit.status")].payload["units"]) == sorted(sent.assigned_units)
