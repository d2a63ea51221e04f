"""Recording a conference: its broadcast view and full mixed audio, into the recorder's store.

What inspectors find looks exactly like a hall camera's recording: fragmented-MP4 segments
under the pseudo camera ``conf-<conference id>``, each with an index row and an RFC 6962
segment leaf, so search, timeline, playback, export and ``verify-export`` work unchanged.

The recording subscribes to the conference's shared H.264 encoder of the broadcast view (the
very encoder the sites watching the broadcast use, when one runs) and to the full mix of every
unmuted site, not anyone's N-1 mix, through the ``LiveSource`` the MCU provides
(:mod:`recorder.live_source`; this package imports nothing from ``mcu``); one
:class:`recorder.conference_writer.RecordingWriter` per recording turns them into segments
(stream copy, AAC, cut on key frames: see that module). Asking the encoder for a key frame per
segment costs one extra key frame per segment for its receivers, rate-limited like any PLI.

API (for the chair console's record button): :meth:`ConferenceRecorder.start_recording`,
:meth:`~ConferenceRecorder.stop_recording`, :meth:`~ConferenceRecorder.is_recording`,
:meth:`~ConferenceRecorder.recording`; bus events ``conference.recording_started`` /
``conference.recording_stopped``; audit actions ``conference.recording.start`` / ``.stop``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recorder.conference_writer import AUDIO_BITRATE, RecordingStats, RecordingWriter
from recorder.live_source import LiveConference, LiveSource, LiveVideo, SharedEncoder
from recorder.store import StoreError, check_camera_id

if TYPE_CHECKING:
    from core.audit import AuditLog
    from core.bus import Bus
    from recorder.service import RecorderService

log = logging.getLogger(__name__)

CAMERA_PREFIX = "conf-"
WATCH_INTERVAL_S = 0.25

STOP_REASONS_ZH = {
    "stopped": "操作员停止录制",
    "conference_ended": "会议已结束",
    "error": "录制出错",
    "node_stopping": "服务停止",
}


class ConferenceRecordingError(ValueError):
    """A recording request that cannot be honoured; nothing was started or written.

    `code` is stable (routes map it to an HTTP status, see `HTTP_STATUS`); the message is zh-CN.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# What a REST route answers for each refusal.
HTTP_STATUS = {"bad_request": 400, "unknown": 404, "ended": 409, "not_running": 409, "unavailable": 503}


def conference_camera_id(conference_id: str) -> str:
    """The pseudo camera id a conference is recorded under (``conf-<id>``)."""
    try:
        return check_camera_id(CAMERA_PREFIX + conference_id)
    except StoreError:
        raise ConferenceRecordingError("unknown", f"会议号无效: {conference_id!r}") from None


@dataclass(frozen=True)
class BroadcastEncoding:
    """The broadcast view's H.264 encoding a recording stream-copies: picture size and packetisation."""

    width: int
    height: int
    single_nal: bool = False  # H.264 packetization-mode 0


def choose_encoder(running: Sequence[SharedEncoder], width: int | None = None,
                   height: int | None = None) -> BroadcastEncoding:
    """The broadcast H.264 encoder to record: a running one (largest picture) unless a size is given."""
    if width is not None and height is not None:
        return BroadcastEncoding(width, height)
    if running:
        best = max(running, key=lambda k: (k.width * k.height, not k.single_nal))
        return BroadcastEncoding(best.width, best.height, best.single_nal)
    return BroadcastEncoding(1280, 720)


@dataclass(frozen=True)
class RecordingOptions:
    """How conferences are recorded."""

    segment_seconds: float | None = None  # None: the recorder's segment length
    width: int | None = None  # with height: record this size (default: share a running encoder)
    height: int | None = None
    audio_bitrate: int = AUDIO_BITRATE

    def __post_init__(self) -> None:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        if self.segment_seconds is not None and not 1.0 <= self.segment_seconds <= 10.0:
            raise ValueError("segment_seconds must be between 1 and 10")


@dataclass
class RecordingHandle:
    """One recording of one conference, from start to stop."""

    conference_id: str
    camera: str
    started_by: str
    started_at: float  # wall clock, seconds
    encoder: BroadcastEncoding
    shared_encoder: bool  # the encoder already ran for other receivers when we joined it
    stats: RecordingStats = field(default_factory=RecordingStats)
    stopped_at: float | None = None
    stopped_by: str | None = None
    stop_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.stopped_at is None

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "conference_id": self.conference_id, "camera": self.camera, "active": self.active,
            "started_by": self.started_by, "started_at": _iso(self.started_at),
            "stopped_by": self.stopped_by, "stopped_at": _iso(self.stopped_at) if self.stopped_at else None,
            "stop_reason": self.stop_reason,
            "stop_reason_text": STOP_REASONS_ZH.get(self.stop_reason or "", self.stop_reason),
            "video": f"H.264 {self.encoder.width}x{self.encoder.height}", "audio": "AAC 48 kHz mono",
            "shared_encoder": self.shared_encoder, "segments": s.segments, "bytes": s.bytes,
            "recorded_from_ms": s.first_start_ms, "recorded_to_ms": s.last_end_ms, "error": s.last_error,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


@dataclass
class _Active:
    handle: RecordingHandle
    conference: LiveConference
    subscription: LiveVideo
    writer: RecordingWriter
    content: LiveVideo | None = None
    watchdog: asyncio.Task[None] | None = None


class ConferenceRecorder:
    """Starts and stops conference recordings on this node (MCU and recorder in one process)."""

    def __init__(self, live: LiveSource, recorder: RecorderService, bus: Bus, audit: AuditLog,
                 options: RecordingOptions | None = None, clock: Callable[[], float] = time.time) -> None:
        self.live = live
        self.recorder = recorder
        self.bus = bus
        self.audit = audit
        self.options = options or RecordingOptions()
        self.clock = clock
        self._active: dict[str, _Active] = {}
        self._stop_cause: dict[str, str] = {}
        self._lock = asyncio.Lock()

    # ---- queries ---------------------------------------------------------------------------
    def is_recording(self, conference_id: str) -> bool:
        return conference_id in self._active

    def recording(self, conference_id: str) -> RecordingHandle | None:
        """The running recording of a conference, if any."""
        active = self._active.get(conference_id)
        return active.handle if active else None

    def recordings(self) -> list[RecordingHandle]:
        """Every running recording on this node."""
        return [a.handle for a in self._active.values()]

    async def recorded(self, conference_id: str | None = None) -> list[dict[str, Any]]:
        """What the store holds per recorded conference (for inspectors' search): live segments only."""
        rows = await self.recorder.db.fetch(
            "SELECT camera, min(start_ms) AS start_ms, max(end_ms) AS end_ms, count(*) AS segments,"
            " sum(size) AS bytes FROM recorder_segments WHERE camera LIKE $1 AND deleted_at IS NULL"
            " AND ($2::text IS NULL OR camera = $2) GROUP BY camera ORDER BY min(start_ms)",
            CAMERA_PREFIX + "%", None if conference_id is None else CAMERA_PREFIX + conference_id)
        out = []
        for row in rows:
            conference = row["camera"][len(CAMERA_PREFIX):]
            record = await self.live.summary(conference)
            out.append({"conference_id": conference, "name": record.name if record else "", "camera": row["camera"],
                        "start_ms": int(row["start_ms"]), "end_ms": int(row["end_ms"]),
                        "segments": int(row["segments"]), "bytes": int(row["bytes"]),
                        "recording": self.is_recording(conference)})
        return out

    # ---- start / stop --------------------------------------------------------------------------
    async def start_recording(self, conference_id: str, actor: str, *, source: str = "") -> RecordingHandle:
        """Start recording a running conference (idempotent: a running recording is returned as is).

        Raises ConferenceRecordingError (zh-CN message) for an empty actor, an unknown, ended or
        not running conference, or a recorder that is not running; nothing is written then.
        """
        actor = (actor or "").strip()
        if not actor:
            raise ConferenceRecordingError("bad_request", "actor: 缺少操作人")
        async with self._lock:
            existing = self._active.get(conference_id)
            if existing is not None:
                return existing.handle
            camera = conference_camera_id(conference_id)
            conf = await self._running_conference(conference_id)
            if not self.recorder.running:
                raise ConferenceRecordingError("unavailable", "录像服务未运行，无法录制")
            running = conf.broadcast_encoders()
            key = choose_encoder(running, self.options.width, self.options.height)
            shared = key in {BroadcastEncoding(e.width, e.height, e.single_nal) for e in running}
            mono_ref, wall_ref = conf.now(), self.clock()
            cause = self._stop_cause.pop(camera, "conference not recorded")
            try:
                on_segment = await self.recorder.attach_source(camera, cause)
            except ValueError as exc:
                raise ConferenceRecordingError("unavailable", f"无法录制: {exc}") from None
            handle = RecordingHandle(conference_id, camera, actor, wall_ref, key, shared)
            writer = RecordingWriter(
                camera, self.recorder.store, on_segment,
                segment_seconds=self.options.segment_seconds or self.recorder.config.segment_seconds,
                now=conf.now, wall_of=lambda t: wall_ref + (t - mono_ref),
                request_keyframe=lambda: subscription.request_keyframe(),
                request_content_keyframe=lambda: content.request_keyframe() if content is not None else None,
                paused=lambda: self.recorder.recording_paused,
                stats=handle.stats, audio_bitrate=self.options.audio_bitrate)
            subscribed = conf.subscribe_broadcast(writer.video, key.width, key.height, key.single_nal)
            if subscribed is None:  # the conference ended since we looked
                raise ConferenceRecordingError("ended", "会议已结束")
            subscription = subscribed
            # The content stream (second video track): the one shared content encoder, stream-copied.
            content = conf.subscribe_content(writer.content)
            writer.start()
            conf.add_mix_listener(writer.audio)
            subscription.request_keyframe()  # segments start on a key frame: don't wait for the periodic one
            active = _Active(handle, conf, subscription, writer, content)
            self._active[conference_id] = active
            active.watchdog = asyncio.create_task(self._watch(active), name=f"confrec-watch-{conference_id}")
        payload = {"conference_id": conference_id, **handle.to_json()}
        await self.bus.publish("conference.recording_started", payload)
        await self.audit.record(actor, "conference.recording.start", conference_id, source=source,
                                detail={"camera": camera, "video": payload["video"], "shared_encoder": shared})
        return handle

    async def stop_recording(self, conference_id: str, actor: str, *, reason: str = "stopped",
                             source: str = "") -> RecordingHandle | None:
        """Stop (the open segment is committed, logged and indexed first). None if it was not recording."""
        actor = (actor or "").strip()
        if not actor:
            raise ConferenceRecordingError("bad_request", "actor: 缺少操作人")
        if reason not in STOP_REASONS_ZH:
            raise ConferenceRecordingError("bad_request", f"reason: 未知原因 {reason}")
        async with self._lock:
            active = self._active.get(conference_id)
            if active is None:
                return None
            handle = active.handle
            active.subscription.close()
            if active.content is not None:
                active.content.close()
            active.conference.remove_mix_listener(active.writer.audio)
            await asyncio.to_thread(active.writer.finish)
            await self.recorder.drain()
            if active.watchdog is not None and active.watchdog is not asyncio.current_task():
                active.watchdog.cancel()
            handle.stopped_at, handle.stopped_by, handle.stop_reason = self.clock(), actor, reason
            self._stop_cause[handle.camera] = f"recording stopped ({reason}) by {actor}"
            del self._active[conference_id]  # only now: is_recording() is True until all is committed
        payload = {"conference_id": conference_id, **handle.to_json()}
        await self.bus.publish("conference.recording_stopped", payload)
        await self.audit.record(actor, "conference.recording.stop", conference_id, source=source,
                                outcome="ok" if reason != "error" else "failed",
                                detail={"camera": handle.camera, "reason": reason, "segments": handle.stats.segments,
                                        "bytes": handle.stats.bytes, "error": handle.stats.last_error})
        return handle

    async def stop(self) -> None:
        """Stop every recording (node shutdown): open segments are committed."""
        for conference_id in list(self._active):
            try:
                await self.stop_recording(conference_id, "system", reason="node_stopping")
            except Exception:
                log.exception("stopping the recording of %s failed", conference_id)

    async def _running_conference(self, conference_id: str) -> LiveConference:
        conf = self.live.running(conference_id)
        if conf is not None and not conf.ended:
            return conf
        record = await self.live.summary(conference_id)
        if record is None:
            raise ConferenceRecordingError("unknown", f"会议不存在: {conference_id}")
        if record.status == "ended" or conf is not None:
            raise ConferenceRecordingError("ended", f"会议已结束，不能录制: {conference_id}")
        raise ConferenceRecordingError("not_running", f"会议未在本节点进行，不能录制: {conference_id}")

    async def _watch(self, active: _Active) -> None:
        """Stop by itself when the conference ends or the writer died."""
        conference_id = active.handle.conference_id
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            ended = active.conference.ended or self.live.running(conference_id) != active.conference
            if ended or not active.writer.alive:
                try:
                    await self.stop_recording(conference_id, "system",
                                              reason="conference_ended" if ended else "error")
                except Exception:
                    log.exception("stopping the recording of %s failed", conference_id)
                return


@dataclass
class ConferenceRecordingRole:
    """The running conference recorder of a node (`Node.conference_recording`)."""

    recorder: ConferenceRecorder

    async def stop(self) -> None:
        await self.recorder.stop()
