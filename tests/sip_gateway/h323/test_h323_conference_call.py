"""Full calls between our H.323 endpoint (a room system with real RTP) and an MCU conference,
captured on loopback and checked by tshark; the terminal decodes the composite picture and the
mixed audio; its own picture appears in its pane of the broadcast view."""
from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.runtime import CoreServices
from mcu.legs.h323 import H323Site
from sip_gateway.h323.capabilities import DEFAULT_FORMATS, Codec, MediaFormat
from sip_gateway.h323.events import CallReleased, ChannelOpened, FlowControlRequested
from tests.sip_gateway.h323.h323_conference_kit import (
    GREEN,
    RED,
    OtherSite,
    Terminal,
    amplitude_at,
    free_port,
    start_mcu,
    stop_mcu,
)
from tests.sip_gateway.h323.h323_testkit import TSHARK, LoopbackCapture, tshark_fields, wire_problems

CONFERENCE = "80000001"
needs_capture = [pytest.mark.skipif(TSHARK is None, reason="tshark not installed"),
                 pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root")]


def require_capture() -> bool:
    """True, or the test fails: the wire checks need tshark and root for the loopback capture."""
    if TSHARK is None or os.geteuid() != 0:
        pytest.fail("a real part is missing: tshark and root for the loopback capture (make test as root)")
    return True


def _has(rgb: np.ndarray, colour: tuple[int, int, int], min_fraction: float = 0.05) -> bool:
    diff = np.abs(rgb.astype(int) - np.array(colour)).sum(axis=2)
    return bool((diff < 90).mean() >= min_fraction)


def _rtp_problems(pcap: Path) -> tuple[list[str], set[str]]:
    """Decode the RTP port ranges as RTP: malformed frames and the protocols found."""
    assert TSHARK is not None
    args = [TSHARK, "-r", str(pcap), "-d", "udp.port==31000-32699,rtp"]
    bad = subprocess.run(args + ["-Y", '_ws.malformed or _ws.expert.severity >= "warning"', "-T", "fields",
                                 "-e", "frame.number", "-e", "frame.protocols", "-e", "_ws.expert.message"],
                         capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    protocols = subprocess.run(args + ["-Y", "rtp or rtcp", "-T", "fields", "-e", "frame.protocols"],
                               capture_output=True, text=True, timeout=120, check=True).stdout.split()
    bad = [line for line in bad if "tcp.analysis" not in line and line.strip() and ":tcp" not in line]
    return bad, {p for line in protocols for p in line.split(":")}


def _h245_verbose(pcap: Path) -> str:
    assert TSHARK is not None
    return subprocess.run([TSHARK, "-r", str(pcap), "-Y", "h245", "-V"], capture_output=True, text=True,
                          timeout=120, check=True).stdout


async def _joined_site(mcu_sites: set[H323Site], seconds: float = 15.0) -> H323Site:
    async with asyncio.timeout(seconds):
        while True:
            for site in mcu_sites:
                if site.site is not None:
                    return site
            await asyncio.sleep(0.05)


async def run_conference_call(services: CoreServices, tmp_path: Path, terminal: Terminal, video: str,
                              capture: bool = True) -> dict[str, object]:
    port, h245_port = free_port(), free_port()
    mcu = await start_mcu(services, port)
    mcu.bridge.config.h245_port = h245_port
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    other = await OtherSite.join(conf)
    pcap = tmp_path / "conference.pcap"
    out: dict[str, object] = {"pcap": pcap, "ports": (port, h245_port)}
    capture_ctx = LoopbackCapture(pcap, f"tcp port {port} or tcp port {h245_port} or udp portrange 31000-32699")
    try:
        if capture:
            capture_ctx.__enter__()
        await terminal.dial(mcu.address, CONFERENCE)
        site = await _joined_site(mcu.bridge.sites)
        assert site.site_id.startswith("h323-room-101")
        sites = {s["site_id"]: s for s in conf.site_list()}
        assert sites[site.site_id]["status"] == "joined" and sites[site.site_id]["protocol"] == "h323"

        def sees_both() -> bool:
            if len(terminal.frames) < 3 or len(terminal.audio) < 60:
                return False
            rgb = terminal.frames[-1].to_ndarray(format="rgb24")
            return _has(rgb, RED) and _has(rgb, GREEN)

        try:
            await terminal.until(sees_both, 20)
        except TimeoutError:
            media = terminal.media
            detail: tuple[object, ...] = (len(terminal.frames), len(terminal.audio), media.leg.statistics() if media else None,
                      site.site.statistics() if site.site else None, site.media.leg.statistics())
            if terminal.frames:
                rgb = terminal.frames[-1].to_ndarray(format="rgb24")
                detail += (rgb.reshape(-1, 3)[::5000].tolist(),)
            raise AssertionError(f"terminal does not see the composite: {detail}") from None
        # Composite video: the other site's red pane and our own green pane, decoded by the terminal.
        last = terminal.frames[-1]
        out["received_size"] = (last.width, last.height)
        # Audio: the other site's 440 Hz tone, not our own 1000 Hz (N-1 mix).
        await asyncio.sleep(0.5)
        pcm = np.concatenate(terminal.audio[-40:])
        out["a440"], out["a1000"] = amplitude_at(pcm, 440), amplitude_at(pcm, 1000)
        # Our picture in our pane of the broadcast view.
        plan = conf.room.view_plan("broadcast")
        pane = next(p for p in plan.panes if p.participant_id == site.site_id)
        rgb = conf.room.render("broadcast").frame.to_ndarray(format="rgb24")
        cx, cy = pane.rect.centre
        out["own_pane"] = tuple(int(v) for v in rgb[cy - 4:cy + 4, cx - 4:cx + 4].reshape(-1, 3).mean(axis=0))
        # Fast update from the terminal reaches the shared encoder; statistics carry the RTT.
        incoming_video = [e.channel for e in terminal.of(ChannelOpened)
                          if isinstance(e, ChannelOpened) and not e.channel.outgoing and e.channel.session_id == 2]
        assert terminal.handle is not None
        assert site.site is not None and site.media.outgoing_video is not None
        assert site.media.outgoing_video.format.codec.value.lower() == video
        before = site.site.counters.keyframes_requested_by_endpoint
        terminal.handle.request_fast_update(incoming_video[0].number)
        await terminal.until(lambda: site.site is not None
                             and site.site.counters.keyframes_requested_by_endpoint > before, 10)
        await terminal.until(lambda: site.round_trip_ms is not None, 10)
        # Two sites side by side on the 640x360 canvas: 320x360 panes, so the terminal is asked for
        # no more than the 640x360 rate (H.245 flowControlCommand).
        assert conf.room.wanted_video_size(site.site_id) == (320, 360)
        # (The H.263/H.261 terminals offer only 384 kbit/s: nothing to limit.)
        if video == "h264":
            await terminal.until(lambda: any(isinstance(e, FlowControlRequested) and e.bitrate_bps == 600_000
                                             for e in terminal.events), 10)
        else:
            assert not terminal.of(FlowControlRequested)
        out["stats"] = mcu.bridge.statistics()
        # The terminal hangs up: the site leaves.
        terminal.handle.release()
        await terminal.until(lambda: {s["site_id"]: s for s in conf.site_list()}[site.site_id]["status"] == "left", 10)
        out["site_after"] = {s["site_id"]: s for s in conf.site_list()}[site.site_id]
        await terminal.until(lambda: not mcu.bridge.sites, 5)  # media closed, ports released
        assert not mcu.bridge.ports.reserved
    finally:
        other.stop()
        await terminal.close()
        await stop_mcu(mcu)
        if capture:
            capture_ctx.__exit__(None, None, None)
    return out


@pytest.mark.parametrize("fast_start, tunnelling", [(True, True), (False, False)],
                         ids=["faststart-tunnelled", "no-faststart-separate-h245"])
async def test_h323_terminal_in_conference(services: CoreServices, tmp_path: Path, fast_start: bool,
                                           tunnelling: bool) -> None:
    require_capture()
    terminal = Terminal(fast_start=fast_start, tunnelling=tunnelling)
    out = await asyncio.wait_for(run_conference_call(services, tmp_path, terminal, "h264"), 90)
    assert out["a440"] > 20 and out["a440"] > 5 * out["a1000"], out  # type: ignore[operator]
    own = out["own_pane"]
    assert own[1] > 150 and own[0] < 80, own  # type: ignore[index]
    stats = out["stats"][0]  # type: ignore[index]
    assert stats["round_trip_ms"] is not None
    assert stats["h323_codecs"] == {"audio": "G722", "audio_received": "G722", "video": "H264", "video_received": "H264"}
    assert {s["kind"] for s in stats["streams"]} == {"audio", "video"}
    assert out["site_after"]["status"] == "left"  # type: ignore[index]
    released = terminal.of(CallReleased)[0]
    assert isinstance(released, CallReleased) and released.cause == 16

    pcap = out["pcap"]
    assert isinstance(pcap, Path)
    ports = out["ports"]
    assert isinstance(ports, tuple)
    port, h245_port = int(ports[0]), int(ports[1])
    assert wire_problems(pcap, tolerate_tcp_sequence=True) == []
    q931 = tshark_fields(pcap, "q931", "q931.message_type")
    types = {int(t, 0) for line in q931 for t in line.split(",")}
    assert {0x05, 0x01, 0x07, 0x5A} <= types  # Setup, Alerting, Connect, ReleaseComplete
    undissected = (f"tcp.len > 0 and not tcp.analysis.retransmission and "
                   f"((tcp.port == {port} and not h225) or (tcp.port == {h245_port} and not h245))")
    assert tshark_fields(pcap, undissected) == []
    names = _h245_verbose(pcap)
    for name in ("terminalCapabilitySet", "masterSlaveDetermination", "videoFastUpdatePicture",
                 "roundTripDelayRequest", "endSessionCommand"):
        assert name in names, name
    if not fast_start:
        assert "openLogicalChannel" in names
        assert tshark_fields(pcap, f"h245 and tcp.port == {h245_port}", "frame.number")
    bad, protocols = _rtp_problems(pcap)
    assert bad == [] and "rtp" in protocols and "rtcp" in protocols, (bad, protocols)


H263_ONLY = (MediaFormat(Codec.PCMU), MediaFormat(Codec.H263, max_bitrate=3840, mpi=(("qcifMPI", 1), ("cifMPI", 1))))
H261_ONLY = (MediaFormat(Codec.PCMA), MediaFormat(Codec.H261, max_bitrate=3840, mpi=(("qcifMPI", 1), ("cifMPI", 1))))


@pytest.mark.parametrize("formats, video, audio", [(H263_ONLY, "h263", "PCMU"), (H261_ONLY, "h261", "PCMA")],
                         ids=["h263-only", "h261-only"])
async def test_legacy_video_terminal_gets_video_it_decodes(services: CoreServices, tmp_path: Path,
                                                            formats: tuple[MediaFormat, ...], video: str,
                                                            audio: str) -> None:
    capture = require_capture()
    terminal = Terminal(formats=formats)
    out = await asyncio.wait_for(run_conference_call(services, tmp_path, terminal, video, capture=capture), 90)
    assert out["received_size"] == (352, 288)
    assert out["stats"][0]["h323_codecs"] == {"audio": audio, "audio_received": audio,  # type: ignore[index]
                                              "video": video.upper(), "video_received": video.upper()}
    own = out["own_pane"]
    assert own[1] > 150 and own[0] < 80, own  # type: ignore[index]
    if capture:  # always true here: require_capture() fails the test otherwise
        pcap = out["pcap"]
        assert isinstance(pcap, Path)
        bad, protocols = _rtp_problems(pcap)
        assert bad == [] and video in protocols, (bad, protocols)


H263_H261 = MediaFormat(Codec.H263, max_bitrate=3840, mpi=(("qcifMPI", 1), ("cifMPI", 1)))


@pytest.mark.parametrize("fast_start, rfc4629", [(True, False), (False, False), (False, True)],
                         ids=["faststart", "no-faststart", "no-faststart-h263-rfc4629"])
async def test_asymmetric_terminal_sends_h263_receives_h261(services: CoreServices, tmp_path: Path,
                                                             fast_start: bool, rfc4629: bool) -> None:
    """A room system that sends H.263 and G.711 µ-law but lists only H.261 and A-law among its
    receive capabilities: we decode what arrives by the incoming channel's codec (its green
    picture shows in its pane) and send what its capabilities allow (it decodes CIF H.261).
    With ``rfc4629`` its H.263 channel says (mediaPacketization rfc-number 2429, dynamic payload
    type 96) that it uses the H263-1998 payload format instead of RFC 2190."""
    h263 = replace(H263_H261, h263_rfc4629=True, payload_type=96) if rfc4629 else H263_H261
    terminal = Terminal(formats=H261_ONLY, transmit_formats=(MediaFormat(Codec.PCMU), h263),
                        fast_start=fast_start, tunnelling=fast_start)
    capture = require_capture()
    out = await asyncio.wait_for(run_conference_call(services, tmp_path, terminal, "h261", capture=capture), 90)
    assert out["received_size"] == (352, 288)  # H.261 CIF decoded by the terminal
    own = out["own_pane"]
    assert own[1] > 150 and own[0] < 80, own  # type: ignore[index]  # its H.263 decoded by the MCU
    stats = out["stats"][0]  # type: ignore[index]
    assert stats["h323_codecs"] == {"audio": "PCMA", "audio_received": "PCMU",
                                    "video": "H261", "video_received": "H263"}
    assert stats["input_resolution"] == [352, 288]
    sent = [e.channel for e in terminal.of(ChannelOpened) if isinstance(e, ChannelOpened) and e.channel.outgoing]
    assert {c.format.codec for c in sent} == {Codec.PCMU, Codec.H263}
    assert {s["kind"]: s["codec"] for s in stats["streams"]}["video"] == "H261"
    assert [c.format.h263_rfc4629 for c in sent if c.format.codec is Codec.H263] == [rfc4629]
    if capture:  # always true here: require_capture() fails the test otherwise
        pcap = out["pcap"]
        assert isinstance(pcap, Path)
        assert wire_problems(pcap, tolerate_tcp_sequence=True) == []
        bad, protocols = _rtp_problems(pcap)
        assert bad == [] and "h261" in protocols, (bad, protocols)
        if not fast_start:  # the OLCs are plain H.245 on the wire (fast start ones sit in the Setup)
            names = _h245_verbose(pcap)
            assert ("rfc-number: RFC 2429" in names) is rfc4629


def test_default_formats_prefer_h264() -> None:
    assert [f.codec for f in DEFAULT_FORMATS if f.codec.is_video][0] is Codec.H264
