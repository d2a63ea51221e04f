"""The ``replay.*`` node RPC (web_console/replay_host.py) against fakes: node choice, chunked segments,
refusals carried with their status and code, expiry and the bound on open transfers."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from noderpc.transport import RpcError, RpcRefused
from web_console.replay_host import (
    CHUNK,
    IDLE_S,
    MAX_OPEN,
    RemoteReplayHost,
    ReplayHostService,
    ReplayRefused,
    holder_of,
)


class FakeHost:
    """A `ReplayHost` whose segment is `data`; conference "gone" is not recorded."""

    def __init__(self, data: bytes, recording: bool = False) -> None:
        self.data = data
        self.recording = recording
        self.playbacks: list[tuple[Any, ...]] = []

    async def recorded(self, conference_id: str | None = None) -> list[dict[str, Any]]:
        if conference_id == "gone":
            return []
        return [{"conference_id": "c1", "name": "会议", "camera": "conf-c1", "start_ms": 1000, "end_ms": 9000,
                 "segments": 4, "bytes": 100, "recording": self.recording}]

    async def info(self, conference_id: str) -> dict[str, Any]:
        if conference_id == "gone":
            raise ReplayRefused(404, "unknown", id=conference_id)
        return {**(await self.recorded(conference_id))[0], "content": []}

    async def playback(self, conference_id: str, user: str, start_ms: int | None, end_ms: int | None,
                       reason: str, source: str) -> dict[str, Any]:
        self.playbacks.append((conference_id, user, start_ms, end_ms, reason, source))
        return {"conference_id": conference_id, "segments": [], "content": []}

    async def segment(self, conference_id: str, user: str, key: str, track: str) -> bytes:
        if user != "viewer":
            raise ReplayRefused(403, "view_not_logged")
        return self.data


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeTransport:
    """`NodeRpc.call` onto the services by node id, as the transport maps a refusal to RpcError."""

    def __init__(self, services: dict[str, ReplayHostService]) -> None:
        self.services = services
        self.calls: list[tuple[str, str, bool]] = []
        self.fail: str | None = None

    async def call(self, target: str, method: str, args: dict[str, Any], *, key: str | None = None,
                   timeout: float | None = None, keep: bool = True) -> dict[str, Any]:  # noqa: ASYNC109
        self.calls.append((target, method, keep))
        if self.fail:
            raise RpcError(self.fail, "no reply")
        try:
            return await self.services[target].handle(method, args)
        except RpcRefused as exc:
            raise RpcError(exc.code, exc.message, exc.status) from None


class FakeCapability:
    def __init__(self, transport: FakeTransport, enabled: bool = True) -> None:
        self.rpc = transport
        self.enabled = enabled


class FakeNodes:
    def __init__(self, nodes: list[str]) -> None:
        self.nodes = nodes

    async def node_for(self, conference_id: str) -> str:
        if conference_id == "gone":
            raise ReplayRefused(404, "unknown", id=conference_id)
        if not self.nodes:
            raise ReplayRefused(503, "node_gone")
        return self.nodes[0]

    async def recorder_nodes(self) -> list[str]:
        return self.nodes


def remote(services: dict[str, ReplayHostService], enabled: bool = True) -> tuple[RemoteReplayHost, FakeTransport]:
    transport = FakeTransport(services)
    return RemoteReplayHost(FakeCapability(transport, enabled), FakeNodes(list(services))), transport  # type: ignore[arg-type]


def test_the_node_is_the_live_one_named_by_the_latest_segments() -> None:
    alive = ["rec-2/recorder/bb", "rec-1/recorder/aa", "rec-1/recorder/cc"]
    assert holder_of(["rec-1"], alive) == "rec-1/recorder/aa"  # most recently heard first
    assert holder_of(["rec-3", "rec-2"], alive) == "rec-2/recorder/bb"
    assert holder_of(["rec"], alive) is None  # a name, not a prefix of one
    assert holder_of(["rec-1"], []) is None


def test_a_segment_larger_than_a_chunk_arrives_whole_and_nothing_is_held() -> None:
    data = bytes(range(256)) * (CHUNK * 2 // 256 + 77)  # three chunks
    service = ReplayHostService(FakeHost(data))
    host, transport = remote({"rec-1/recorder/aa": service})
    got = asyncio.run(host.segment("c1", "viewer", "conf-c1/x.mp4", "people"))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert [m for _, m, _ in transport.calls] == ["replay.segment", "replay.chunk", "replay.chunk"]
    assert all(keep is False for _, _, keep in transport.calls)  # reads: their rows are not kept
    assert service.open == {}  # the last chunk freed the transfer
    small, transport = remote({"n/recorder/a": ReplayHostService(FakeHost(b"tiny"))})
    assert asyncio.run(small.segment("c1", "viewer", "k", "content")) == b"tiny"
    assert [m for _, m, _ in transport.calls] == ["replay.segment"]


def test_refusals_keep_their_status_code_and_values() -> None:
    host, _ = remote({"n/recorder/a": ReplayHostService(FakeHost(b"x"))})
    with pytest.raises(ReplayRefused) as refused:
        asyncio.run(host.segment("c1", "chair", "k", "people"))
    assert (refused.value.status, refused.value.code) == (403, "view_not_logged")
    service = ReplayHostService(FakeHost(b"x"))
    with pytest.raises(RpcRefused) as malformed:
        asyncio.run(service.handle("replay.segment", {"conference_id": "c1", "user": "viewer", "key": "k",
                                                      "track": "audio"}))
    assert (malformed.value.status, malformed.value.code) == (400, "replay.malformed")
    with pytest.raises(RpcRefused) as wired:
        asyncio.run(service.handle("replay.info", {"conference_id": "gone"}))
    assert (wired.value.status, wired.value.code) == (404, "replay.unknown")
    transport = FakeTransport({"n/recorder/a": service})
    asking = RemoteReplayHost(FakeCapability(transport), FakeNodes(["n/recorder/a"]))  # type: ignore[arg-type]

    class Anywhere(FakeNodes):
        async def node_for(self, conference_id: str) -> str:
            return "n/recorder/a"

    asking.nodes = Anywhere([])
    with pytest.raises(ReplayRefused) as unknown:
        asyncio.run(asking.info("gone"))
    assert (unknown.value.status, unknown.value.code, unknown.value.values) == (404, "unknown", {"id": "gone"})


def test_no_reply_no_secret_no_node_are_503() -> None:
    host, transport = remote({"n/recorder/a": ReplayHostService(FakeHost(b"x"))})
    transport.fail = "deadline"
    with pytest.raises(ReplayRefused) as late:
        asyncio.run(host.info("c1"))
    assert (late.value.status, late.value.code) == (503, "node_unreachable")
    off, _ = remote({"n/recorder/a": ReplayHostService(FakeHost(b"x"))}, enabled=False)
    with pytest.raises(ReplayRefused) as no_secret:
        asyncio.run(off.recorded())
    assert (no_secret.value.status, no_secret.value.code) == (503, "node_unavailable")
    none, _ = remote({})
    with pytest.raises(ReplayRefused) as gone:
        asyncio.run(none.recorded())
    assert (gone.value.status, gone.value.code) == (503, "node_gone")
    assert asyncio.run(host_of_unknown()) == []


async def host_of_unknown() -> list[dict[str, Any]]:
    host, _ = remote({"n/recorder/a": ReplayHostService(FakeHost(b"x"))})
    return await host.recorded("gone")  # not recorded anywhere: an empty answer, the route says 404


def test_the_list_merges_every_recorder_node() -> None:
    host, _ = remote({"a/recorder/1": ReplayHostService(FakeHost(b"x")),
                      "b/recorder/2": ReplayHostService(FakeHost(b"x", recording=True))})
    listed = asyncio.run(host.recorded())
    assert [(r["conference_id"], r["recording"]) for r in listed] == [("c1", True)]


def test_transfers_expire_and_are_bounded() -> None:
    clock = Clock()
    service = ReplayHostService(FakeHost(b"y" * (CHUNK + 1)), clock)
    args = {"conference_id": "c1", "user": "viewer", "key": "k", "track": "people"}
    first = asyncio.run(service.handle("replay.segment", args))
    clock.t = IDLE_S + 1
    with pytest.raises(RpcRefused) as expired:
        asyncio.run(service.handle("replay.chunk", {"handle": first["handle"], "offset": CHUNK}))
    assert (expired.value.status, expired.value.code) == (410, "replay.transfer_gone")
    for _ in range(MAX_OPEN + 5):
        asyncio.run(service.handle("replay.segment", args))
    assert len(service.open) == MAX_OPEN
    with pytest.raises(RpcRefused) as bad_offset:
        asyncio.run(service.handle("replay.chunk", {"handle": next(iter(service.open)), "offset": -1}))
    assert bad_offset.value.status == 400
