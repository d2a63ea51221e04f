"""The content view's shared encoder is told the frame rate it really gets (issue 18).

The room encodes the content view every ``CONTENT_EVERY``-th video tick (12.5 fps at 25). An encoder
told 25 fps while it gets 12.5 spends bits per frame for 25: libx264's rate control then delivers
about half the content stream's rate (measured: ~590 of 1200 kbit/s at 1080p), its VBV is sized for
frames twice as frequent, and its key-frame interval (frames) lasts twice the configured seconds.
Here the room's content encoder, fed a busy picture at the content's real cadence, delivers its
target rate within a margin, its packets are stamped 1/12.5 s apart (the RTP timestamps), and a
decoder reads them back at that rate; the people views keep the room's rate."""
from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import av
import numpy as np

from mcu.compositor import ComposedFrame
from mcu.encoder import ENCODER_BITRATE, EncoderKey, VideoEncoder
from mcu.room import BROADCAST, CONTENT_EVERY, CONTENT_VIEW, Room, RoomSettings
from sip_gateway.rtp.media_primitives import VIDEO_CLOCK


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def busy(i: int, rng: np.random.Generator) -> av.VideoFrame:
    """A 640x360 picture that changes every frame (a screen being scrolled): costly to code."""
    img = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) // 3 + np.uint8((i * 5) % 160)
    return av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")


def test_the_content_encoder_runs_at_the_content_frame_rate() -> None:
    clock = Clock()
    room = Room("80000001", settings=RoomSettings(width=320, height=180, fps=25), clock=clock)
    sink: list[object] = []
    room.subscribe_view(CONTENT_VIEW, sink.append, "h264", 640, 360)
    room.subscribe_view(BROADCAST, sink.append, "h264", 640, 360)
    content_key = EncoderKey(CONTENT_VIEW, "h264", 640, 360)
    content = room.encoder(content_key)
    people = room.encoder(EncoderKey(BROADCAST, "h264", 640, 360))
    assert content is not None and people is not None
    assert room.content_fps == 25 / CONTENT_EVERY == 12.5
    assert content.settings.fps == 12.5 and people.settings.fps == 25, (content.settings.fps, people.settings.fps)
    assert room.encoder_settings(CONTENT_VIEW).keyframe_interval == people.settings.keyframe_interval
    room.end()

    # The room's content encoder fed at its real cadence: 12.5 frames a second for 6 s (a periodic
    # key frame every 2 s here, to see the interval in content time).
    encoder = VideoEncoder(content_key, replace(content.settings, keyframe_interval=2.0), clock)
    rng = np.random.default_rng(7)
    packets = []
    frames = 75
    for i in range(frames):
        clock.now = 1000.0 + i / room.content_fps
        packets += encoder.encode(ComposedFrame(CONTENT_VIEW, busy(i, rng), clock.now))
    assert len(packets) == frames
    seconds = frames / room.content_fps
    kbps = sum(len(p.data) for p in packets[1:]) * 8 / (seconds - 1 / room.content_fps) / 1000
    target = ENCODER_BITRATE[(640, 360)] / 1000
    assert 0.75 * target <= kbps <= 1.25 * target, (kbps, target)
    # a key frame every 2 s of content (25 frames at 12.5 fps), not every 50 frames (4 s)
    assert [i for i, p in enumerate(packets) if p.keyframe] == [0, 25, 50]
    # the RTP timestamps: one content frame every 90000 / 12.5 = 7200 ticks
    steps = {b.pts - a.pts for a, b in zip(packets, packets[1:], strict=False)}
    assert steps == {int(VIDEO_CLOCK / room.content_fps)}, steps
    # and a decoder reads the stream back at that rate
    decoder = av.CodecContext.create("h264", "r")
    decoded = []
    for p in packets:
        packet = av.Packet(p.data)
        packet.pts, packet.time_base = p.pts, Fraction(1, VIDEO_CLOCK)
        decoded += decoder.decode(packet)
    decoded += decoder.decode(None)
    assert len(decoded) == frames
    stamps = [f.pts or 0 for f in decoded]
    assert stamps[0] == packets[0].pts and all(b - a == 7200 for a, b in zip(stamps, stamps[1:], strict=False)), stamps[:5]
