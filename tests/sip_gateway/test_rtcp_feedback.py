"""RTCP rate feedback: TMMBR/TMMBN (RFC 5104), REMB, receiver reports, in the pure RTP session."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, pack_remb_fci, unpack_remb_fci
from hypothesis import given
from hypothesis import strategies as st

from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy, MediaStream
from sip_gateway.rtp.rtcp_feedback import (
    Remb,
    RtcpFeedbackError,
    TmmbEntry,
    Tmmbn,
    Tmmbr,
    build_remb,
    build_tmmbn,
    build_tmmbr,
    parse_feedback,
)
from sip_gateway.rtp.session import (
    RateEstimate,
    RateLimitRequest,
    ReceptionReport,
    RtpSession,
    SendRtcp,
)
from sip_gateway.sip.sdp import answer, create_offer
from tests.sip_gateway.pcap_writer import write_pcap


def video_stream() -> MediaStream:
    offer = create_offer(MediaPolicy(), LocalMedia("127.0.0.1", 4000, 4002))
    _, streams = answer(offer, MediaPolicy(), LocalMedia("127.0.0.1", 5000, 5002))
    return next(s for s in streams if s.kind == "video")


def test_tmmbr_round_trip_and_exponent() -> None:
    data = build_tmmbr(0x11111111, 0x22222222, 768_000, 40)
    assert len(data) == 20 and data[0] == 0x83 and data[1] == 205
    assert parse_feedback(data) == [Tmmbr(0x11111111, (TmmbEntry(0x22222222, 768_000, 40),))]
    # 17-bit mantissa: 768000 needs exponent 3 (96000 << 3), exactly representable
    assert int.from_bytes(data[16:20], "big") >> 26 == 3
    # rounded down to what the fields hold, never up (a limit must not grow)
    (item,) = parse_feedback(build_tmmbr(1, 2, 1_000_001))
    assert isinstance(item, Tmmbr) and item.entries[0].bitrate_bps <= 1_000_001
    assert item.entries[0].bitrate_bps > 1_000_001 * 0.9999


def test_tmmbn_and_remb_round_trip() -> None:
    entries = (TmmbEntry(5, 300_000, 28), TmmbEntry(6, 0, 0))
    assert parse_feedback(build_tmmbn(9, entries)) == [Tmmbn(9, entries)]
    assert parse_feedback(build_tmmbn(9, ())) == [Tmmbn(9, ())]
    assert parse_feedback(build_remb(3, 1_500_000, (7, 8))) == [Remb(3, 1_500_000, (7, 8))]


def test_our_remb_matches_aiortcs() -> None:
    data = build_remb(3, 1_234_567, (7, 8))
    assert data[12:] == pack_remb_fci(1_234_567, [7, 8])
    assert unpack_remb_fci(data[12:]) == (parse_feedback(data)[0].bitrate_bps, [7, 8])  # type: ignore[union-attr]


def test_absurd_rates_are_kept_in_the_fields() -> None:
    (item,) = parse_feedback(build_tmmbr(1, 2, 10**30))  # more than 17 bits << 63: the largest value
    assert isinstance(item, Tmmbr) and item.entries[0].bitrate_bps == ((1 << 17) - 1) << 63
    (item,) = parse_feedback(build_tmmbr(1, 2, -5))
    assert isinstance(item, Tmmbr) and item.entries[0].bitrate_bps == 0


@pytest.mark.parametrize("data", [
    b"\x83\xcd\x00\x05" + bytes(8),  # length past the end
    b"\x83\xcd\x00\x02" + bytes(8),  # TMMBR without an entry
    b"\x83\xcd\x00\x03" + bytes(12),  # half an entry
    b"\x8f\xce\x00\x03" + bytes(8) + b"REMB",  # REMB without its bit rate word
    b"\x8f\xce\x00\x04" + bytes(8) + b"REMB" + b"\x05\x00\x00\x00",  # 5 SSRCs announced, none there
    b"\x43\xcd\x00\x00",  # version 1
    b"\xa3\xcd\x00\x01\x00\x00\x00\x00",  # padding of 0 octets
    b"\x80",
])
def test_malformed_feedback_is_refused(data: bytes) -> None:
    with pytest.raises(RtcpFeedbackError):
        parse_feedback(data)


@given(st.binary(max_size=200))
def test_parse_never_fails_otherwise(data: bytes) -> None:
    try:
        parse_feedback(data)
    except RtcpFeedbackError:
        pass


# ---------------------------------------------------------------------------- the session


def test_tmmbr_for_our_stream_is_obeyed_and_answered_with_tmmbn() -> None:
    session = RtpSession(video_stream())
    ours = session.send.ssrc
    events = session.receive(build_tmmbr(0xABC, ours, 500_000, 40), 1.0)
    assert RateLimitRequest(500_000, 40) in events
    (reply,) = [e for e in events if isinstance(e, SendRtcp)]
    # The TMMBN comes from us and lists the tuple with its owner (the SSRC that asked).
    assert parse_feedback(reply.data) == [Tmmbn(ours, (TmmbEntry(0xABC, 500_000, 40),))]
    # A higher request from the same owner replaces its tuple (a limit may be raised again).
    events = session.receive(build_tmmbr(0xABC, ours, 900_000), 2.0)
    assert RateLimitRequest(900_000, 0) in events
    # Two owners: the bounding set's lowest tuple is obeyed and announced.
    events = session.receive(build_tmmbr(0xDEF, ours, 300_000), 3.0)
    assert RateLimitRequest(300_000, 0) in events
    events = session.receive(build_tmmbr(0xABC, ours, 800_000), 4.0)
    assert RateLimitRequest(300_000, 0) in events


def test_tmmbr_for_another_stream_is_ignored() -> None:
    session = RtpSession(video_stream())
    assert session.receive(build_tmmbr(0xABC, session.send.ssrc ^ 1, 500_000), 1.0) == []


def test_nonsensical_tmmbr_values_reach_the_budget_unchanged_and_nothing_breaks() -> None:
    session = RtpSession(video_stream())
    for bitrate in (0, -1, 10**10, 10**30):
        events = session.receive(build_tmmbr(7, session.send.ssrc, bitrate), 1.0)
        (limit,) = [e for e in events if isinstance(e, RateLimitRequest)]
        assert limit.bitrate_bps >= 0


def test_remb_and_receiver_reports() -> None:
    session = RtpSession(video_stream())
    ours = session.send.ssrc
    assert session.receive(build_remb(5, 700_000, (ours,)), 1.0) == [RateEstimate(700_000)]
    assert session.receive(build_remb(5, 700_000, ()), 1.0) == [RateEstimate(700_000)]
    assert session.receive(build_remb(5, 700_000, (ours ^ 1,)), 1.0) == []
    rr = RtcpRrPacket(ssrc=5, reports=[
        RtcpReceiverInfo(ssrc=ours, fraction_lost=64, packets_lost=12, highest_sequence=100, jitter=30, lsr=0,
                         dlsr=0),
        RtcpReceiverInfo(ssrc=ours ^ 1, fraction_lost=255, packets_lost=1, highest_sequence=1, jitter=0, lsr=0,
                         dlsr=0)])
    assert session.receive(bytes(rr), 2.0) == [ReceptionReport(0.25, 12, 30, 100)]


def test_a_broken_feedback_packet_is_counted_not_raised() -> None:
    session = RtpSession(video_stream())
    # aiortc accepts it (a generic RTPFB), the TMMBR parser does not (no entry): counted, dropped.
    assert session.receive(b"\x83\xcd\x00\x02" + bytes(8), 1.0) == []
    assert session.malformed == 1


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark missing (Debian tshark)")
def test_wireshark_reads_our_tmmbr_tmmbn_and_remb(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "rtcp.pcap", [
        (build_tmmbr(0x1111, 0x2222, 768_000, 40), 6001, 7001),
        (build_tmmbn(0x2222, (TmmbEntry(0x1111, 768_000, 40),)), 7001, 6001),
        (build_remb(0x1111, 1_500_000, (0x2222,)), 6001, 7001),
    ])
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", "udp.port==7001,rtcp", "-T", "fields", "-E", "separator=|",
         "-e", "rtcp.rtpfb.fmt", "-e", "rtcp.psfb.fmt", "-e", "rtcp.rtpfb.tmmbr.fci.ssrc",
         "-e", "rtcp.rtpfb.tmmbr.fci.exp", "-e", "rtcp.rtpfb.tmmbr.fci.mantissa",
         "-e", "rtcp.rtpfb.tmmbr.fci.measuredoverhead", "-e", "rtcp.psfb.remb.fci.br_exp",
         "-e", "rtcp.psfb.remb.fci.br_mantissa", "-e", "rtcp.psfb.remb.fci.ssrc"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip().splitlines()
    assert len(out) == 3, out
    tmmbr, tmmbn, remb = (row.split("|") for row in out)
    assert tmmbr[0] == "3" and tmmbr[2] == "0x00002222" and int(tmmbr[4]) << int(tmmbr[3]) == 768_000, tmmbr
    assert tmmbr[5] == "40", tmmbr
    assert tmmbn[0] == "4" and tmmbn[2] == "0x00001111" and int(tmmbn[4]) << int(tmmbn[3]) == 768_000, tmmbn
    assert remb[1] == "15" and int(remb[7]) << int(remb[6]) == 1_500_000 and remb[8] == "0x00002222", remb
    malformed = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", "udp.port==7001,rtcp", "-Y", "_ws.malformed || _ws.expert.severity >= error"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    assert malformed.strip() == "", malformed
