"""H.323 sites on slow lines (issue 16), with H323Plus 1.28 (``h323peer``) and our own room system,
each call bounded:

* **its own upstream**: on a 512 kbit/s line the MCU asks H323Plus (H.245 flowControlCommand on
  its video channel) for no more than the line carries beside audio, and H323Plus's H.245 receives
  it (its trace); dialling out, our capability set's video maxBitRate is the line's. What the MCU
  receives is printed. Measured on loopback: H323Plus's OLC says 327.6 kbit/s, it sends ~1 Mbit/s
  and keeps sending ~0.95 Mbit/s after the command (its H.263 plugin has no flow control and runs at
  quantiser 2; see docs/mcu.md), so only our side is asserted;
* **RTCP into the budget**: the receiver reports H323Plus sends about our video reach the budget;
* **the QCIF rung**: H323Plus listing QCIF only is sent QCIF and decodes it; our own room system
  listing QCIF and CIF is sent QCIF on a 256 kbit/s line and CIF once the line is raised, every
  picture after the move decoded at CIF.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.runtime import CoreServices
from mcu.legs.h323 import H323Site, upstream_video_bps
from mcu.legs.h323_bridge import H323SiteDialer
from sip_gateway.h323.capabilities import Codec, MediaFormat
from tests.sip_gateway.h323.h323_conference_kit import (
    Mcu,
    OtherSite,
    Terminal,
    free_port,
    start_mcu,
    stop_mcu,
)
from tests.sip_gateway.h323.h323plus_peer import H323Peer
from tests.sip_gateway.h323.test_h323_h323plus import CONFERENCE, _peer_args, _room_with_other_site

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


async def _joined(mcu: Mcu, seconds: float = 20.0) -> H323Site:
    async with asyncio.timeout(seconds):
        while True:
            site = next((s for s in mcu.bridge.sites if s.site is not None and s.rate is not None), None)
            if site is not None:
                return site
            await asyncio.sleep(0.1)


async def _until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            while True:
                if predicate():
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not within {seconds} s: {what}") from None


def _octets(site: H323Site) -> int:
    channel = site.media.leg.video
    return channel.session.stats.octets if channel is not None and channel.session is not None else 0


async def _received_kbps(site: H323Site, seconds: float) -> float:
    """The peer's video as the MCU receives it (RTP payload), over ``seconds``."""
    before, started = _octets(site), time.monotonic()
    await asyncio.sleep(seconds)
    return (_octets(site) - before) * 8 / 1000 / (time.monotonic() - started)


def _state_line(mcu: Mcu, kbps: int) -> None:
    """The site plan's ``line_kbps`` for the calling room (as a plan entry would state it)."""
    mcu.bridge.line_kbps = lambda site_id: kbps  # type: ignore[method-assign]
    mcu.bridge.line_known = lambda site_id: True  # type: ignore[method-assign]


async def test_h323plus_is_asked_to_keep_its_video_within_its_line(services: CoreServices, tmp_path: Path,
                                                                   h323peer_binary: Path) -> None:
    port, h245_port, peer_port = free_port(), free_port(), free_port()
    trace = tmp_path / "h323plus-trace.txt"
    peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, False, peer_port), "-t", "-t", "-t", "-t",
                                      "-o", str(trace), "--duration", "30", f"h323:{CONFERENCE}@127.0.0.1:{port}"])
    figures: dict[str, Any] = {}
    async with _room_with_other_site(services, port, h245_port) as mcu:
        _state_line(mcu, 512)
        try:
            await peer.start()
            await peer.wait_for("Call connected", 20)
            site = await _joined(mcu)
            incoming = site.media.incoming_video
            assert incoming is not None
            figures["olc_max_bitrate_bps"] = incoming.format.bitrate_bps
            cap = upstream_video_bps(512)
            # asked at once (its channel allows more) or after two windows above the cap
            await _until(lambda: site.requested_video_bps == cap, 20, f"asked for {cap}: {site.extra_stats()}")
            figures["asked_bps"] = site.requested_video_bps
            figures["overshoot_seen"] = site.upstream.overshoot
            figures["received_at_ask_bps"] = site.upstream.received_bps
            await asyncio.sleep(2)  # the command travels, the terminal's encoder follows (if it does)
            figures["received_after_kbps"] = round(await _received_kbps(site, 6), 1)
            await peer.wait(45)
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)
    text = trace.read_text(errors="replace") if trace.exists() else ""
    figures["h323plus_received_command"] = "flowControlCommand" in text
    figures["h323plus_codec_applied_it"] = "Applying Flow Control" in text
    print(f"H323Plus on a 512k line (cap {cap} bit/s): {figures}")
    assert figures["asked_bps"] == cap == 390_000
    assert figures["h323plus_received_command"], "H323Plus's H.245 did not see our flowControlCommand"


async def test_h323plus_rtcp_reports_reach_the_budget(services: CoreServices, tmp_path: Path,
                                                      h323peer_binary: Path) -> None:
    """An unstated line: H323Plus's own maxBitRate (327.6 kbit/s on the channel we send on) states
    what it takes, so the budget starts there, not at the unknown line's guess; its RTCP receiver
    reports about our video reach the budget (loss-based control, as for SIP sites)."""
    port, h245_port, peer_port = free_port(), free_port(), free_port()
    peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, False, peer_port), "--duration", "30",
                                      f"h323:{CONFERENCE}@127.0.0.1:{port}"])
    async with _room_with_other_site(services, port, h245_port) as mcu:
        try:
            await peer.start()
            await peer.wait_for("Call connected", 20)
            site = await _joined(mcu)
            assert site.rate is not None and site.site_rate is not None
            start = site.rate.snapshot()
            assert start["limited_by"] in ("start", "h245_max_bitrate"), start
            # H323Plus reports every 8-16 s (RTP_Session's 12 s ± a third).
            rate = site.site_rate
            await _until(lambda: rate.feedback["reports"] >= 1, 40, f"a receiver report: {rate.statistics()}")
            print(f"H323Plus, unstated line: budget at join {start}, after its first report {rate.statistics()}")
            assert rate.budget.last_fraction_lost == 0.0  # loopback: a clean report
            await peer.wait(45)
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)


async def test_h323plus_listing_qcif_only_gets_and_decodes_qcif(services: CoreServices, tmp_path: Path,
                                                               h323peer_binary: Path) -> None:
    """H323Plus offering QCIF only (``--video-size qcif``: its H.263-QCIF capability) is sent the
    QCIF encoder (before: CIF, which it had not listed), and decodes it to the end of the call."""
    port, h245_port, peer_port = free_port(), free_port(), free_port()
    peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, False, peer_port), "--video-size", "qcif",
                                      "--duration", "15", f"h323:{CONFERENCE}@127.0.0.1:{port}"])
    async with _room_with_other_site(services, port, h245_port) as mcu:
        try:
            await peer.start()
            await peer.wait_for("Call connected", 20)
            site = await _joined(mcu)
            assert site.qcif and not site.cif
            assert site.site is not None and site.site.video is not None
            assert (site.site.video.width, site.site.video.height) == (176, 144)
            await peer.wait_for(r"Video: first frame received 176x144", 20)
            code = await peer.wait(40)
            assert code == 0, peer.output
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)
    summary = peer.summary
    assert summary is not None, peer.output
    print(f"H323Plus QCIF only: {summary}")
    assert peer.has(r"distinct video frames decoded \d+ \(176x144\)"), peer.output
    assert summary.video_frames_decoded > 20


H263_QCIF_CIF = (MediaFormat(Codec.PCMU), MediaFormat(Codec.H263, max_bitrate=3840,
                                                       mpi=(("qcifMPI", 1), ("cifMPI", 1))))


async def test_a_256k_h263_site_gets_qcif_then_cif_when_its_line_is_raised(services: CoreServices) -> None:
    """Our own H.323 room system (real RTP, PyAV decoding) listing QCIF and CIF: on a 256k line
    it is sent QCIF; the line raised, it moves to CIF, landing on an I-picture (it decodes every
    picture after the move at 352x288)."""
    mcu = await start_mcu(services, free_port())
    _state_line(mcu, 256)
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    other = await OtherSite.join(conf)
    terminal = Terminal(formats=H263_QCIF_CIF)
    try:
        await terminal.dial(mcu.address, CONFERENCE)
        site = await _joined(mcu)
        assert site.qcif and site.cif and site.site is not None and site.site.video is not None
        assert site.rate is not None and (site.site.video.width, site.site.video.height) == (176, 144)
        await terminal.until(lambda: len(terminal.frames) > 5, 20)
        assert {(f.width, f.height) for f in terminal.frames} == {(176, 144)}
        moved_at = len(terminal.frames)
        site.rate.set_line(1024)
        site.refit()
        assert (site.site.video.width, site.site.video.height) == (352, 288)
        await terminal.until(lambda: len(terminal.frames) > moved_at + 10, 20)
        after = [(f.width, f.height) for f in terminal.frames[moved_at:]]
        first_cif = after.index((352, 288))
        assert set(after[first_cif:]) == {(352, 288)}, after  # once moved, CIF only
        assert set(after[:first_cif]) <= {(176, 144)}
    finally:
        other.stop()
        await terminal.close()
        await stop_mcu(mcu)


async def test_mcu_dials_h323plus_on_a_512k_line_with_its_capabilities_within_the_line(
        services: CoreServices, tmp_path: Path, h323peer_binary: Path) -> None:
    """Dialling out to a site on a stated line, our capability set's video maxBitRate is the line's
    (slow start: H323Plus opens its video channel from that set)."""
    port, h245_port, peer_port = free_port(), free_port(), free_port()
    async with _room_with_other_site(services, port, h245_port) as mcu:
        mcu.bridge.config.fast_start = False
        mcu.bridge.config.tunnelling = False
        mcu.conferences.register_dialer("h323", H323SiteDialer(mcu.bridge))
        _state_line(mcu, 512)
        peer = H323Peer(h323peer_binary, [*_peer_args(tmp_path, True, peer_port), "-l", "--once", "--duration", "20"])
        try:
            await peer.start()
            await peer.wait_for("Waiting for incoming calls", 15)
            await mcu.conferences.dial_address(CONFERENCE, f"h323:h323peer@127.0.0.1:{peer_port}", "H323Plus 会议室",
                                               "chair")
            await peer.wait_for("Call connected", 20)
            site = await _joined(mcu)
            incoming = site.media.incoming_video
            assert incoming is not None
            await asyncio.sleep(2)
            received = round(await _received_kbps(site, 6), 1)
            print(f"dial-out, 512k line: H323Plus's video channel says maxBitRate {incoming.format.bitrate_bps} bit/s; "
                  f"received {received} kbit/s; asked {site.requested_video_bps}")
            assert 0 < incoming.format.bitrate_bps <= upstream_video_bps(512)
            await peer.wait(45)
        finally:
            await peer.stop()
            (tmp_path / "peer.log").write_text(peer.output)
