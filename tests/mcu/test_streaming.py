"""Live streaming's pure rules (file names, watch tokens, the LL-HLS playlist machine and its
blocking-reload query) and the LL-HLS packager on real H.264.

The packager test feeds it what a shared encoder gives: libx264 Annex B access units with
SPS/PPS on key frames, a key frame made when the packager asks for one, composition times on a
fake room clock, and 20 ms mix ticks; PyAV (FFmpeg's demuxers) is the judge of the fMP4 output.
"""
from __future__ import annotations

import io
import re
from fractions import Fraction

import av
import numpy as np
import pytest

from mcu.clock import FakeClock
from mcu.room import BROADCAST, Room, Subscription
from mcu.streaming import fmp4
from mcu.streaming.llhls import BadRequest, Blocking, LivePlaylist, parse_query
from mcu.streaming.names import check_token, file_kind, make_token, parse_name, token_expiry
from mcu.streaming.packager import HlsPackager, PartOut
from sip_gateway.rtp.media_primitives import EncodedPacket

SECRET = b"s" * 32
EPOCH = "0123abcd"


@pytest.mark.parametrize("name,kind", [
    ("index.m3u8", "playlist"), (f"{EPOCH}_init.mp4", "init"), (f"{EPOCH}_0.m4s", "segment"),
    (f"{EPOCH}_123456789.m4s", "segment"),
    (f"{EPOCH}_1234567890.m4s", None), ("ffffffff_1.m4s", None), ("ffffffff_init.mp4", None),
    ("../index.m3u8", None), (f"../{EPOCH}_1.m4s", None), (f"{EPOCH}_1.m4s/..", None), ("index.m3u8\0", None),
    (f"{EPOCH}_1.m4s\0", None), ("", None), (".", None), ("..", None), ("a" * 10000, None),
    (f"{EPOCH.upper()}_1.m4s", None), (f"{EPOCH}_-1.m4s", None), (f"{EPOCH}_1.mp4", None), ("INDEX.M3U8", None),
    (f"{EPOCH}_12.3.m4s", "part"), (f"{EPOCH}_12.1234.m4s", None), (f"{EPOCH}_12..m4s", None),
    (f"{EPOCH}_12.3.4.m4s", None), ("ffffffff_1.0.m4s", None),
])
def test_file_names(name: str, kind: str | None) -> None:
    assert file_kind(name, EPOCH) == kind


def test_part_names_carry_their_numbers() -> None:
    assert parse_name(f"{EPOCH}_12.3.m4s", EPOCH) == ("part", 12, 3)
    assert parse_name(f"{EPOCH}_7.m4s", EPOCH) == ("segment", 7, 0)


def test_watch_tokens() -> None:
    token = make_token(SECRET, "80000001", now=1000.0, ttl_s=600)
    assert token_expiry(token) == 1600
    assert check_token(SECRET, "80000001", token, 1599.0)
    assert not check_token(SECRET, "80000001", token, 1600.0)  # expired
    assert not check_token(SECRET, "80000002", token, 1000.0)  # another conference
    assert not check_token(b"t" * 32, "80000001", token, 1000.0)  # another secret
    expires, mac = token.split(".")
    assert not check_token(SECRET, "80000001", f"{int(expires) + 3600}.{mac}", 1000.0)  # extended by hand
    for bad in ("", ".", "1600.", f"{expires}.{mac}0", f"{expires}.{mac.upper()}", "x" * 1000, f"{expires}.{mac}\0"):
        assert not check_token(SECRET, "80000001", bad, 1000.0), bad
        assert token_expiry(bad) is None, bad
    for ttl in (0, 0.5, 8 * 24 * 3600):
        with pytest.raises(ValueError):
            make_token(SECRET, "80000001", 1000.0, ttl)
    with pytest.raises(ValueError):
        make_token(SECRET, "../x", 1000.0, 600)


def _feed(packager: HlsPackager, clock: list[float], asked: list[bool], frames: int) -> None:
    """What a shared encoder and the mixer give: 320x180 libx264 at 25 fps (a key frame when the
    packager asks), composition times on a fake room clock, two 20 ms mix ticks per frame."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 320, 180, "yuv420p", Fraction(1, 25)
    ctx.options = {"tune": "zerolatency", "profile": "baseline", "x264-params": "repeat-headers=1:keyint=250"}
    tone = (np.sin(np.arange(960) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
    for i in range(frames):
        t = i / 25
        clock[0] = t
        frame = av.VideoFrame.from_ndarray(np.full((180, 320, 3), (i * 7) % 200 + 40, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        if asked[0]:
            frame.pict_type = av.video.frame.PictureType.I
            asked[0] = False
        for packet in ctx.encode(frame):
            packager.video(EncodedPacket(bytes(packet), i * 3600, packet.is_keyframe, "h264", 320, 180,
                                         "broadcast", t))
        packager.audio(tone, t + 0.02)
        packager.audio(tone, t + 0.04)


def test_packager_makes_ll_hls_parts_and_segments_that_decode() -> None:
    clock = [0.0]
    asked = [False]
    parts: list[PartOut] = []

    def keyframe() -> None:
        asked[0] = True

    packager = HlsPackager(EPOCH, now=lambda: clock[0], wall_offset=1_800_000_000.0, request_keyframe=keyframe,
                           publish=parts.append, segment_seconds=2.0, part_seconds=0.3)
    packager.start()
    _feed(packager, clock, asked, 500)  # 20 s
    packager.finish()
    assert packager.stats.last_error is None and packager.stats.dropped == 0
    assert packager.init is not None
    playlist = LivePlaylist(EPOCH, target_duration=packager.target_duration, part_target=0.4, window=4)
    for p in parts:
        playlist.add_part(p.data, p.duration, independent=p.independent, starts_segment=p.starts_segment,
                          date=p.date, now=p.date + 0.35)
    # parts of 8 frames (0.32 s), every one within the declared part target; segments ~2 s on key frames
    assert all(0 < p.duration <= 0.4 for p in parts), [(p.duration, p.starts_segment) for p in parts]
    assert all(p.duration >= 0.3 for p, after in zip(parts, parts[1:], strict=False) if not after.starts_segment)
    starts = [p for p in parts if p.starts_segment]
    assert 8 <= len(starts) <= 11 and all(p.independent for p in starts)
    assert parts[0].date == 1_800_000_000.0
    text = playlist.render()
    assert text.startswith("#EXTM3U\n") and "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200" in text
    assert "#EXT-X-PART-INF:PART-TARGET=0.400" in text and "#EXT-X-TARGETDURATION:3" in text
    assert re.search(rf'#EXT-X-PART:DURATION=0\.3\d+,URI="{EPOCH}_\d+\.0\.m4s",INDEPENDENT=YES', text)
    assert re.search(rf'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{EPOCH}_\d+\.\d+\.m4s"\n$', text)
    durations = [float(d) for d in re.findall(r"#EXTINF:([0-9.]+),", text)]
    assert len(durations) == 4 and all(1.5 <= d <= 2.5 for d in durations), text
    msn = playlist.segments[-2].msn
    data = packager.init + (playlist.segment_data(msn) or b"")
    with av.open(io.BytesIO(data), mode="r") as container:
        assert sorted(s.codec_context.name for s in container.streams) == ["aac", "h264"]
        pictures = list(container.decode(video=0))
        assert 40 <= len(pictures) <= 60 and pictures[0].key_frame  # ~2 s, starting on a key frame
    with av.open(io.BytesIO(data), mode="r") as container:
        samples = sum(f.samples for f in container.decode(audio=0))
        assert 1.6 * 48000 <= samples <= 2.4 * 48000
    # one part alone (after the init segment) decodes too: what a low-latency player appends
    part = playlist.part(msn, 0)
    assert part is not None and part.independent
    with av.open(io.BytesIO(packager.init + part.data), mode="r") as container:
        assert len(list(container.decode(video=0))) == 8


def test_packager_waits_for_a_key_frame_and_dies_cleanly_on_garbage() -> None:
    asked: list[int] = []
    packager = HlsPackager(EPOCH, now=lambda: 0.0, wall_offset=0.0, request_keyframe=lambda: asked.append(1),
                           publish=lambda part: None)
    packager.start()
    packager.video(EncodedPacket(b"\x00\x00\x00\x01\x41garbage", 0, False, "h264", 320, 180, "broadcast", 0.0))
    packager.video(EncodedPacket(b"\x00\x00\x00\x01\x65garbage", 0, True, "h264", 320, 180, "broadcast", 0.04))
    packager.finish(timeout=10)
    assert asked  # a delta frame first: it asked for a key frame
    assert not packager.alive
    assert packager.stats.last_error is not None  # a key frame without SPS/PPS cannot describe the stream


def _playlist(parts: int, per_segment: int = 6) -> LivePlaylist:
    playlist = LivePlaylist(EPOCH, target_duration=3, part_target=0.4, window=3)
    for i in range(parts):
        playlist.add_part(bytes([i % 256]), 0.3, independent=i % per_segment == 0,
                          starts_segment=i % per_segment == 0, date=100.0 + 0.3 * i, now=100.4 + 0.3 * i)
    return playlist


@pytest.mark.parametrize("query,expected", [
    ([], None), ([("t", "x")], None), ([("_HLS_msn", "5")], Blocking(5)),
    ([("_HLS_msn", "5"), ("_HLS_part", "2")], Blocking(5, 2)), ([("_HLS_msn", "0"), ("_HLS_skip", "YES")], Blocking(0)),
])
def test_blocking_query_parses(query: list[tuple[str, str]], expected: Blocking | None) -> None:
    assert parse_query(query) == expected


@pytest.mark.parametrize("query", [
    [("_HLS_part", "1")], [("_HLS_msn", "-1")], [("_HLS_msn", "")], [("_HLS_msn", "1.5")], [("_HLS_msn", "1e3")],
    [("_HLS_msn", "１")], [("_HLS_msn", "9" * 13)], [("_HLS_msn", "1"), ("_HLS_msn", "2")],
    [("_HLS_msn", "1"), ("_HLS_part", "999")], [("_HLS_msn", "1"), ("_HLS_skip", "NO")], [("_HLS_msn", " 1")],
])
def test_bad_blocking_queries_are_refused(query: list[tuple[str, str]]) -> None:
    with pytest.raises(BadRequest):
        parse_query(query)


def test_blocking_readiness_and_window() -> None:
    empty = LivePlaylist(EPOCH, target_duration=3, part_target=0.4)
    assert empty.check(Blocking(0)) == "wait" and empty.check(Blocking(3)) == "bad" and not empty.started
    playlist = _playlist(40)  # segments 0..6 (6 holds 4 parts), 0.3 s parts
    current = playlist.segments[-1]
    assert current.msn == 6 and len(current.parts) == 4 and not current.complete
    assert playlist.check(Blocking(5)) == "ready"  # complete
    assert playlist.check(Blocking(6)) == "wait"  # in progress
    assert playlist.check(Blocking(6, 3)) == "ready" and playlist.check(Blocking(6, 4)) == "wait"
    assert playlist.check(Blocking(5, 50)) == "ready"  # past the last part of 5 = part 0 of 6, which exists
    assert playlist.check(Blocking(8)) == "wait" and playlist.check(Blocking(9)) == "bad"
    assert playlist.check(Blocking(0)) == "ready"  # fell out of the window: the current playlist answers
    # the window: 3 complete segments + the one in progress; parts only within 3 target durations of the edge
    assert [s.msn for s in playlist.segments] == [3, 4, 5, 6]
    text = playlist.render()
    assert "#EXT-X-MEDIA-SEQUENCE:3\n" in text and f"{EPOCH}_2.m4s" not in text
    assert f'URI="{EPOCH}_6.3.m4s"' in text and '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="0123abcd_6.4.m4s"' in text
    assert "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:01:" in text
    assert playlist.segment_data(5) == bytes(range(30, 36)) and playlist.segment_data(6) is None
    assert playlist.part(6, 1) is not None and playlist.part(6, 4) is None and playlist.part(2, 0) is None
    assert playlist.next_part() == (6, 4)
    version = playlist.version
    assert playlist.render() is text  # rendered once per change
    playlist.add_part(b"n", 0.3, independent=False, starts_segment=False, date=112.0, now=112.4)
    assert playlist.version == version + 1 and playlist.check(Blocking(6, 4)) == "ready"
    playlist.end()
    assert playlist.render().endswith("#EXT-X-ENDLIST\n") and playlist.check(Blocking(6, 9)) == "ready"
    with pytest.raises(ValueError):
        playlist.add_part(b"x", 0.3, independent=True, starts_segment=True, date=0.0, now=0.0)


def test_fmp4_rejects_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        fmp4.fragment(1, [], 0, [], 0)
    with pytest.raises(ValueError):
        fmp4.fragment(1, [fmp4.Sample(b"x", 0)], 0, [], 0)
    with pytest.raises(ValueError):
        fmp4.init_segment(b"\x67", b"\x68", 320, 180, b"\x11\x88")
    assert fmp4.parameter_sets(b"\x00\x00\x00\x01\x41abc") is None
    assert fmp4.annexb_to_sample(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x67abcd\x00\x00\x00\x01\x65xy") == \
        b"\x00\x00\x00\x03\x65xy"


def test_the_live_stream_carries_shared_content(room: Room, clock: FakeClock) -> None:
    """The stream subscribes to the broadcast view (as the service does): while a presenter holds
    the token, its parts carry the content composed with the speakers (decoded here)."""
    from mcu_helpers import identify, source_frame, yuv_at
    from test_content_layout import Feed

    room.set_labels(False)
    for i in (1, 2):
        room.join(f"s{i}", f"会场{i}").push_video(source_frame(i, 640, 360))
    feed = Feed()
    room.content = feed
    feed.source.switch("s2")
    parts: list[PartOut] = []
    subscription: list[Subscription] = []
    packager = HlsPackager(EPOCH, now=clock.monotonic, wall_offset=0.0,
                           request_keyframe=lambda: subscription[0].request_keyframe() if subscription else None,
                           publish=parts.append)
    packager.start()
    subscription.append(room.subscribe_view(BROADCAST, packager.video, codec="h264", width=640, height=360))
    for _ in range(30):
        feed.source.push("s2", source_frame(9, 1280, 720), clock.monotonic())
        room.video_tick()
        clock.advance(0.04)
    packager.finish()
    subscription[0].close()
    assert packager.stats.last_error is None and parts and packager.init is not None
    with av.open(io.BytesIO(packager.init + parts[0].data), mode="r") as container:
        frame = list(container.decode(video=0))[-1]
    assert identify(yuv_at(frame, 320, 144)) == 9  # the content pane
    assert {identify(yuv_at(frame, 256, 324)), identify(yuv_at(frame, 384, 324))} == {1, 2}  # the speakers
