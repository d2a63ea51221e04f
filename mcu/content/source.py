"""The conference's content picture: the newest frame of whoever presents, shown while it is fresh.

A content leg (a browser's screen share today; H.239 and BFCP video channels later) pushes decoded
frames with :meth:`ContentSource.push`, from any thread; the compositor reads :meth:`sample` on the
event loop. One reference assignment per frame, as for sites (:class:`mcu.participant.Participant`),
so a reader sees the old or the new sample, never half of one.
"""
from __future__ import annotations

import av

from mcu.participant import VideoSample

MAX_CONTENT_PIXELS = 3840 * 2160  # bigger frames are refused (a hostile peer cannot exhaust memory)


class ContentSource:
    def __init__(self) -> None:
        self.presenter: str | None = None
        self._sample: VideoSample | None = None
        self._seq = 0
        self.frames_in = 0
        self.frames_refused = 0
        self.size: tuple[int, int] | None = None

    def push(self, presenter: str, frame: av.VideoFrame, arrival: float) -> bool:
        """A decoded content frame from ``presenter`` (False: not the current presenter, or unusable)."""
        if presenter != self.presenter or frame.width < 2 or frame.height < 2 \
                or frame.width * frame.height > MAX_CONTENT_PIXELS:
            self.frames_refused += 1
            return False
        self._seq += 1
        self.frames_in += 1
        self.size = (frame.width, frame.height)
        self._sample = VideoSample(frame, self._seq, arrival)
        return True

    def sample(self) -> VideoSample | None:
        return self._sample if self.presenter is not None else None

    def switch(self, presenter: str | None) -> None:
        """A new presenter (or none): the previous picture is dropped at once."""
        if presenter != self.presenter:
            self.presenter = presenter
            self._sample = None
            self.size = None
