"""An MCU with H.239 (the H.323 bridge given the content service) and H.239 room systems for tests."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.content.service import ContentService
from mcu.legs.h323_bridge import CONTENT_FORMATS, H323Bridge
from mcu.legs.h323_settings import BridgeSettings
from mcu.room import RoomSettings
from sip_gateway.h323.capabilities import AUDIO_SESSION, VIDEO_SESSION, MediaFormat
from sip_gateway.h323.h239 import CONTENT_SESSION, H239Message, H239MessageReceived
from tests.sip_gateway.h323.h323_conference_kit import MCU_RTP, Terminal, solid


@dataclass(eq=False)
class ContentMcu:
    conferences: ConferenceService
    content: ContentService
    bridge: H323Bridge
    port: int


async def start_content_mcu(services: CoreServices, port: int, **settings: Any) -> ContentMcu:
    conferences = ConferenceService(services, RoomSettings(width=640, height=360, fps=10))
    await conferences.start()
    content = ContentService(conferences, RTCConfiguration(), tick=0.1)
    await content.start()
    bridge = H323Bridge(conferences, BridgeSettings(**{
        "host": "127.0.0.1", "port": port, "rtp_first": MCU_RTP[0], "rtp_last": MCU_RTP[1],
        "round_trip_interval": 1.0, "media_settle": 2.0, "ivr_digit_timeout": 5.0, **settings}), content=content)
    await bridge.start()
    return ContentMcu(conferences, content, bridge, port)


async def stop_content_mcu(mcu: ContentMcu) -> None:
    await mcu.bridge.stop()
    await mcu.content.stop()
    await mcu.conferences.stop()


class _ContentFrames:
    """MediaSink of a terminal's content leg: keeps the decoded presentation frames."""

    def __init__(self, terminal: H239Terminal) -> None:
        self.terminal = terminal

    def on_video(self, leg: object, frame: av.VideoFrame) -> None:
        self.terminal.content_frames.append(frame)
        self.terminal.changed.set()

    def on_audio(self, leg: object, pcm: np.ndarray) -> None:
        return

    def on_dtmf(self, leg: object, digit: str) -> None:
        return

    def on_keyframe_request(self, leg: object) -> None:
        return


@dataclass(eq=False)
class H239Terminal(Terminal):
    """Our H.323 room system with H.239: announces the presentation role, keeps the content it
    decodes (``content_frames``) and can present a solid colour (:meth:`present`)."""

    content_frames: list[av.VideoFrame] = field(default_factory=list)
    content_formats: tuple[MediaFormat, ...] = CONTENT_FORMATS  # what it receives as content

    def __post_init__(self) -> None:
        super().__post_init__()
        self.config.content_formats = self.content_formats
        self.ports.sessions = (AUDIO_SESSION, VIDEO_SESSION, CONTENT_SESSION)
        self._presenting: asyncio.Task[None] | None = None

    async def _attach(self, handle: Any) -> None:
        await super()._attach(handle)
        assert self.media is not None and self.media.content is not None
        self.media.content_sink = _ContentFrames(self)

    def h239_messages(self) -> list[H239Message]:
        return [e.message for e in self.of(H239MessageReceived) if isinstance(e, H239MessageReceived)]

    def present(self, colour: tuple[int, int, int], size: tuple[int, int] = (704, 576),
                fmt: MediaFormat = CONTENT_FORMATS[0]) -> None:
        """Open the content channel (H.264; ``fmt`` gives its maxBitRate) and send ``colour`` on it,
        5 frames/s, until :meth:`stop_presenting`."""
        assert self.handle is not None and self.media is not None
        self.handle.open_content_channel(fmt)
        self._presenting = asyncio.ensure_future(self._send_content(colour, size))

    async def _send_content(self, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
        assert self.media is not None and self.media.content is not None
        # Two shades of the colour in turn: a picture that changes (receivers count distinct frames).
        shades = [solid(colour, *size), solid(tuple(max(0, c - 16) for c in colour), *size)]  # type: ignore[arg-type]
        for n in itertools.count():
            if self.media.outgoing_content is not None:
                frame = shades[n % 2]
                frame.pts, frame.time_base = n * 18000, Fraction(1, 90_000)
                await self.media.content.send_video(frame, keyframe=n % 10 == 0)
            await asyncio.sleep(0.2)

    async def stop_presenting(self) -> None:
        if self._presenting is not None:
            self._presenting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._presenting
            self._presenting = None

    async def close(self) -> None:
        await self.stop_presenting()
        await super().close()


def mean_rgb(frame: av.VideoFrame, box: tuple[float, float, float, float] = (0.25, 0.25, 0.75, 0.75)) -> np.ndarray:
    """Mean RGB of a box given as fractions (x0, y0, x1, y1) of the frame."""
    rgb = frame.to_ndarray(format="rgb24")
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    return np.asarray(rgb[int(h * y0):int(h * y1), int(w * x0):int(w * x1)].reshape(-1, 3).mean(axis=0))


def close_to(actual: np.ndarray, expected: tuple[int, int, int], tolerance: float = 30.0) -> bool:
    return bool(np.all(np.abs(actual - np.asarray(expected, dtype=float)) <= tolerance))
