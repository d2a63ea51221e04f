"""Pulling one camera over RTSP (TCP) with PyAV and turning it into committed segments.

One thread per camera (PyAV's demuxing and muxing release the GIL in C, and a blocked
network read must not stall other cameras or the event loop). The thread reconnects
with exponential back-off; a disconnect closes the open segment cleanly, so the outage
shows as a gap between two segments (reported through `on_gap` once the camera is
back), never as a stream of errors. Health is kept per camera for the console.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import av

from recorder.segmenter import CutPolicy, SegmentFile, SegmentWriter, StreamClock, seconds
from recorder.store import SegmentStore, check_camera_id, segment_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraConfig:
    """One camera from the site plan."""

    camera_id: str
    url: str
    label: str = ""
    hall: str = ""
    window: str = ""
    username: str | None = None
    password: str | None = None
    record_audio: bool = True

    def __post_init__(self) -> None:
        check_camera_id(self.camera_id)
        if urlsplit(self.url).scheme not in ("rtsp", "rtsps", "file", ""):
            raise ValueError(f"camera {self.camera_id}: unsupported URL scheme in {self.url!r}")

    def source_url(self) -> str:
        """URL with credentials filled in (never logged)."""
        if not self.username:
            return self.url
        parts = urlsplit(self.url)
        cred = quote(self.username, safe="") + (":" + quote(self.password or "", safe=""))
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, f"{cred}@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class CommittedSegment:
    """A segment durably in the store, ready to be logged and indexed."""

    camera: str
    key: str
    start_ms: int
    end_ms: int
    size: int
    sha256: str
    codec: str
    width: int
    height: int
    has_audio: bool
    video_frames: int
    # A conference recording's second video track (the content stream): the spans it shows content
    # (wall-clock ms, within the segment) and its RFC 6381 codec string; empty for everything else.
    content_spans: tuple[tuple[int, int], ...] = ()
    content_codec: str = ""


@dataclass(frozen=True)
class Gap:
    """A span without recording, and why."""

    camera: str
    start_ms: int
    end_ms: int
    cause: str


@dataclass
class CameraHealth:
    """What the console shows per camera."""

    camera: str
    state: str = "starting"  # starting | connecting | recording | disconnected | error | stopped
    fps: float = 0.0
    bitrate_kbps: float = 0.0
    last_frame_ms: int | None = None
    last_error: str | None = None
    reconnects: int = 0
    segments: int = 0
    video_frames: int = 0
    _window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256), repr=False)

    def frame(self, now: float, nbytes: int) -> None:
        self.video_frames += 1
        self.last_frame_ms = int(now * 1000)
        self._window.append((now, nbytes))
        while self._window and now - self._window[0][0] > 2.0:
            self._window.popleft()
        if len(self._window) >= 2:
            span = self._window[-1][0] - self._window[0][0]
            if span > 0:
                self.fps = (len(self._window) - 1) / span
                self.bitrate_kbps = sum(b for _, b in self._window) * 8 / span / 1000

    def snapshot(self) -> CameraHealth:
        return replace(self, _window=deque(maxlen=1))


def sha256_file(path: Any) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# Retry every second for the first 15 s (a camera reboot or a re-plugged cable should
# leave a gap as long as the outage, not longer), then back off to one attempt every 30 s
# for a camera that is really gone. A refused connection costs next to nothing.
# A live camera's frames wait in socket buffers while we are busy; about a second of
# 4 Mbit/s video fits, so a frame handled later than this would have been dropped.
LATE_S = 1.0
BACKOFF_S = (1.0,) * 15 + (2.0, 4.0, 8.0, 15.0, 30.0)


class CameraWorker:
    """Records one camera in its own thread until `stop()`."""

    def __init__(
        self,
        config: CameraConfig,
        store: SegmentStore,
        on_segment: Callable[[CommittedSegment], object],
        on_gap: Callable[[Gap], object],
        policy: CutPolicy | None = None,
        clock: Callable[[], float] = time.time,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        realtime: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.on_segment = on_segment
        self.on_gap = on_gap
        self.policy = policy or CutPolicy()
        self.clock = clock
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        # A file source read at its own pace, like a live camera (simulated cameras, benchmarks).
        self.realtime = realtime
        self.max_lag_s = 0.0  # how far behind real time a paced source fell (benchmarks: frame loss)
        self.late_frames = 0  # video frames handled more than LATE_S behind schedule
        self.health = CameraHealth(config.camera_id)
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{config.camera_id}", daemon=True)
        self._last_end_ms: int | None = None  # end of the last committed segment in this run
        self._gap_cause = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 15.0) -> None:
        """Close the open segment (committed: a clean stop loses nothing) and end the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def pause(self) -> None:
        """Keep the connection but discard segments (disk full): never write what cannot be kept."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.health.state = "connecting"
            got_frames = False
            try:
                got_frames = self._record_connection()
            except av.FFmpegError as exc:
                self._fail(f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a broken camera must never take the recorder down
                log.exception("camera %s: unexpected error", self.config.camera_id)
                self._fail(f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                break
            attempt = 0 if got_frames else attempt + 1
            if got_frames and self.health.state == "recording":
                self.health.state = "disconnected"
                self._gap_cause = self._gap_cause or "stream ended"
            self.health.reconnects += 1
            self._stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        self.health.state = "stopped"

    def _pace(self, start: tuple[float, float] | None, t: float) -> tuple[float, float]:
        """Sleep until stream time `t` is due; record how late we are when we cannot keep up."""
        mono = time.monotonic()
        if start is None:
            return (mono, t)
        due = start[0] + (t - start[1])
        if due > mono:
            self._stop.wait(due - mono)
        else:
            lag = mono - due
            self.max_lag_s = max(self.max_lag_s, lag)
            if lag > LATE_S:
                self.late_frames += 1
        return start

    def _fail(self, message: str) -> None:
        self.health.state = "error" if self.health.last_frame_ms is None else "disconnected"
        if message != self.health.last_error:  # log changes, not every retry: no error loop in the logs
            log.warning("camera %s: %s", self.config.camera_id, message)
        self.health.last_error = message
        self._gap_cause = message

    def _record_connection(self) -> bool:
        """Record until the stream ends, fails or we are stopped; True if any video frame arrived."""
        options = {"rtsp_transport": "tcp"} if self.config.url.startswith("rtsp") else {}
        container = av.open(
            self.config.source_url(), options=options, timeout=(self.open_timeout_s, self.read_timeout_s)
        )
        writer: SegmentWriter | None = None
        got_frames = False
        try:
            if not container.streams.video:
                raise ValueError("stream has no video track")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio and self.config.record_audio else None
            streams = [video] + ([audio] if audio is not None else [])
            wall0: float | None = None  # wall clock at the first key frame
            t0 = 0.0  # its (continuous) stream time
            clocks = {stream.index: StreamClock() for stream in streams}
            pace_start: tuple[float, float] | None = None  # (monotonic, stream time) of the first packet
            for packet in container.demux(streams):
                if self._stop.is_set():
                    break
                if packet.dts is None or packet.pts is None:
                    continue  # flush packet
                is_video = packet.stream.index == video.index
                t_raw = seconds(packet.pts, packet.stream.time_base)
                if self.realtime and is_video:
                    pace_start = self._pace(pace_start, t_raw)
                now = self.clock()
                clock = clocks[packet.stream.index]
                t = clock.map(t_raw, None if wall0 is None else t0 + (now - wall0))
                if is_video:
                    self.health.frame(now, packet.size)
                    if not got_frames:
                        got_frames = True
                        self.health.state = "recording"
                        self.health.last_error = None
                    if wall0 is None:
                        if not packet.is_keyframe:
                            continue  # a segment must start with a key frame
                        wall0, t0 = now, t
                    if writer is not None and self.policy.should_cut(writer.start_s, t, packet.is_keyframe):
                        self._finish(writer, writer.close(end_s=t), wall0, t0)
                        writer = None
                    if writer is None:
                        name = f"{uuid.uuid4().hex}.mp4.part"
                        writer = SegmentWriter(
                            self.store.staging_path(self.config.camera_id, name), video, audio, t
                        )
                elif writer is None:
                    continue  # audio before the first key frame
                writer.write(packet, t, t - t_raw, clocks[video.index].step)
            else:
                self._gap_cause = "stream ended"
            if writer is not None and wall0 is not None:
                self._finish(writer, writer.close(), wall0, t0)
                writer = None
        finally:
            if writer is not None:
                # Closing what was received keeps every frame we got before the failure.
                try:
                    if wall0 is not None:
                        self._finish(writer, writer.close(), wall0, t0)
                    else:
                        writer.abort()
                except Exception:
                    log.exception("camera %s: could not close the open segment", self.config.camera_id)
                    writer.abort()
            container.close()
        return got_frames

    def _finish(self, writer: SegmentWriter, seg: SegmentFile, wall0: float, t0: float) -> None:
        """Hash, commit, and report a closed segment (and the gap before it, if any)."""
        if seg.video_frames == 0 or self._paused.is_set():
            seg.path.unlink(missing_ok=True)
            if self._paused.is_set():
                self._gap_cause = "recording paused: disk full"
                self.health.state = "paused"
            return
        start_ms = int(round((wall0 + seg.start_s - t0) * 1000))
        end_ms = max(start_ms + 1, int(round((wall0 + seg.end_s - t0) * 1000)))
        if self._last_end_ms is not None:
            if start_ms < self._last_end_ms:
                # Re-mapping after a reconnect can overlap by a few ms; segments must not.
                shift = self._last_end_ms - start_ms
                start_ms, end_ms = start_ms + shift, end_ms + shift
            elif start_ms - self._last_end_ms > 500:
                self.on_gap(Gap(self.config.camera_id, self._last_end_ms, start_ms, self._gap_cause or "no data"))
        key = segment_key(self.config.camera_id, start_ms, end_ms)
        digest = sha256_file(seg.path)
        self.store.commit(seg.path, key)
        self._last_end_ms = end_ms
        self._gap_cause = ""
        self.health.segments += 1
        self.on_segment(
            CommittedSegment(
                camera=self.config.camera_id,
                key=key,
                start_ms=start_ms,
                end_ms=end_ms,
                size=seg.bytes,
                sha256=digest,
                codec=seg.codec,
                width=seg.width,
                height=seg.height,
                has_audio=seg.has_audio,
                video_frames=seg.video_frames,
            )
        )
