"""A real third-party H.323 stack in a conference: H323Plus 1.28 (``h323peer``, built from
source by the ``h323peer_binary`` fixture) calls the conference, and the MCU calls it, with fast
start (H.245 tunnelled) and with slow start (separate H.245). Each way the peer hears the room's
tone and decodes its video, the MCU receives the peer's audio and video, no channel is closed
while the call runs, and Wireshark's dissectors find nothing malformed on the wire."""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.runtime import CoreServices
from mcu.legs.h323_bridge import H323SiteDialer
from sip_gateway.aio.h323_media import sent_formats
from sip_gateway.h323.capabilities import DEFAULT_FORMATS
from tests.sip_gateway.h323.h323_conference_kit import MCU_RTP, Mcu, OtherSite, free_port, start_mcu, stop_mcu
from tests.sip_gateway.h323.h323_testkit import TSHARK, LoopbackCapture, tshark_fields, wire_problems
from tests.sip_gateway.h323.h323plus_peer import BUILD_TIMEOUT, H323Peer, read_wav, tone_level

CONFERENCE = "80000001"  # the demo plan's standing conference: guests join without a PIN
PEER_RTP = (30000, 30999)  # UDP
PEER_TCP = (29000, 29999)  # its H.245 listener and outgoing connections: known, so captured
CALL_SECONDS = 12
ROOM_TONE = 440.0  # the other site's tone: what the peer must hear
PEER_TONE = 1000  # the peer's own tone: not mixed back to it (N-1)

# The first test builds the peer (minutes): the timeout covers that; each call has its own bound.
pytestmark = [pytest.mark.timeout(BUILD_TIMEOUT + 600), pytest.mark.slow]

START_MODES = pytest.mark.parametrize("slow_start", [False, True], ids=["faststart-tunnelled", "slowstart-separate-h245"])


def _require_capture() -> None:
    assert TSHARK is not None, "tshark is missing (Debian tshark; `make system-deps` installs it)"
    assert os.geteuid() == 0, "capturing on lo needs root"


def _port_base(first: int, last: int) -> int:
    return random.randrange(first, last - 100, 2)


def _peer_args(tmp_path: Path, slow_start: bool, signalling_port: int) -> list[str]:
    rtp, tcp = _port_base(*PEER_RTP), _port_base(*PEER_TCP)
    args = ["-n", "-x", str(signalling_port), "-u", "h323plus-room", "--tone", str(PEER_TONE),
            "--wav-out", str(tmp_path / "peer_rx.wav"), "--rtp-base", str(rtp), "--rtp-max", str(rtp + 99),
            "--tcp-base", str(tcp), "--tcp-max", str(tcp + 99), "--setup-timeout", "20"]
    args += os.environ.get("H323PEER_EXTRA_ARGS", "").split()  # debugging, e.g. "-t -t -t -t -o /tmp/trace"
    return args + (["-F", "-T"] if slow_start else [])


def _capture_filter(ports: list[int]) -> str:
    tcp = " or ".join(f"tcp port {p}" for p in ports)
    return (f"{tcp} or tcp portrange {PEER_TCP[0]}-{PEER_TCP[1]} or udp portrange {PEER_RTP[0]}-{PEER_RTP[1]} "
            f"or udp portrange {MCU_RTP[0]}-{MCU_RTP[1]}")


async def _site_receives(mcu: Mcu, seconds: float = 20.0) -> dict[str, Any]:
    """Statistics of the joined H.323 site once the MCU decodes the peer's audio and video."""
    stats: dict[str, Any] = {}
    try:
        async with asyncio.timeout(seconds):
            while True:
                stats = next((s for s in mcu.bridge.statistics() if s.get("joined")), {})
                if stats.get("audio_frames_in", 0) > 50 and stats.get("video_frames_in", 0) > 3:
                    return stats
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"the MCU does not receive the peer's media: {stats}") from None


def _check_peer(peer: H323Peer, tmp_path: Path) -> dict[str, Any]:
    """What the peer printed and recorded: audio heard, video decoded, no channel closed early."""
    output = peer.output
    summary = peer.summary
    assert summary is not None, output
    # Every logical channel stays open until the call ends (the bug: the MCU closed the video
    # channel right after Connect and sent no RTP at all).
    end = next((i for i, line in enumerate(peer.lines) if "reached, hanging up" in line or line.startswith("Call ended")),
               len(peer.lines))
    early_closes = [line for line in peer.lines[:end] if line.startswith("Closed logical channel")]
    assert early_closes == [], output
    assert summary.audio_packets_received > 20 * (CALL_SECONDS - 4), output  # 50 packets/s
    assert summary.video_packets_received > 10 and summary.video_frames_decoded > 3, output
    assert summary.received_rms > 0.01, output
    samples, rate = read_wav(tmp_path / "peer_rx.wav")
    tail = samples[-rate * 4:]
    heard, own = tone_level(tail, ROOM_TONE, rate), tone_level(tail, PEER_TONE, rate)
    assert heard > 50 and heard > 5 * own, (heard, own, output)
    size = peer.has(r"Video: first frame received (\d+)x(\d+)")
    assert size is not None, output
    return {"summary": summary, "video_size": (int(size.group(1)), int(size.group(2))), "tone": heard}


def _check_wire(pcap: Path, slow_start: bool) -> None:
    assert wire_problems(pcap, tolerate_tcp_sequence=True) == []
    q931 = tshark_fields(pcap, "q931", "q931.message_type")
    types = {int(t, 0) for line in q931 for t in line.split(",")}
    assert {0x05, 0x07, 0x5A} <= types, types  # Setup, Connect, ReleaseComplete
    assert tshark_fields(pcap, "h245.terminalCapabilitySet_element", "frame.number"), "no H.245 capability exchange"
    if slow_start:
        assert tshark_fields(pcap, "h245 and not h225"), "H.245 not on its own connection"
    else:
        assert tshark_fields(pcap, "h225.fastStart"), "no fastStart elements"


@contextlib.asynccontextmanager
async def _room_with_other_site(services: CoreServices, port: int, h245_port: int) -> AsyncIterator[Mcu]:
    """The MCU on `port` (H.245 listener on `h245_port`) with the demo conference and one other
    site sending its tone and colour; both stopped when the block ends."""
    mcu = await start_mcu(services, port)
    try:
        mcu.bridge.config.h245_port = h245_port
        conf = mcu.conferences.running(CONFERENCE)
        assert conf is not None
        other = await OtherSite.join(conf)
        try:
            yield mcu
        finally:
            other.stop()
    finally:
        await stop_mcu(mcu)


@START_MODES
async def test_h323plus_calls_the_conference(services: CoreServices, tmp_path: Path, h323peer_binary: Path,
                                             slow_start: bool) -> None:
    _require_capture()
    port, h245_port, peer_port = free_port(), free_port(), free_port()
    pcap = tmp_path / "h323plus.pcap"
    peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, slow_start, peer_port), "--duration", str(CALL_SECONDS),
                                      f"h323:{CONFERENCE}@127.0.0.1:{port}"])
    async with _room_with_other_site(services, port, h245_port) as mcu:
        try:
            with LoopbackCapture(pcap, _capture_filter([port, h245_port, peer_port])):
                await peer.start()
                await peer.wait_for("Call connected", 20)
                stats = await _site_receives(mcu)
                assert stats["h323_codecs"]["audio_received"] in ("PCMU", "PCMA"), stats
                assert stats["h323_codecs"]["video_received"] in ("H263", "H261"), stats
                assert stats["input_resolution"] in ([352, 288], [176, 144]), stats
                await peer.wait_for(r"Video: first frame received \d+x\d+", 15)
                code = await peer.wait(CALL_SECONDS + 20)
                assert code == 0, peer.output
                result = _check_peer(peer, tmp_path)
                assert result["video_size"] in ((352, 288), (176, 144))
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)
    _check_wire(pcap, slow_start)


@START_MODES
async def test_mcu_dials_out_to_h323plus(services: CoreServices, tmp_path: Path, h323peer_binary: Path,
                                         slow_start: bool) -> None:
    _require_capture()
    port, h245_port, peer_port = free_port(), free_port(), free_port()
    async with _room_with_other_site(services, port, h245_port) as mcu:
        mcu.bridge.config.fast_start = not slow_start
        mcu.bridge.config.tunnelling = not slow_start
        mcu.conferences.register_dialer("h323", H323SiteDialer(mcu.bridge))
        pcap = tmp_path / "h323plus.pcap"
        if not slow_start:
            # The peer's H.263 encoder (H323Plus's plugin as ported to FFmpeg 5) aborts in
            # av_image_copy when a fast-start receive proposal allows 4CIF, as ours does: its encoder
            # takes the 4CIF size while its camera gives CIF. Propose what this room system sends.
            mcu.bridge.config.formats = sent_formats(DEFAULT_FORMATS)
        peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, slow_start, peer_port), "-l", "--once",
                                          "--duration", str(CALL_SECONDS)])
        try:
            with LoopbackCapture(pcap, _capture_filter([port, h245_port, peer_port])):
                await peer.start()
                await peer.wait_for("Waiting for incoming calls", 15)
                site_id, protocol = await mcu.conferences.dial_address(
                    CONFERENCE, f"h323:h323peer@127.0.0.1:{peer_port}", "H323Plus 会议室", "chair")
                assert protocol == "h323"
                await peer.wait_for("Call connected", 20)
                stats = await _site_receives(mcu)
                assert stats["site_id"] == site_id and stats["dial_out"] is True
                await peer.wait_for(r"Video: first frame received \d+x\d+", 15)
                code = await peer.wait(CALL_SECONDS + 20)
                assert code == 0, peer.output
                _check_peer(peer, tmp_path)
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)
    _check_wire(pcap, slow_start)
