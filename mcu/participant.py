"""A site in a room, and the small interface legs use to move media in and out.

Legs (WebRTC, SIP, H.323) call, from any thread:

* ``push_audio(samples, arrival)`` with one 20 ms int16 frame (see :mod:`mcu.media`);
* ``push_video(frame, arrival)`` with a decoded ``av.VideoFrame`` (or RGB ndarray);
* ``pull_audio()`` to take the next N-1 mix frame for this site (``None`` if none is ready).

Encoded video is received with :meth:`mcu.room.Room.subscribe_video`, which follows the
site's current view (broadcast, select-view, ...) across chair operations.

Every queue here is bounded and drops the oldest item, so a stalled source or a listener
that never pulls cannot block the mixer or grow memory.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import av
import numpy as np

from sip_gateway.rtp.media_primitives import AudioFrame

from .clock import Clock
from .media import check_audio_frame, video_frame_from_rgb
from .pane_size import DecodeMode, decode_mode

AUDIO_IN_DEPTH = 5  # 100 ms of input jitter absorbed per source
AUDIO_OUT_DEPTH = 10  # 200 ms of mixes kept for a slow listener
AUDIO_PREFILL = 2  # after an underrun, wait for 40 ms of audio before playing the source again


@dataclass(frozen=True)
class VideoSample:
    """The newest decoded frame of a source, stamped on arrival."""

    frame: av.VideoFrame
    seq: int
    arrival: float


class Participant:
    """One site: identity, chair-controlled flags and its media queues."""

    def __init__(self, participant_id: str, name: str, clock: Clock, order: int) -> None:
        self.id = participant_id
        self.name = name
        self.order = order  # join order, used to fill automatic panes
        self.muted = False
        self.deaf = False
        self.gain = 1.0
        self.has_left = False
        self._clock = clock
        self._audio_in: deque[AudioFrame] = deque(maxlen=AUDIO_IN_DEPTH)
        self._audio_out: deque[AudioFrame] = deque(maxlen=AUDIO_OUT_DEPTH)
        self._refilling = False
        self._video: VideoSample | None = None
        self._video_seq = 0
        self.last_audio_arrival: float | None = None
        # The size this site is asked to send (mcu.pane_size; the room sets it on the loop):
        # None = shown in no view. ``pane_version`` 0 means not decided yet (decode fully).
        self.pane: tuple[int, int] | None = None
        self.pane_version = 0

    def __repr__(self) -> str:
        return f"Participant({self.id!r}, {self.name!r})"

    # ---- legs -> room -------------------------------------------------
    def push_audio(self, samples: AudioFrame, arrival: float | None = None) -> None:
        """Queue one decoded 20 ms frame (int16, 960 samples) from this site."""
        check_audio_frame(samples)
        if self.has_left:
            return
        self._audio_in.append(samples)
        self.last_audio_arrival = self._clock.monotonic() if arrival is None else arrival

    def push_video(self, frame: av.VideoFrame | np.ndarray, arrival: float | None = None) -> int:
        """Replace this site's newest video frame; returns the frame's sequence number."""
        if isinstance(frame, np.ndarray):
            frame = video_frame_from_rgb(frame)
        if not isinstance(frame, av.VideoFrame):
            raise ValueError("video frame must be an av.VideoFrame or an RGB ndarray")
        if frame.width < 2 or frame.height < 2:
            raise ValueError("video frame is too small")
        if self.has_left:
            return self._video_seq
        self._video_seq += 1
        when = self._clock.monotonic() if arrival is None else arrival
        # One reference assignment: readers on other threads see the old or the new sample.
        self._video = VideoSample(frame, self._video_seq, when)
        return self._video_seq

    def pull_audio(self) -> AudioFrame | None:
        """Take the oldest N-1 mix waiting for this site, or ``None``."""
        try:
            return self._audio_out.popleft()
        except IndexError:
            return None

    def decode_mode(self, source_size: tuple[int, int] | None) -> DecodeMode:
        """How a leg should decode this site's video now (``source_size``: its last decoded size)."""
        if self.pane_version == 0:
            return "full"
        return decode_mode(self.pane, source_size)

    # ---- room side ----------------------------------------------------
    @property
    def video(self) -> VideoSample | None:
        return self._video

    def take_audio(self) -> AudioFrame | None:
        """Mixer side: the next input frame, or ``None`` if the source is stalled.

        A source whose leg is not in step with the mixer would otherwise stutter on every
        tick that comes just before its frame; after one underrun we wait until two frames
        are queued (one frame of extra latency, once) instead.
        """
        if self._refilling:
            if len(self._audio_in) < AUDIO_PREFILL:
                return None
            self._refilling = False
        try:
            return self._audio_in.popleft()
        except IndexError:
            self._refilling = True
            return None

    def deliver_audio(self, mix: AudioFrame) -> None:
        self._audio_out.append(mix)

    def clear_media(self) -> None:
        self._refilling = False
        self._audio_in.clear()
        self._audio_out.clear()
        self._video = None
