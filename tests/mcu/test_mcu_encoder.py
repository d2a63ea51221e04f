"""Shared encoders: output decodes with PyAV, shows the right panes, key frames on request."""
from __future__ import annotations

import pytest
from mcu_helpers import decode_all, identify, source_frame, yuv_at

from mcu.clock import FakeClock
from mcu.encoder import EncoderKey, EncoderSettings, KeyframePolicy
from mcu.layout import pane_count, pane_rects
from mcu.room import BROADCAST, PREVIEW, Room, RoomSettings, select_view_id
from sip_gateway.rtp.media_primitives import EncodedPacket

FIXED = ["1", "2", "1+5", "1+7", "2x2", "3x3", "4x4", "5x5"]


def populate(room: Room, n: int) -> None:
    room.set_labels(False)
    for i in range(n):
        room.join(f"s{i}").push_video(source_frame(i))


def tick(room: Room, clock: FakeClock, n: int = 1) -> None:
    for _ in range(n):
        clock.advance(0.04)
        for pid, site in room.participants.items():
            site.push_video(source_frame(int(pid[1:])))
        room.video_tick()


def nal_units(annexb: bytes) -> list[bytes]:
    parts = annexb.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [p for p in parts if p]


@pytest.mark.parametrize("layout", FIXED)
def test_every_layout_survives_h264(room: Room, clock: FakeClock, layout: str) -> None:
    populate(room, pane_count(layout))
    room.set_layout(layout)
    packets: list[EncodedPacket] = []
    room.subscribe_view(BROADCAST, packets.append)
    tick(room, clock, 3)
    frames = decode_all([p.data for p in packets], "h264")
    assert len(frames) == 3 and frames[-1].width == 1280 and frames[-1].height == 720
    got = [identify(yuv_at(frames[-1], *r.centre), tolerance=16) for r in pane_rects(layout, 1280, 720)]
    assert got == list(range(pane_count(layout)))


@pytest.mark.parametrize(("codec", "size"), [("h264", (1280, 720)), ("h264", (640, 360)), ("h264", (352, 288)),
                                             ("vp8", (1280, 720)), ("vp8", (640, 360)), ("vp8", (352, 288))])
def test_codecs_and_resolutions_decode(room: Room, clock: FakeClock, codec: str, size: tuple[int, int]) -> None:
    populate(room, 4)
    packets: list[EncodedPacket] = []
    room.subscribe_view(BROADCAST, packets.append, codec=codec, width=size[0], height=size[1])
    tick(room, clock, 4)
    assert packets[0].keyframe and not any(p.keyframe for p in packets[1:])
    assert [p.pts for p in packets] == sorted({p.pts for p in packets})
    frames = decode_all([p.data for p in packets], codec)
    assert len(frames) == 4 and (frames[-1].width, frames[-1].height) == size
    # the 2x2 picture, letterboxed into CIF: pane centres move with the scaling
    w, h = size
    pic_h = h if (w, h) != (352, 288) else 198
    top = (h - pic_h) // 2
    centres = [(w // 4, top + pic_h // 4), (3 * w // 4, top + pic_h // 4),
               (w // 4, top + 3 * pic_h // 4), (3 * w // 4, top + 3 * pic_h // 4)]
    assert [identify(yuv_at(frames[-1], x, y, radius=2), tolerance=18) for x, y in centres] == [0, 1, 2, 3]


def test_h264_is_constrained_baseline_and_single_nal_mode_caps_slices(room: Room, clock: FakeClock) -> None:
    populate(room, 9)
    normal: list[EncodedPacket] = []
    mode0: list[EncodedPacket] = []
    room.subscribe_view(BROADCAST, normal.append)
    room.subscribe_view(BROADCAST, mode0.append, single_nal=True)
    assert len(room.encoder_keys) == 2  # a different packetization needs its own encoder
    tick(room, clock, 3)
    sps = next(n for n in nal_units(normal[0].data) if n[0] & 0x1F == 7)
    assert sps[1] == 66 and sps[2] & 0x40, "profile_idc 66 with constraint_set1: Constrained Baseline"
    slices = [n for p in mode0 for n in nal_units(p.data) if n[0] & 0x1F in (1, 5)]
    assert len(slices) > len(mode0), "big frames are cut into several slices"
    assert max(len(n) for n in slices) <= 1200
    assert len(decode_all([p.data for p in mode0], "h264")) == 3


def test_receivers_of_one_view_share_one_encoder(room: Room, clock: FakeClock) -> None:
    populate(room, 4)
    got: dict[str, list[EncodedPacket]] = {p: [] for p in room.participants}
    subs = [room.subscribe_video(pid, got[pid].append) for pid in room.participants]
    assert len(room.encoder_keys) == 1
    tick(room, clock, 2)
    assert all(len(v) == 2 for v in got.values())
    assert got["s0"][1] is got["s3"][1]  # the same packet object: encoded once
    room.select_view("s1", "s2")  # s1's feed moves to the select view's encoder
    assert {k.view_id for k in room.encoder_keys} == {BROADCAST, select_view_id("s2")}
    tick(room, clock, 1)
    assert got["s1"][-1].view_id == select_view_id("s2") and got["s1"][-1].keyframe
    for sub in subs:
        sub.close()
    assert room.encoder_keys == []  # encoders close with their last receiver


def test_keyframe_requests_are_coalesced_and_rate_limited(clock: FakeClock, text) -> None:  # type: ignore[no-untyped-def]
    settings = RoomSettings(encoder=EncoderSettings(min_keyframe_gap=1.0, keyframe_interval=60))
    room = Room("kf", clock=clock, settings=settings, text=text)
    populate(room, 2)
    packets: list[EncodedPacket] = []
    sub = room.subscribe_view(BROADCAST, packets.append, width=640, height=360)
    tick(room, clock, 30)  # 1.2 s
    assert [p.keyframe for p in packets].count(True) == 1
    # five requests in a burst give one key frame, on the next frame (gap already elapsed)
    for _ in range(5):
        sub.request_keyframe()
    tick(room, clock, 1)
    assert packets[-1].keyframe
    # a request right after it waits for the rate limit, then is honoured
    sub.request_keyframe()
    start = len(packets)
    tick(room, clock, 30)
    flags = [p.keyframe for p in packets[start:]]
    assert flags.count(True) == 1
    delay = flags.index(True) + 1  # frames of 40 ms after the last key frame
    assert 1.0 <= delay * 0.04 <= 1.0 + 0.04 + 1e-9
    encoder = room.encoder(sub.key)
    assert encoder is not None and encoder.policy.requests >= 6 + 1 and encoder.policy.forced == 3
    assert len(decode_all([p.data for p in packets], "h264")) == len(packets)


def test_keyframe_policy_unit() -> None:
    policy = KeyframePolicy(min_gap=2.0)
    assert policy.should_force(0.0)  # first frame
    policy.produced(True, 0.0, forced=True)
    policy.request()
    assert not policy.should_force(1.0)
    assert policy.should_force(2.0)
    policy.produced(True, 1.5, forced=False)  # a periodic key frame satisfies the request
    assert not policy.pending and not policy.should_force(5.0)


def test_bad_encoder_keys_and_settings() -> None:
    with pytest.raises(ValueError, match="codec"):
        EncoderKey(BROADCAST, "av1")  # h263/h261 are supported since the H.323 bridge
    with pytest.raises(ValueError, match="resolution"):
        EncoderKey(BROADCAST, "h264", 800, 600)
    with pytest.raises(ValueError, match="H.264"):
        EncoderKey(BROADCAST, "vp8", single_nal=True)
    with pytest.raises(ValueError):
        EncoderSettings(fps=0)
    with pytest.raises(ValueError):
        EncoderSettings(bitrate=1000)


def test_recorder_style_view_subscription(room: Room, clock: FakeClock) -> None:
    populate(room, 3)
    with pytest.raises(ValueError):
        room.subscribe_view("select:nobody", lambda p: None)
    preview: list[EncodedPacket] = []
    room.subscribe_view(PREVIEW, preview.append, width=640, height=360)
    tick(room, clock, 2)
    assert len(preview) == 2 and preview[0].keyframe and preview[1].sources.keys() == {"s0", "s1", "s2"}


def test_site_feeds_follow_broadcast_through_the_encoder(room: Room, clock: FakeClock) -> None:
    populate(room, 4)
    room.set_chair("s0")
    got: dict[str, list[EncodedPacket]] = {p: [] for p in room.participants}
    for pid in room.participants:
        room.subscribe_video(pid, got[pid].append, width=640, height=360)
    tick(room, clock, 2)
    room.broadcast("s2")
    tick(room, clock, 2)
    # what each site decodes after the change: the broadcast site sees the chair, everyone else s2
    for pid, packets in got.items():
        if pid == "s2":
            assert packets[2].keyframe and packets[2].view_id == select_view_id("s0"), "a moved feed restarts"
            frame = decode_all([p.data for p in packets[2:]], "h264")[-1]
        else:  # the others stay on the broadcast encoder: one continuous stream
            assert {p.view_id for p in packets} == {BROADCAST} and not packets[2].keyframe
            frame = decode_all([p.data for p in packets], "h264")[-1]
        assert identify(yuv_at(frame, 320, 180), tolerance=16) == (0 if pid == "s2" else 2)
    assert {k.view_id for k in room.encoder_keys} == {BROADCAST, select_view_id("s0")}
