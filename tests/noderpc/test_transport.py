"""Node RPC over the real embedded PostgreSQL: two nodes, a call, a retry, a forged row, a dead owner."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.db import Database, apply_migrations
from noderpc.pinning import LivenessRule
from noderpc.registry import Registry
from noderpc.transport import NodeRpc, RpcError, RpcRefused, channel_of

SECRET = b"n" * 32
RULE = LivenessRule(0.2, 1.0)


class Counter:
    def __init__(self) -> None:
        self.runs = 0
        self.rooms = ["80000001"]

    def hosted(self) -> dict[str, list[str]]:
        return {"room": list(self.rooms)}

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "count":
            self.runs += 1
            return {"runs": self.runs, "echo": args}
        if method == "slow":
            await asyncio.sleep(5)
        raise RpcRefused(404, "没有这个会议")


@pytest.fixture
async def db(fresh_db_url: str) -> AsyncIterator[Database]:
    database = Database(fresh_db_url)
    await database.connect()
    async with database.pool.acquire() as conn:
        await apply_migrations(conn)
    yield database
    await database.close()


async def node(db: Database, name: str, role: str, secret: bytes = SECRET) -> NodeRpc:
    registry = Registry(db, name, role, "", RULE)
    await registry.start()
    rpc = NodeRpc(db, registry, secret, default_timeout=2.0)
    await rpc.start()
    return rpc


async def test_call_reply_retry_refusal_and_dead_owner(db: Database) -> None:
    mcu, web = await node(db, "mcu-1", "mcu"), await node(db, "web-1", "web")
    host = Counter()
    mcu.registry.add_source(host)
    mcu.serve(host)
    try:
        await mcu.registry.beat()
        result = await web.call_owner("room", "80000001", "count", {"x": 1}, key="op-1")
        assert result == {"runs": 1, "echo": {"x": 1}}
        again = await web.call_owner("room", "80000001", "count", {"x": 1}, key="op-1")
        assert again == result and host.runs == 1, "the same idempotency key runs once"
        with pytest.raises(RpcError) as err:
            await web.call("mcu-1", "missing", {})
        assert (err.value.status, err.value.message) == (404, "没有这个会议")
        with pytest.raises(RpcError) as err:
            await web.call("mcu-1", "slow", {}, timeout=0.5)
        assert err.value.code == "deadline" and err.value.status == 503
        with pytest.raises(RpcError) as err:
            await web.call_owner("room", "99999999", "count", {})
        assert err.value.code == "unpinned"

        host.rooms = []  # the room ended: its pin goes with the next beat
        await mcu.registry.beat()
        with pytest.raises(RpcError) as err:
            await web.call_owner("room", "80000001", "count", {})
        assert err.value.code == "unpinned"
        host.rooms = ["80000001"]
        await mcu.registry.beat()

        assert mcu.registry._task is not None
        mcu.registry._task.cancel()  # the node stops heartbeating (a crash, as far as others see)
        await asyncio.sleep(RULE.dead_after_s + 0.3)
        started = time.monotonic()
        with pytest.raises(RpcError) as err:
            await web.call_owner("room", "80000001", "count", {})
        assert err.value.code == "dead" and err.value.status == 503
        assert time.monotonic() - started < 1.0, "a dead owner is refused at once, not after a deadline"
    finally:
        await web.stop()
        await mcu.stop()
        await web.registry.stop()
        await mcu.registry.stop()


async def test_forged_request_row_is_refused_and_runs_nothing(db: Database) -> None:
    mcu = await node(db, "mcu-1", "mcu")
    host = Counter()
    mcu.serve(host)
    forger = await node(db, "evil", "web", secret=b"x" * 32)  # can write rows, lacks the secret
    try:
        with pytest.raises(RpcError) as err:
            await forger.call("mcu-1", "count", {})
        assert err.value.code == "forged"  # the refusal's own signature does not verify with a wrong key
        # a row written by hand, with no valid signature at all
        await db.execute("INSERT INTO rpc_requests (id, idempotency_key, sender, target, method, args, deadline, "
                         "signature) VALUES ('hand', 'hand', 'evil', 'mcu-1', 'count', '{}', $1, '00')",
                         time.time() + 5)
        await db.execute("SELECT pg_notify($1, 'req:hand')", channel_of("mcu-1"))
        for _ in range(50):
            reply = await db.fetchval("SELECT reply FROM rpc_requests WHERE id = 'hand'")
            if reply is not None:
                break
            await asyncio.sleep(0.05)
        assert reply is not None and reply["ok"] is False and reply["error"] == "forged"
        assert host.runs == 0 and mcu.refused == 2
    finally:
        for n in (forger, mcu):
            await n.stop()
            await n.registry.stop()


async def test_a_read_that_is_not_kept_leaves_no_row(db: Database) -> None:
    mcu, web = await node(db, "mcu-1", "mcu"), await node(db, "web-1", "web")
    host = Counter()
    mcu.serve(host)
    try:
        assert (await web.call("mcu-1", "count", {"x": 1}, keep=False))["runs"] == 1
        with pytest.raises(RpcError):
            await web.call("mcu-1", "slow", {}, timeout=0.3, keep=False)  # no reply: its row goes all the same
        assert await db.fetchval("SELECT count(*) FROM rpc_requests") == 0
        await web.call("mcu-1", "count", {})  # kept by default (the idempotency record and the trace)
        await web.call("mcu-1", "count", {}, key="k-1", keep=False)  # a keyed call is always kept
        assert await db.fetchval("SELECT count(*) FROM rpc_requests") == 2
    finally:
        await web.stop()
        await mcu.stop()
        await web.registry.stop()
        await mcu.registry.stop()
