"""A conference running on another node, as a recording sees it: the `LiveSource` of a recorder node.

A `--role recorder` node records a conference hosted by a `--role mcu` node through the MCU's
recording tap stream (``mcu/recording_stream.py``; wire format ``sip_gateway/rtp/tap_stream.py``):
`prepare(conference_id)` asks the hosting node over node RPC (``tap.open``) and connects to the
address it answers; then `running(conference_id)` is a `LiveConference` like a local one, so
``ConferenceRecorder`` records it unchanged (segments under ``conf-<id>`` in this node's store): the
broadcast view, the mix and the content stream (the hosting node's shared content encoder, its
packets only while content is live), so the content track and content leaves are written as for
a local recording. A hosting node that does not serve the content stream (its ``tap.open`` answer
lacks ``"content": true``) is recorded without it.

The conference clock: packets carry the MCU's conference time (``composed_at``, mix tick times);
this side keeps ``offset = remote clock - local monotonic clock`` from the ``N`` frames (the
smallest seen, so network delay does not push it forward) and `now()` is local monotonic + offset.

A stream that breaks (the MCU node died, the connection closed, a malformed frame) counts as the
conference having ended: the recording's watchdog stops it and commits the open segment.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from recorder.live_source import MixListener, PacketSink
from sip_gateway.rtp.tap_stream import (
    FrameReader,
    TapStreamError,
    content_control,
    frame,
    parse_audio,
    parse_time,
    parse_video,
    subscribe_frame,
)

log = logging.getLogger(__name__)

CONNECT_S = 10.0


class TapCalls(Protocol):
    """Node RPC toward the conference's hosting node (``noderpc``, adapted by the composition root)."""

    async def call_room(self, conference_id: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call `method` on the node hosting the conference (or, when none does, any live MCU node)."""
        ...


class RemoteTapError(Exception):
    """The conference cannot be tapped (code as ``ConferenceRecordingError``'s, message zh-CN)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class RemoteEncoder:
    width: int
    height: int
    single_nal: bool


@dataclass(frozen=True)
class RemoteSummary:
    name: str
    status: str


class RemoteVideo:
    """The broadcast view's subscription, or with ``content`` the content stream's."""

    def __init__(self, conference: RemoteConference, content: bool = False) -> None:
        self.conference = conference
        self.content = content
        self.closed = False

    def request_keyframe(self) -> None:
        if not self.closed:
            self.conference.send(content_control(b"K") if self.content else frame(b"K"))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.content:
            self.conference.content_sink = None
            self.conference.send(content_control(b"0"))
        else:
            self.conference.video_sink = None


class RemoteConference:
    """One conference of another node, through its tap stream (a `LiveConference`)."""

    def __init__(self, conference_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 encoders: Sequence[RemoteEncoder], remote_now: float,
                 clock: Callable[[], float] = time.monotonic, *, content: bool = False) -> None:
        self.conference_id = conference_id
        self.reader = reader
        self.writer = writer
        self.encoders = list(encoders)
        self.clock = clock
        self.offset = remote_now - clock()
        self.video_sink: PacketSink | None = None
        self.serves_content = content  # the hosting node streams the content encoder (C/P frames)
        self.content_sink: PacketSink | None = None
        self.mix: list[MixListener] = []
        self._ended = False
        self._task = asyncio.create_task(self._read(), name=f"tap-{conference_id}")

    @property
    def ended(self) -> bool:
        return self._ended

    def now(self) -> float:
        return self.clock() + self.offset

    def broadcast_encoders(self) -> Sequence[RemoteEncoder]:
        return self.encoders

    def subscribe_broadcast(self, sink: PacketSink, width: int, height: int,
                            single_nal: bool = False) -> RemoteVideo | None:
        if self._ended:
            return None
        self.video_sink = sink
        self.send(subscribe_frame(width, height, single_nal))
        return RemoteVideo(self)

    def subscribe_content(self, sink: PacketSink) -> RemoteVideo | None:
        """Receive the hosting node's shared content encoder's packets (``P`` frames, only while
        content is live); None when the conference has ended or that node does not serve them."""
        if self._ended or not self.serves_content:
            return None
        self.content_sink = sink
        self.send(content_control(b"1"))
        return RemoteVideo(self, content=True)

    def add_mix_listener(self, listener: MixListener) -> None:
        if listener not in self.mix:
            self.mix.append(listener)
        self.send(frame(b"M", b"1"))

    def remove_mix_listener(self, listener: MixListener) -> None:
        if listener in self.mix:
            self.mix.remove(listener)
        if not self.mix:
            self.send(frame(b"M", b"0"))

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        frames = FrameReader()
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                for kind, payload in frames.feed(data):
                    if kind == b"V":
                        sink = self.video_sink
                        if sink is not None:
                            sink(parse_video(payload))
                    elif kind == b"P":
                        content = self.content_sink
                        if content is not None:
                            content(parse_video(payload, "content"))
                    elif kind == b"A":
                        samples, at = parse_audio(payload)
                        for listener in list(self.mix):
                            listener(samples, at)
                    elif kind == b"N":
                        self.offset = min(self.offset, parse_time(payload) - self.clock())
                    elif kind == b"E":
                        return
                    else:
                        raise TapStreamError(f"unexpected {kind!r} from the MCU node")
        except (TapStreamError, ConnectionError) as exc:
            log.warning("recording tap of %s broke: %s", self.conference_id, exc)
        finally:
            self._ended = True
            self.writer.close()

    async def close(self) -> None:
        self._ended = True
        self.writer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RemoteLiveSource:
    """The conferences of other nodes for this node's ``ConferenceRecorder`` (its `LiveSource`)."""

    def __init__(self, calls: TapCalls) -> None:
        self.calls = calls
        self._open: dict[str, RemoteConference] = {}

    async def prepare(self, conference_id: str) -> None:
        """Open the tap stream of a conference running on another node (before recording it).

        Raises RemoteTapError (unknown, ended, not running, unavailable); an open stream is kept."""
        current = self._open.get(conference_id)
        if current is not None and not current.ended:
            return
        if current is not None:
            await current.close()
            del self._open[conference_id]
        try:
            answer = await self.calls.call_room(conference_id, "tap.open", {"conference_id": conference_id})
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(str(answer["host"]), int(answer["port"])), CONNECT_S)
        except RemoteTapError:
            raise
        except (OSError, TimeoutError, KeyError, ValueError) as exc:
            raise RemoteTapError("unavailable", f"无法连接会议所在节点的录制流：{exc}") from None
        writer.write(frame(b"T", str(answer["token"]).encode()))
        encoders = [RemoteEncoder(int(w), int(h), bool(s)) for w, h, s in answer.get("encoders", [])]
        self._open[conference_id] = RemoteConference(conference_id, reader, writer, encoders, float(answer["now"]),
                                                     content=answer.get("content") is True)

    def running(self, conference_id: str) -> RemoteConference | None:
        return self._open.get(conference_id)

    async def summary(self, conference_id: str) -> RemoteSummary | None:
        try:
            answer = await self.calls.call_room(conference_id, "tap.summary", {"conference_id": conference_id})
        except RemoteTapError:
            return None
        return RemoteSummary(str(answer["name"]), str(answer["status"])) if answer.get("found") else None

    async def release(self, conference_id: str) -> None:
        """Close a stream no recording uses any more."""
        conference = self._open.pop(conference_id, None)
        if conference is not None:
            await conference.close()

    async def stop(self) -> None:
        for conference_id in list(self._open):
            await self.release(conference_id)


__all__ = ["RemoteConference", "RemoteLiveSource", "RemoteTapError", "TapCalls"]
