"""A browser's screen share, received by aiortc as the conference's content.

The join page captures the screen with ``getDisplayMedia`` and offers it as one send-only video
track on a second peer connection, signalled on the same signalling websocket as the camera
(``content_offer`` / ``content_answer``, see :mod:`web_console.conference_console`): a second
connection keeps the site's camera connection and its negotiated codecs untouched, and ends with
the share. This leg answers receive-only and hands each decoded frame to ``on_frame``; the content
service decides whether it is shown (only the token holder's frames are).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger(__name__)

FrameSink = Callable[[av.VideoFrame], None]


class ContentShareLeg:
    """One receive-only peer connection carrying a presenter's content track."""

    def __init__(self, presenter: str, configuration: RTCConfiguration, on_frame: FrameSink,
                 on_ended: Callable[[ContentShareLeg], None] | None = None) -> None:
        self.presenter = presenter
        self.pc = RTCPeerConnection(configuration)
        self._on_frame = on_frame
        self._on_ended = on_ended
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.frames = 0

    async def answer(self, offer_sdp: str) -> str:
        """Answer the content offer (ValueError: unusable offer; the connection is closed)."""
        self.pc.on("track", self._on_track)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            video = [t for t in self.pc.getTransceivers() if t.kind == "video"]
            if len(video) != 1 or any(t.kind != "video" for t in self.pc.getTransceivers()):
                raise ValueError("a content offer carries exactly one video track and nothing else")
            video[0].direction = "recvonly"
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            await self.close()
            raise ValueError(f"无法使用的共享屏幕请求: {str(exc)[:160]}") from None
        self.pc.on("connectionstatechange", self._on_state)
        return str(self.pc.localDescription.sdp)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._spawn(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while not self.closed:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.frames += 1
                    self._on_frame(frame)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and not self.closed:
            self._spawn(self.close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop receiving (idempotent)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.pc.close()
        current = asyncio.current_task()
        others = [t for t in self._tasks if t is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        if self._on_ended is not None:
            self._on_ended(self)
