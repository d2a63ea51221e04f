"""Two web nodes on one database: unit changes, incidents and the training switch cross over the
bus (PostgreSQL NOTIFY), and a unit sent from both nodes at once goes to exactly one incident."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.runtime import CoreServices
from dispatch.model import UnitStatus, UnitUnavailable
from dispatch.service import DispatchService
from tests.conftest import make_settings

LUODING = (111.5700, 22.7690)


@pytest.fixture
async def nodes(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[DispatchService, DispatchService]]:
    started = []
    for name in ("a", "b"):
        core = await CoreServices.start(make_settings(fresh_db_url, tmp_path / name, node_name=name), seed=False)
        svc = DispatchService(core)
        await svc.start()
        started.append((core, svc))
    await started[0][1].set_training(False, "test")
    yield started[0][1], started[1][1]
    for core, svc in started:
        await svc.stop()
        await core.stop()


async def eventually(check: Callable[[], bool]) -> None:
    """Wait (at most 5 s) until the other node has caught up."""
    async with asyncio.timeout(5):
        while True:  # the other node's state has no event of its own to await
            if check():
                return
            await asyncio.sleep(0.02)


async def test_state_crosses_nodes(nodes: tuple[DispatchService, DispatchService]) -> None:
    a, b = nodes
    await eventually(lambda: not b.training)
    inc = await a.create_incident(category="police", priority=2, lon=LUODING[0], lat=LUODING[1], actor="d1")
    await a.dispatch(inc.id, ["luoding-police-1"], "d1")
    await eventually(lambda: b.unit("luoding-police-1").status == UnitStatus.DISPATCHED)
    _card, results = b.recommend_for(await b.incident(inc.id))
    assert "luoding-police-1" not in [c.unit_id for r in results for c in r.candidates]
    # a fix ingested on node b arrives the unit at node a's incident (b learnt the incident over the bus)
    now = datetime.now(UTC)
    await eventually(lambda: inc.id in b._open_locations)
    for i in range(2):
        fix = {"unit_id": "luoding-police-1", "lon": LUODING[0], "lat": LUODING[1],
               "ts": now.replace(microsecond=i).isoformat()}
        await b.ingest_avl([fix], "avl")
    assert (await a.incident(inc.id)).status.value == "on_scene"
    await eventually(lambda: a.unit("luoding-police-1").status == UnitStatus.ON_SCENE)
    await a.set_training(True, "d1")
    await eventually(lambda: b.training)


async def test_one_unit_from_two_nodes_one_wins(nodes: tuple[DispatchService, DispatchService]) -> None:
    a, b = nodes
    i1 = await a.create_incident(category="police", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d1")
    i2 = await b.create_incident(category="police", priority=3, lon=LUODING[0], lat=LUODING[1], actor="d2")
    results = await asyncio.gather(a.dispatch(i1.id, ["luoding-police-2"], "d1"),
                                   b.dispatch(i2.id, ["luoding-police-2"], "d2"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Incident", "UnitUnavailable"]
    assert any(isinstance(r, UnitUnavailable) for r in results)
    rows = await a.db.fetch("SELECT incident_id FROM incident_units WHERE unit_id = 'luoding-police-2'")
    assert len(rows) == 1
