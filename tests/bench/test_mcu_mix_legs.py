"""bench/mcu_mix_legs: its room systems (one process playing pre-encoded RTP for N SIP sites) and the
MCU's SIP legs agree: the imageattr re-INVITE is understood and answered, the sources switch to the
pane-sized clip on a key frame, and the room decodes both sites (a real bridge, N = 2)."""
from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from pathlib import Path

import pytest

from bench.mcu_mix import make_clip
from bench.mcu_mix_legs import (
    DEMO,
    LegsTap,
    RtpClip,
    SocketStamps,
    Sources,
    SourceSite,
    annexb_access_unit,
    asked_size,
    clip_for,
    follow_ask,
    joined_sites,
    parameter_sets,
    rtp_packet,
    send_frame,
    sent_latencies,
    settled,
    start_mcu_bridge,
    wait_for,
    with_imageattr_answer,
)
from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.room import BROADCAST
from sip_gateway.sip.imageattr import has_imageattr, recv_imageattr
from sip_gateway.sip.sdp import Media, SessionDescription

SPS, PPS = b"\x67\x42\xe0\x1f\xaa", b"\x68\xce\x3c\x80"


def avcc_record() -> bytes:
    return (bytes([1, 0x42, 0xE0, 0x1F, 0xFF, 0xE1]) + len(SPS).to_bytes(2, "big") + SPS
            + bytes([1]) + len(PPS).to_bytes(2, "big") + PPS)


def test_parameter_sets_come_out_of_the_avcc_record_and_precede_a_key_frame() -> None:
    assert parameter_sets(avcc_record()) == [SPS, PPS]
    idr, sei = b"\x65\x88\x84", b"\x06\x05\x01"
    avcc = len(sei).to_bytes(4, "big") + sei + len(idr).to_bytes(4, "big") + idr
    start = b"\x00\x00\x00\x01"
    assert annexb_access_unit(avcc, [SPS, PPS]) == start + SPS + start + PPS + start + sei + start + idr
    assert annexb_access_unit(avcc) == start + sei + start + idr
    with pytest.raises(ValueError):
        parameter_sets(b"\x00garbage")


def test_rtp_packet_header() -> None:
    packet = rtp_packet(b"xyz", 97, 65537, 2**32 + 5, 0x01020304, True)
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
    assert (first, second, seq, ts, ssrc, packet[12:]) == (0x80, 0x80 | 97, 1, 5, 0x01020304, b"xyz")
    assert rtp_packet(b"", 96, 1, 1, 1, False)[1] == 96


def video_sdp(*attributes: tuple[str, str | None]) -> SessionDescription:
    return SessionDescription(origin="x 1 1 IN IP4 127.0.0.1", connection="127.0.0.1",
                              media=[Media("audio", 4000, "RTP/AVP", ["0"]),
                                     Media("video", 4002, "RTP/AVP", ["97"], attributes=list(attributes))])


def test_the_mcus_imageattr_ask_is_read_and_the_answer_carries_one() -> None:
    offer = SessionDescription.parse(video_sdp(("imageattr", recv_imageattr(97, 256, 144))).serialize())
    assert asked_size(offer) == (256, 144)
    assert asked_size(video_sdp(("rtpmap", "97 H264/90000"))) is None
    answer = video_sdp(("rtpmap", "97 H264/90000"))
    assert not has_imageattr(answer)
    assert has_imageattr(SessionDescription.parse(with_imageattr_answer(answer, (256, 144)).serialize()))
    assert answer.media[1].attr("imageattr") == "97 send [x=256,y=144] recv *"


def clip(size: tuple[int, int], frames: int = 100, keys: tuple[int, ...] = (0, 50)) -> RtpClip:
    return RtpClip(size, [[bytes([i % 256]) * 3, bytes([i % 256])] for i in range(frames)], list(keys))


def test_the_smallest_clip_big_enough_is_chosen_and_a_switch_starts_on_a_key_frame() -> None:
    big, small = clip((1280, 720)), clip((256, 144))
    assert clip_for((256, 144), [big, small]) is small
    assert clip_for((160, 90), [big, small]) is small
    assert clip_for((480, 270), [big, small]) is big
    assert clip_for(None, [small, big]) is big
    assert big.next_key(10) == 50 and big.next_key(50) == 50 and big.next_key(60) == 0
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        site = SourceSite(0, a, [], big, pos=20)
        follow_ask(site, (256, 144), [big, small])
        assert (site.clip, site.pos, site.switches, site.asked) == (small, 50, 1, (256, 144))
        follow_ask(site, (256, 144), [big, small])  # asked again: nothing changes
        assert (site.clip, site.switches, site.asks) == (small, 1, 2)
    finally:
        a.close()
        b.close()


def test_a_frame_goes_out_as_rtp_and_a_key_frame_request_jumps_to_one() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    try:
        site = SourceSite(0, tx, [], clip((256, 144)), pos=10, pt=97, remote=rx.getsockname(), ts=1000, seq=7)
        send_frame(site)
        packets = [rx.recv(2000) for _ in range(2)]
        headers = [struct.unpack("!BBHII", p[:12]) for p in packets]
        assert [h[1] for h in headers] == [97, 0x80 | 97]  # the marker on the frame's last packet
        assert [h[2] for h in headers] == [7, 8] and {h[3] for h in headers} == {1000}
        assert packets[0][12:] == bytes([10]) * 3
        site.key_wanted = True
        send_frame(site)
        first = rx.recv(2000)
        assert first[12:] == bytes([50]) * 3 and struct.unpack("!I", first[4:8])[0] == 1000 + 3600
        assert site.frames_sent == 2 and site.pos == 51
    finally:
        rx.close()
        tx.close()


class FakeChannel:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def on_datagram(self, data: bytes, addr: tuple[str, int], from_rtcp_port: bool) -> None:
        self.got.append(data)


class FakeParticipant:
    def __init__(self) -> None:
        self.pushed: list[float | None] = []

    def push_video(self, frame: object, arrival: float | None = None) -> int:
        self.pushed.append(arrival)
        return len(self.pushed)


class Frame:
    def __init__(self, pts: int | None) -> None:
        self.pts = pts


def test_socket_stamps_give_a_frame_the_read_time_of_its_last_packet() -> None:
    channel, participant = FakeChannel(), FakeParticipant()
    stamps = SocketStamps(channel, participant)
    channel.on_datagram(rtp_packet(b"a", 97, 1, 9000, 5, False), ("127.0.0.1", 1), False)
    channel.on_datagram(rtp_packet(b"b", 97, 2, 9000, 5, True), ("127.0.0.1", 1), False)
    channel.on_datagram(b"\x81\xc9" + bytes(10), ("127.0.0.1", 1), False)  # RTCP: passed on, not stamped
    assert len(channel.got) == 3
    last = stamps.read_at[9000]
    participant.push_video(Frame(9000))
    participant.push_video(Frame(2**32 + 9000))  # a decoder's unwrapped pts
    participant.push_video(Frame(None))  # no pts: the newest complete frame's read time, counted
    assert participant.pushed == [last, last, last]
    assert (stamps.matched, stamps.unmatched) == (2, 1)
    assert stamps.ts_of_seq == {1: 9000, 2: 9000}  # the room's frame numbers -> RTP timestamps


class Packet:
    def __init__(self, sources: dict[str, tuple[int, float]]) -> None:
        self.sources = sources


def test_latency_from_send_joins_the_first_encoded_packet_to_the_sources_send_log() -> None:
    tap = LegsTap()
    tap(Packet({"sip-site00": (1, 10.0)}))  # not measuring yet
    tap.measuring = True
    tap(Packet({"sip-site00": (1, 10.0), "sip-site01": (4, 10.0)}))  # site00's frame 1 is not new
    tap(Packet({"sip-site00": (2, 10.0), "sip-site01": (4, 10.0)}))
    assert [(pid, seq) for pid, seq, _ in tap.firsts] == [("sip-site01", 4), ("sip-site00", 2)]
    stamps = {pid: SocketStamps(FakeChannel(), FakeParticipant()) for pid in ("sip-site00", "sip-site01")}
    stamps["sip-site00"].ts_of_seq[2] = 3600
    stamps["sip-site01"].ts_of_seq[4] = 7200
    encoded_at = {pid: at for pid, _, at in tap.firsts}
    sent = {"site00": {3600: encoded_at["sip-site00"] - 0.05}}  # site01's send time is unknown
    latencies, missing = sent_latencies(tap, stamps, {"sip-site00": "site00", "sip-site01": "site01"}, sent)
    assert latencies == [pytest.approx(0.05)] and missing == 1


# ---- the real thing: our source process against the MCU's SIP bridge ------------------------------
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg missing (Debian ffmpeg)")
async def test_two_sources_switch_to_the_pane_size_and_the_room_decodes_both(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path) -> None:
    big = make_clip(tmp_path / "big.mp4", "testsrc2=size=640x360:rate=25", 4, 600)
    small = make_clip(tmp_path / "small.mp4", "testsrc2=size=256x144:rate=25", 4, 150)
    bridge = await start_mcu_bridge(services, conferences)
    conf = conferences.running(DEMO)
    assert conf is not None
    conf.room.set_layout("5x5")  # 256x144 panes: the MCU asks both sources for 256x144
    got: list[object] = []
    conf.room.subscribe_view(BROADCAST, got.append)
    sources = await Sources.start(f"sip:{DEMO}@127.0.0.1:{bridge.endpoint.config.port}", 2, [big, small])
    try:
        await wait_for(lambda: len(joined_sites(bridge)) == 2, 40, "both sites to join")
        sites = joined_sites(bridge)
        stamps = [SocketStamps(s.leg.video, conf.room.participants[s.site_id]) for s in sites]
        await wait_for(lambda: settled(conf, sites), 40, "both sites decoded at 256x144 after the re-INVITE")
        assert all(s.pane_reinvites >= 1 for s in sites), [(s.site_id, s.pane_reinvites) for s in sites]
        before = [s.leg.frames_decoded for s in sites]
        await asyncio.sleep(1.5)
        decoded = [s.leg.frames_decoded - b for s, b in zip(sites, before, strict=True)]
        assert all(d >= 10 for d in decoded), decoded  # 25 fps sources: both keep being decoded
        assert all(s.leg.video is not None and s.leg.video.resolution == (256, 144) for s in sites)
        assert all(st.matched > 0 for st in stamps)  # frames found by RTP timestamp: latency is measurable
        stats = await sources.stats()
        assert [(st["asked"], st["sending"]) for st in stats] == [([256, 144], "256x144")] * 2, stats
        assert all(st["switches"] == 1 for st in stats), stats
        sent = await sources.sent()
        assert sorted(sent) == ["site00", "site01"] and all(len(log) > 25 for log in sent.values())
        for st in stamps:  # the room's frames are the ones the sources sent (same RTP timestamps)
            assert set(st.ts_of_seq.values()) & set().union(*sent.values())
        assert got, "the broadcast encoder produced nothing"
    finally:
        final = await sources.stop()
        await bridge.stop()
    assert len(final) == 2 and all(st["frames_sent"] > 0 for st in final)
    assert sources.proc.returncode == 0
