"""The recording tap served to recorder nodes: a conference of this node, streamed over TCP.

A recorder node that records a conference running here asks over node RPC (``tap.open``); this
node opens a TCP listener on ``nodes.tap_host`` (port chosen by the kernel) for that one stream and
answers with its address, a one-time token, the broadcast encoders running now and the conference
clock. The recorder connects, sends the token, then subscribes (``S``), asks for key frames (``K``),
for the full mix (``M``) and for the content stream (``C``); this node sends the broadcast view's
H.264 packets (``V``), the content encoder's (``P``, only while content is live), the mix (``A``),
the clock (``N``, each second) and ``E`` when the conference ends. The recording joins the same
shared encoders a local recording would (``RecordingTap``: ``subscribe_broadcast``,
``subscribe_content``): no encode of its own when one runs. The wire format is
``sip_gateway/rtp/tap_stream.py``.

Rules: a listener not connected to within ``ACCEPT_S`` closes; a wrong token closes the
connection; when the recorder goes away, its subscription and mix listener are removed. When the
socket cannot keep up (more than ``MAX_BUFFER`` bytes queued) packets are dropped and counted (the
recording cuts its segment on the next key frame), never memory.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from mcu.conferences import ConferenceService
from mcu.recording_tap import RecordingTap, TappedConference
from mcu.room import Subscription
from noderpc.transport import RpcRefused
from sip_gateway.rtp.media_primitives import AudioFrame, EncodedPacket
from sip_gateway.rtp.tap_stream import (
    FrameReader,
    TapStreamError,
    audio_frame,
    content_frame,
    frame,
    parse_content_control,
    parse_subscribe,
    time_frame,
    video_frame,
)

log = logging.getLogger(__name__)

ACCEPT_S = 10.0
MAX_BUFFER = 8 * 1024 * 1024
TAP_PREFIX = "tap."


class _Stream:
    """One recorder's stream of one conference."""

    def __init__(self, conference: TappedConference, writer: asyncio.StreamWriter) -> None:
        self.conference = conference
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.subscription: Subscription | None = None
        self.content: Subscription | None = None
        self.mixing = False
        self.dropped = 0

    def send(self, data: bytes) -> None:
        """From any thread (encoders run in worker threads): queue on the loop, drop when backed up."""
        self.loop.call_soon_threadsafe(self._write, data)

    def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFER:
            self.dropped += 1
            return
        self.writer.write(data)

    def video(self, packet: EncodedPacket) -> None:
        self.send(video_frame(packet))

    def content_packet(self, packet: EncodedPacket) -> None:
        self.send(content_frame(packet))

    def audio(self, samples: AudioFrame, at: float) -> None:
        self.send(audio_frame(samples, at))

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        if self.content is not None:
            self.content.close()
            self.content = None
        if self.mixing:
            self.conference.remove_mix_listener(self.audio)
            self.mixing = False


class TapService:
    """Serves ``tap.open`` and ``tap.summary`` (noderpc `RpcService`) over this node's conferences."""

    def __init__(self, conferences: ConferenceService, host: str = "127.0.0.1") -> None:
        self.conferences = conferences
        self.tap = RecordingTap(conferences)
        self.host = host
        self._servers: set[asyncio.AbstractServer] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        conference_id = str(args.get("conference_id", ""))[:64]
        if method == "tap.summary":
            record = await self.tap.summary(conference_id)
            return {"found": record is not None, "name": record.name if record else "",
                    "status": record.status if record else ""}
        if method == "tap.open":
            return await self.open(conference_id)
        raise RpcRefused(501, f"unknown method {method[:64]}", "unknown_method")

    async def open(self, conference_id: str) -> dict[str, Any]:
        conference = self.tap.running(conference_id)
        if conference is None or conference.ended:
            raise RpcRefused(409, f"会议未在本节点进行：{conference_id}", "tap.not_running")
        token = secrets.token_hex(16)
        accepted = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if accepted.is_set():
                writer.close()
                return
            try:
                first = FrameReader()
                frames: list[tuple[bytes, bytes]] = []
                while not frames:
                    data = await asyncio.wait_for(reader.read(4096), ACCEPT_S)
                    if not data:
                        return
                    frames = first.feed(data)
                kind, payload = frames[0]
                if kind != b"T" or not secrets.compare_digest(payload, token.encode()):
                    log.warning("recording tap of %s: wrong token, connection closed", conference_id)
                    return
                accepted.set()
                server.close()
                await self._stream(conference, reader, writer, first, frames[1:])
            except (TimeoutError, TapStreamError, ConnectionError) as exc:
                log.warning("recording tap of %s closed: %s", conference_id, exc)
            finally:
                writer.close()

        server = await asyncio.start_server(serve, self.host, 0)
        self._servers.add(server)
        port = server.sockets[0].getsockname()[1]

        async def expire() -> None:
            await asyncio.sleep(ACCEPT_S)
            if not accepted.is_set():
                server.close()
            self._servers.discard(server)

        self._spawn(expire())
        encoders = [[e.width, e.height, e.single_nal] for e in conference.broadcast_encoders()]
        log.info("recording tap of %s: listening on %s:%d", conference_id, self.host, port)
        return {"host": self.host, "port": port, "token": token, "encoders": encoders, "now": conference.now(),
                "content": True}  # this node serves the content stream (C/P frames)

    async def _stream(self, conference: TappedConference, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      frames: FrameReader, pending: list[tuple[bytes, bytes]]) -> None:
        stream = _Stream(conference, writer)

        async def clock() -> None:
            while not conference.ended:
                stream.send(time_frame(b"N", conference.now()))
                await asyncio.sleep(1.0)
            stream.send(frame(b"E"))
            await asyncio.sleep(0.2)
            writer.close()

        ticking = asyncio.create_task(clock())
        try:
            stream.send(time_frame(b"N", conference.now()))
            while True:
                for kind, payload in pending:
                    self._control(stream, kind, payload)
                data = await reader.read(65536)
                if not data:
                    return
                pending = frames.feed(data)
        finally:
            ticking.cancel()
            stream.close()
            if stream.dropped:
                log.warning("recording tap: %d frame(s) dropped (the recorder could not keep up)", stream.dropped)

    def _control(self, stream: _Stream, kind: bytes, payload: bytes) -> None:
        if kind == b"S":
            width, height, single_nal = parse_subscribe(payload)
            if stream.subscription is not None:
                stream.subscription.close()
            stream.subscription = stream.conference.subscribe_broadcast(stream.video, width, height, single_nal)
            if stream.subscription is None:
                stream.send(frame(b"E"))
        elif kind == b"K":
            if stream.subscription is not None:
                stream.subscription.request_keyframe()
        elif kind == b"M":
            on = payload == b"1"
            if on and not stream.mixing:
                stream.conference.add_mix_listener(stream.audio)
            elif not on and stream.mixing:
                stream.conference.remove_mix_listener(stream.audio)
            stream.mixing = on
        elif kind == b"C":
            action = parse_content_control(payload)
            if action == b"1" and stream.content is None:
                stream.content = stream.conference.subscribe_content(stream.content_packet)
            elif action == b"0" and stream.content is not None:
                stream.content.close()
                stream.content = None
            elif action == b"K" and stream.content is not None:
                stream.content.request_keyframe()
        else:
            raise TapStreamError(f"unexpected {kind!r} from the recorder")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for server in list(self._servers):
            server.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


__all__ = ["TAP_PREFIX", "TapService"]
