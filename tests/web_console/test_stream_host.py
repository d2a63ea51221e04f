"""`RemoteStreamHost` (a web node's proxy of the MCU nodes' live streams) against a fake node RPC.

What bounds the proxy's cost: immutable files are fetched once per web node, identical concurrent
playlist requests share one RPC (the query passed through unchanged), the viewers seen travel with
the next playlist request; node failures are a 503 with the ``node.*`` message, a room that no node
hosts is 404 (files) or 409 (start). The end-to-end run with real processes is
``tests/noderpc/test_split_streaming.py``.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from mcu.streaming.service import StreamingError
from noderpc.transport import RpcError
from web_console.stream_host import RemoteStreamHost, StreamUnavailable


class FakeNodes:
    def __init__(self) -> None:
        self.enabled = True
        self.calls: list[tuple[str, dict[str, Any], float | None]] = []
        self.gate = asyncio.Event()
        self.fail: RpcError | None = None

    async def call_owner(self, kind: str, item: str, method: str, args: dict[str, Any],
                         timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        assert kind == "room"
        self.calls.append((method, args, timeout))
        if self.fail is not None:
            raise self.fail
        if method == "stream.file":
            await self.gate.wait()  # a blocking request, held until the test lets it go
            body = f"{args['name']}?{args['query']}".encode()
            return {"status": 200, "body": base64.b64encode(body).decode(), "kind": "part", "published_at": 1.5}
        if method == "stream.admits":
            return {"admits": args["token"] == "good"}
        return {}

    async def call(self, target: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"streams": [{"conference_id": "1", "node": target}]}

    async def mcu_nodes(self) -> list[str]:
        return ["a", "b"]


async def test_identical_requests_share_one_rpc_and_media_is_cached() -> None:
    nodes = FakeNodes()
    host = RemoteStreamHost(nodes, blocking_timeout=7.0)
    query = [("_HLS_msn", "5"), ("_HLS_part", "2")]
    waiting = [asyncio.create_task(host.file("1", "index.m3u8", query, f"u:{i}")) for i in range(50)]
    other = asyncio.create_task(host.file("1", "index.m3u8", [], "u:x"))
    await asyncio.sleep(0.05)
    nodes.gate.set()
    answers = await asyncio.gather(*waiting)
    assert {a.body for a in answers} == {b"index.m3u8?[('_HLS_msn', '5'), ('_HLS_part', '2')]"}
    assert (await other).status == 200
    playlist_calls = [c for c in nodes.calls if c[0] == "stream.file"]
    assert len(playlist_calls) == 2  # one per distinct query, not one per viewer
    assert all(timeout == 7.0 for _, _, timeout in playlist_calls)  # the blocking request's own deadline
    assert all(args["viewers"] for _, args, _ in playlist_calls)  # each names at least the viewer who asked
    viewers = {v for _, args, _ in playlist_calls for v in args["viewers"]}
    assert viewers == {f"u:{i}" for i in range(50)} | {"u:x"}
    assert playlist_calls[0][1]["query"] == query  # passed through unchanged

    nodes.calls.clear()
    first = await asyncio.gather(*(host.file("1", "abcd0123_7.1.m4s", [], "u:1") for _ in range(20)))
    again = await host.file("1", "abcd0123_7.1.m4s", [], "u:2")
    assert len(nodes.calls) == 1 and again.body == first[0].body and again.published_at == 1.5


async def test_names_no_stream_serves_are_refused_without_a_call() -> None:
    nodes = FakeNodes()
    host = RemoteStreamHost(nodes)
    for conference_id, name in (("1", "../etc/passwd"), ("1", "x" * 100), ("1", "abcd0123_7.m4s.bak"),
                                ("1", "ABCD0123_init.mp4"), ("a/b", "index.m3u8"), ("1", "index.m3u8\0")):
        assert (await host.file(conference_id, name, [], "u:1")).status == 404
    assert nodes.calls == []


async def test_a_viewer_who_leaves_does_not_cancel_the_others() -> None:
    nodes = FakeNodes()
    host = RemoteStreamHost(nodes)
    leaving = asyncio.create_task(host.file("1", "index.m3u8", [], "u:1"))
    staying = asyncio.create_task(host.file("1", "index.m3u8", [], "u:2"))
    await asyncio.sleep(0.05)
    leaving.cancel()
    nodes.gate.set()
    assert (await staying).status == 200
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_node_failures_are_clear_and_nothing_is_cached() -> None:
    nodes = FakeNodes()
    nodes.gate.set()
    host = RemoteStreamHost(nodes)
    nodes.fail = RpcError("dead", "node x stopped")
    served = await host.file("1", "abcd0123_7.1.m4s", [], "u:1")
    assert served.status == 503 and served.body.decode().startswith("承载该会议的节点已停止响应")
    english = host.speaking("en")
    with pytest.raises(StreamUnavailable) as refused:
        await english.state("1")
    assert refused.value.status == 503 and "stopped responding" in refused.value.message
    nodes.fail = RpcError("unpinned", "no node hosts room 1")
    assert (await host.file("1", "index.m3u8", [], "u:1")).status == 404
    with pytest.raises(StreamingError) as not_running:
        await host.start("1", "chair", "")
    assert not_running.value.code == "not_running"
    assert await host.stop("1", "chair", "") is False
    nodes.fail = RpcError("stream:not_streaming", "会议未在直播：1", 404)
    with pytest.raises(StreamingError) as own:
        await host.state("1")
    assert own.value.code == "not_streaming"
    nodes.fail = None
    assert (await host.file("1", "abcd0123_7.1.m4s", [], "u:1")).status == 200  # the failure was not cached
    nodes.enabled = False
    with pytest.raises(StreamUnavailable):
        await host.streams()


async def test_watch_links_are_checked_by_the_rooms_node_and_remembered() -> None:
    nodes = FakeNodes()
    host = RemoteStreamHost(nodes)
    assert await host.token_admits("1", "good") and await host.token_admits("1", "good")
    assert not await host.token_admits("1", "bad")
    assert [c[0] for c in nodes.calls] == ["stream.admits", "stream.admits"]
    assert sorted(s["node"] for s in await host.streams()) == ["a", "b"]
