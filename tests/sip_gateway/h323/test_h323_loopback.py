"""Full calls between two of our endpoints over loopback TCP, captured and checked by tshark."""
from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from sip_gateway.aio.h323_endpoint import CallHandle, H323Endpoint
from sip_gateway.h323.call import EndpointConfig
from sip_gateway.h323.capabilities import Codec
from sip_gateway.h323.events import (
    CallConnected,
    CallIncoming,
    CallReleased,
    ChannelOpened,
    MasterSlaveDetermined,
    MediaAddress,
    UserInputReceived,
    VideoFastUpdateRequested,
)
from sip_gateway.h323.q931 import Cause
from tests.sip_gateway.h323.h323_testkit import TSHARK, LoopbackCapture, tshark_fields, wire_problems


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Collector:
    """Drains a call's events into a list so tests can wait for conditions in any order."""

    def __init__(self, handle: CallHandle) -> None:
        self.handle = handle
        self.events: list[object] = []
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.events.append(await self.handle.events.get())
            self._changed.set()

    def of(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, kind: type, count: int = 1, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while len(self.of(kind)) < count:
                self._changed.clear()
                await self._changed.wait()

    def stop(self) -> None:
        self._task.cancel()


async def run_call(fast_start: bool, tunnelling: bool, h245_port: int, port: int,
                   early_h245: bool = False) -> dict[str, list[object]]:
    incoming: asyncio.Queue[CallHandle] = asyncio.Queue()
    mcu = H323Endpoint(EndpointConfig(h323_id="mcu", fast_start=fast_start, tunnelling=tunnelling,
                                      h245_port=h245_port), on_incoming=incoming.put_nowait)
    room = H323Endpoint(EndpointConfig(h323_id="room-101", e164="8001", is_mcu=False,
                                       fast_start=fast_start, tunnelling=tunnelling, early_h245=early_h245))
    await mcu.listen("127.0.0.1", port)
    collectors: list[Collector] = []
    try:
        caller = Collector(await room.dial(MediaAddress("127.0.0.1", port), "80000001"))
        callee = Collector(await asyncio.wait_for(incoming.get(), 5))
        collectors += [caller, callee]
        await callee.until(CallIncoming)
        callee.handle.alert()
        await callee.handle.answer()
        await caller.until(CallConnected)
        for side in (caller, callee):
            await side.until(MasterSlaveDetermined)
            await side.until(ChannelOpened, 4)
        caller.handle.send_user_input("1234#")
        video_out = [e.channel for e in callee.of(ChannelOpened)
                     if isinstance(e, ChannelOpened) and e.channel.outgoing and e.channel.session_id == 2]
        caller.handle.request_fast_update(video_out[0].number)
        await callee.until(UserInputReceived, 5)
        await callee.until(VideoFastUpdateRequested)
        caller.handle.release(Cause.NORMAL_CALL_CLEARING)
        await callee.until(CallReleased)
        await caller.handle.wait_closed()
        await callee.handle.wait_closed()
        return {"caller": caller.events, "callee": callee.events}
    finally:
        for collector in collectors:
            collector.stop()
        await room.close()
        await mcu.close()


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root")
@pytest.mark.parametrize("fast_start, tunnelling, early_h245", [
    (True, True, False), (False, False, False), (True, True, True)],
    ids=["faststart-tunnelled", "no-faststart-separate-h245", "faststart-early-h245-in-setup"])
async def test_call_over_loopback_decoded_by_wireshark(tmp_path: Path, fast_start: bool, tunnelling: bool,
                                                       early_h245: bool) -> None:
    port, h245_port = free_port(), free_port()
    pcap = tmp_path / "call.pcap"
    with LoopbackCapture(pcap, f"tcp port {port} or tcp port {h245_port}"):
        seen = await asyncio.wait_for(run_call(fast_start, tunnelling, h245_port, port, early_h245), 30)
    incoming = [e for e in seen["callee"] if isinstance(e, CallIncoming)][0]
    assert incoming.called_number == "80000001" and incoming.fast_start_offered is fast_start
    channels = [e.channel for e in seen["callee"] if isinstance(e, ChannelOpened)]
    assert {(c.session_id, c.outgoing) for c in channels} == {(1, True), (1, False), (2, True), (2, False)}
    assert {c.format.codec for c in channels if c.session_id == 2} == {Codec.H264}
    dtmf = "".join(e.text for e in seen["callee"] if isinstance(e, UserInputReceived))
    assert dtmf == "1234#"
    released = [e for e in seen["callee"] if isinstance(e, CallReleased)][0]
    assert released.cause == Cause.NORMAL_CALL_CLEARING and released.by_remote

    # Wireshark: nothing malformed, no warnings, and the signalling really is dissected.
    # (Kernel-level TCP retransmissions on loopback are tolerated, see wire_problems.)
    assert wire_problems(pcap, tolerate_tcp_sequence=True) == []
    q931 = tshark_fields(pcap, "q931", "q931.message_type")
    types = {int(t, 0) for line in q931 for t in line.split(",")}
    assert {0x05, 0x02, 0x01, 0x07, 0x5A} <= types  # Setup, CallProceeding, Alerting, Connect, ReleaseComplete
    assert len(tshark_fields(pcap, "h225", "frame.number")) == len(q931)
    # Every segment that carries data is dissected as H.225.0 (signalling) or H.245.
    undissected = (f"tcp.len > 0 and not tcp.analysis.retransmission and "
                   f"((tcp.port == {port} and not h225) or (tcp.port == {h245_port} and not h245))")
    assert tshark_fields(pcap, undissected) == []
    h245 = tshark_fields(pcap, "h245", "frame.number")
    assert h245, "H.245 not dissected"
    if not tunnelling:
        # H.245 on its own TCP connection, found by Wireshark from the h245Address in Connect.
        assert tshark_fields(pcap, f"h245 and tcp.port == {h245_port}", "frame.number")
    names = "\n".join(tshark_fields(pcap, "h245", "_ws.col.Info"))
    for name in ("terminalCapabilitySet", "masterSlaveDetermination", "userInput", "endSessionCommand"):
        assert name in names, names
    if not fast_start:
        assert "openLogicalChannel" in names
