"""NACK repair towards a SIP room system on a real lossy line (RFC 4585 generic NACK).

Debian's baresip 1.0 never sends a generic NACK, so the NACKing peer here is two real parts in
the line's namespace: SIPp places the call (``sipp/nack_peer.xml``: video ``RTP/AVPF`` with
``a=rtcp-fb:96 nack`` and ``nack pli``) and a GStreamer ``rtpbin`` receives the MCU's video on
the port SIPp offered, sends RTCP (NACKs with ``do-retransmission``, PLIs) back to the MCU's
RTCP port, and decodes. Only intact frames are counted: ``rtph264depay wait-for-keyframe=true`` drops
everything after a gap until the next key frame, ``avdec_h264 output-corrupt=false`` any frame
that decoded with errors (``fpsdisplaysink``'s "rendered"). The line is ``2M_2pct_30ms``.

Two calls one after the other on the same line and room: the peer NACKs, then it does not
(``do-retransmission=false``; the SDP is the same). Judged: the MCU's NACK counters show
retransmissions only in the first call, and the peer decodes more intact frames with them.
Measured (10 s windows, three first-attempt runs in a row at load 11-16; call ~26 s): with NACK
9-20 packets NACKed and all resent, 141-146 intact frames (the room's 15 fps); without, none
NACKed, 41-106 intact frames.
"""
from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mcu.conferences import ConferenceService
from sip_gateway.rtp.media_description import MediaPolicy
from tests.linesim.conftest import OpenLine
from tests.linesim.line import Line
from tests.linesim.peers import start_line_bridge
from tests.sip_gateway.conference_helpers import DEMO, joined, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150),
              pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("gst-launch-1.0") is None,
                                 reason="sipp or gst-launch-1.0 missing")]
SCENARIO = Path(__file__).with_name("sipp") / "nack_peer.xml"
MEASURE_S = 10.0
VIDEO_PORT, AUDIO_PORT, SIP_PORT = 42000, 42010, 5070
RENDERED = re.compile(r"rendered: (\d+), dropped: (\d+)")


async def noise(participant: Any, stop: asyncio.Event) -> None:
    """A busy source for the room: random pictures at 15 fps (the composite's rate stays high)."""
    rng = np.random.default_rng(16)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(8)]
    i = 0
    while not stop.is_set():
        participant.push_video(frames[i % len(frames)])
        i += 1
        await asyncio.sleep(1 / 15)


class Output:
    """Reads a process's output into ``text`` as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.text = ""
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(4096):
            self.text += chunk.decode(errors="replace")

    def rendered(self) -> int:
        found = RENDERED.findall(self.text)
        return int(found[-1][0]) if found else 0

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(self.task, return_exceptions=True)


async def one_call(conferences: ConferenceService, bridge: Any, line: Line, nack: bool) -> dict[str, Any]:
    conf = conferences.running(DEMO)
    assert conf is not None
    sipp = Output(await asyncio.create_subprocess_exec(
        *line.exec_args("sipp", "-sf", str(SCENARIO), f"{line.mcu_address}:{bridge.endpoint.config.port}",
                        "-i", line.peer_address, "-p", str(SIP_PORT), "-s", DEMO, "-m", "1", "-d",
                        "60000", "-key", "vport", str(VIDEO_PORT), "-key", "aport",
                        str(AUDIO_PORT), "-nostdin", "-timeout", "60s", "-timeout_error"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd="/tmp"))
    gst: Output | None = None
    try:
        await until(lambda: len(joined(conf)) >= 2, 30, "the SIPp call to join")  # the noise site and it
        site = list(bridge.sites.values())[-1]
        channel = site.leg.video
        assert channel is not None and channel.session is not None and channel.session.stream.nack
        caps = ("application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96,"
                "rtcp-fb-nack=(boolean)true,rtcp-fb-nack-pli=(boolean)true")
        gst = Output(await asyncio.create_subprocess_exec(
            *line.exec_args(
                "gst-launch-1.0", "-e", "-v", "rtpbin", "name=rb", f"do-retransmission={str(nack).lower()}",
                "rtp-profile=avpf", "latency=300",
                "udpsrc", f"port={VIDEO_PORT}", f"caps={caps}", "!", "rb.recv_rtp_sink_0",
                "udpsrc", f"port={VIDEO_PORT + 1}", "!", "rb.recv_rtcp_sink_0",
                "rb.send_rtcp_src_0", "!", "udpsink", f"host={line.mcu_address}", f"port={channel.port + 1}",
                "sync=false", "async=false",
                "rb.", "!", "rtph264depay", "request-keyframe=true", "wait-for-keyframe=true", "!", "avdec_h264", "output-corrupt=false", "!",
                "fpsdisplaysink", "video-sink=fakesink", "text-overlay=false", "sync=false"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT))
        await until(lambda: gst is not None and gst.rendered() > 0, 20, "GStreamer to decode the MCU's video")
        counters = channel.session.send.history.counters
        before = (gst.rendered(), counters.requested, counters.resent)
        await asyncio.sleep(MEASURE_S)
        after = (gst.rendered(), counters.requested, counters.resent)
        return {"rendered": after[0] - before[0], "nacked": after[1] - before[1], "resent": after[2] - before[2],
                "refused": counters.refused}
    except BaseException:
        print("sipp:", sipp.text[-2000:], "\ngst:", gst.text[-3000:] if gst else "")
        raise
    finally:
        if gst is not None:
            await gst.stop()
        for site in list(bridge.sites.values()):
            await bridge.hangup(DEMO, site.site_id)  # our BYE ends the call at once (SIPp would wait -d)
        await sipp.stop()
        await until(lambda: len(joined(conf)) <= 1, 20, "the SIPp call to leave")


async def test_a_nacking_sip_peer_behind_a_lossy_line_gets_retransmissions(
        conferences: ConferenceService, services: Any, linesim: OpenLine) -> None:
    line = linesim("2M_2pct_30ms")
    bridge = await start_line_bridge(services, conferences, line,
                                     MediaPolicy(h264_modes=(1, 0), video_codecs=("H264",)), max_video_size="640x360")
    conf = conferences.running(DEMO)
    assert conf is not None
    source = await conf.join("noise", "噪声", "demo")
    stop = asyncio.Event()
    feeder = asyncio.ensure_future(noise(source, stop))
    try:
        with_nack = await one_call(conferences, bridge, line, nack=True)
        without = await one_call(conferences, bridge, line, nack=False)
    finally:
        stop.set()
        await feeder
        await bridge.stop()
        await conf.leave("noise")
    print("sip peer behind 2M_2pct_30ms: with NACK", with_nack, "without", without, "line", line.tbf_drops())
    assert with_nack["nacked"] > 0 and with_nack["resent"] > 0, with_nack  # the MCU answered its NACKs
    assert without["nacked"] == 0 and without["resent"] == 0, without
    assert with_nack["rendered"] > without["rendered"], (with_nack, without)  # more intact frames decoded
