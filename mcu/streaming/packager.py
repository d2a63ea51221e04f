"""One conference's live stream: the broadcast view's encoded H.264 and the full mix into LL-HLS.

* **Video is never re-encoded.** The packager receives the packets of the room's shared H.264
  encoder of the broadcast view (Annex B access units; key frames carry SPS/PPS) and repackages
  them into fragmented MP4 (:mod:`mcu.streaming.fmp4`): the first key frame's SPS/PPS describe
  the stream (the init segment).
* **Audio is the full mix** of every unmuted site, encoded once per stream to AAC-LC 48 kHz
  mono (what every HLS player and Media Source Extensions play).
* **Low-Latency HLS parts.** Media is cut into partial segments of ``part_seconds`` (0.3 s: 8
  frames at 25 fps): a part closes when the frame that arrives is ``part_seconds`` or more past
  the part's first frame, so its last frame's duration is known. Segments start on key frames
  at least ``0.75 × segment_seconds`` after the segment's start; the shared encoder makes a
  periodic key frame only every 10 s, so the packager asks it for one as each multiple of
  ``segment_seconds`` passes (rate-limited per encoder like any receiver's PLI). A segment that
  would grow past its target duration is cut at a part boundary without a key frame (its first
  part is then not INDEPENDENT). Each part is handed to ``publish`` (called on the packager's
  thread; the service moves it to the event loop, where :class:`~mcu.streaming.llhls.LivePlaylist`
  lists it). Nothing touches the disk.
* **Timing**: video at its composition time, audio at its mix tick, both on the room clock, so
  the two tracks stay within a tick of each other. A mix clock that falls behind is filled with
  silence; one running ahead is dropped. ``wall_offset`` turns room time into Unix time for
  EXT-X-PROGRAM-DATE-TIME (the composition time of each segment's first frame).

Threads: packets and mixes arrive on the event loop, where :meth:`HlsPackager.video` and
:meth:`~HlsPackager.audio` only queue them (bounded: a stalled packager loses media, never memory).
The packager's thread builds fragments and encodes the audio.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np

from sip_gateway.rtp.media_primitives import (
    FRAME_SAMPLES,
    FRAME_SECONDS,
    SAMPLE_RATE,
    AudioFrame,
    EncodedPacket,
)

from . import fmp4
from .llhls import target_duration_for
from .names import check_epoch

log = logging.getLogger(__name__)

AUDIO_BITRATE = 64_000
AAC_FRAME = 1024
# Re-ask when the asked-for key frame has not come after this long (the encoder's rate limit ate it).
KEYFRAME_RETRY_S = 1.0
AUDIO_SLACK_S = 0.1
MAX_QUEUED = 1500  # ~20 s of media
PART_SECONDS = 0.3
PART_TARGET = 0.4  # declared EXT-X-PART-INF:PART-TARGET (a part closes at 0.3 s + one frame's jitter)


@dataclass(frozen=True)
class PartOut:
    """A finished part, as the packager hands it over."""

    data: bytes
    duration: float
    independent: bool
    starts_segment: bool
    date: float  # Unix seconds of its first frame's composition
    composed_at: float  # room time of its first frame


@dataclass
class PackagerStats:
    """Updated by the packager thread; read by anyone."""

    video_packets: int = 0
    audio_frames: int = 0
    parts: int = 0
    dropped: int = 0
    keyframe_requests: int = 0
    forced_cuts: int = 0
    started_at: float | None = None  # room time of the first key frame (the stream's time 0)
    last_video_at: float | None = None  # room time of the newest frame packaged
    # seconds from a part's last frame's composition to its publication, over the last ~10 s
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=40))
    last_error: str | None = None


class HlsPackager:
    """The packager of one stream: queued packets and mixes in, LL-HLS parts out."""

    def __init__(self, epoch: str, *, now: Callable[[], float], wall_offset: float,
                 request_keyframe: Callable[[], None], publish: Callable[[PartOut], None],
                 segment_seconds: float = 2.0, part_seconds: float = PART_SECONDS, part_target: float = PART_TARGET,
                 audio_bitrate: int = AUDIO_BITRATE, max_queued: int = MAX_QUEUED) -> None:
        if not 1.0 <= segment_seconds <= 6.0:
            raise ValueError("segment_seconds must be between 1 and 6")
        if not 0.1 <= part_seconds < part_target <= segment_seconds / 2:
            raise ValueError("part_seconds must be between 0.1 s and part_target, part_target at most half a segment")
        self.epoch = check_epoch(epoch)
        self.now = now
        self.wall_offset = wall_offset
        self.request_keyframe = request_keyframe
        self.publish = publish
        self.segment_seconds = segment_seconds
        self.part_seconds = part_seconds
        self.target_duration = target_duration_for(segment_seconds)
        self.part_limit = part_target - 0.01  # no part lasts longer than the declared PART-TARGET
        self.audio_bitrate = audio_bitrate
        self.stats = PackagerStats()
        self.init: bytes | None = None  # the init segment, once the first key frame came
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(max_queued)
        self._thread = threading.Thread(target=self._run, name=f"hls-{epoch}", daemon=True)
        self._aac: Any = None
        self._start_t = 0.0
        self._segment_t = 0.0  # room time of the current segment's first frame
        self._last_key_t = 0.0
        self._asked_at: float | None = None
        self._sequence = 0
        # the part being built: (sample, room time, key frame)
        self._frames: list[tuple[bytes, float, bool]] = []
        self._next_starts_segment = True
        self._video_tick = 0  # decode time (90 kHz) of the part's first frame
        self._audio_packets: list[bytes] = []
        self._audio_tick = 0  # decode time (48 kHz) of the first audio packet not yet packaged
        self._audio_anchor: float | None = None
        self._audio_next = 0  # samples written since the anchor

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
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1

    def finish(self, timeout: float | None = 10.0) -> None:
        """End the thread (blocking: call from a worker thread)."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(("stop",), timeout=timeout)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- packager thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._part_deadline())
                except queue.Empty:
                    if self._frames and self.now() >= self._part_start + self.part_limit:
                        # no frame came in time (a slow compositor): close the part at its limit
                        self._close_part(self._part_start + self.part_limit)
                    continue
                if item[0] == "stop":
                    break
                if item[0] == "video":
                    self._on_video(item[1])
                else:
                    self._on_audio(item[1], item[2])
        except Exception as exc:  # the stream stops; the service notices (alive is False)
            log.exception("live stream %s failed", self.epoch)
            self.stats.last_error = f"{type(exc).__name__}: {exc}"

    def _part_deadline(self) -> float | None:
        """Seconds to wait for the next item before the part being built must close (None: no part)."""
        if not self._frames:
            return None
        return max(0.005, self._part_start + self.part_limit - self.now())

    @property
    def _part_start(self) -> float:
        """Room time where the part being built starts: where the previous one ended."""
        return self._start_t + self._video_tick / fmp4.VIDEO_TIMESCALE

    def _open(self, keyframe: EncodedPacket) -> None:
        sets = fmp4.parameter_sets(keyframe.data)
        if sets is None:
            raise ValueError("key frame without SPS/PPS: cannot describe the stream")
        aac = av.CodecContext.create("aac", "w")
        aac.sample_rate, aac.layout, aac.format = SAMPLE_RATE, "mono", "fltp"
        aac.bit_rate, aac.time_base = self.audio_bitrate, Fraction(1, SAMPLE_RATE)
        aac.open()
        self._aac = aac
        config = aac.extradata
        if not config:
            raise ValueError("the AAC encoder gave no AudioSpecificConfig")
        self.init = fmp4.init_segment(sets[0], sets[1], keyframe.width, keyframe.height, bytes(config),
                                      self.audio_bitrate)
        self._start_t = self._segment_t = self._last_key_t = keyframe.composed_at
        self.stats.started_at = keyframe.composed_at

    def _tick(self, t: float) -> int:
        return int(round((t - self._start_t) * fmp4.VIDEO_TIMESCALE))

    def _on_video(self, packet: EncodedPacket) -> None:
        t = packet.composed_at
        if self._aac is None:
            if not packet.keyframe:
                self._ask_keyframe(t)
                return
            self._open(packet)
        elif self._frames and t <= self._frames[-1][1]:
            t = self._frames[-1][1] + 1 / fmp4.VIDEO_TIMESCALE  # never backwards
        if self._frames:
            part_start = self._part_start
            new_segment = packet.keyframe and t - self._segment_t >= 0.75 * self.segment_seconds
            # EXTINF rounds to at most the target duration: cut at a part boundary before it cannot
            forced = (t - self._segment_t >= self.target_duration + 0.4 - self.part_seconds
                      and t - part_start >= self.part_seconds)
            if new_segment or forced or t - part_start >= self.part_seconds:
                self._close_part(min(t, part_start + self.part_limit))
                if new_segment or forced:
                    self.stats.forced_cuts += 0 if new_segment else 1
                    self._next_starts_segment = True
                    self._segment_t = self._part_start
        if packet.keyframe:
            self._last_key_t, self._asked_at = t, None
        elif self.now() >= self._segment_t + self.segment_seconds:
            self._ask_keyframe(self.now())
        self._frames.append((fmp4.annexb_to_sample(packet.data), t, packet.keyframe))
        self.stats.video_packets += 1
        self.stats.last_video_at = t

    def _close_part(self, until: float) -> None:
        """Package the frames so far and the audio encoded so far. The part runs from where the
        previous one ended to ``until`` (at least one tick past its last frame): its first frame
        starts at the part's start (shown that much early after a stall), its last lasts until
        ``until``, so the track's timeline has no gap and never drifts from the room clock."""
        frames = self._frames
        ticks = [self._tick(f[1]) for f in frames]
        ticks[0] = self._video_tick
        ticks.append(max(self._tick(until), ticks[-1] + 1))
        for i in range(1, len(ticks)):
            ticks[i] = max(ticks[i], ticks[i - 1] + 1)
        samples = [fmp4.Sample(data, ticks[i + 1] - ticks[i], key) for i, (data, _, key) in enumerate(frames)]
        audio = [fmp4.Sample(a, AAC_FRAME) for a in self._audio_packets]
        self._sequence += 1
        data = fmp4.fragment(self._sequence, samples, self._video_tick, audio, self._audio_tick)
        first_t = self._part_start
        self._video_tick = ticks[-1]
        self._audio_tick += AAC_FRAME * len(audio)
        self._audio_packets = []
        part = PartOut(data, (ticks[-1] - ticks[0]) / fmp4.VIDEO_TIMESCALE, frames[0][2],
                       self._next_starts_segment, self.wall_offset + first_t, first_t)
        self._frames = []
        self._next_starts_segment = False
        self.stats.parts += 1
        self.stats.lags.append(self.now() - frames[-1][1])
        self.publish(part)

    def _ask_keyframe(self, now: float) -> None:
        if self._asked_at is None or now - self._asked_at >= KEYFRAME_RETRY_S:
            self._asked_at = now
            self.stats.keyframe_requests += 1
            self.request_keyframe()

    def _on_audio(self, samples: AudioFrame, at: float) -> None:
        if self._aac is None:
            return
        t = at - FRAME_SECONDS  # the mix of a tick covers the 20 ms before it
        if t < self._start_t:
            return
        if self._audio_anchor is None:
            self._audio_anchor = t
            self._audio_tick = int(round((t - self._start_t) * SAMPLE_RATE))
        expected = self._audio_anchor + self._audio_next / SAMPLE_RATE
        if t - expected > AUDIO_SLACK_S:  # late or skipped ticks: keep the timeline with silence
            for _ in range(int(round((t - expected) / FRAME_SECONDS))):
                self._write_audio(np.zeros(FRAME_SAMPLES, np.int16))
        elif expected - t > AUDIO_SLACK_S:
            return  # running ahead (catch-up ticks): drop
        self._write_audio(samples)

    def _write_audio(self, samples: AudioFrame) -> None:
        floats = (samples.astype(np.float32) / 32768.0).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(floats, format="fltp", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._audio_next
        frame.time_base = Fraction(1, SAMPLE_RATE)
        self._audio_next += FRAME_SAMPLES
        for out in self._aac.encode(frame):
            self._audio_packets.append(bytes(out))
        self.stats.audio_frames += 1
