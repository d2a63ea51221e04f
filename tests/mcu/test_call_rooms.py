"""An emergency call's CallRoom without sockets: it is the RTP leg's sink and SiteMedia's leg itself."""
from __future__ import annotations

import types
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mcu.call_rooms import QUEUE_TONE, CallRoom
from mcu.legs.site_media import RtpLeg
from sip_gateway.aio.rtp_leg import MediaSink
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES as FRAME


class _Leg:
    def __init__(self) -> None:
        self.sent: list[np.ndarray] = []

    def send_audio(self, pcm: np.ndarray) -> None:
        self.sent.append(pcm)


def test_queue_tone_recording_and_hold(tmp_path: Path) -> None:
    leg = _Leg()
    room = CallRoom(leg)  # type: ignore[arg-type]
    sink: MediaSink = room  # no adapter: the leg's sink and the site's leg are the room
    site_leg: RtpLeg = room
    heard: list[np.ndarray] = []
    room.media = types.SimpleNamespace(on_audio=lambda leg, pcm: heard.append(pcm))  # SiteMedia.on_audio(leg, pcm)
    path = room.record(tmp_path, datetime.now(UTC))
    voice = np.full(FRAME, 1000, dtype=np.int16)
    # Waiting: the caller hears the queue tone, the room does not hear the caller, the mix is held back.
    room.tick()
    sink.on_audio(None, voice)  # type: ignore[arg-type]
    site_leg.send_audio(voice)
    assert len(leg.sent) == 1 and np.array_equal(leg.sent[0], QUEUE_TONE[:FRAME]) and heard == []
    # Answered: no tone, the caller is heard and hears the room.
    room.stop_queue_tone()
    room.tick()
    sink.on_audio(None, voice)  # type: ignore[arg-type]
    site_leg.send_audio(voice)
    assert len(leg.sent) == 2 and leg.sent[1] is voice and len(heard) == 1
    # Hold is the queue tone again.
    room.queue_tone = True
    sink.on_audio(None, voice)  # type: ignore[arg-type]
    assert len(heard) == 1
    ended: Any = room.end()
    assert ended[0] == path
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 48000 and wav.getnframes() == 2 * FRAME
