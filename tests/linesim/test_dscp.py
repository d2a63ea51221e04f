"""DSCP marking judged on the wire: a real SIP call (baresip behind a line), captured by tshark on
the line's interface. Audio RTP/RTCP leave the MCU as EF (46), video RTP/RTCP as AF41 (34); a
configured marking replaces them; H.323 legs get the same marking."""
from __future__ import annotations

import asyncio
import shutil
import socket
from collections import defaultdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import RtpSettings
from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from sip_gateway.aio.h323_media import H323MediaLeg
from sip_gateway.aio.ports import RtpPortManager
from sip_gateway.aio.rtp_leg import DscpMarking, MediaLeg
from sip_gateway.h323.capabilities import AUDIO_SESSION, VIDEO_SESSION
from sip_gateway.rtp.media_description import MediaPolicy
from tests.linesim.conftest import OpenLine
from tests.linesim.peers import LineBaresip, start_line_bridge
from tests.sip_gateway.conference_helpers import DEMO, joined, until

pytestmark = [pytest.mark.timeout(120)]


async def tshark(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec("tshark", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing")
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark missing")
@pytest.mark.parametrize("marking", [None, DscpMarking(audio=40, video=26)], ids=["default", "configured"])
async def test_rtp_and_rtcp_leave_marked_on_a_real_call(
        services: CoreServices, conferences: ConferenceService, linesim: OpenLine, tmp_path: Path,
        marking: DscpMarking | None) -> None:
    line = linesim("clean")
    # ``marking`` is what mcu.capability passes from settings.rtp.dscp_*; None: the bridge's default.
    bridge = await start_line_bridge(services, conferences, line,
                                     MediaPolicy(h264_modes=(0,), video_codecs=("H264",)), max_video_size="352x288",
                                     dscp=marking)
    expected = marking or DscpMarking(audio=46, video=34)
    conf = conferences.running(DEMO)
    assert conf is not None
    cap = tmp_path / "dscp.pcapng"
    capture = await asyncio.create_subprocess_exec(
        "tshark", "-i", line.mcu_iface, "-f", "udp", "-w", str(cap), "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    peer = LineBaresip(tmp_path / "site", line=line)
    try:
        assert capture.stderr is not None
        async with asyncio.timeout(20):
            while b"Capturing on" not in await capture.stderr.readline():
                pass
        await asyncio.sleep(1.0)
        await peer.start(f"/dial sip:{DEMO}@{line.mcu_address}:{bridge.endpoint.config.port}")
        await until(lambda: len(joined(conf)) == 1, 30, "baresip to join")
        await peer.wait_log(r"video: receiving with resolution", 30)
        leg = next(iter(bridge.sites.values())).leg
        assert leg.audio is not None and leg.video is not None
        ports = {leg.audio.port: "audio", leg.audio.port + 1: "audio", leg.video.port: "video",
                 leg.video.port + 1: "video"}
        await asyncio.sleep(6)  # RTCP reports go every 2.5 s ± 50 %
    finally:
        await bridge.stop()
        await peer.stop()
        capture.terminate()
        await asyncio.wait_for(capture.wait(), 20)
    rows = await tshark("-r", str(cap), "-Y", f"ip.src=={line.mcu_address} && udp", "-T", "fields",
                        "-e", "udp.srcport", "-e", "ip.dsfield.dscp", "-e", "udp.length")
    seen: dict[int, set[int]] = defaultdict(set)
    for row in rows.splitlines():
        src, dscp, _ = row.split("\t")
        seen[int(src)].add(int(dscp))
    for port, kind in ports.items():
        assert seen.get(port) == {expected.for_kind(kind)}, (port, kind, dict(seen))
    # The capture holds every socket we send from: RTP and RTCP of both kinds.
    assert set(ports) <= set(seen), (ports, dict(seen))


async def test_sockets_carry_the_marking_for_sip_and_h323_legs() -> None:
    leg = await MediaLeg.allocate("127.0.0.1", video=True, dscp=DscpMarking(audio=46, video=34))
    try:
        for channel, dscp in ((leg.audio, 46), (leg.video, 34)):
            assert channel is not None
            for sock in (channel.rtp, channel.rtcp):
                assert sock is not None and sock.transport is not None
                raw = sock.transport.get_extra_info("socket")
                assert raw.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == dscp << 2
    finally:
        await leg.close()
    ports = RtpPortManager("127.0.0.1")
    allocated = ports.allocate()
    h323 = await H323MediaLeg.adopt(ports, allocated, "127.0.0.1", dscp=DscpMarking(audio=0, video=10))
    try:
        for session, dscp in ((AUDIO_SESSION, 0), (VIDEO_SESSION, 10)):
            channel = h323.leg.audio if session == AUDIO_SESSION else h323.leg.video
            assert channel is not None and channel.rtp is not None and channel.rtp.transport is not None
            raw = channel.rtp.transport.get_extra_info("socket")
            assert raw.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == dscp << 2
    finally:
        await h323.leg.close()


def test_marking_settings_are_validated() -> None:
    assert (RtpSettings().dscp_audio, RtpSettings().dscp_video) == (46, 34)
    with pytest.raises(ValidationError):
        RtpSettings(dscp_video=64)
    with pytest.raises(ValidationError):
        RtpSettings(dscp_audio=-1)
    with pytest.raises(ValueError, match="0-63"):
        DscpMarking(audio=99)
