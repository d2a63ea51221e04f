"""Two surviving desk nodes take over a dead desk's calls at once: each caller is listed exactly once.

Three desks on one real PostgreSQL, each with its own core (its own pool): desk A takes 12 calls
and "dies" (its node is dead by the liveness answer given here, the one part not real: which node
ids are dead is node RPC's business, tested in tests/noderpc). Desks B and C run
``DeskService.take_over`` concurrently, several times over: the calls are listed once in all,
B's own call and a live node's call are not touched.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from core.runtime import CoreServices
from dispatch.calltaking.service import DeskService
from dispatch.service import DispatchService
from tests.conftest import make_settings


class Cluster:
    """Which desk nodes are dead (node RPC's liveness answer), and who this desk is."""

    def __init__(self, node_id: str, dead_nodes: set[str]) -> None:
        self._node_id = node_id
        self.dead_nodes = dead_nodes

    @property
    def node_id(self) -> str:
        return self._node_id

    async def held_elsewhere(self, call_ids: list[str]) -> set[str]:
        return set()

    async def dead(self, node_ids: list[str]) -> set[str]:
        return {n for n in node_ids if n in self.dead_nodes}


@pytest.fixture
async def desks(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[dict[str, DeskService]]:
    async with AsyncExitStack() as stack:
        found = {}
        for name in ("desk-a", "desk-b", "desk-c", "desk-d"):
            core = await CoreServices.start(make_settings(fresh_db_url, tmp_path / name), seed=False)
            stack.push_async_callback(core.stop)
            dispatch = DispatchService(core)
            await dispatch.start()
            stack.push_async_callback(dispatch.stop)
            desk = DeskService(core, dispatch)
            desk.calls_held = Cluster(name, {"desk-a"})
            found[name] = desk
        yield found


async def test_two_survivors_list_each_lost_caller_once(desks: dict[str, DeskService]) -> None:
    a, b, c, d = desks["desk-a"], desks["desk-b"], desks["desk-c"], desks["desk-d"]
    lost = [await a.offer_call(f"sip-a-{i}", f"1390000{i:04d}", "", "110", []) for i in range(12)]
    own = await b.offer_call("sip-b", "13700000001", "", "120", [])
    alive = await d.offer_call("sip-d", "13600000001", "", "119", [])

    counts = await asyncio.gather(*[desk.take_over() for _ in range(3) for desk in (b, c)])
    assert sum(counts) == len(lost), counts
    assert sum(await asyncio.gather(b.take_over(), c.take_over())) == 0

    db = b.db
    listed = [r["call_id"] for r in await db.fetch("SELECT call_id FROM desk_callbacks ORDER BY listed_at")]
    assert sorted(listed) == sorted(lost)
    states = {r["id"]: r["state"] for r in await db.fetch("SELECT id, state FROM emergency_calls")}
    assert {states[i] for i in lost} == {"abandoned"}
    assert states[own] == "queued" and states[alive] == "queued", states
    audited: list[str] = []
    for row in await db.fetch("SELECT detail FROM audit_log WHERE action = 'desk.calls_lost_with_node'"):
        detail = row["detail"] if isinstance(row["detail"], dict) else json.loads(row["detail"])
        assert detail["nodes"] == ["desk-a"], detail
        audited += detail["calls"]
    assert sorted(audited) == sorted(lost), "each lost call audited once"
