"""Opus in-band FEC towards a SIP site, judged on the wire: a real baresip on Opus behind
``2M_2pct_30ms`` dials the room (audio only) while a speaker talks in it.

baresip offers ``useinbandfec=1`` (``opus_inbandfec yes``: its decoder uses the copy, RFC 7587);
our answer keeps it. Its RTCP receiver reports about our audio show the line's loss, the site's
:class:`~mcu.legs.audio_fec.AudioFec` turns in-band FEC on, and from then on the Opus packets we
send it carry LBRR (the low-rate copy of the previous frame, RFC 6716 §2.1.7): tshark on the line's
interface captures them, and each packet's TOC byte and the first bits of its SILK frame (the LBRR
flags, read as libopus's ``opus_packet_has_lbrr`` reads them) say which do. Before the switch none
does. (baresip does not report concealment, so the wire is the evidence.)
"""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from sip_gateway.rtp.media_description import MediaPolicy
from tests.linesim.conftest import OpenLine
from tests.linesim.peers import LineBaresip, start_line_bridge
from tests.linesim.test_chromium_audio_fec_on_a_line import speak, speech
from tests.linesim.test_dscp import tshark
from tests.sip_gateway.conference_helpers import DEMO, joined, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150),
              pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing"),
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark missing")]
ON_WITHIN_S = 40.0
AFTER_S = 8.0


class OpusBaresip(LineBaresip):
    """baresip on Opus only, telling us its decoder uses in-band FEC."""

    def write_config(self) -> None:
        super().write_config()
        path = self.home / "config"
        path.write_text(path.read_text() + "opus_inbandfec yes\nopus_packet_loss 10\n")


def has_lbrr(packet: bytes) -> bool | None:
    """Whether an Opus packet (one frame, code 0) carries LBRR; None when it cannot (CELT-only) or is not code 0."""
    if len(packet) < 2:
        return None
    toc = packet[0]
    config, stereo, code = toc >> 3, (toc >> 2) & 1, toc & 3
    if config >= 16 or code != 0:
        return None  # CELT-only has no LBRR; we send one frame per packet
    ms = (10, 20, 40, 60)[config % 4] if config < 12 else (10, 20)[config % 2]
    frames = max(1, ms // 20)  # SILK frames of 20 ms (10 ms: one)
    first = packet[1]
    lbrr = (first >> (7 - frames)) & 1
    if stereo:
        lbrr |= (first >> (6 - 2 * frames)) & 1
    return bool(lbrr)


def test_lbrr_flag_reading() -> None:
    assert has_lbrr(bytes([(13 << 3) | 0, 0b0100_0000])) is True  # hybrid 20 ms mono, VAD 0, LBRR 1
    assert has_lbrr(bytes([(13 << 3) | 0, 0b1000_0000])) is False  # VAD 1, LBRR 0
    assert has_lbrr(bytes([(13 << 3) | 4, 0b1001_0000])) is True  # stereo: the side channel's LBRR
    assert has_lbrr(bytes([(31 << 3) | 0, 0xFF])) is None  # CELT-only
    assert has_lbrr(bytes([(13 << 3) | 3, 0xFF])) is None  # not code 0
    assert has_lbrr(b"\x68") is None


async def test_opus_site_gets_in_band_fec_once_its_reports_show_loss(
        services: CoreServices, conferences: ConferenceService, linesim: OpenLine, tmp_path: Path) -> None:
    line = linesim("2M_2pct_30ms")
    bridge = await start_line_bridge(services, conferences, line, MediaPolicy(audio_codecs=("OPUS",), video_codecs=()))
    conf = conferences.running(DEMO)
    assert conf is not None
    source = await conf.join("voice", "讲话者", "demo")
    stop = asyncio.Event()
    feeder = asyncio.ensure_future(speak(source, speech(tmp_path), stop))
    cap = tmp_path / "opus.pcapng"
    capture = await asyncio.create_subprocess_exec(
        "tshark", "-i", line.mcu_iface, "-f", "udp", "-w", str(cap), "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    peer = OpusBaresip(tmp_path / "site", line=line, audio_codecs="opus")
    switched_at = 0.0
    try:
        assert capture.stderr is not None
        async with asyncio.timeout(20):
            while b"Capturing on" not in await capture.stderr.readline():
                pass
        await peer.start(f"/dial sip:{DEMO}@{line.mcu_address}:{bridge.endpoint.config.port}")
        await until(lambda: any(s.media is not None for s in bridge.sites.values()), 30, "baresip to join")
        site = next(iter(bridge.sites.values()))
        assert site.site_id in joined(conf)
        assert [s.codec.name for s in site.call.streams if s.remote_port] == ["OPUS"]
        assert "useinbandfec=1" in next(s for s in site.call.streams if s.kind == "audio").codec.fmtp
        fec = site.audio_fec
        assert fec is not None and fec.peer_decodes
        deadline = time.monotonic() + ON_WITHIN_S
        while not fec.switch.on:
            assert time.monotonic() < deadline, f"FEC not on within {ON_WITHIN_S} s: {fec.describe()}"
            await asyncio.sleep(0.2)
        switched_at = time.time()
        assert fec.encoder.wanted >= 10, fec.describe()
        await asyncio.sleep(AFTER_S)
        leg = site.leg
        assert leg.audio is not None
        port = leg.audio.port
        described = fec.describe()
    finally:
        stop.set()
        await feeder
        await bridge.stop()
        await peer.stop()
        capture.terminate()
        await asyncio.wait_for(capture.wait(), 20)
        await conf.leave("voice")
    rows = await tshark("-r", str(cap), "-d", f"udp.port=={port},rtp", "-Y",
                        f"ip.src=={line.mcu_address} && udp.srcport=={port} && rtp", "-T", "fields",
                        "-e", "frame.time_epoch", "-e", "rtp.payload")
    before = {"packets": 0, "lbrr": 0, "silk": 0}
    after = {"packets": 0, "lbrr": 0, "silk": 0}
    for row in rows.splitlines():
        when, _, payload = row.partition("\t")
        if not payload:
            continue
        at = float(when)
        tally = before if at < switched_at - 0.5 else after if at > switched_at + 0.5 else None
        if tally is None:
            continue
        lbrr = has_lbrr(bytes.fromhex(payload.replace(":", "")))
        tally["packets"] += 1
        tally["silk"] += lbrr is not None
        tally["lbrr"] += bool(lbrr)
    print("opus to baresip behind 2M_2pct_30ms: before the switch", before, "after", after, described)
    assert before["packets"] > 100 and after["packets"] > 0.6 * 50 * AFTER_S, (before, after)
    assert before["lbrr"] == 0, before  # FEC off: no copies
    # On: most packets carry the copy (libopus adds none to frames its voice detector calls silence).
    assert after["lbrr"] >= 0.4 * after["packets"], after
