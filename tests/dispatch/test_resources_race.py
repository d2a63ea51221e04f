"""Allocation under concurrency on a real PostgreSQL, many at once (the HTTP test in
test_resources_api.py races two dispatchers): every contender gets its own connection and
transaction; the stock row's lock serialises them; exactly as many win as the stock covers, the
losers are refused with the shortage named, and the stock never goes below zero."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.runtime import CoreServices
from dispatch.resources.model import ResourceConflict, load_catalogue
from dispatch.resources.service import ResourceService
from dispatch.service import DispatchService
from gis.routing import EtaEstimator
from tests.conftest import ROOT, make_settings

DEPOT = "depot-luojing"  # 300 sandbags in the demo catalogue


@pytest.fixture
async def svc(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[DispatchService, ResourceService]]:
    settings = make_settings(fresh_db_url, tmp_path)
    settings.database.pool_size = 20  # a connection for every contender
    core = await CoreServices.start(settings, seed=False)
    d = DispatchService(core)
    await d.start()
    await d.set_training(False, "test")
    resources = ResourceService(core, EtaEstimator(), load_catalogue(ROOT / "config/demo/resources.toml"))
    await resources.start()
    yield d, resources
    await resources.stop()
    await d.stop()
    await core.stop()


async def stock(r: ResourceService) -> int:
    q = await r.db.fetchval("SELECT quantity FROM resource_stock WHERE resource_id = $1 AND item = 'sandbag'", DEPOT)
    return int(q)


@pytest.mark.parametrize("contenders,each,winners", [(8, 100, 1), (12, 30, 3)])
async def test_many_dispatchers_allocate_at_once(svc: tuple[DispatchService, ResourceService], contenders: int,
                                                 each: int, winners: int) -> None:
    d, r = svc
    incidents = [(await d.create_incident(category="flood_control", subtype="flood", priority=1, lon=111.68,
                                          lat=22.525, actor=f"dispatcher{i}")).id for i in range(contenders)]
    start = await stock(r)
    await r.allocate(incidents[0], DEPOT, "sandbag", start - 100, uuid.uuid4().hex, "dispatcher0")
    assert await stock(r) == 100  # the last 100

    gate = asyncio.Event()

    async def one(i: int) -> int:
        await gate.wait()
        try:
            await r.allocate(incidents[i], DEPOT, "sandbag", each, uuid.uuid4().hex, f"dispatcher{i}")
            return each
        except ResourceConflict as e:
            assert "库存不足" in str(e)
            return 0

    tasks = [asyncio.create_task(one(i)) for i in range(contenders)]
    await asyncio.sleep(0)
    gate.set()
    got = await asyncio.gather(*tasks)
    assert sum(1 for g in got if g) == winners, got
    left = await stock(r)
    assert left == 100 - winners * each and left >= 0
    held = await r.db.fetchval("SELECT sum(quantity) FROM resource_allocations WHERE resource_id = $1 "
                               "AND item = 'sandbag' AND released_at IS NULL", DEPOT)
    assert held == start - left  # what left the stock is exactly what the incidents hold
    assert r.resource(DEPOT).stock["sandbag"] == left  # the directory agrees with the database
