"""Recording a conference: its broadcast view and full mixed audio, into the recorder's store.

What inspectors find looks exactly like a hall camera's recording: fragmented-MP4 segments
under the pseudo camera ``conf-<conference id>``, each with an index row and an RFC 6962
segment leaf, so search, timeline, playback, export and ``verify-export`` work unchanged.

* **Video is never re-encoded.** The recording subscribes to the room's shared H.264 encoder
  of the broadcast view (the very encoder the sites watching the broadcast use, when one
  runs) and stream-copies its packets: Annex B access units whose key frames carry SPS/PPS
  (x264 ``repeat-headers``), so the first key frame describes the stream (codec parameters
  and extradata come from it); the MP4 muxer stores them as avcC and length-prefixed NAL units.
* **Audio is the full mix** of every unmuted site (``Room.add_mix_listener``), not anyone's
  N-1 mix, encoded to AAC-LC 48 kHz mono (what Media Source Extensions play everywhere).
* **Segments** are ``segment_seconds`` long (the recorder's setting), cut on key frames. The
  shared encoder makes a periodic key frame only every 10 s, so the recording asks for one
  when a segment is due (by the room clock: the key frame lands on the next composed frame)
  and cuts at the first key frame from ``CUT_SLACK_S`` before the due time: one extra key
  frame per segment for that encoder's receivers, rate-limited like any PLI.
* **Timing**: video frames are placed at their composition time, audio at its mix tick, both
  on the room's clock, mapped once to the wall clock, so consecutive segments are exactly
  contiguous and audio stays within a tick of the picture.

Threads: the room hands packets and mixes over on the event loop, where we only queue them.
One writer thread per recording muxes, encodes the audio, commits each file (write, fsync,
rename) and hands it to :class:`recorder.service.RecorderService` (log leaf + index row).

API (for the chair console's record button): :meth:`ConferenceRecorder.start_recording`,
:meth:`~ConferenceRecorder.stop_recording`, :meth:`~ConferenceRecorder.is_recording`,
:meth:`~ConferenceRecorder.recording`; bus events ``conference.recording_started`` /
``conference.recording_stopped``; audit actions ``conference.recording.start`` / ``.stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from mcu.encoder import EncoderKey
from mcu.media import FRAME_SAMPLES, SAMPLE_RATE, VIDEO_TIME_BASE, AudioFrame, EncodedPacket
from mcu.room import BROADCAST, Room, RoomError, Subscription
from recorder.ingest import CommittedSegment, sha256_file
from recorder.segmenter import MOVFLAGS, CutPolicy, avc_codec_string
from recorder.store import SegmentStore, StoreError, check_camera_id, segment_key

if TYPE_CHECKING:
    from core.audit import AuditLog
    from core.bus import Bus
    from mcu.conferences import ConferenceService, RunningConference
    from recorder.service import RecorderService

log = logging.getLogger(__name__)

CAMERA_PREFIX = "conf-"
AUDIO_BITRATE = 64_000
AUDIO_CODECS = "mp4a.40.2"  # AAC-LC
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE  # one mix tick: 20 ms
# Audio waits for the video to pass its time (so it lands in the right segment), but no longer
# than this: a stalled picture must not hold the sound back indefinitely.
AUDIO_HOLD_S = 2.0
# The mix clock may wander from the tick clock by this much before we re-align it (a late or
# skipped tick): missing time is filled with silence, audio running ahead is dropped.
AUDIO_SLACK_S = 0.1
# Ask the shared encoder for a key frame this long before a segment is due, and accept a key frame
# as the cut from CUT_SLACK_S before it: the forced key frame is the first frame *encoded* after the
# request, which may have been composed a frame or two (compose/encode latency) before it.
KEYFRAME_LEAD_S = 0.1
CUT_SLACK_S = 0.3
# Items (video packets and audio ticks) queued for the writer before we drop: ~40 s of media.
MAX_QUEUED = 3000
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


def choose_encoder(room: Room, width: int | None = None, height: int | None = None) -> EncoderKey:
    """The broadcast H.264 encoder to record: a running one (largest picture) unless a size is given."""
    if width is not None and height is not None:
        return EncoderKey(BROADCAST, "h264", width, height)
    running = [k for k in room.encoder_keys if k.view_id == BROADCAST and k.codec == "h264"]
    if running:
        return max(running, key=lambda k: (k.width * k.height, not k.single_nal))
    return EncoderKey(BROADCAST, "h264", 1280, 720)


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
class RecordingStats:
    """Updated by the writer thread; read by anyone."""

    segments: int = 0
    bytes: int = 0
    video_packets: int = 0
    audio_frames: int = 0
    dropped: int = 0
    keyframe_requests: int = 0
    first_start_ms: int | None = None
    last_end_ms: int | None = None
    last_error: str | None = None


@dataclass
class RecordingHandle:
    """One recording of one conference, from start to stop."""

    conference_id: str
    camera: str
    started_by: str
    started_at: float  # wall clock, seconds
    encoder: EncoderKey
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


def video_template(keyframe: bytes) -> tuple[Any, Any]:
    """(input container, its video stream): codec parameters parsed from an Annex B key frame.

    The container must stay open while the stream serves as a template for output streams.
    """
    container = av.open(io.BytesIO(keyframe), format="h264")
    if not container.streams.video or not container.streams.video[0].codec_context.extradata:
        container.close()
        raise ValueError("key frame without SPS/PPS: cannot describe the stream")
    return container, container.streams.video[0]


class SegmentMuxer:
    """One fragmented-MP4 segment: stream-copied H.264 plus AAC encoded from the mix."""

    def __init__(self, path: Path, template: Any, start_t: float, audio_bitrate: int) -> None:
        self.path = path
        self.start_t = start_t
        # avoid_negative_ts=disabled: AAC's priming samples (pts -1024) are cut by the audio track's
        # edit list; the default would instead shift every track, delaying the picture by 21 ms.
        self._out = av.open(str(path), mode="w", format="mp4",
                            options={"movflags": MOVFLAGS, "avoid_negative_ts": "disabled"})
        self._video = self._out.add_stream_from_template(template)
        self._video.time_base = VIDEO_TIME_BASE
        self._audio = self._out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        self._audio.bit_rate = audio_bitrate
        self._audio.time_base = Fraction(1, SAMPLE_RATE)
        self.video_frames = 0
        self.audio_frames = 0
        self._last_pts = -1
        self.last_t = start_t
        self.frame_s = 0.04

    def write_video(self, packet: EncodedPacket, t: float) -> None:
        """Stream-copy one access unit composed at room time `t`."""
        pts = max(self._last_pts + 1, int(round((t - self.start_t) * 90_000)))
        if self.video_frames and t > self.last_t:
            self.frame_s = min(t - self.last_t, 1.0)
        self._last_pts = pts
        self.last_t = max(self.last_t, t)
        out = av.Packet(packet.data)
        out.pts = out.dts = pts  # constrained baseline: no B-frames, decode order = display order
        out.time_base = VIDEO_TIME_BASE
        out.is_keyframe = packet.keyframe
        out.stream = self._video
        self._out.mux(out)
        self.video_frames += 1

    def write_audio(self, samples: AudioFrame, pts: int) -> None:
        """Encode one 20 ms mix frame at `pts` samples after the segment start (consecutive frames)."""
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        frame.time_base = Fraction(1, SAMPLE_RATE)
        for out in self._audio.encode(frame):
            self._out.mux(out)
        self.audio_frames += 1

    def close(self) -> int:
        """Flush the audio encoder and finish the file; returns its size."""
        for out in self._audio.encode(None):
            self._out.mux(out)
        self._out.close()
        return self.path.stat().st_size

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the file is discarded anyway
            self._out.close()
        self.path.unlink(missing_ok=True)


class RecordingWriter:
    """The writer thread of one recording: queued packets and mixes in, committed segments out.

    Producer side (event loop): :meth:`video` and :meth:`audio` only enqueue. ``finish()``
    commits the open segment and ends the thread.
    """

    def __init__(
        self,
        camera: str,
        store: SegmentStore,
        on_segment: Callable[[CommittedSegment], object],
        *,
        segment_seconds: float,
        now: Callable[[], float],
        wall_of: Callable[[float], float],
        request_keyframe: Callable[[], None],
        paused: Callable[[], bool] = lambda: False,
        stats: RecordingStats | None = None,
        audio_bitrate: int = AUDIO_BITRATE,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.camera = camera
        self.store = store
        self.on_segment = on_segment
        self.segment_seconds = segment_seconds
        self.policy = CutPolicy(segment_seconds - CUT_SLACK_S)
        self.now = now
        self.wall_of = wall_of
        self.request_keyframe = request_keyframe
        self.paused = paused
        self.stats = stats or RecordingStats()
        self.audio_bitrate = audio_bitrate
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(max_queued)
        self._thread = threading.Thread(target=self._run, name=f"confrec-{camera}", daemon=True)
        self._lost_video = False  # producer side: video was dropped, the writer has not been told yet
        self._template: tuple[Any, Any] | None = None
        self._segment: SegmentMuxer | None = None
        self._keyframe_asked = False
        self._audio_anchor: float | None = None  # room time of audio sample 0
        self._audio_next = 0  # sample index of the next mix frame
        self._pending: deque[tuple[int, AudioFrame]] = deque()  # (sample index, frame) awaiting video
        self._last_end_ms: int | None = None

    # ---- producer side (event loop) ----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def video(self, packet: EncodedPacket) -> None:
        """Room packet sink."""
        self._put(("video", packet))

    def audio(self, samples: AudioFrame, at: float) -> None:
        """Room mix listener."""
        self._put(("audio", samples, at))

    def _put(self, item: tuple[Any, ...]) -> None:
        try:
            if self._lost_video:  # tell the writer where the picture broke off
                self._queue.put_nowait(("lost",))
                self._lost_video = False
            self._queue.put_nowait(item)
        except queue.Full:  # the disk cannot keep up: lose media, never memory or the loop
            self.stats.dropped += 1
            if item[0] == "video":
                self._lost_video = True

    def finish(self, timeout: float | None = 30.0) -> None:
        """Commit the open segment and end the thread (blocking: call from a worker thread)."""
        if self._thread.is_alive():
            self._queue.put(("stop",))
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item[0] == "stop":
                    break
                try:
                    if item[0] == "video":
                        self._on_video(item[1])
                    elif item[0] == "lost":  # close what we have; restart at a key frame
                        self._close_segment(None)
                        self._ask_keyframe()
                    else:
                        self._on_audio(item[1], item[2])
                except Exception as exc:  # lose a segment, not the recording
                    log.exception("conference recording %s: segment failed", self.camera)
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    if self._segment is not None:
                        self._segment.abort()
                        self._segment = None
            self._close_segment(None)
        except Exception as exc:
            log.exception("conference recording %s: could not finish", self.camera)
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if self._segment is not None:
                self._segment.abort()
        finally:
            if self._template is not None:
                self._template[0].close()

    def _on_video(self, packet: EncodedPacket) -> None:
        t = packet.composed_at
        seg = self._segment
        if seg is None:
            if not packet.keyframe:
                return  # a segment starts with a key frame
            self._open_segment(packet, t)
        elif self.policy.should_cut(seg.start_t, t, packet.keyframe):
            self._close_segment(t)
            self._open_segment(packet, t)
        elif packet.keyframe and self._keyframe_asked:
            self._keyframe_asked = False  # a key frame came, but too early to cut on: ask again
        self._maybe_ask_keyframe()
        assert self._segment is not None
        self._segment.write_video(packet, t)
        self.stats.video_packets += 1
        self._flush_audio(t)

    def _maybe_ask_keyframe(self) -> None:
        seg = self._segment
        if seg is not None and not self._keyframe_asked and \
                self.now() >= seg.start_t + self.segment_seconds - KEYFRAME_LEAD_S:
            self._ask_keyframe()

    def _ask_keyframe(self) -> None:
        self._keyframe_asked = True
        self.stats.keyframe_requests += 1
        self.request_keyframe()

    def _open_segment(self, keyframe: EncodedPacket, t: float) -> None:
        if self._template is None:
            self._template = video_template(keyframe.data)
        path = self.store.staging_path(self.camera, f"{uuid.uuid4().hex}.mp4.part")
        self._segment = SegmentMuxer(path, self._template[1], t, self.audio_bitrate)
        self._keyframe_asked = False
        self._drop_audio_before(t)

    def _on_audio(self, samples: AudioFrame, at: float) -> None:
        t = at - FRAME_S  # the mix of a tick covers the 20 ms before it
        if self._audio_anchor is None:
            self._audio_anchor = t
        expected = self._audio_time(self._audio_next)
        if t - expected > AUDIO_SLACK_S:  # ticks were late or skipped: keep the timeline with silence
            for _ in range(int(round((t - expected) / FRAME_S))):
                self._queue_audio(np.zeros(FRAME_SAMPLES, np.int16))
        elif expected - t > AUDIO_SLACK_S:
            return  # running ahead of the clock (a burst of catch-up ticks): drop, keep in time
        self._queue_audio(samples)
        self._maybe_ask_keyframe()
        if self._pending and self._audio_time(self._pending[-1][0]) - self._audio_time(self._pending[0][0]) > AUDIO_HOLD_S:
            self._flush_audio(self._audio_time(self._pending[-1][0]) - AUDIO_HOLD_S)

    def _queue_audio(self, samples: AudioFrame) -> None:
        self._pending.append((self._audio_next, samples))
        self._audio_next += FRAME_SAMPLES

    def _audio_time(self, index: int) -> float:
        assert self._audio_anchor is not None
        return self._audio_anchor + index / SAMPLE_RATE

    def _drop_audio_before(self, t: float) -> None:
        while self._pending and self._audio_time(self._pending[0][0]) < t - 1e-6:
            self._pending.popleft()

    def _flush_audio(self, until_t: float) -> None:
        """Write pending mix frames that start before room time `until_t` into the open segment."""
        seg = self._segment
        while self._pending and self._audio_time(self._pending[0][0]) < until_t:
            index, samples = self._pending.popleft()
            if seg is None:
                continue
            pts = int(round((self._audio_time(index) - seg.start_t) * SAMPLE_RATE))
            if pts >= 0:
                seg.write_audio(samples, pts)
                self.stats.audio_frames += 1

    def _close_segment(self, next_start_t: float | None) -> None:
        """Finish the open segment (ending where the next begins, or after its last frame) and commit it."""
        seg = self._segment
        if seg is None:
            return
        end_t = next_start_t if next_start_t is not None else seg.last_t + seg.frame_s
        self._flush_audio(end_t)
        self._segment = None
        size = seg.close()
        if self.paused():  # disk full: never write what cannot be kept
            seg.path.unlink(missing_ok=True)
            self.stats.last_error = "recording paused: disk full"
            return
        start_ms = int(round(self.wall_of(seg.start_t) * 1000))
        end_ms = max(start_ms + 1, int(round(self.wall_of(end_t) * 1000)))
        if self._last_end_ms is not None and start_ms < self._last_end_ms:
            start_ms, end_ms = self._last_end_ms, max(end_ms, self._last_end_ms + 1)
        key = segment_key(self.camera, start_ms, end_ms)
        digest = sha256_file(seg.path)
        self.store.commit(seg.path, key)
        self._last_end_ms = end_ms
        assert self._template is not None
        codec = avc_codec_string(self._template[1].codec_context.extradata) + "," + AUDIO_CODECS
        self.stats.segments += 1
        self.stats.bytes += size
        self.stats.first_start_ms = self.stats.first_start_ms or start_ms
        self.stats.last_end_ms = end_ms
        self.on_segment(CommittedSegment(
            camera=self.camera, key=key, start_ms=start_ms, end_ms=end_ms, size=size, sha256=digest,
            codec=codec, width=int(self._template[1].codec_context.width or 0),
            height=int(self._template[1].codec_context.height or 0), has_audio=seg.audio_frames > 0,
            video_frames=seg.video_frames))


@dataclass
class _Active:
    handle: RecordingHandle
    conference: RunningConference
    subscription: Subscription
    writer: RecordingWriter
    watchdog: asyncio.Task[None] | None = None


class ConferenceRecorder:
    """Starts and stops conference recordings on this node (MCU and recorder in one process)."""

    def __init__(self, conferences: ConferenceService, recorder: RecorderService, bus: Bus, audit: AuditLog,
                 options: RecordingOptions | None = None, clock: Callable[[], float] = time.time) -> None:
        self.conferences = conferences
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
            record = await self.conferences.get(conference)
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
            room = conf.room
            key = choose_encoder(room, self.options.width, self.options.height)
            shared = key in room.encoder_keys
            mono_ref, wall_ref = room.clock.monotonic(), self.clock()
            cause = self._stop_cause.pop(camera, "conference not recorded")
            try:
                on_segment = await self.recorder.attach_source(camera, cause)
            except ValueError as exc:
                raise ConferenceRecordingError("unavailable", f"无法录制: {exc}") from None
            handle = RecordingHandle(conference_id, camera, actor, wall_ref, key, shared)
            writer = RecordingWriter(
                camera, self.recorder.store, on_segment,
                segment_seconds=self.options.segment_seconds or self.recorder.config.segment_seconds,
                now=room.clock.monotonic, wall_of=lambda t: wall_ref + (t - mono_ref),
                request_keyframe=lambda: subscription.request_keyframe(),
                paused=lambda: self.recorder.recording_paused,
                stats=handle.stats, audio_bitrate=self.options.audio_bitrate)
            try:
                subscription = room.subscribe_view(BROADCAST, writer.video, codec="h264", width=key.width,
                                                   height=key.height, single_nal=key.single_nal)
            except RoomError as exc:
                raise ConferenceRecordingError("ended", str(exc)) from None
            writer.start()
            room.add_mix_listener(writer.audio)
            subscription.request_keyframe()  # segments start on a key frame: don't wait for the periodic one
            active = _Active(handle, conf, subscription, writer)
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
            room = active.conference.room
            active.subscription.close()
            room.remove_mix_listener(active.writer.audio)
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

    async def _running_conference(self, conference_id: str) -> RunningConference:
        conf = self.conferences.running(conference_id)
        if conf is not None and not conf.room.ended:
            return conf
        record = await self.conferences.get(conference_id)
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
            ended = active.conference.room.ended or self.conferences.running(conference_id) is not active.conference
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
