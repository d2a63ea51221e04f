"""H.239 with a real third-party stack: H323Plus 1.28 (``h323peer`` built with ``--enable-h239``).

* **H323Plus presents.** It calls the conference announcing H.239, asks for the presentation
  token (H323Plus's own presentationTokenRequest), and once acknowledged opens its extended video
  channel (role presentation) with PTLib's colour-bar test source. The MCU decodes it into the
  conference's content source; our H.239 room system in the same conference gets it on the MCU's
  content channel and decodes the same bars (pixel check), a WebRTC site (aiortc) that asks for
  the content as a second stream decodes them too, and our room's own token request meanwhile
  is refused (presentationTokenResponse reject). H323Plus then releases the token and closes
  its channel; the MCU closes the channel to the other room.
* **H323Plus receives and is refused.** Our room system presents; H323Plus asks for the token and
  is refused (it prints so), and it receives and decodes the content on the MCU's extended video
  channel.

tshark (Wireshark's H.245 dissector) reads every message of both calls with nothing malformed,
and names the H.239 generic messages.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from core.runtime import CoreServices
from sip_gateway.h323.events import MediaAddress
from sip_gateway.h323.h239 import H239Message, SubMessage
from tests.mcu.h239_kit import (
    ContentMcu,
    H239Terminal,
    close_to,
    mean_rgb,
    start_content_mcu,
    stop_content_mcu,
)
from tests.sip_gateway.h323.h323_conference_kit import OtherSite, free_port
from tests.sip_gateway.h323.h323_testkit import TSHARK, LoopbackCapture, tshark_fields, wire_problems
from tests.sip_gateway.h323.h323plus_peer import BUILD_TIMEOUT, H323Peer

CONFERENCE = "80000001"
PEER_RTP = (30000, 30999)
PEER_TCP = (29000, 29999)
YELLOW = (230, 220, 30)
REQUEST = H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=0, terminal_label=0, symmetry_breaking=9)

pytestmark = [pytest.mark.timeout(BUILD_TIMEOUT + 600), pytest.mark.slow]


async def eventually(predicate: Callable[[], object], seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(0.05)


def _require_capture() -> None:
    assert TSHARK is not None, "tshark is missing (Debian tshark; `make system-deps` installs it)"
    assert os.geteuid() == 0, "capturing on lo needs root"


def _peer_args(tmp_path: Path, signalling_port: int) -> list[str]:
    rtp = random.randrange(PEER_RTP[0], PEER_RTP[1] - 100, 2)
    tcp = random.randrange(PEER_TCP[0], PEER_TCP[1] - 100, 2)
    args = ["-n", "-x", str(signalling_port), "-u", "h323plus-room", "--h239", "--rtp-base", str(rtp),
            "--rtp-max", str(rtp + 99), "--tcp-base", str(tcp), "--tcp-max", str(tcp + 99), "--setup-timeout", "20"]
    return args + os.environ.get("H323PEER_EXTRA_ARGS", "").split()


def _capture_filter(ports: list[int]) -> str:
    tcp = " or ".join(f"tcp port {p}" for p in ports)
    return f"{tcp} or tcp portrange {PEER_TCP[0]}-{PEER_TCP[1]}"


def _check_wire(pcap: Path) -> list[str]:
    """No malformed frame; the H.239 messages as Wireshark names them (genericRequest/Response/...)."""
    assert wire_problems(pcap, tolerate_tcp_sequence=True) == []
    found = set()
    for kind in ("genericRequest", "genericResponse", "genericCommand", "genericIndication"):
        if tshark_fields(pcap, f"h245.{kind}_element", "frame.number"):
            found.add(kind)
    return sorted(found)


def _bars(frame: av.VideoFrame, aspect: float | None = None) -> np.ndarray:
    """Mean RGB of seven vertical strips across the upper half (colour bars differ strip to strip).

    ``aspect``: the picture's own width/height when ``frame`` shows it fitted (pillarboxed) into
    another shape, as the content encoder does: only that centred part is measured."""
    rgb = frame.to_ndarray(format="rgb24").astype(float)
    h, w = rgb.shape[:2]
    if aspect is not None and w / h > aspect:
        inner = int(h * aspect)
        rgb = rgb[:, (w - inner) // 2:(w - inner) // 2 + inner]
        w = inner
    return np.array([rgb[h // 8:h // 2, int(w * (i + 0.3) / 7):int(w * (i + 0.7) / 7)].reshape(-1, 3).mean(axis=0)
                     for i in range(7)])


class _Watcher:
    """A WebRTC site's receive-only peer connection for the content as a second stream (aiortc)."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver("video", direction="recvonly")
        self.frames: list[av.VideoFrame] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", lambda track: self._tasks.append(asyncio.ensure_future(self._consume(track))))

    async def _consume(self, track: object) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()  # type: ignore[attr-defined]
                self.frames.append(frame)
                del self.frames[:-20]

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answered(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


@contextlib.asynccontextmanager
async def _conference(services: CoreServices, port: int) -> AsyncIterator[tuple[ContentMcu, H239Terminal]]:
    mcu = await start_content_mcu(services, port)
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    other = await OtherSite.join(conf)
    room = H239Terminal(alias="room-b", name="乙会议室")
    try:
        await room.dial(MediaAddress("127.0.0.1", port), CONFERENCE)
        await eventually(lambda: len(conf.room.participants) == 2, 20)
        # In the room with its H.239 link (a token request before that is refused).
        await eventually(lambda: any(s.content_link is not None for s in mcu.bridge.sites), 10)
        yield mcu, room
    finally:
        other.stop()
        await room.close()
        await stop_content_mcu(mcu)


async def test_h323plus_presents_through_h239(services: CoreServices, tmp_path: Path, h323peer_binary: Path) -> None:
    _require_capture()
    port, peer_port = free_port(), free_port()
    pcap = tmp_path / "h239.pcap"
    peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, peer_port), "--h239-send", "3", "--h239-stop", "26",
                                     "--duration", "32", f"h323:{CONFERENCE}@127.0.0.1:{port}"])
    async with _conference(services, port) as (mcu, room):
        conf = mcu.conferences.running(CONFERENCE)
        assert conf is not None and room.handle is not None
        content = mcu.content.of(conf)
        try:
            with LoopbackCapture(pcap, _capture_filter([port, peer_port])):
                await peer.start()
                await peer.wait_for("Call connected", 20)
                await peer.wait_for("H.239: presentation token requested", 15)
                await eventually(lambda: content.token.holder is not None, 10)
                presenter = content.token.holder
                assert presenter is not None and presenter in conf.room.participants
                await peer.wait_for(r"Content: sending", 15)
                await eventually(lambda: content.source.sample() is not None, 20)
                sample = content.source.sample()
                assert sample is not None
                source_bars = _bars(sample.frame)
                # Colour bars: the strips differ (not a flat picture, not a blank decoder output).
                assert np.ptp(source_bars.sum(axis=1)) > 150, source_bars

                # Our room system meanwhile: refused, and it gets the content on the MCU's channel.
                room.handle.send_h239(REQUEST)
                await room.until(lambda: any(m.kind is SubMessage.PRESENTATION_TOKEN_RESPONSE
                                             for m in room.h239_messages()), 10)
                refusal = next(m for m in room.h239_messages() if m.kind is SubMessage.PRESENTATION_TOKEN_RESPONSE)
                assert refusal.acknowledge is False and content.token.holder == presenter
                await room.until(lambda: len(room.content_frames) > 3, 20)
                shown = content.source.sample()
                assert shown is not None
                received = _bars(room.content_frames[-1], shown.frame.width / shown.frame.height)
                assert np.all(np.abs(received - _bars(shown.frame)) < 40), (received, _bars(shown.frame))

                # A WebRTC site (the other site in the room) takes the content as a second stream.
                watcher = _Watcher()
                try:
                    await watcher.answered(await content.watch("city-main", await watcher.offer()))
                    await eventually(lambda: len(watcher.frames) > 3, 20)
                    shown = content.source.sample()
                    assert shown is not None
                    seen = _bars(watcher.frames[-1], shown.frame.width / shown.frame.height)
                    assert np.all(np.abs(seen - _bars(shown.frame)) < 40), (seen, _bars(shown.frame))
                finally:
                    await watcher.close()
                    await content.unwatch("city-main")

                # H323Plus releases: the token is free and the other room's content channel closes.
                await peer.wait_for("H.239: presentation released", 40)
                await eventually(lambda: content.token.holder is None, 10)
                await room.until(lambda: room.media is not None and room.media.incoming_content is None, 10)
                code = await peer.wait(40)
                assert code == 0, peer.output
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)
    kinds = _check_wire(pcap)
    # genericIndication: the MCU's presentationTokenIndicateOwner (H323Plus accepts indications silently),
    # one at least from the MCU's side (H323Plus's own H.245 ports are in PEER_TCP; it sends one too,
    # as the owner, when it opens its presentation channel)
    assert {"genericRequest", "genericResponse", "genericCommand", "genericIndication"} <= set(kinds), kinds
    sources = {int(p) for line in tshark_fields(pcap, "h245.genericIndication_element", "tcp.srcport")
               for p in line.split(",") if p}
    assert any(not PEER_TCP[0] <= p <= PEER_TCP[1] for p in sources), sources


async def test_h323plus_receives_content_and_is_refused_the_token(services: CoreServices, tmp_path: Path,
                                                                  h323peer_binary: Path) -> None:
    _require_capture()
    port, peer_port = free_port(), free_port()
    pcap = tmp_path / "h239.pcap"
    async with _conference(services, port) as (mcu, room):
        conf = mcu.conferences.running(CONFERENCE)
        assert conf is not None and room.handle is not None
        content = mcu.content.of(conf)
        room.handle.send_h239(REQUEST)
        await room.until(lambda: room.h239_messages(), 10)
        assert room.h239_messages()[0].acknowledge is True
        room.present(YELLOW)
        await eventually(lambda: content.source.sample() is not None, 15)
        sample = content.source.sample()
        assert sample is not None and close_to(mean_rgb(sample.frame), YELLOW)
        peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, peer_port), "--h239-send", "6", "--duration", "14",
                                         f"h323:{CONFERENCE}@127.0.0.1:{port}"])
        try:
            with LoopbackCapture(pcap, _capture_filter([port, peer_port])):
                await peer.start()
                await peer.wait_for("Call connected", 20)
                await peer.wait_for(r"Content: first frame received \d+x\d+", 20)
                await peer.wait_for("H.239: presentation token refused", 15)
                assert content.source.presenter is not None and content.token.holder == content.source.presenter
                code = await peer.wait(40)
                assert code == 0, peer.output
                line = peer.has(r"Content summary: distinct content frames decoded (\d+)")
                assert line is not None and int(line.group(1)) > 3, peer.output
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)
    kinds = _check_wire(pcap)
    assert {"genericRequest", "genericResponse"} <= set(kinds), kinds

