"""Starting and stopping live streams of this node's conferences, and what the web app serves.

One :class:`StreamingService` per MCU node (``McuCapability.streaming``). A stream subscribes to
the broadcast view's H.264 encoder (joining the one the sites or a recording already use: that
encoder is shared, so streaming costs no video encode when one runs) and to the room's full mix,
and feeds one :class:`~mcu.streaming.packager.HlsPackager`, whose parts go (on the event loop)
into the stream's :class:`~mcu.streaming.llhls.LivePlaylist`, in memory: the playlist, its
parts and segments are served from there (:meth:`StreamingService.playlist`,
:meth:`StreamingService.media`).

Blocking: a playlist request with ``_HLS_msn``/``_HLS_part`` and a request for the part the
preload hint names wait (on one :class:`asyncio.Event` per stream, replaced at each new part) at
most three target durations, then get 503; an impossible request gets 400 at once. 500 waiting
viewers cost 500 suspended coroutines and one wake-up each per part; the playlist text is
rendered once per part, not once per request.

A stream stops when the chair stops it, when its conference ends (a watchdog checks every
0.25 s), when its packager dies, and when the node stops; stopping wakes its waiters (404).
Bus events ``conference.streaming_started`` / ``conference.streaming_stopped`` (the conference
topic: chairs, operators, viewers see them) drive the ``/watch`` list live; starts and stops are
audited (``conference.streaming.start`` / ``.stop``).

Why the recording and the stream do not share one subscription object: the recording lives in
``recorder`` (which may not import ``mcu``) and starts and stops on its own; both subscribe to the
same shared encoder, which is what matters: one encode, two readers of its packets.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.tasks import cancel_and_wait
from mcu.room import BROADCAST, RoomError, Subscription

from .llhls import BadRequest, LivePlaylist, blocking_deadline, parse_query
from .names import MAX_TTL_S, FileKind, check_token, make_token, parse_name, token_expiry, valid_conference_id
from .packager import PART_TARGET, HlsPackager, PartOut

if TYPE_CHECKING:
    from mcu.conferences import RunningConference

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.25
VIEWER_WINDOW_S = 10.0  # a viewer counts while it fetched the playlist this recently
DEFAULT_SIZE = (1280, 720)
DEFAULT_LINK_TTL_S = 24 * 3600
STOP_REASONS = ("stopped", "conference_ended", "error", "node_stopping")


class StreamingError(ValueError):
    """A streaming request that cannot be honoured; nothing changed. ``code`` maps to an HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


HTTP_STATUS = {"bad_request": 400, "unknown": 404, "not_running": 409, "not_streaming": 404}


class Conferences(Protocol):
    """The conferences of this node, as streaming needs them (``mcu.conferences.ConferenceService``)."""

    def running(self, conference_id: str) -> RunningConference | None: ...


class EventSink(Protocol):
    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> Any: ...


class AuditSink(Protocol):
    async def record(self, actor: str, action: str, target: str = "", *, outcome: str = "ok",
                     source: str = "", detail: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class StreamingOptions:
    segment_seconds: float = 2.0
    list_size: int = 6
    part_seconds: float = 0.3
    part_target: float = PART_TARGET


@dataclass(frozen=True)
class Served:
    """What a request for a stream file gets: HTTP status, body, and for media the Unix time it
    became available (``X-Published`` lets a client measure delivery latency)."""

    status: int
    body: bytes
    kind: FileKind | None = None
    published_at: float | None = None


@dataclass
class LiveStream:
    """One running stream of one conference."""

    conference_id: str
    name: str
    epoch: str
    started_by: str
    started_at: float  # wall clock
    width: int
    height: int
    shared_encoder: bool
    packager: HlsPackager
    subscription: Subscription
    conference: RunningConference
    playlist: LivePlaylist
    viewers: dict[str, float] = field(default_factory=dict)  # viewer key -> last playlist fetch (wall)
    watchdog: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) at each new part
    stopped: bool = False

    def publish(self, part: PartOut, now: float) -> None:
        """A finished part (on the event loop): list it and wake the waiters."""
        if self.stopped:
            return
        self.playlist.add_part(part.data, part.duration, independent=part.independent,
                               starts_segment=part.starts_segment, date=part.date, now=now)
        self.wake()

    def wake(self) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def viewer_count(self, now: float) -> int:
        for key in [k for k, seen in self.viewers.items() if now - seen > VIEWER_WINDOW_S]:
            del self.viewers[key]
        return len(self.viewers)

    def to_json(self, now: float) -> dict[str, Any]:
        return {"conference_id": self.conference_id, "name": self.name, "live": True,
                "started_by": self.started_by, "started_at": self.started_at,
                "video": f"H.264 {self.width}x{self.height}", "audio": "AAC 48 kHz mono",
                "shared_encoder": self.shared_encoder, "viewers": self.viewer_count(now),
                "playlist": f"/hls/{self.conference_id}/index.m3u8", "low_latency": True,
                "part_target_s": self.playlist.part_target, "target_duration_s": self.playlist.target_duration,
                "ready": self.playlist.started, "error": self.packager.stats.last_error,
                "packager_lag_ms": _median_ms(self.packager.stats.lags), "parts": self.packager.stats.parts}


def _median_ms(values: Iterable[float]) -> float | None:
    ordered = sorted(values)
    return round(1000 * ordered[len(ordered) // 2], 1) if ordered else None


class StreamingService:
    """The live streams of this node's conferences."""

    def __init__(self, conferences: Conferences, bus: EventSink, audit: AuditSink,
                 secret: bytes, options: StreamingOptions | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.conferences = conferences
        self.bus = bus
        self.audit = audit
        self.options = options or StreamingOptions()
        self.clock = clock
        self._secret = secret
        self._streams: dict[str, LiveStream] = {}
        self._lock = asyncio.Lock()

    # ---- queries -------------------------------------------------------------------------------
    def stream(self, conference_id: str) -> LiveStream | None:
        return self._streams.get(conference_id)

    def streams(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [s.to_json(now) for s in self._streams.values()]

    async def playlist(self, conference_id: str, query: Iterable[tuple[str, str]], viewer: str) -> Served:
        """The playlist, at once or (blocking reload) once it holds what ``query`` asks for."""
        stream = self._streams.get(conference_id)
        if stream is None:
            return Served(404, b"not found")
        try:
            request = parse_query(query)
        except BadRequest as exc:
            return Served(400, str(exc).encode())
        self.note_viewer(conference_id, viewer)
        if request is not None:
            deadline = blocking_deadline(time.monotonic(), stream.playlist.target_duration)
            while (state := stream.playlist.check(request)) == "wait":
                if not await self._wait(stream, deadline):
                    return Served(404 if stream.stopped else 503, b"not yet available")
            if state == "bad":
                return Served(400, b"_HLS_msn/_HLS_part beyond the live edge")
        if not stream.playlist.started:
            return Served(404, b"not started yet")
        return Served(200, stream.playlist.render().encode(), "playlist")

    async def media(self, conference_id: str, name: str) -> Served:
        """The init segment, a segment or a part; the part the preload hint names is waited for."""
        stream = self._streams.get(conference_id)
        parsed = parse_name(name, stream.epoch) if stream is not None else None
        if stream is None or parsed is None or parsed[0] == "playlist":
            return Served(404, b"not found")
        kind, msn, index = parsed
        if kind == "init":
            init = stream.packager.init
            return Served(200, init, kind) if init is not None else Served(404, b"not found")
        if kind == "segment":
            data = stream.playlist.segment_data(msn)
            return Served(200, data, kind) if data is not None else Served(404, b"not found")
        deadline = blocking_deadline(time.monotonic(), stream.playlist.target_duration)
        while True:
            part = stream.playlist.part(msn, index)
            if part is not None:
                return Served(200, part.data, kind, part.published_at)
            hint = stream.playlist.next_part()
            # the hinted part, or the one after it (a client a little ahead): wait; else it is gone or never comes
            if hint is None or hint[0] != msn or not hint[1] <= index <= hint[1] + 1:
                return Served(404, b"not found")
            if not await self._wait(stream, deadline):
                return Served(404 if stream.stopped else 503, b"not yet available")

    @staticmethod
    async def _wait(stream: LiveStream, deadline: float) -> bool:
        """Wait for the stream's next part until ``deadline`` (monotonic); False on timeout or stop."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stream.stopped:
            return False
        try:
            await asyncio.wait_for(stream.changed.wait(), remaining)
        except TimeoutError:
            return False
        return not stream.stopped

    def note_viewer(self, conference_id: str, viewer: str) -> None:
        stream = self._streams.get(conference_id)
        if stream is not None:
            stream.viewers[viewer] = self.clock()

    # ---- anonymous watch links -----------------------------------------------------------------
    def watch_token(self, conference_id: str, ttl_s: float = DEFAULT_LINK_TTL_S) -> tuple[str, int]:
        """(token, expiry in Unix seconds) letting anyone with the link watch this conference."""
        if not valid_conference_id(conference_id):
            raise StreamingError("bad_request", f"会议号无效: {conference_id!r}")
        if not 60 <= ttl_s <= MAX_TTL_S:
            raise StreamingError("bad_request", f"链接有效期须在 60 秒到 {MAX_TTL_S} 秒之间")
        token = make_token(self._secret, conference_id, self.clock(), ttl_s)
        return token, token_expiry(token) or 0

    def token_admits(self, conference_id: str, token: str) -> bool:
        return check_token(self._secret, conference_id, token, self.clock())

    # ---- start / stop --------------------------------------------------------------------------
    async def start(self, conference_id: str, actor: str, *, source: str = "") -> LiveStream:
        """Stream a running conference (idempotent: a running stream is returned as is)."""
        if not valid_conference_id(conference_id):
            raise StreamingError("bad_request", f"会议号无效: {conference_id!r}")
        async with self._lock:
            existing = self._streams.get(conference_id)
            if existing is not None:
                return existing
            conf = self.conferences.running(conference_id)
            if conf is None or conf.room.ended:
                raise StreamingError("not_running", f"会议未在本节点进行: {conference_id}")
            room = conf.room
            running = [k for k in room.encoder_keys if k.view_id == BROADCAST and k.codec == "h264"]
            if running:
                best = max(running, key=lambda k: (k.width * k.height, not k.single_nal))
                width, height, single_nal, shared = best.width, best.height, best.single_nal, True
            else:
                (width, height), single_nal, shared = DEFAULT_SIZE, False, False
            epoch = secrets.token_hex(4)
            subscription: Subscription | None = None
            loop = asyncio.get_running_loop()
            stream_box: list[LiveStream] = []

            def keyframe() -> None:
                if subscription is not None:
                    subscription.request_keyframe()

            def publish(part: PartOut) -> None:  # the packager's thread
                loop.call_soon_threadsafe(lambda: stream_box[0].publish(part, self.clock()) if stream_box else None)

            options = self.options
            packager = HlsPackager(epoch, now=room.clock.monotonic, wall_offset=self.clock() - room.clock.monotonic(),
                                   request_keyframe=keyframe, publish=publish,
                                   segment_seconds=options.segment_seconds, part_seconds=options.part_seconds)
            playlist = LivePlaylist(epoch, target_duration=packager.target_duration,
                                    part_target=options.part_target, window=options.list_size)
            try:
                subscription = room.subscribe_view(BROADCAST, packager.video, codec="h264", width=width,
                                                   height=height, single_nal=single_nal)
                room.add_mix_listener(packager.audio)
            except RoomError:
                if subscription is not None:
                    subscription.close()
                raise StreamingError("not_running", f"会议已结束: {conference_id}") from None
            packager.start()
            subscription.request_keyframe()
            stream = LiveStream(conference_id, conf.record.name, epoch, actor, self.clock(),
                                width, height, shared, packager, subscription, conf, playlist)
            stream_box.append(stream)
            self._streams[conference_id] = stream
            stream.watchdog = asyncio.create_task(self._watch(stream), name=f"stream-watch-{conference_id}")
        await self.bus.publish("conference.streaming_started", stream.to_json(self.clock()))
        await self.audit.record(actor, "conference.streaming.start", conference_id, source=source,
                                detail={"video": f"{width}x{height}", "shared_encoder": shared})
        return stream

    async def stop(self, conference_id: str, actor: str, *, reason: str = "stopped", source: str = "") -> bool:
        """Stop a stream (its waiters get 404); False when the conference was not streaming."""
        if reason not in STOP_REASONS:
            raise StreamingError("bad_request", f"reason: 未知原因 {reason}")
        async with self._lock:
            stream = self._streams.pop(conference_id, None)
            if stream is None:
                return False
            stream.stopped = True
            stream.wake()
            stream.subscription.close()
            stream.conference.room.remove_mix_listener(stream.packager.audio)
            await asyncio.to_thread(stream.packager.finish)
            if stream.watchdog is not None and stream.watchdog is not asyncio.current_task():
                await cancel_and_wait([stream.watchdog], swallow_errors=True)
        await self.bus.publish("conference.streaming_stopped", {
            "conference_id": conference_id, "name": stream.name, "live": False, "reason": reason})
        await self.audit.record(actor, "conference.streaming.stop", conference_id, source=source,
                                outcome="failed" if reason == "error" else "ok",
                                detail={"reason": reason, "error": stream.packager.stats.last_error})
        return True

    async def close(self) -> None:
        """Stop every stream (node shutdown)."""
        for conference_id in list(self._streams):
            try:
                await self.stop(conference_id, "system", reason="node_stopping")
            except Exception:
                log.exception("stopping the stream of %s failed", conference_id)

    async def _watch(self, stream: LiveStream) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            conf = stream.conference
            ended = conf.room.ended or self.conferences.running(stream.conference_id) is not conf
            if ended or not stream.packager.alive:
                try:
                    await self.stop(stream.conference_id, "system",
                                    reason="conference_ended" if ended else "error")
                except Exception:
                    log.exception("stopping the stream of %s failed", stream.conference_id)
                return


def load_secret(path: Path) -> bytes:
    """The watch-link secret kept in ``path`` (created, mode 0600, on first use)."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data
