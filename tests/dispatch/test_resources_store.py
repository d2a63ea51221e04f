"""Allocation in PostgreSQL under real concurrency: many connections race for the same stock."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from core.runtime import CoreServices
from dispatch.resources import store
from dispatch.resources.model import Resource, ResourceConflict, ResourceKind

DEPOT = Resource("d-race", ResourceKind.DEPOT, "测试仓库", 112.04, 22.93, stock={"sandbag": 100, "pump": 2})


async def _setup(services: CoreServices) -> None:
    async with services.db.transaction() as conn:
        await store.seed(conn, [DEPOT])
        for i in range(10):
            await conn.execute("INSERT INTO incidents (id, category, subtype, priority, status, lon, lat, created_at) "
                               "VALUES ($1, 'flood_control', 'flood', 2, 'new', 112.0, 22.9, now())", f"INC{i}")


async def _try(services: CoreServices, i: int, quantity: int, request_id: str) -> str:
    try:
        async with services.db.transaction() as conn:
            await store.allocate(conn, request_id=request_id, incident_id=f"INC{i}", resource=DEPOT, item="sandbag",
                                 quantity=quantity, actor=f"d{i}", at=datetime.now(UTC))
        return "ok"
    except ResourceConflict as e:
        return str(e)


async def test_ten_connections_race_for_100_sandbags(services: CoreServices) -> None:
    await _setup(services)
    # ten dispatchers each want 30: exactly three win, and the stock stops at 10, never below 0
    outcomes = await asyncio.gather(*(_try(services, i, 30, f"req-{i}") for i in range(10)))
    assert outcomes.count("ok") == 3, outcomes
    assert all("库存不足" in o for o in outcomes if o != "ok")
    assert await services.db.fetchval("SELECT quantity FROM resource_stock WHERE resource_id = 'd-race' "
                                      "AND item = 'sandbag'") == 10
    assert await services.db.fetchval("SELECT count(*) FROM resource_allocations") == 3
    # the same request id from two connections at once: allocated once
    same = await asyncio.gather(*(_try(services, i, 5, "req-same") for i in range(2)))
    assert sorted(same, key=len)[0] == "ok" and "重复的调拨请求" in sorted(same, key=len)[1], same
    assert await services.db.fetchval("SELECT quantity FROM resource_stock WHERE resource_id = 'd-race' "
                                      "AND item = 'sandbag'") == 5
    # the table itself refuses a negative stock, whatever the code does
    with pytest.raises(asyncpg.CheckViolationError):
        await services.db.execute("UPDATE resource_stock SET quantity = quantity - 6 WHERE resource_id = 'd-race' "
                                  "AND item = 'sandbag'")
    # a restart (seeding again) keeps the live stock
    async with services.db.transaction() as conn:
        assert await store.seed(conn, [DEPOT]) == 0
    async with services.db.pool.acquire() as conn:
        assert (await store.load_resources(conn, ["d-race"]))[0].stock["sandbag"] == 5
