"""RTP layer: two media legs on 127.0.0.1 negotiated through our SDP code, real codecs."""

from __future__ import annotations

import asyncio
import dataclasses
import fractions

import av
import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from sip_gateway.aio.rtp_leg import MediaLeg, tone
from sip_gateway.rtp.codecs import packetize_h264, split_annexb
from sip_gateway.rtp.dtmf import EventDetector, digit_packets
from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy, MediaStream
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES as SAMPLES_PER_FRAME
from sip_gateway.rtp.session import EncodedFrame, KeyframeRequest, NackRequest, RtpSession, SendNack
from sip_gateway.sip.sdp import SessionDescription, answer, create_offer, streams_from_answer


class Collect:
    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.video: list[av.VideoFrame] = []
        self.digits: list[str] = []
        self.keyframe_requests = 0

    def on_audio(self, leg: MediaLeg, pcm: np.ndarray) -> None:
        self.audio.append(pcm)

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.video.append(frame)

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        self.digits.append(digit)

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        self.keyframe_requests += 1


def dominant_frequency(pcm: np.ndarray, rate: int = 48_000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def pattern(i: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, : width // 2] = (220, 30, 30)  # red left half
    img[:, width // 2 :] = (30, 30, 220)  # blue right half
    img[(i * 4) % height, :] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts = i
    frame.time_base = fractions.Fraction(1, 25)
    return frame


async def legs(policy_a: MediaPolicy, policy_b: MediaPolicy) -> tuple[MediaLeg, MediaLeg, Collect, Collect]:
    ca, cb = Collect(), Collect()
    a = await MediaLeg.allocate("127.0.0.1", video=True, sink=ca)
    b = await MediaLeg.allocate("127.0.0.1", video=True, sink=cb)
    offer = create_offer(policy_a, a.local_media)
    reply, b_streams = answer(SessionDescription.parse(offer.serialize()), policy_b, b.local_media)
    a_streams = streams_from_answer(offer, SessionDescription.parse(reply.serialize()))
    a.start(a_streams)
    b.start(b_streams)
    return a, b, ca, cb


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722", "OPUS"])
async def test_audio_tone_each_way(codec: str) -> None:
    policy = MediaPolicy(audio_codecs=(codec,), video_codecs=())
    a, b, ca, cb = await legs(policy, policy)
    try:
        for i in range(40):
            a.send_audio(tone(440, i * SAMPLES_PER_FRAME), marker=i == 0)
            b.send_audio(tone(1000, i * SAMPLES_PER_FRAME))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert len(cb.audio) > 20 and len(ca.audio) > 20
        assert all(p.dtype == np.int16 and p.shape == (960,) for p in cb.audio)
        got_b = np.concatenate(cb.audio[-10:])
        got_a = np.concatenate(ca.audio[-10:])
        assert abs(dominant_frequency(got_b) - 440) < 15
        assert abs(dominant_frequency(got_a) - 1000) < 15
        b.statistics()
        for i in range(10):
            a.send_audio(tone(440, (40 + i) * SAMPLES_PER_FRAME))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        stats = {s.kind: s for s in b.statistics()}
        assert stats["audio"].codec == codec and stats["audio"].packets_received >= 40
        if codec in ("PCMU", "PCMA", "G722"):
            assert 0 < stats["audio"].bitrate_kbps < 100  # 64 kbit/s payload, timing is loose under load
        assert stats["audio"].packets_lost == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("mode", [0, 1])
async def test_h264_video_both_packetization_modes(mode: int) -> None:
    policy = MediaPolicy(h264_modes=(mode,), video_codecs=("H264",))
    a, b, _, cb = await legs(policy, policy)
    try:
        assert b.video is not None and b.video.session is not None
        assert b.video.session.codec.packetization_mode == mode
        for i in range(12):
            await a.send_video(pattern(i), keyframe=i == 0)
            await asyncio.sleep(0.04)
        await asyncio.sleep(0.3)
        assert len(cb.video) >= 8
        img = cb.video[-1].to_ndarray(format="rgb24")
        assert img.shape == (240, 320, 3)
        left, right = img[120, 40], img[120, 280]
        assert left[0] > 150 and left[2] < 90, left  # red survives the round trip
        assert right[2] > 150 and right[0] < 90, right
        assert [s.resolution for s in b.statistics() if s.kind == "video"] == [(320, 240)]
    finally:
        await a.close()
        await b.close()


async def test_vp8_and_keyframe_request_and_dtmf() -> None:
    policy = MediaPolicy(video_codecs=("VP8",))
    a, b, ca, cb = await legs(policy, policy)
    try:
        for i in range(6):
            await a.send_video(pattern(i), keyframe=i == 0)
            await asyncio.sleep(0.04)
        b.request_keyframe()
        a.send_dtmf("7")
        a.send_dtmf("#", duration_ms=100)
        await asyncio.sleep(0.5)
        assert len(cb.video) >= 3
        assert ca.keyframe_requests == 1
        assert cb.digits == ["7", "#"]
    finally:
        await a.close()
        await b.close()


async def test_sdes_srtp_media() -> None:
    policy = MediaPolicy(srtp="required", video_codecs=())
    a, b, _, cb = await legs(policy, policy)
    try:
        assert a.audio is not None and a.audio.srtp_out is not None
        for i in range(20):
            a.send_audio(tone(700, i * SAMPLES_PER_FRAME))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert len(cb.audio) > 8
        assert abs(dominant_frequency(np.concatenate(cb.audio[-5:])) - 700) < 15
    finally:
        await a.close()
        await b.close()


# --- sans-I/O pieces --------------------------------------------------------------------


def _stream(kind: str = "video") -> MediaStream:
    offer = create_offer(MediaPolicy(h264_modes=(1,)), LocalMedia("127.0.0.1", 4000, 4002))
    _, streams = answer(offer, MediaPolicy(), LocalMedia("127.0.0.1", 5000, 5002))
    return next(s for s in streams if s.kind == kind)


def test_marker_bit_sequence_and_nack_retransmit() -> None:
    sender, receiver = RtpSession(_stream()), RtpSession(_stream())
    from aiortc.rtp import RtpPacket

    packets = sender.packetize([b"\x65" + b"a" * 100, b"\x65" + b"b" * 100, b"\x65" + b"c" * 100], 3000)
    parsed = [RtpPacket.parse(p) for p in packets]
    assert [p.marker for p in parsed] == [0, 0, 1]
    assert len({p.timestamp for p in parsed}) == 1
    assert [(p.sequence_number - parsed[0].sequence_number) & 0xFFFF for p in parsed] == [0, 1, 2]
    events = sender.receive(receiver.nack([parsed[1].sequence_number]), 0.0)
    assert isinstance(events[0], NackRequest)
    assert sender.retransmit(events[0].sequence_numbers) == [packets[1]]
    assert isinstance(sender.receive(receiver.keyframe_request(), 0.0)[0], KeyframeRequest)
    # Any payload type is accepted; frames come out when the next timestamp starts.
    for p in packets:
        receiver.receive(p, 0.0)
    later = sender.packetize([b"\x65" + b"d" * 10], 6000)
    events = receiver.receive(later[0], 0.04)
    assert any(isinstance(e, EncodedFrame) for e in events)
    report = receiver.report(1_700_000_000.0, 1.0)
    assert report[1] in (200, 201)  # SR or RR first
    for junk in (b"", b"\x80", b"\x80\xc8\x00\x50garbage", bytes(range(40))):
        receiver.receive(junk, 0.0)


def test_h264_mode0_one_nal_per_packet() -> None:
    au = b"\x00\x00\x00\x01\x67AAAA\x00\x00\x00\x01\x68BB\x00\x00\x01\x65" + b"x" * 3000
    assert [n[:1] for n in split_annexb(au)] == [b"\x67", b"\x68", b"\x65"]
    mode0 = packetize_h264(au, 0)
    assert [p[:1] for p in mode0] == [b"\x67", b"\x68", b"\x65"]
    mode1 = packetize_h264(au, 1)
    assert mode1[0][0] & 0x1F == 24  # STAP-A with SPS+PPS
    assert all(p[0] & 0x1F == 28 for p in mode1[1:])  # FU-A fragments


def test_rfc4733_packets_and_detector() -> None:
    packets = digit_packets("5", 160)
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert [p.payload[1] & 0x80 for p in packets[-3:]] == [0x80] * 3
    detector = EventDetector()
    digits = [detector.feed(p.payload, 1234) for p in packets]
    assert [d for d in digits if d] == ["5"]
    assert detector.feed(b"\xff\x00\x00\x00", 99) is None and detector.feed(b"", 100) is None


def test_nack_generated_for_gaps_in_video() -> None:
    sender, receiver = RtpSession(_stream()), RtpSession(_stream())
    assert receiver.stream.nack  # offered and answered with rtcp-fb nack
    packets = sender.packetize([b"\x65" + bytes([i]) * 50 for i in range(6)], 3000)
    receiver.receive(packets[0], 0.0)
    receiver.receive(packets[1], 0.0)
    events = receiver.receive(packets[4], 0.0)  # 2 and 3 lost (or late: NACKed after a short reorder wait)
    assert not [e for e in events + receiver.poll_loss(0.001) if isinstance(e, SendNack)]
    nacks = [e for e in receiver.poll_loss(0.02) if isinstance(e, SendNack)]
    seq0 = int.from_bytes(packets[0][2:4], "big")
    assert nacks == [SendNack(((seq0 + 2) & 0xFFFF, (seq0 + 3) & 0xFFFF))]
    # The sender answers the NACK with exactly the lost packets.
    request = sender.receive(receiver.nack(list(nacks[0].sequence_numbers)), 0.0)[0]
    assert isinstance(request, NackRequest)
    assert sender.retransmit(request.sequence_numbers) == packets[2:4]
    assert not [e for e in receiver.receive(packets[2], 0.03) if isinstance(e, SendNack)]
    assert receiver.poll_loss(0.13) == [SendNack(((seq0 + 3) & 0xFFFF,))]  # 3 is retried after one RTT


async def test_shared_encoder_access_units() -> None:
    """Frames encoded once elsewhere (the MCU's shared encoder) are packetised per leg."""
    for mode in (0, 1):
        policy = MediaPolicy(h264_modes=(mode,), video_codecs=("H264",))
        a, b, _, cb = await legs(policy, policy)
        try:
            encoder = av.CodecContext.create("libx264", "w")
            encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
            encoder.time_base = fractions.Fraction(1, 25)
            encoder.options = {"tune": "zerolatency", "slice-max-size": "1100", "profile": "baseline"}
            for i in range(10):
                frame = pattern(i).reformat(format="yuv420p")
                for packet in encoder.encode(frame):
                    a.send_video_access_unit(bytes(packet), i * 3600)
                await asyncio.sleep(0.03)
            await asyncio.sleep(0.3)
            assert len(cb.video) >= 6, (mode, len(cb.video))
            img = cb.video[-1].to_ndarray(format="rgb24")
            assert img[120, 40][0] > 150 and img[120, 280][2] > 150
        finally:
            await a.close()
            await b.close()


def test_encoder_follows_negotiated_h264_level() -> None:
    from sip_gateway.rtp.codecs import VideoEncoder
    from sip_gateway.rtp.media_description import Codec

    assert VideoEncoder(Codec("H264", 96, 90000, 1, "profile-level-id=42801e;packetization-mode=1")).h264_level == 30
    assert VideoEncoder(Codec("H264", 96, 90000, 1, "packetization-mode=0")).h264_level == 31
    assert VideoEncoder(Codec("H264", 96, 90000, 1, "profile-level-id=zzzzzz")).h264_level == 31
    encoder = VideoEncoder(Codec("H264", 96, 90000, 1, "profile-level-id=42e016;packetization-mode=1"))
    payloads = encoder.encode(pattern(0), keyframe=True)
    sps = next(p for p in payloads if p[0] & 0x1F in (7, 24))
    sps = sps[3:] if sps[0] & 0x1F == 24 else sps  # STAP-A: skip header and NAL size
    assert sps[0] & 0x1F == 7 and sps[3] == 0x16  # level_idc 2.2 in the SPS


async def test_rtcp_and_media_from_a_foreign_host_are_dropped() -> None:
    """Only the call's peer may ask for key frames or send media: the same PLI and video sent from
    another host (127.0.0.2) change nothing and are counted; from the peer they work."""
    policy = MediaPolicy(video_codecs=("VP8",))
    a, b, ca, cb = await legs(policy, policy)
    loop = asyncio.get_running_loop()
    stranger, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.2", 0))
    try:
        for i in range(4):  # media flows both ways: both legs latch to their peer
            await a.send_video(pattern(i), keyframe=i == 0)
            await b.send_video(pattern(i), keyframe=i == 0)
            await asyncio.sleep(0.04)
        await asyncio.sleep(0.2)
        assert b.video is not None and a.video is not None and a.video.session is not None
        assert b.video.session is not None
        pli = b.video.session.keyframe_request()  # b's genuine PLI to a, sent by someone else
        stranger.sendto(pli, ("127.0.0.1", a.video.port))
        stranger.sendto(pli, ("127.0.0.1", a.video.port + 1))
        await asyncio.sleep(0.3)
        assert ca.keyframe_requests == 0
        assert a.video.foreign_dropped == 2
        b.request_keyframe()  # the same request from the peer is honoured
        await asyncio.sleep(0.3)
        assert ca.keyframe_requests == 1
    finally:
        stranger.close()
        await a.close()
        await b.close()


async def test_a_renegotiated_codec_continues_the_same_outgoing_stream() -> None:
    """A re-INVITE that changes the video codec's parameters keeps our SSRC, sequence numbers and
    timestamps going. When they restarted, a dial-in baresip froze for good about half the time:
    libre's jitter buffer kept the old stream's position and called every new packet too late."""
    policy = MediaPolicy(h264_modes=(1,), video_codecs=("H264",))
    a, b, _, _ = await legs(policy, policy)
    packets: list[RtpPacket] = []

    class Sniff(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if len(data) > 12 and not 200 <= data[1] <= 204:  # RTP only, not RTCP
                packets.append(RtpPacket.parse(data))

    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Sniff, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        assert a.video is not None and a.video.session is not None
        first = dataclasses.replace(a.video.session.stream, remote_port=port, remote_rtcp_port=port)
        a.start([first])
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
        encoder.time_base = fractions.Fraction(1, 25)
        encoder.options = {"tune": "zerolatency", "profile": "baseline"}

        async def send(frames: range) -> None:
            for i in frames:
                for packet in encoder.encode(pattern(i).reformat(format="yuv420p")):
                    a.send_video_access_unit(bytes(packet), i * 3600)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)

        await send(range(0, 5))
        before = len(packets)
        # The answer to our re-INVITE: same codec name, other parameters (and another payload type).
        changed = dataclasses.replace(first, codec=dataclasses.replace(
            first.codec, payload_type=first.codec.payload_type + 1, fmtp=first.codec.fmtp + ";max-fs=396"))
        a.start([changed])
        assert a.video.session.codec == changed.codec  # the session did change
        await send(range(5, 10))
        assert before >= 5 and len(packets) > before
        assert {p.ssrc for p in packets} == {packets[0].ssrc}
        assert [p.payload_type for p in packets[before - 1: before + 1]] == [first.codec.payload_type,
                                                                            changed.codec.payload_type]
        steps = {(b.sequence_number - a_.sequence_number) & 0xFFFF for a_, b in zip(packets, packets[1:], strict=False)}
        assert steps == {1}, steps
        assert all(0 <= (b.timestamp - a_.timestamp) & 0xFFFFFFFF < 90_000 for a_, b in zip(packets, packets[1:], strict=False))
    finally:
        transport.close()
        await a.close()
        await b.close()
