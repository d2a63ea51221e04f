"""The MCU's shared encoder in its H.263 and H.261 variants: its output, packetised for RTP and
depacketised again, decodes in PyAV with the picture's colours; key frames on request."""
from __future__ import annotations

from typing import Any

import av
import numpy as np
import pytest

from mcu.clock import FakeClock
from mcu.compositor import ComposedFrame
from mcu.encoder import EncoderKey, EncoderSettings, VideoEncoder
from mcu.media import video_frame_from_rgb
from sip_gateway.rtp.h261 import depacketize_rfc4587, packetize_rfc4587
from sip_gateway.rtp.h263 import depacketize_rfc2190, packetize_rfc2190

PACK = {"h263": (packetize_rfc2190, depacketize_rfc2190), "h261": (packetize_rfc4587, depacketize_rfc4587)}


def _composed(i: int) -> ComposedFrame:
    rgb = np.zeros((288, 352, 3), dtype=np.uint8)
    rgb[:, :176] = (0, 180, 0)
    rgb[:, 176:] = (220, 220, 0)
    rgb[10:30, (i * 6) % 300:(i * 6) % 300 + 20] = 255
    return ComposedFrame("broadcast", video_frame_from_rgb(rgb), composed_at=1000.0 + i / 25)


@pytest.mark.parametrize("codec", ["h263", "h261"])
def test_shared_encoder_h26x_decodes_after_rtp(codec: str) -> None:
    clock = FakeClock()
    encoder = VideoEncoder(EncoderKey("broadcast", codec, 352, 288), EncoderSettings(bitrate=256_000), clock)
    packetize, depacketize = PACK[codec]
    decoder: Any = av.CodecContext.create(codec, "r")
    decoded = []
    keyframes = []
    for i in range(30):
        clock.advance(0.04)
        if i == 20:
            encoder.request_keyframe()
        for packet in encoder.encode(_composed(i)):
            assert packet.codec == codec and (packet.width, packet.height) == (352, 288)
            keyframes.append(packet.keyframe)
            payloads = packetize(packet.data)
            assert all(len(p) <= 1200 for p in payloads)
            for frame in decoder.decode(av.Packet(depacketize(payloads))):
                decoded.append(frame.to_ndarray(format="rgb24"))
    assert keyframes[0] and any(keyframes[15:])  # the first frame and the requested one
    assert len(decoded) >= 25
    last = decoded[-1].astype(int)
    green, yellow = last[100:280, 20:150].mean(axis=(0, 1)), last[100:280, 200:340].mean(axis=(0, 1))
    assert green[1] > 140 and green[0] < 60, green
    assert yellow[0] > 160 and yellow[1] > 160 and yellow[2] < 80, yellow


def test_h26x_encoder_keys_are_cif_only() -> None:
    with pytest.raises(ValueError, match="CIF"):
        EncoderKey("broadcast", "h263", 640, 360)
    with pytest.raises(ValueError, match="H.264"):
        EncoderKey("broadcast", "h261", 352, 288, single_nal=True)
