"""A test H.323 room system (our own endpoint with real RTP media) and an MCU with the bridge."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np

from core.runtime import CoreServices
from mcu.conferences import ConferenceService, RunningConference
from mcu.legs.h323_bridge import H323Bridge
from mcu.legs.h323_settings import BridgeSettings
from mcu.media import video_frame_from_rgb
from mcu.participant import Participant
from mcu.room import RoomSettings
from sip_gateway.aio.h323_endpoint import CallHandle, H323Endpoint
from sip_gateway.aio.h323_media import H323MediaLeg
from sip_gateway.aio.ports import RtpPortManager
from sip_gateway.aio.rtp_leg import tone
from sip_gateway.h224 import CameraSource, FarEndRequest, FeccCapabilities, FeccRules, FeccSession
from sip_gateway.h224.h281 import H281Message
from sip_gateway.h323.call import EndpointConfig
from sip_gateway.h323.capabilities import DEFAULT_FORMATS, H224_SESSION, MediaFormat
from sip_gateway.h323.events import (
    CallReleased,
    ChannelClosed,
    ChannelOpened,
    Event,
    MediaAddress,
)

MCU_RTP = (31000, 31999)
TERMINAL_RTP = (32000, 32699)  # below the kernel ephemeral range (32768+), where other sockets live
RED = (220, 20, 20)
GREEN = (20, 200, 20)


class _Received:
    """The terminal's media sink: keeps what the MCU sends it."""

    def __init__(self, terminal: Any) -> None:
        self.terminal = terminal

    def on_audio(self, leg: object, pcm: np.ndarray) -> None:
        self.terminal.audio.append(pcm)

    def on_video(self, leg: object, frame: av.VideoFrame) -> None:
        self.terminal.frames.append(frame)

    def on_dtmf(self, leg: object, digit: str) -> None:
        """Not used by the tests."""

    def on_keyframe_request(self, leg: object) -> None:
        """Not used by the tests."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def solid(rgb: tuple[int, int, int], width: int = 352, height: int = 288) -> av.VideoFrame:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, :] = rgb
    return video_frame_from_rgb(array)


def amplitude_at(samples: np.ndarray, freq: float, rate: int = 48_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (freqs > freq - 20) & (freqs < freq + 20)
    return float(spectrum[band].max() / (spectrum.mean() + 1e-9))


@dataclass(eq=False)
class Terminal:
    """A room system: dials, sends a colour and a tone, keeps what it decodes."""

    formats: Sequence[MediaFormat] = DEFAULT_FORMATS
    transmit_formats: Sequence[MediaFormat] | None = None  # what it sends, when not ``formats``
    fast_start: bool = True
    tunnelling: bool = True
    colour: tuple[int, int, int] = GREEN
    tone_hz: float = 1000.0
    name: str = "罗定会议室"
    alias: str = "room-101"
    h245_port: int = 0
    events: list[Event] = field(default_factory=list)
    frames: list[av.VideoFrame] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ports = RtpPortManager("127.0.0.1", *TERMINAL_RTP)
        self.config = EndpointConfig(formats=tuple(self.formats), h323_id=self.alias,
                                     transmit_formats=tuple(self.transmit_formats) if self.transmit_formats else None, e164="8001", is_mcu=False,
                                     display=self.name, fast_start=self.fast_start, tunnelling=self.tunnelling,
                                     h245_port=self.h245_port)
        self.endpoint = H323Endpoint(self.config, ports=self.ports)
        self.handle: CallHandle | None = None
        self.media: H323MediaLeg | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._media_tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    async def dial(self, address: MediaAddress | None, number: str | None) -> CallHandle:
        """Call ``number`` at ``address`` (None: a registered terminal asks its gatekeeper)."""
        self.handle = await self.endpoint.dial(address, number)
        await self._attach(self.handle)
        return self.handle

    async def _attach(self, handle: CallHandle) -> None:
        if self.media is not None:  # a previous call (redial): its media is done
            for task in self._media_tasks:
                task.cancel()
            await self.media.close()
        self.handle = handle
        self.media = await H323MediaLeg.adopt(self.ports, handle.call.media_ports, "127.0.0.1",
                                              fast_update=handle.request_fast_update)
        self.media.sink = _Received(self)
        self._media_tasks = [asyncio.ensure_future(self._events()), asyncio.ensure_future(self._send())]
        self._tasks += self._media_tasks

    async def listen(self, port: int) -> None:
        """Wait for calls (dial-out tests): answer the first one."""
        async def answer(handle: CallHandle) -> None:
            await self._attach(handle)
            handle.alert()
            await handle.answer()

        self.endpoint.on_incoming = lambda h: self._tasks.append(asyncio.ensure_future(answer(h)))
        await self.endpoint.listen("127.0.0.1", port)

    async def _events(self) -> None:
        assert self.handle is not None and self.media is not None
        while True:
            event = await self.handle.events.get()
            self.events.append(event)
            if isinstance(event, ChannelOpened):
                self.media.apply(event.channel)
            elif isinstance(event, ChannelClosed):
                self.media.close_channel(event.number, event.outgoing)
            self.changed.set()
            if isinstance(event, CallReleased):
                return

    async def _send(self) -> None:
        assert self.media is not None
        n = 0
        while True:
            self.media.send_audio(tone(self.tone_hz, n * 960))
            if n % 5 == 0 and (2, True) in self.media.channels:
                frame = solid(self.colour)
                frame.pts, frame.time_base = n * 1800, Fraction(1, 90_000)  # the RTP timestamp
                await self.media.leg.send_video(frame, keyframe=n % 50 == 0)
            n += 1
            await asyncio.sleep(0.02)

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, predicate: object, seconds: float = 15.0) -> None:
        assert callable(predicate)
        async with asyncio.timeout(seconds):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await self.changed.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.media is not None:
            await self.media.close()
        await self.endpoint.close()


ROOM_CAMERA = FeccCapabilities(presets=6, sources=(CameraSource(1, pan=True, tilt=True, zoom=True),))


@dataclass(eq=False)
class CameraTerminal(Terminal):
    """A room system whose camera can be steered (far-end camera control, H.323 Annex Q): it
    announces the H.224 data application, opens its H.224 channel on a fourth port pair, tells the
    MCU what its camera can do (``camera``) and keeps the H.281 messages it receives (:meth:`h281`)."""

    camera: FeccCapabilities = ROOM_CAMERA

    def __post_init__(self) -> None:
        super().__post_init__()
        self.config.h224 = True
        self.ports.sessions = (*self.ports.sessions, H224_SESSION)

    async def _attach(self, handle: CallHandle) -> None:
        await super()._attach(handle)
        assert self.media is not None and self.media.h224 is not None
        self.media.h224.session = FeccSession(FeccRules(camera=self.camera))

    def h281(self) -> list[H281Message]:
        """What the MCU asked of our camera, in order (the channel keeps the last 16)."""
        h224 = self.media.h224 if self.media is not None else None
        return [r.message for r in (h224.far_end_requests if h224 is not None else []) if isinstance(r, FarEndRequest)]


@dataclass(eq=False)
class Mcu:
    conferences: ConferenceService
    bridge: H323Bridge
    address: MediaAddress


async def start_mcu(services: CoreServices, port: int, fps: int = 10, prompts: dict[str, Any] | None = None,
                    **settings: Any) -> Mcu:
    """The conference service and the bridge; ``settings`` override BridgeSettings fields."""
    conferences = ConferenceService(services, RoomSettings(width=640, height=360, fps=fps))
    await conferences.start()
    bridge = H323Bridge(conferences, BridgeSettings(**{
        "host": "127.0.0.1", "port": port, "rtp_first": MCU_RTP[0], "rtp_last": MCU_RTP[1],
        "round_trip_interval": 1.0, "media_settle": 2.0, "ivr_digit_timeout": 5.0, **settings}), prompts=prompts)
    address = await bridge.start()
    return Mcu(conferences, bridge, address)


async def stop_mcu(mcu: Mcu) -> None:
    await mcu.bridge.stop()
    await mcu.conferences.stop()


class OtherSite:
    """A site already in the room (pushed directly): a red picture and a 440 Hz tone."""

    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self._task = asyncio.ensure_future(self._run())

    @classmethod
    async def join(cls, conf: RunningConference, site_id: str = "city-main") -> OtherSite:
        return cls(await conf.join(site_id, "市主会场", "webrtc"))

    async def _run(self) -> None:
        frame = solid(RED, 640, 360)
        n = 0
        while True:
            self.participant.push_audio(tone(440, n * 960))
            if n % 5 == 0:
                self.participant.push_video(frame)
            self.participant.pull_audio()
            n += 1
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self._task.cancel()
