"""RED + ULPFEC towards browsers (mcu.legs.webrtc_fec): the SDP answer, the FEC stream, RED from a browser."""
from __future__ import annotations

import struct

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from mcu.legs.loss_switch import LossSwitch
from mcu.legs.tier_seat import FixedBudget
from mcu.legs.webrtc_aiortc import prefer_codecs
from mcu.legs.webrtc_fec import (
    FEC_SHARE,
    FecAwareBudget,
    FecStream,
    FecTypes,
    RedUnwrap,
    add_fec_codecs,
    offered_fec,
)
from sip_gateway.rtp.ulpfec import parse_fec, recover, red_unwrap

ICE = """a=ice-ufrag:mvD/
a=ice-pwd:julvNxAUB8hwD3ZBnngLwKx7
a=fingerprint:sha-256 41:8E:DA:16:57:19:4A:27:8A:CF:8E:B4:26:5D:51:8F:5F:2C:DB:E2:FB:61:45:1F:1F:6F:B1:82:EC:E5:91:48
a=setup:actpass
a=mid:0
a=recvonly
a=rtcp-mux
"""
CODECS = """a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
"""
FEC = """a=rtpmap:118 red/90000
a=rtpmap:119 rtx/90000
a=fmtp:119 apt=118
a=rtpmap:120 ulpfec/90000
a=rtpmap:49 flexfec-03/90000
a=fmtp:49 repair-window=10000000
"""


def offer(fmt: str, codecs: str) -> str:
    """A Chromium-like receive-only video offer (its codecs trimmed)."""
    return ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            f"m=video 9 UDP/TLS/RTP/SAVPF {fmt}\r\nc=IN IP4 0.0.0.0\r\n" + (ICE + codecs).replace("\n", "\r\n"))


async def answer(offer_sdp: str, fec: bool = True) -> str:
    pc = RTCPeerConnection()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        transceiver = pc.getTransceivers()[0]
        prefer_codecs(transceiver, ["h264", "vp8"])
        types = offered_fec(offer_sdp, transceiver.mid)
        if fec and types is not None:
            add_fec_codecs(transceiver, types)
        transceiver.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_answer_carries_red_ulpfec_and_the_rtx_of_red_when_offered() -> None:
    sdp = await answer(offer("96 97 102 103 118 119 120 49", CODECS + FEC))
    assert offered_fec(offer("96 97 102 103 118 119 120 49", CODECS + FEC)) == FecTypes(118, 120, 119)
    assert "a=rtpmap:118 red/90000" in sdp and "a=rtpmap:120 ulpfec/90000" in sdp
    assert "a=rtpmap:119 rtx/90000" in sdp and "a=fmtp:119 apt=118" in sdp
    assert "a=rtpmap:102 H264/90000" in sdp and "a=fmtp:103 apt=102" in sdp
    assert "flexfec" not in sdp.lower()
    media = [line for line in sdp.splitlines() if line.startswith("m=video")][0]
    assert media.split()[3] == "102"  # the media codec stays first (aiortc sends the first)


async def test_answer_has_no_fec_when_not_offered_or_only_half() -> None:
    plain = await answer(offer("96 97 102 103", CODECS))
    assert "red/" not in plain and "ulpfec" not in plain
    red_only = offer("96 97 102 103 118 119", CODECS + "a=rtpmap:118 red/90000\na=rtpmap:119 rtx/90000\na=fmtp:119 apt=118\n")
    assert offered_fec(red_only) is None
    sdp = await answer(red_only)
    assert "red/90000" not in sdp and "apt=118" not in sdp  # aiortc drops an RTX whose codec it dropped
    assert "ulpfec" not in (await answer(offer("96 97 102 103 118 119 120 49", CODECS + FEC), fec=False))


def rtp(seq: int, payload: bytes, *, pt: int = 102, ts: int = 9000, marker: bool = False,
        ssrc: int = 1111) -> bytes:
    return bytes([0x80, pt | (0x80 if marker else 0)]) + struct.pack("!HII", seq, ts, ssrc) + payload


def stream(on: bool = True) -> FecStream:
    s = FecStream(FecTypes(118, 120, 119), 102, 1111, 2222)
    if on:
        assert s.report(0.2, 0.0) is True  # one report >= 10 %: on at once
    return s


def test_off_passes_media_unchanged_and_no_fec() -> None:
    s = stream(on=False)
    packets = [rtp(100 + i, bytes([i]) * 50, marker=i % 2 == 1) for i in range(6)]
    assert [s.outgoing(p) for p in packets] == [[p] for p in packets]
    assert s.fec_packets == 0 and s.overhead() == 0
    audio = rtp(5, b"opus", pt=111, ssrc=3333)
    assert s.outgoing(audio) == [audio]
    assert s.outgoing(b"\x81\xcb\x00\x01\x00\x00\x04W") == [b"\x81\xcb\x00\x01\x00\x00\x04W"]  # an RTCP BYE


def test_on_sends_red_and_an_ulpfec_packet_that_recovers_a_lost_one() -> None:
    s = stream()
    s._credit = 10_000.0  # paid up: the budget is tested below
    frame = [rtp(100 + i, bytes(range(i, i + 80 + 10 * i)), ts=9000, marker=i == 3) for i in range(4)]
    out = [packet for p in frame for packet in s.outgoing(p)]
    assert len(out) == 5
    for sent, media in zip(out[:4], frame, strict=True):
        assert sent[1] & 0x7F == 118 and sent[1] & 0x80 == media[1] & 0x80 and sent[2:12] == media[2:12]
        assert red_unwrap(sent[12:]) == (102, media[12:])
    fec_rtp = out[4]
    assert fec_rtp[1] == 118 and struct.unpack("!H", fec_rtp[2:4])[0] == 104
    pt, fec_payload = red_unwrap(fec_rtp[12:])
    assert pt == 120
    fec = parse_fec(fec_payload)
    assert fec.protected == (100, 101, 102, 103)
    received = {100 + i: p for i, p in enumerate(frame) if i != 2}
    assert recover(fec, received, 1111) == frame[2]  # bit-exact, media payload type and all
    # The next frame's packets come after the FEC packet: renumbered, NACKs mapped back.
    nxt = s.outgoing(rtp(104, b"x" * 60, ts=12000, marker=False))
    assert struct.unpack("!H", nxt[0][2:4])[0] == 105
    assert s.original(105) == 104 and s.original(102) == 102 and s.original(104) is None


def test_rtx_osn_is_mapped_and_a_nacked_fec_packet_goes_out_as_rtx_of_red() -> None:
    s = stream()
    s._credit = 10_000.0
    for i in range(3):
        s.outgoing(rtp(100 + i, b"m" * 100, marker=i == 2))
    after = s.outgoing(rtp(103, b"n" * 100, marker=True))
    assert struct.unpack("!H", after[0][2:4])[0] == 104
    fec_seq = 103
    aiortc_rtx = rtp(7, struct.pack("!H", 103) + b"n" * 100, pt=103, ssrc=2222)
    mapped = s.outgoing(aiortc_rtx)[0]
    assert struct.unpack("!H", mapped[12:14])[0] == 104 and mapped[14:] == aiortc_rtx[14:]
    again = s.fec_retransmission(fec_seq, 8)
    assert again is not None
    assert again[1] == 119 and struct.unpack("!HII", again[2:12])[::2] == (8, 2222)
    fec_packet = s.fec_packet(fec_seq)
    assert fec_packet is not None and again[12:14] == struct.pack("!H", fec_seq) and again[14:] == fec_packet[12:]
    assert s.fec_retransmission(100, 9) is None  # a media packet: aiortc resends it
    s._credit = -2950.0  # FEC's byte budget pays for its resends too, down to two packets below zero
    assert s.fec_retransmission(fec_seq, 9) is None and s.fec_refused == 1


def test_fec_bytes_stay_within_the_share_of_media_bytes() -> None:
    s = stream()
    seq = 0
    for frame in range(300):
        for i in range(1 + frame % 4):
            s.outgoing(rtp(seq & 0xFFFF, b"p" * (200 + 37 * i), ts=frame * 6000, marker=i == frame % 4))
            seq += 1
    assert s.fec_packets > 20
    assert s.fec_bytes <= FEC_SHARE * s.media_bytes + 1500


def test_loss_switch_turns_fec_off_after_a_clean_spell_and_budget_counts_it() -> None:
    s = FecStream(FecTypes(118, 120, None), 102, 1111, None, switch=LossSwitch())
    budget = FecAwareBudget(FixedBudget(1000), s.overhead)
    assert budget.video_kbps() == 1000
    for t in range(5):
        s.report(0.05, float(t))
    assert s.on and budget.video_kbps() == int(1000 / (1 + FEC_SHARE))
    for t in range(5, 30):
        s.report(0.0, float(t))
    assert not s.on and budget.video_kbps() == 1000
    # Not negotiated: the reports change nothing.
    none = FecStream(None, 102, 1111, None)
    assert none.report(0.5, 0.0) is None and not none.on


def test_red_from_a_browser_is_unwrapped_and_its_fec_dropped() -> None:
    unwrap = RedUnwrap(FecTypes(118, 120, 119))
    media = RtpPacket(payload_type=118, sequence_number=5, timestamp=1, ssrc=42, payload=bytes([102]) + b"h264")
    out = unwrap.unwrap(media, {})
    assert out is not None and out.payload_type == 102 and out.payload == b"h264"
    fec = RtpPacket(payload_type=118, sequence_number=6, ssrc=42, payload=bytes([120]) + b"fec")
    assert unwrap.unwrap(fec, {}) is None and unwrap.fec_dropped == 1
    rtx = RtpPacket(payload_type=119, sequence_number=77, ssrc=43,
                    payload=struct.pack("!H", 5) + bytes([102]) + b"h264")
    restored = unwrap.unwrap(rtx, {43: 42})
    assert restored is not None and (restored.payload_type, restored.sequence_number, restored.ssrc,
                                     restored.payload) == (102, 5, 42, b"h264")
    assert unwrap.unwrap(RtpPacket(payload_type=118, payload=b""), {}) is None and unwrap.malformed == 1
    plain = RtpPacket(payload_type=102, payload=b"x")
    assert unwrap.unwrap(plain, {}) is plain
