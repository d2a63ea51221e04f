"""The writer of one conference recording: encoded broadcast video and the full mix in, fMP4 segments out.

* **Video is never re-encoded.** The writer receives the packets of the room's shared H.264
  encoder of the broadcast view and stream-copies them: Annex B access units whose key frames
  carry SPS/PPS (x264 ``repeat-headers``), so the first key frame describes the stream (codec
  parameters and extradata come from it); the MP4 muxer stores them as avcC and
  length-prefixed NAL units.
* **Audio is the full mix** of every unmuted site, encoded to AAC-LC 48 kHz mono (what Media
  Source Extensions play everywhere).
* **Segments** are ``segment_seconds`` long, cut on key frames. The shared encoder makes a
  periodic key frame only every 10 s, so the writer asks for one when a segment is due (by the
  room clock: the key frame lands on the next composed frame) and cuts at the first key frame
  from ``CUT_SLACK_S`` before the due time.
* **Timing**: video frames are placed at their composition time, audio at its mix tick, both
  on the room's clock, mapped once to the wall clock, so consecutive segments are exactly
  contiguous and audio stays within a tick of the picture.

Threads: packets and mixes arrive on the event loop, where :class:`RecordingWriter` only queues
them. Its thread muxes, encodes the audio, commits each file (write, fsync, rename) and hands it
on (to :class:`recorder.service.RecorderService`: log leaf + index row).
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from recorder.ingest import CommittedSegment, sha256_file
from recorder.segmenter import MOVFLAGS, CutPolicy, avc_codec_string
from recorder.store import SegmentStore, segment_key
from sip_gateway.rtp.media_primitives import (
    AUDIO_TIME_BASE,
    FRAME_SAMPLES,
    FRAME_SECONDS,
    SAMPLE_RATE,
    VIDEO_CLOCK,
    VIDEO_TIME_BASE,
    AudioFrame,
    EncodedPacket,
)

log = logging.getLogger(__name__)

AUDIO_BITRATE = 64_000
AUDIO_CODECS = "mp4a.40.2"  # AAC-LC
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
# The content encoder runs at a low frame rate (every 2nd tick of 25 fps): a content frame lasts this long
# unless the next one comes sooner, and a pause longer than CONTENT_PAUSE_S ends a content span.
CONTENT_FRAME_S = 0.08
CONTENT_PAUSE_S = 1.0
# Items (video packets and audio ticks) queued for the writer before we drop: ~40 s of media.
MAX_QUEUED = 3000


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


def video_template(keyframe: bytes) -> tuple[Any, Any]:
    """(input container, its video stream): codec parameters parsed from an Annex B key frame.

    The container must stay open while the stream serves as a template for output streams.
    """
    container = av.open(io.BytesIO(keyframe), format="h264")
    if not container.streams.video or not container.streams.video[0].codec_context.extradata:
        container.close()
        raise ValueError("key frame without SPS/PPS: cannot describe the stream")
    return container, container.streams.video[0]


@dataclass
class _Content:
    """The content track of the open segment: stream-copied packets of the shared content encoder."""

    packets: list[tuple[int, EncodedPacket]] = field(default_factory=list)  # (pts, packet)
    spans: list[list[float]] = field(default_factory=list)  # [start, end] room times, while content showed
    last_pts: int = -1


class SegmentMuxer:
    """One fragmented-MP4 segment: stream-copied H.264 (people), AAC encoded from the mix and, when
    someone presented, a second stream-copied H.264 track (the content encoder's output).

    Media are collected while the segment is open and muxed when it closes: the content track can
    start in the middle of a segment, and an MP4 header names every track before the first packet
    (a few MB at most: ``segment_seconds`` of two H.264 streams).
    """

    def __init__(self, path: Path, template: Any, start_t: float, audio_bitrate: int) -> None:
        self.path = path
        self.template = template
        self.start_t = start_t
        self.audio_bitrate = audio_bitrate
        self.video_frames = 0
        self.audio_frames = 0
        self._last_pts = -1
        self.last_t = start_t
        self.frame_s = 0.04
        self._video: list[tuple[int, EncodedPacket]] = []
        self._audio: list[tuple[int, AudioFrame]] = []
        self.content = _Content()

    def write_video(self, packet: EncodedPacket, t: float) -> None:
        """Stream-copy one access unit composed at room time `t`."""
        pts = max(self._last_pts + 1, int(round((t - self.start_t) * VIDEO_CLOCK)))
        if self.video_frames and t > self.last_t:
            self.frame_s = min(t - self.last_t, 1.0)
        self._last_pts = pts
        self.last_t = max(self.last_t, t)
        self._video.append((pts, packet))
        self.video_frames += 1

    def write_audio(self, samples: AudioFrame, pts: int) -> None:
        """Encode one 20 ms mix frame at `pts` samples after the segment start (consecutive frames)."""
        self._audio.append((pts, samples))
        self.audio_frames += 1

    def write_content(self, packet: EncodedPacket, t: float, *, new_span: bool) -> None:
        """Stream-copy one content access unit shown from room time `t` (`new_span`: content
        (re)started here, after a pause or at the segment's start)."""
        c = self.content
        pts = max(c.last_pts + 1, int(round((t - self.start_t) * VIDEO_CLOCK)))
        c.last_pts = pts
        c.packets.append((pts, packet))
        at = self.start_t + pts / VIDEO_CLOCK
        if new_span or not c.spans:
            c.spans.append([at, at + CONTENT_FRAME_S])
        else:
            c.spans[-1][1] = at + CONTENT_FRAME_S

    @property
    def has_content(self) -> bool:
        return bool(self.content.packets)

    def close(self, end_t: float, content_template: Any | None = None) -> int:
        """Mux everything and finish the file; returns its size."""
        # avoid_negative_ts=disabled: AAC's priming samples (pts -1024) are cut by the audio track's
        # edit list; the default would instead shift every track, delaying the picture by 21 ms.
        out = av.open(str(self.path), mode="w", format="mp4",
                      options={"movflags": MOVFLAGS, "avoid_negative_ts": "disabled"})
        try:
            video = out.add_stream_from_template(self.template)
            video.time_base = VIDEO_TIME_BASE
            audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            audio.bit_rate = self.audio_bitrate
            audio.time_base = AUDIO_TIME_BASE
            content: Any = None
            if self.has_content and content_template is not None:
                content = out.add_stream_from_template(content_template)
                content.time_base = VIDEO_TIME_BASE
            for span in self.content.spans:  # a span ends with the segment at the latest
                span[1] = min(span[1], end_t)
            # One time-ordered pass (the muxer interleaves; this keeps its buffering small).
            events: list[tuple[float, int, Any]] = [(pts / VIDEO_CLOCK, 0, (pts, packet)) for pts, packet in self._video]
            events += [(pts / SAMPLE_RATE, 1, (pts, samples)) for pts, samples in self._audio]
            if content is not None:
                events += [(pts / VIDEO_CLOCK, 2, (pts, packet)) for pts, packet in self.content.packets]
            events.sort(key=lambda e: (e[0], e[1]))
            for _, kind, item in events:
                if kind == 1:
                    frame = av.AudioFrame.from_ndarray(item[1].reshape(1, -1), format="s16", layout="mono")
                    frame.sample_rate = SAMPLE_RATE
                    frame.pts = item[0]
                    frame.time_base = AUDIO_TIME_BASE
                    for packet in audio.encode(frame):
                        out.mux(packet)
                    continue
                pts, packet = item
                muxed = av.Packet(packet.data)
                muxed.pts = muxed.dts = pts  # constrained baseline: no B-frames, decode order = display order
                muxed.time_base = VIDEO_TIME_BASE
                muxed.is_keyframe = packet.keyframe
                muxed.stream = video if kind == 0 else content
                out.mux(muxed)
            for packet in audio.encode(None):
                out.mux(packet)
        except BaseException:
            with contextlib.suppress(Exception):
                out.close()
            raise
        out.close()
        return self.path.stat().st_size

    def abort(self) -> None:
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
        request_content_keyframe: Callable[[], None] = lambda: None,
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
        self.request_content_keyframe = request_content_keyframe
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
        self._content_template: tuple[Any, Any] | None = None
        self._content_last_t: float | None = None  # room time of the last content frame written
        self._content_key_asked = False

    # ---- producer side (event loop) ----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def video(self, packet: EncodedPacket) -> None:
        """Room packet sink."""
        self._put(("video", packet))

    def audio(self, samples: AudioFrame, at: float) -> None:
        """Room mix listener."""
        self._put(("audio", samples, at))

    def content(self, packet: EncodedPacket) -> None:
        """Content encoder packet sink (the second video track)."""
        self._put(("content", packet))

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
                    elif item[0] == "content":
                        self._on_content(item[1])
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
            for template in (self._template, self._content_template):
                if template is not None:
                    template[0].close()

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

    def _on_content(self, packet: EncodedPacket) -> None:
        """A content frame: into the open segment's content track, which starts on a content key frame.

        Where content was already showing at the cut, the segment's first content key frame is
        placed at the segment's start (it follows within a content frame or two of the request made
        at the cut), so the content track has no hole at segment boundaries.
        """
        seg = self._segment
        t = packet.composed_at
        if packet.keyframe and self._content_template is None:
            self._content_template = video_template(packet.data)
        if seg is None or t < seg.start_t:
            return  # before the first segment, or composed before the cut: the closed segment's
        continuing = self._content_last_t is not None and seg.start_t - self._content_last_t <= CONTENT_PAUSE_S
        if not seg.has_content:
            if not packet.keyframe or self._content_template is None:
                if not self._content_key_asked:
                    self._content_key_asked = True
                    self.request_content_keyframe()
                return
            self._content_key_asked = False
            placed = seg.start_t if continuing and t - seg.start_t <= CONTENT_PAUSE_S else t
            seg.write_content(packet, placed, new_span=True)
        else:
            assert self._content_last_t is not None
            seg.write_content(packet, t, new_span=t - self._content_last_t > CONTENT_PAUSE_S)
        self._content_last_t = t

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
        if self._content_last_t is not None and t - self._content_last_t <= CONTENT_PAUSE_S:
            self._content_key_asked = True  # content is showing: its track in this segment needs a key frame
            self.request_content_keyframe()
        self._drop_audio_before(t)

    def _on_audio(self, samples: AudioFrame, at: float) -> None:
        t = at - FRAME_SECONDS  # the mix of a tick covers the 20 ms before it
        if self._audio_anchor is None:
            self._audio_anchor = t
        expected = self._audio_time(self._audio_next)
        if t - expected > AUDIO_SLACK_S:  # ticks were late or skipped: keep the timeline with silence
            for _ in range(int(round((t - expected) / FRAME_SECONDS))):
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
        size = seg.close(end_t, self._content_template[1] if self._content_template is not None else None)
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
        content_spans: tuple[tuple[int, int], ...] = ()
        content_codec = ""
        if seg.has_content and self._content_template is not None:
            spans = [(max(start_ms, int(round(self.wall_of(a) * 1000))), min(end_ms, int(round(self.wall_of(b) * 1000))))
                     for a, b in seg.content.spans]
            content_spans = tuple((a, b) for a, b in spans if b > a)
            content_codec = avc_codec_string(self._content_template[1].codec_context.extradata)
        self.stats.segments += 1
        self.stats.bytes += size
        self.stats.first_start_ms = self.stats.first_start_ms or start_ms
        self.stats.last_end_ms = end_ms
        self.on_segment(CommittedSegment(
            camera=self.camera, key=key, start_ms=start_ms, end_ms=end_ms, size=size, sha256=digest,
            codec=codec, width=int(self._template[1].codec_context.width or 0),
            height=int(self._template[1].codec_context.height or 0), has_audio=seg.audio_frames > 0,
            video_frames=seg.video_frames, content_spans=content_spans, content_codec=content_codec))

