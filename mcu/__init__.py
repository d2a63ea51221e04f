"""Conference engine: rooms, participants, chair control, audio mixer, video compositor, encoders.

The media core (issue 3) in one page:

* :class:`mcu.room.Room` - sites, chair, lock, layout, views and every chair operation
  (each validates, changes state and emits a typed event from :mod:`mcu.events` through
  ``on_event``; no web or bus imports). Time comes from an injected :mod:`mcu.clock`.
* Legs push decoded media into a :class:`mcu.participant.Participant` (``push_audio`` with
  960 int16 samples at 48 kHz, ``push_video`` with an ``av.VideoFrame``), pull their N-1
  mix with ``pull_audio`` and receive encoded video with ``Room.subscribe_video`` (follows
  the site's view) - see :mod:`mcu.participant` and :mod:`mcu.media`.
* A recorder or the chair console subscribes to a fixed view with ``Room.subscribe_view``.
* :class:`mcu.runner.MediaRunner` ticks audio every 20 ms and video at the room's fps,
  with mixing, composing and encoding in worker threads.
"""
from .clock import Clock, FakeClock, MonotonicClock
from .encoder import EncoderKey, EncoderSettings
from .participant import Participant
from .room import BROADCAST, PREVIEW, Room, RoomError, RoomSettings, Subscription, select_view_id
from .runner import MediaRunner, deprioritise_current_thread

__all__ = [
    "BROADCAST",
    "PREVIEW",
    "Clock",
    "EncoderKey",
    "EncoderSettings",
    "FakeClock",
    "MediaRunner",
    "MonotonicClock",
    "Participant",
    "Room",
    "RoomError",
    "RoomSettings",
    "Subscription",
    "deprioritise_current_thread",
    "select_view_id",
]
