"""A SIP site on a 768 kbit/s line gets video within its budget, and TMMBR moves it (real baresip).

The site plan says SIP lines are 768 kbit/s; baresip (H.264 level 3.1, which would get 720p at
1.5 Mbit/s before the budget) dials in, sending moving noise so the composite costs its encoder's
full rate. Checked on the real thing: our SDP answer carries the
line (b=AS), the room sends the size the budget carries (baresip decodes 640x360), the video RTP
we send over 6 s stays under 95 % of the line minus audio, baresip's receiver reports reach the
budget, a TMMBR of 300 kbit/s moves the site down to CIF (the SPS we send says so, read by
Wireshark) and is answered with a TMMBN that Wireshark reads, and nonsensical TMMBRs (0, 10 Gbit/s, garbage)
are clamped while the call goes on.
"""
from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import pytest

from config.site_plan import LineDefaults
from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.encoder import DEFAULT_BITRATE
from mcu.legs.sip import SipSite
from mcu.room import RoomSettings
from sip_gateway.rtp.media_description import MediaPolicy
from sip_gateway.rtp.rtcp_feedback import build_tmmbr
from tests.sip_gateway.conference_helpers import DEMO, joined, start_bridge, until
from tests.sip_gateway.peers import Baresip

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing (Debian baresip)"),
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark missing (Debian tshark)")]

LINE = 768


class MovingBaresip(Baresip):
    """baresip sending a noisy moving picture (the composite then costs its encoder's full rate)."""

    def __init__(self, home: Path, source: Path) -> None:
        super().__init__(home)
        self.source = source

    def write_config(self) -> None:
        super().write_config()
        config = self.home / "config"
        text = config.read_text().replace("video_source fakevideo,nil", f"video_source avformat,{self.source}")
        config.write_text(text + "module avformat.so\n")


async def moving_video(path: Path) -> Path:
    """A video-only file of moving noise (baresip's avformat source crashed on one with audio)."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=15,noise=alls=100:allf=t+u",
        "-t", "90", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-an", "-y", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return path


@pytest.fixture
def room_settings() -> RoomSettings:
    return RoomSettings(fps=15)  # the shared `conferences` fixture (tests/conftest.py) runs rooms at 15 fps here


def video_sent(site: SipSite) -> tuple[float, int, int]:
    """(time, payload octets, packets) of the video we sent the site."""
    channel = site.leg.video
    assert channel is not None and channel.session is not None
    return time.monotonic(), channel.session.send.octets, channel.session.send.packets


async def capture(port: int, path: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        "tshark", "-i", "lo", "-f", f"udp src port {port} or udp src port {port + 1}", "-w", str(path), "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while b"Capturing on" not in await proc.stderr.readline():
            pass
    await asyncio.sleep(1.0)  # dumpcap announces itself a moment before it really captures
    return proc


async def test_a_768k_site_gets_video_within_budget_and_obeys_tmmbr(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.plan, "lines", LineDefaults(sip=LINE))
    bridge = await start_bridge(services, conferences, MediaPolicy(h264_modes=(1,), video_codecs=("H264",)))
    caller = MovingBaresip(tmp_path / "caller", await moving_video(tmp_path / "moving.mp4"))
    conf = conferences.running(DEMO)
    assert conf is not None
    tshark: asyncio.subprocess.Process | None = None
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        await caller.start(f"/dial sip:{DEMO}@127.0.0.1:{bridge.endpoint.config.port}")
        await until(lambda: len(joined(conf)) == 1, 30, "baresip's dial-in to join")
        await until(lambda: any(s.media is not None for s in bridge.sites.values()), 10, "the site's media")
        site = next(s for s in bridge.sites.values() if s.media is not None)
        media, rate = site.media, site.rate
        assert media is not None and rate is not None and media.video is not None
        # Our answer told baresip the line; the budget is the line's after audio, RTCP and headers.
        assert site.call.local_sdp is not None
        answer = site.call.local_sdp.serialize().decode()
        assert f"b=AS:{LINE}" in answer and "b=TIAS:" in answer, answer
        assert rate.budget.line_kbps == LINE and rate.video_kbps() <= 0.95 * LINE - 64
        # Level 3.1 would allow 720p (1.5 Mbit/s); the budget carries 640x360 (600 kbit/s).
        assert (media.video.width, media.video.height) == (640, 360)
        await caller.wait_log(r"video: receiving with resolution 640 x 360", 30)

        # What we send over >= 5 s, with IP/UDP/RTP headers, stays within the line.
        t0, octets0, packets0 = video_sent(site)
        await asyncio.sleep(6.0)
        t1, octets1, packets1 = video_sent(site)
        wire_kbps = ((octets1 - octets0) + 40 * (packets1 - packets0)) * 8 / 1000 / (t1 - t0)
        # Issue 16's goal: video sent <= 95 % of the line minus audio (80 kbit/s of PCMU with headers).
        # The moving noise makes the encoder work (an idle picture costs ~3 kbit/s; this one 230-380
        # depending on how many frames the loaded machine composes), so the bound is not met idly.
        assert 100 < wire_kbps <= 0.95 * LINE - 80, wire_kbps
        encoder = conf.room.encoder(media.subscription.key) if media.subscription else None
        assert encoder is not None
        assert (encoder.settings.bitrate or DEFAULT_BITRATE[(encoder.key.width, encoder.key.height)]) \
            <= rate.video_kbps() * 1000
        await until(lambda: rate.feedback["reports"] > 0, 15, "baresip's receiver reports to reach the budget")

        # A TMMBR lowering the rate: obeyed (CIF, the smallest size) and answered with a TMMBN.
        channel = site.leg.video
        assert channel is not None and channel.session is not None and channel.rtcp is not None
        ours = channel.session.send.ssrc
        rtcp_port = channel.port if channel.session.stream.rtcp_mux else channel.port + 1
        video_port, payload_type = channel.port, channel.session.codec.payload_type
        pcap = tmp_path / "tmmbn.pcapng"
        tshark = await capture(channel.port, pcap)
        probe.sendto(build_tmmbr(0x5EED, ours, 300_000, 40), ("127.0.0.1", rtcp_port))
        await until(lambda: rate.budget.limited_by.value == "tmmbr", 5, "the TMMBR to reach the budget")
        assert rate.video_kbps() < 300
        await until(lambda: media.video is not None and media.video.width == 352, 5, "the site to move to CIF")
        await asyncio.sleep(2.0)  # the CIF encoder's first key frame (SPS) reaches the capture

        # Nonsense: clamped, answered, nothing breaks.
        for bitrate in (0, 10_000_000_000):
            probe.sendto(build_tmmbr(0x5EED, ours, bitrate), ("127.0.0.1", rtcp_port))
            await asyncio.sleep(0.3)
        assert rate.budget.caps()["tmmbr"] == 100_000
        probe.sendto(build_tmmbr(0x5EED, ours, 0), ("127.0.0.1", rtcp_port))
        probe.sendto(b"\x83\xcd\x00\x09" + bytes(12), ("127.0.0.1", rtcp_port))  # length past the end
        probe.sendto(b"\x83\xcd\x00\x02" + bytes(8), ("127.0.0.1", rtcp_port))  # a TMMBR without an entry
        await until(lambda: rate.budget.caps().get("tmmbr") == 64, 5, "a TMMBR of 0 to clamp to the floor")
        before = media.counters.video_frames_out
        await asyncio.sleep(2.0)
        assert media.counters.video_frames_out > before and joined(conf) == [site.site_id]
        assert channel.session.malformed >= 1
        await asyncio.sleep(0.5)
    finally:
        probe.close()
        if tshark is not None:
            tshark.terminate()
            await asyncio.wait_for(tshark.wait(), 20)
        await caller.stop()
        await bridge.stop()
    fields = await asyncio.create_subprocess_exec(
        "tshark", "-r", str(pcap), "-d", f"udp.port=={rtcp_port},rtcp", "-Y", "rtcp.rtpfb.fmt == 4",
        "-T", "fields", "-e", "rtcp.senderssrc", "-e", "rtcp.rtpfb.tmmbr.fci.ssrc",
        "-e", "rtcp.rtpfb.tmmbr.fci.exp", "-e", "rtcp.rtpfb.tmmbr.fci.mantissa",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(fields.communicate(), 60)
    rows = [line.split("\t") for line in out.decode().splitlines() if line.strip()]
    assert rows, "no TMMBN captured"
    first = rows[0]
    assert int(first[0], 16) == ours and int(first[1], 16) == 0x5EED, first
    assert int(first[3]) << int(first[2]) == 300_000, first
    # The video after the TMMBR is CIF: the SPS of what we sent says 22 x 18 macroblocks.
    sps = await asyncio.create_subprocess_exec(
        "tshark", "-r", str(pcap), "-d", f"udp.port=={video_port},rtp", "-d", f"rtp.pt=={payload_type},h264",
        "-T", "fields", "-e", "h264.pic_width_in_mbs_minus1", "-e", "h264.pic_height_in_map_units_minus1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(sps.communicate(), 60)
    sizes = {tuple(line.split("\t")) for line in out.decode().splitlines() if line.strip()}
    assert ("21", "17") in sizes, sizes
