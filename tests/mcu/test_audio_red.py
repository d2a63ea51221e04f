"""Audio loss protection (issue 16): RED for Opus towards browsers (mcu.legs.audio_red), the switch
choosing RED or in-band FEC (mcu.legs.audio_fec), and Opus in-band FEC on SIP legs."""
from __future__ import annotations

import struct

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from mcu.legs.audio_fec import RED_OPUS_BITRATE, AudioFec, SipAudioFec
from mcu.legs.audio_red import AudioRedTypes, RedAudioStream, add_audio_red, offered_audio_red, red_payload
from mcu.legs.sip_bridge import SiteFeedback, peer_decodes_opus_fec
from mcu.legs.site_rate import SiteRate
from sip_gateway.rtp.codecs import AudioEncoder
from sip_gateway.rtp.media_description import Codec, LocalMedia, MediaPolicy
from sip_gateway.rtp.opus_fec import OPUS_BITRATE
from sip_gateway.rtp.session import RateEstimate, ReceptionReport
from sip_gateway.sip.sdp import SessionDescription, answer

ICE = """a=ice-ufrag:mvD/
a=ice-pwd:julvNxAUB8hwD3ZBnngLwKx7
a=fingerprint:sha-256 41:8E:DA:16:57:19:4A:27:8A:CF:8E:B4:26:5D:51:8F:5F:2C:DB:E2:FB:61:45:1F:1F:6F:B1:82:EC:E5:91:48
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
"""
# Chromium 156's audio codecs (trimmed): RED right after Opus, naming Opus twice.
CODECS = """a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
"""


def offer(codecs: str = CODECS, fmt: str = "111 63 9 0") -> str:
    return ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            f"m=audio 9 UDP/TLS/RTP/SAVPF {fmt}\r\nc=IN IP4 0.0.0.0\r\n" + (ICE + codecs).replace("\n", "\r\n"))


async def answer_of(offer_sdp: str) -> str:
    pc = RTCPeerConnection()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        transceiver = pc.getTransceivers()[0]
        types = offered_audio_red(offer_sdp, transceiver.mid)
        if types is not None:
            add_audio_red(transceiver, types)
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def test_red_is_found_only_when_it_carries_the_offers_opus() -> None:
    assert offered_audio_red(offer()) == AudioRedTypes(63, 111)
    assert offered_audio_red(offer(), "0") == AudioRedTypes(63, 111)
    assert offered_audio_red(offer(), "1") is None  # no such section
    assert offered_audio_red(offer(CODECS.replace("111/111", "111/110"))) is None  # another codec inside
    assert offered_audio_red(offer(CODECS.replace("a=fmtp:63 111/111\n", ""))) is None  # no fmtp: no RED
    assert offered_audio_red(offer(CODECS.replace("a=rtpmap:63 red/48000/2\na=fmtp:63 111/111\n", ""), "111 9 0")) is None
    assert offered_audio_red(offer(CODECS.replace("111/111", "111/111/111"))) == AudioRedTypes(63, 111)
    pcmu_only = offer("a=rtpmap:0 PCMU/8000\na=rtpmap:63 red/48000/2\na=fmtp:63 0/0\n", "0 63")
    assert offered_audio_red(pcmu_only) is None


async def test_answer_lists_red_after_opus() -> None:
    sdp = await answer_of(offer())
    assert "a=rtpmap:63 red/48000/2" in sdp and "a=fmtp:63 111/111" in sdp, sdp
    media = [line for line in sdp.splitlines() if line.startswith("m=audio")][0]
    # Opus first: aiortc sends Opus, and Chromium sends RED only when RED precedes its codec.
    assert media.split()[3] == "111" and "63" in media.split()[3:], media
    plain = await answer_of(offer(CODECS.replace("a=rtpmap:63 red/48000/2\na=fmtp:63 111/111\n", ""), "111 9 0"))
    assert "red/" not in plain


def rtp(seq: int, ts: int, payload: bytes, *, pt: int = 111, ssrc: int = 1111, marker: bool = False,
        extension: bytes = b"") -> bytes:
    first = 0x90 if extension else 0x80
    header = bytes([first, pt | (0x80 if marker else 0)]) + struct.pack("!HII", seq, ts, ssrc)
    if extension:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return header + payload


def parse_red(payload: bytes) -> tuple[int, bytes, list[tuple[int, int, bytes]]]:
    """RFC 2198 by the book: (primary pt, primary data, [(pt, timestamp offset, data)])."""
    blocks: list[tuple[int, int, int]] = []
    pos = 0
    while payload[pos] & 0x80:
        word = int.from_bytes(payload[pos + 1:pos + 4], "big")
        blocks.append((payload[pos] & 0x7F, word >> 10, word & 0x3FF))
        pos += 4
    primary_pt = payload[pos]
    pos += 1
    redundant = []
    for pt, offset, length in blocks:
        redundant.append((pt, offset, payload[pos:pos + length]))
        pos += length
    return primary_pt, payload[pos:], redundant


def test_off_passes_opus_unchanged() -> None:
    s = RedAudioStream(AudioRedTypes(63, 111), 1111)
    for i in range(3):
        packet = rtp(i, 960 * i, b"o%d" % i)
        assert s.outgoing(packet) == packet
    assert s.red_packets == 0 and s.packets == 3


def test_each_packet_carries_the_previous_frames_as_red() -> None:
    s = RedAudioStream(AudioRedTypes(63, 111), 1111)
    s.distance = 1
    ext = b"\x10\x2a\x00\x00"  # a one-byte header extension (audio level), kept in place
    first = s.outgoing(rtp(7, 4800, b"A" * 50, extension=ext, marker=True))
    assert first[1] == 0x80 | 63 and first[2:12] == rtp(7, 4800, b"")[2:12] and first[12:20] == rtp(
        7, 4800, b"", extension=ext)[12:20]
    assert parse_red(first[20:]) == (111, b"A" * 50, [])  # nothing earlier to carry yet
    second = s.outgoing(rtp(8, 5760, b"B" * 60))
    assert second[1] == 63 and struct.unpack_from("!HI", second, 2) == (8, 5760)
    assert parse_red(second[12:]) == (111, b"B" * 60, [(111, 960, b"A" * 50)])
    s.distance = 2
    third = s.outgoing(rtp(9, 6720, b"C" * 70))
    assert parse_red(third[12:]) == (111, b"C" * 70, [(111, 1920, b"A" * 50), (111, 960, b"B" * 60)])
    # A gap (a frame aiortc never sent) is carried with its true offset.
    fourth = s.outgoing(rtp(10, 8640, b"D" * 10))
    assert parse_red(fourth[12:]) == (111, b"D" * 10, [(111, 2880, b"B" * 60), (111, 1920, b"C" * 70)])
    assert s.red_packets == 4 and s.redundant_blocks == 5
    # Other streams, another payload type and RTCP pass untouched.
    video = rtp(1, 0, b"v", pt=102, ssrc=2222)
    assert s.outgoing(video) == video
    dtmf = rtp(11, 9600, b"\x01\x0a\x00\xa0", pt=126)
    assert s.outgoing(dtmf) == dtmf
    rtcp = bytes([0x80, 200]) + b"\x00\x06" + b"\x00" * 24
    assert s.outgoing(rtcp) == rtcp
    assert s.outgoing(b"\x80") == b"\x80"


def test_blocks_that_do_not_fit_the_red_header_are_left_out() -> None:
    s = RedAudioStream(AudioRedTypes(63, 111), 1111)
    s.distance = 1
    s.outgoing(rtp(1, 0, b"x" * 1100))  # too long for a 10-bit length
    assert parse_red(s.outgoing(rtp(2, 960, b"y"))[12:]) == (111, b"y", [])
    s.outgoing(rtp(3, 1920, b"z"))
    assert parse_red(s.outgoing(rtp(4, 1920 + 20000, b"w"))[12:]) == (111, b"w", [])  # offset over 14 bits
    try:
        red_payload(111, b"p", [(0, b"q")])
    except ValueError:
        pass
    else:
        raise AssertionError("a zero offset is not a redundant block")


def reports(fec: AudioFec, loss_per_second: int, seconds: range, seq_lost: list[int]) -> None:
    for second in seconds:
        seq_lost[0] += 50
        seq_lost[1] += loss_per_second
        fec.on_report(seq_lost[1], seq_lost[0], float(second))


def test_with_red_negotiated_loss_turns_on_red_not_in_band_fec() -> None:
    fec = AudioFec()
    fec.peer_decodes = True  # Chromium offers both; RED wins
    fec.red = RedAudioStream(AudioRedTypes(63, 111), 1111)
    state = [0, 0]
    reports(fec, 1, range(0, 8), state)  # 2 % loss
    assert fec.switch.on and fec.red.distance == 1
    assert fec.encoder.wanted == 0 and fec._opus is not None and fec._opus.wanted_bitrate == RED_OPUS_BITRATE
    reports(fec, 4, range(8, 16), state)  # 8 %: two copies
    assert fec.red.distance == 2
    reports(fec, 0, range(16, 60), state)  # clean: off, full rate again
    assert not fec.switch.on and fec.red.distance == 0 and fec._opus.wanted_bitrate == OPUS_BITRATE
    assert fec.describe()["audio_red"] == 0
    # RED alone is reason enough: a peer whose decoder does not use in-band FEC still gets RED.
    red_only = AudioFec()
    red_only.red = RedAudioStream(AudioRedTypes(63, 111), 1111)
    reports(red_only, 1, range(0, 8), [0, 0])
    assert red_only.switch.on and red_only.red.distance == 1 and red_only.encoder.wanted == 0


class FakeLeg:
    def __init__(self, opus: bool = True) -> None:
        self.opus = opus
        self.asked: list[int] = []

    def set_audio_fec(self, loss_perc: int) -> bool:
        self.asked.append(loss_perc)
        return self.opus


def test_sip_site_on_opus_gets_in_band_fec_from_its_audio_reports() -> None:
    leg = FakeLeg()
    fec = AudioFec(encoder=SipAudioFec(leg))
    fec.peer_decodes = True
    rate = SiteRate(2048, clock=lambda: 0.0)
    feedback = SiteFeedback(rate, fec)
    t = [0.0]
    fec._clock = lambda: t[0]
    seq = lost = 0
    for second in range(8):  # 3 % loss on the audio
        t[0] = float(second)
        seq += 50
        lost += 1 + second % 2
        feedback.on_rate_feedback("audio", ReceptionReport(0.03, lost, 0, seq))
    assert fec.switch.on and leg.asked[-1] == 10 and fec.encoder.wanted == 10
    assert rate.feedback["reports"] == 0  # audio reports are not the video budget's business
    feedback.on_rate_feedback("video", RateEstimate(500_000))
    assert rate.feedback["remb"] == 1
    for second in range(8, 40):
        t[0] = float(second)
        seq += 50
        feedback.on_rate_feedback("audio", ReceptionReport(0.0, lost, 0, seq))
    assert not fec.switch.on and leg.asked[-1] == 0
    # A site whose Opus decoder does not use FEC (or that is not on Opus) never gets it.
    deaf_leg = FakeLeg()
    deaf = AudioFec(encoder=SipAudioFec(deaf_leg))
    for second in range(8):
        deaf.on_report(10 * second, 50 * (second + 1), float(second))
    assert not deaf.switch.on and deaf_leg.asked == []


SIP_OFFER = """v=0\r
o=baresip 1 2 IN IP4 127.0.0.1\r
s=-\r
c=IN IP4 127.0.0.1\r
t=0 0\r
m=audio 6000 RTP/AVP 96 0\r
a=rtpmap:96 opus/48000/2\r
a=fmtp:96 stereo=1;sprop-stereo=1;useinbandfec=1\r
a=rtpmap:0 PCMU/8000\r
a=sendrecv\r
"""


def test_sip_answer_keeps_useinbandfec_and_the_stream_says_the_peer_decodes_it() -> None:
    sdp, streams = answer(SessionDescription.parse(SIP_OFFER), MediaPolicy(audio_codecs=("OPUS", "PCMU")),
                          LocalMedia("127.0.0.1", 40000, None))
    text = sdp.serialize().decode()
    assert "a=rtpmap:96 opus/48000/2" in text and "a=fmtp:96 stereo=1;sprop-stereo=1;useinbandfec=1" in text, text
    assert peer_decodes_opus_fec(streams)
    _, no_fec = answer(SessionDescription.parse(SIP_OFFER.replace("useinbandfec=1", "useinbandfec=0")),
                       MediaPolicy(audio_codecs=("OPUS", "PCMU")), LocalMedia("127.0.0.1", 40000, None))
    assert not peer_decodes_opus_fec(no_fec)
    _, pcmu = answer(SessionDescription.parse(SIP_OFFER), MediaPolicy(audio_codecs=("PCMU",)),
                     LocalMedia("127.0.0.1", 40000, None))
    assert not peer_decodes_opus_fec(pcmu)


def test_sip_audio_encoder_switches_opus_fec_and_keeps_one_payload_per_frame() -> None:
    opus = AudioEncoder(Codec("OPUS", 96, 48000, 2, "useinbandfec=1"))
    assert opus.set_fec(12) and opus.fec_loss_perc == 12
    pcm = (3000 * np.sin(np.arange(960) / 7)).astype(np.int16)
    counts = [len(opus.encode(pcm)) for _ in range(6)]
    assert max(counts) == 1 and sum(counts) >= 5, counts  # a resampler may hold back the first frame
    pcmu = AudioEncoder(Codec("PCMU", 0, 8000))
    assert not pcmu.set_fec(12) and pcmu.fec_loss_perc == 0
    assert sum(len(pcmu.encode(pcm)) for _ in range(6)) >= 5
