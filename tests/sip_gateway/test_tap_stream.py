"""The recording tap stream's wire format (sip_gateway/rtp/tap_stream.py): round trips, any split of the
bytes, and bounded fuzzing (hypothesis): arbitrary bytes never raise anything but TapStreamError."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip_gateway.rtp.media_primitives import FRAME_SAMPLES, EncodedPacket
from sip_gateway.rtp.tap_stream import (
    MAX_PAYLOAD,
    FrameReader,
    TapStreamError,
    audio_frame,
    content_control,
    content_frame,
    frame,
    parse_audio,
    parse_content_control,
    parse_subscribe,
    parse_time,
    parse_video,
    subscribe_frame,
    time_frame,
    video_frame,
)

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def test_round_trip_in_any_split() -> None:
    packet = EncodedPacket(b"\x00\x00\x00\x01\x67" + bytes(range(200)), 9000, True, "h264", 1280, 720, "broadcast",
                           12.5)
    slide = EncodedPacket(b"\x00\x00\x00\x01\x65" + bytes(300), 18000, False, "h264", 1920, 1080, "content", 13.0)
    samples = (np.arange(FRAME_SAMPLES) - 480).astype(np.int16)
    wire = (frame(b"T", b"tok") + subscribe_frame(640, 360, True) + video_frame(packet) + audio_frame(samples, 3.25)
            + time_frame(b"N", 7.0) + content_control(b"1") + content_frame(slide) + content_control(b"K")
            + content_control(b"0") + frame(b"E"))
    for split in (1, 7, 64, len(wire)):
        reader = FrameReader()
        frames = [f for i in range(0, len(wire), split) for f in reader.feed(wire[i:i + split])]
        assert [k for k, _ in frames] == [b"T", b"S", b"V", b"A", b"N", b"C", b"P", b"C", b"C", b"E"]
        assert parse_subscribe(frames[1][1]) == (640, 360, True)
        assert parse_video(frames[2][1]) == packet
        got, at = parse_audio(frames[3][1])
        assert at == 3.25 and np.array_equal(got, samples)
        assert parse_time(frames[4][1]) == 7.0
        assert [parse_content_control(frames[i][1]) for i in (5, 7, 8)] == [b"1", b"K", b"0"]
        assert parse_video(frames[6][1], "content") == slide


def test_bad_frames_refused() -> None:
    with pytest.raises(TapStreamError):
        FrameReader().feed(b"Z\x00\x00\x00\x00")
    with pytest.raises(TapStreamError):
        FrameReader().feed(b"V" + (MAX_PAYLOAD + 1).to_bytes(4, "big"))
    with pytest.raises(TapStreamError):
        parse_subscribe(b'{"width": 99999, "height": 10}')
    with pytest.raises(TapStreamError):
        parse_audio(b"\x00" * 10)
    with pytest.raises(TapStreamError):
        parse_content_control(b"2")
    with pytest.raises(TapStreamError):
        content_control(b"")
    assert FrameReader().feed(b"V\x00\x00") == []  # truncated: waits for more


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_reader_and_parsers(data: bytes) -> None:
    try:
        frames = FrameReader().feed(data)
    except TapStreamError:
        return
    for _kind, payload in frames:
        for parse in (parse_video, parse_audio, parse_time, parse_subscribe, parse_content_control):
            try:
                parse(payload)
            except TapStreamError:
                pass
