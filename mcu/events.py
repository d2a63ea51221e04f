"""Typed events a room publishes through its ``on_event`` callback.

The room never imports the web layer or the core bus: whoever owns the room passes
``on_event: Callable[[RoomEvent], None]`` and bridges it (``event_to_dict`` gives a
JSON-ready dict with a ``kind`` field). Events are emitted on the thread that made the
change; with :class:`mcu.runner.MediaRunner` that is always the event-loop thread.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class _Event:
    room_id: str
    at: float  # clock.monotonic() when the change happened


@dataclass(frozen=True)
class ParticipantJoined(_Event):
    participant_id: str
    name: str
    is_chair: bool


@dataclass(frozen=True)
class ParticipantLeft(_Event):
    participant_id: str
    reason: str  # "left" | "removed" | "ended"


@dataclass(frozen=True)
class ChairChanged(_Event):
    participant_id: str | None


@dataclass(frozen=True)
class MuteChanged(_Event):
    participant_id: str
    muted: bool


@dataclass(frozen=True)
class DeafChanged(_Event):
    participant_id: str
    deaf: bool


@dataclass(frozen=True)
class GainChanged(_Event):
    participant_id: str
    gain: float


@dataclass(frozen=True)
class SpeakerChanged(_Event):
    participant_id: str | None
    previous_id: str | None


@dataclass(frozen=True)
class AudioLevels(_Event):
    """Per-participant input level in dBFS (at most 10 per second)."""

    levels: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LayoutChanged(_Event):
    view_id: str
    layout: str


@dataclass(frozen=True)
class PaneAssigned(_Event):
    view_id: str
    pane: int
    mode: str  # "auto" | "static" | "voice" | "polling"
    participant_id: str | None = None


@dataclass(frozen=True)
class BroadcastChanged(_Event):
    participant_id: str | None  # None: broadcast cancelled


@dataclass(frozen=True)
class RollCall(_Event):
    participant_id: str
    muted_others: bool


@dataclass(frozen=True)
class SelectViewChanged(_Event):
    viewer_id: str
    target_id: str | None  # None: back to the broadcast view


@dataclass(frozen=True)
class VoiceActivatedChanged(_Event):
    enabled: bool


@dataclass(frozen=True)
class PollingChanged(_Event):
    active: bool
    participant_ids: tuple[str, ...] = ()
    interval: float = 0.0
    pane: int | None = None


@dataclass(frozen=True)
class LockChanged(_Event):
    locked: bool


@dataclass(frozen=True)
class BannerChanged(_Event):
    text: str
    position: str  # "top" | "bottom"
    scroll: bool


@dataclass(frozen=True)
class LabelsChanged(_Event):
    enabled: bool


@dataclass(frozen=True)
class RoomEnded(_Event):
    pass


RoomEvent = (
    ParticipantJoined
    | ParticipantLeft
    | ChairChanged
    | MuteChanged
    | DeafChanged
    | GainChanged
    | SpeakerChanged
    | AudioLevels
    | LayoutChanged
    | PaneAssigned
    | BroadcastChanged
    | RollCall
    | SelectViewChanged
    | VoiceActivatedChanged
    | PollingChanged
    | LockChanged
    | BannerChanged
    | LabelsChanged
    | RoomEnded
)

EventSink = Callable[[RoomEvent], None]


def event_kind(event: RoomEvent) -> str:
    """snake_case name of the event class, e.g. ``mute_changed``."""
    name = type(event).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def event_to_dict(event: RoomEvent) -> dict[str, Any]:
    """JSON-ready dict: the dataclass fields plus ``kind``."""
    data = dataclasses.asdict(event)
    for key, value in data.items():
        if isinstance(value, tuple):
            data[key] = list(value)
    data["kind"] = event_kind(event)
    return data
