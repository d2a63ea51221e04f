"""The content stream over the recording tap stream, in one process on 127.0.0.1: the MCU node's
`TapService` (mcu/recording_stream.py) over a stand-in room, the recorder node's `RemoteLiveSource`
(recorder/remote_tap.py) reading it through a real TCP connection.

Start (`C 1`) subscribes the stream to the room's content view (1920x1080 H.264: the shared content
encoder a local recording joins); its access units arrive as `P` frames with the room's times; a key
frame request reaches that subscription; stop (`C 0`) and a closed stream release it. A hosting node
that does not announce the content stream is recorded without it.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mcu.recording_stream import TapService
from recorder.remote_tap import RemoteLiveSource
from sip_gateway.rtp.media_primitives import EncodedPacket

pytestmark = pytest.mark.timeout(30)
CONF = "80000001"


@dataclass
class FakeSubscription:
    view: str
    sink: Callable[[EncodedPacket], None]
    size: tuple[int, int]
    keyframes: int = 0
    closed: bool = False

    def request_keyframe(self) -> None:
        self.keyframes += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeClock:
    def monotonic(self) -> float:
        return 1000.0 + time.monotonic()


@dataclass
class FakeRoom:
    ended: bool = False
    clock: FakeClock = field(default_factory=FakeClock)
    encoder_keys: list[Any] = field(default_factory=list)
    subscriptions: list[FakeSubscription] = field(default_factory=list)

    def subscribe_view(self, view: str, sink: Callable[[EncodedPacket], None], codec: str, width: int, height: int,
                       single_nal: bool = False) -> FakeSubscription:
        assert codec == "h264"
        sub = FakeSubscription(view, sink, (width, height))
        self.subscriptions.append(sub)
        return sub

    def content(self) -> list[FakeSubscription]:
        return [s for s in self.subscriptions if s.view == "content"]

    def add_mix_listener(self, listener: object) -> None:
        pass

    def remove_mix_listener(self, listener: object) -> None:
        pass


@dataclass
class FakeConference:
    room: FakeRoom


class FakeConferences:
    def __init__(self, room: FakeRoom) -> None:
        self.conference = FakeConference(room)

    def running(self, conference_id: str) -> FakeConference | None:
        return self.conference if conference_id == CONF else None


class Calls:
    """Node RPC to the hosting node, straight into its TapService; `legacy` drops the content flag."""

    def __init__(self, service: TapService, legacy: bool = False) -> None:
        self.service = service
        self.legacy = legacy

    async def call_room(self, conference_id: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        answer = await self.service.handle(method, args)
        if self.legacy:
            answer.pop("content", None)
        return answer


async def until(predicate: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def slide(pts: int, keyframe: bool, at: float) -> EncodedPacket:
    return EncodedPacket(b"\x00\x00\x00\x01\x65" + pts.to_bytes(4, "big") * 50, pts, keyframe, "h264", 1920, 1080,
                         "content", at)


async def test_content_stream_start_keyframe_stop_and_close() -> None:
    room = FakeRoom()
    service = TapService(FakeConferences(room))  # type: ignore[arg-type]
    live = RemoteLiveSource(Calls(service))
    try:
        await live.prepare(CONF)
        conf = live.running(CONF)
        assert conf is not None and conf.serves_content
        got: list[EncodedPacket] = []
        video = conf.subscribe_content(got.append)
        assert video is not None
        await until(lambda: len(room.content()) == 1, "no content subscription on the MCU side")
        sub = room.content()[0]
        assert sub.size == (1920, 1080)
        sent = [slide(0, True, 1012.5), slide(7200, False, 1012.58)]
        for packet in sent:
            sub.sink(packet)
        await until(lambda: len(got) == 2, "content packets not received")
        assert got == sent  # data, pts, key frame flag, size and the room's time, unchanged
        video.request_keyframe()
        await until(lambda: sub.keyframes == 1, "key frame request not forwarded")
        video.close()
        await until(lambda: sub.closed, "stop did not close the content subscription")
        assert conf.content_sink is None and conf.subscribe_content(got.append) is not None  # start again
        await until(lambda: len(room.content()) == 2, "no second content subscription")
        again = room.content()[1]
        again.sink(slide(14400, True, 1013.0))
        await until(lambda: len(got) == 3, "content packets after a restart not received")
        await live.release(CONF)  # the recording ended: the stream closes, the MCU side lets go
        await until(lambda: again.closed, "a closed stream left its content subscription")
        assert not [s for s in room.subscriptions if s.view == "content" and not s.closed]
    finally:
        await live.stop()
        await service.stop()


async def test_hosting_node_without_content_stream_recorded_without_it() -> None:
    room = FakeRoom()
    service = TapService(FakeConferences(room))  # type: ignore[arg-type]
    live = RemoteLiveSource(Calls(service, legacy=True))
    try:
        await live.prepare(CONF)
        conf = live.running(CONF)
        assert conf is not None and conf.subscribe_content(lambda p: None) is None
        assert conf.subscribe_broadcast(lambda p: None, 1280, 720) is not None
        await until(lambda: len(room.subscriptions) == 1, "no broadcast subscription")
        assert room.content() == [] and not conf.ended  # the stream goes on without the content frames
    finally:
        await live.stop()
        await service.stop()
