"""A small aiortc WebRTC client: sends a synthetic camera and tone, receives and decodes the MCU's view.

Used by the tests and by ``bench/webrtc_room.py``, and handy for trying a deployment from a
shell. The camera is a solid colour (a site's identity in pixel tests) with an optional frame
number drawn as a row of black/white blocks (for end-to-end latency measurements).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from sip_gateway.rtp.media_primitives import (
    AUDIO_TIME_BASE,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    VIDEO_CLOCK,
    VIDEO_TIME_BASE,
)

CODE_BITS = 16  # frame-number pattern: 16 blocks, most significant first
CODE_BLOCK = 8  # block width in pixels of the source


def stamp_frame_number(yuv: np.ndarray, width: int, height: int, number: int) -> None:
    """Draw `number` as CODE_BITS black/white blocks across the top band of a yuv420p buffer."""
    band = height // 4
    block = width // CODE_BITS
    for bit in range(CODE_BITS):
        on = (number >> (CODE_BITS - 1 - bit)) & 1
        yuv[:band, bit * block:(bit + 1) * block] = 235 if on else 16
    del band


def read_frame_number(y_plane: np.ndarray) -> int:
    """Inverse of `stamp_frame_number` on a (possibly scaled) luma region showing one source."""
    height, width = y_plane.shape
    band = max(1, height // 4)
    block = width / CODE_BITS
    number = 0
    for bit in range(CODE_BITS):
        x0, x1 = int(bit * block + block * 0.3), int(bit * block + block * 0.7)
        value = float(y_plane[band // 4: band * 3 // 4, x0:max(x1, x0 + 1)].mean())
        number = (number << 1) | (1 if value > 128 else 0)
    return number


class ColourCamera(MediaStreamTrack):
    """Solid-colour video (Y, U, V) at `fps`, optionally stamped with its frame number."""

    kind = "video"

    def __init__(self, colour: tuple[int, int, int], width: int = 320, height: int = 180, fps: int = 15,
                 stamp: bool = False) -> None:
        super().__init__()
        self.colour = colour
        self.width, self.height, self.fps = width, height, fps
        self.stamp = stamp
        self.count = 0
        self.sent_at: dict[int, float] = {}
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.count / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        y, u, v = self.colour
        w, h = self.width, self.height
        data = np.empty((h * 3 // 2, w), np.uint8)
        data[:h] = y
        chroma = data[h:].reshape(-1)
        chroma[: (w // 2) * (h // 2)] = u
        chroma[(w // 2) * (h // 2):] = v
        if self.stamp:
            stamp_frame_number(data, w, h, self.count % (1 << CODE_BITS))
            self.sent_at[self.count % (1 << CODE_BITS)] = time.monotonic()
            if len(self.sent_at) > 2000:
                self.sent_at.pop(next(iter(self.sent_at)))
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = self.count * (VIDEO_CLOCK // self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.count += 1
        return frame


class ToneMicrophone(MediaStreamTrack):
    """A sine tone at `frequency` Hz (quiet by default), 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: float = 3000.0) -> None:
        super().__init__()
        self.frequency, self.amplitude = frequency, amplitude
        self.count = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.count * FRAME_SAMPLES / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(FRAME_SAMPLES) + self.count * FRAME_SAMPLES) / SAMPLE_RATE
        samples = (self.amplitude * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.count * FRAME_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        self.count += 1
        return frame


class WebRtcTestClient:
    """One peer: optional camera + microphone out, the MCU's video and audio in (decoded)."""

    def __init__(self, camera: MediaStreamTrack | None = None, microphone: MediaStreamTrack | None = None,
                 on_frame: Callable[[av.VideoFrame, float], None] | None = None, *, video: bool = True) -> None:
        """``video=False``: an audio-only peer (offers no video at all, like the desk softphone)."""
        self.pc = RTCPeerConnection()
        self.camera = camera
        self.microphone = microphone
        self.on_frame = on_frame
        self.latest: av.VideoFrame | None = None
        self.frames = 0
        self.audio_frames = 0
        self.audio_peak = 0
        self.signalling: Any = None
        self.participant_id = ""
        self._tasks: list[asyncio.Task[None]] = []
        if camera is not None:
            self.pc.addTrack(camera)
        elif video:
            self.pc.addTransceiver("video", direction="recvonly")
        if microphone is not None:
            self.pc.addTrack(microphone)
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    self.latest = frame
                    self.frames += 1
                    if self.on_frame is not None:
                        self.on_frame(frame, now)
                elif isinstance(frame, av.AudioFrame):
                    self.audio_frames += 1
                    self.audio_peak = max(self.audio_peak, int(np.abs(frame.to_ndarray()).max()))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def join_ws(self, url: str, *, message: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Signal over the conference websocket; returns the server's reply (answer or refusal)."""
        import websockets

        self.signalling = await websockets.connect(url, additional_headers=headers or {}, open_timeout=10)
        sdp = await self.offer()
        await self.signalling.send(json.dumps({"type": "join", "sdp": sdp, **(message or {})}))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.signalling.recv(), 20))
        if reply.get("type") == "answer":
            self.participant_id = reply.get("participant_id", "")
            await self.accept(reply["sdp"])
        return reply

    async def wait_frames(self, count: int = 1, within: float = 15.0) -> av.VideoFrame:
        deadline = time.monotonic() + within
        target = self.frames + count
        while self.frames < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"received {self.frames} frames, wanted {target}")
            await asyncio.sleep(0.05)
        assert self.latest is not None
        return self.latest

    async def close(self) -> None:
        if self.signalling is not None:
            with contextlib.suppress(Exception):
                await self.signalling.close()
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
