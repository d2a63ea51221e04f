"""The MCU's side of conference recording: the running conferences as a recording sees them.

:class:`RecordingTap` implements the recorder's ``LiveSource`` protocol
(``recorder/live_source.py``) structurally, without importing the recorder: the composition
root passes ``RecordingTap(conferences)`` to the recorder's ``ConferenceRecorder``. A recording
joins the broadcast view's shared H.264 encoder (no encode of its own when one runs) and listens
to the room's full mix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcu.conferences import ConferenceRecord, ConferenceService, RunningConference
from mcu.encoder import EncoderKey
from mcu.room import BROADCAST, CONTENT_SIZE, CONTENT_VIEW, RoomError, Subscription
from sip_gateway.rtp.media_primitives import AudioFrame, EncodedPacket


@dataclass(frozen=True)
class TappedConference:
    """One running conference's broadcast view and full mix (equal for the same running conference)."""

    conference: RunningConference

    @property
    def ended(self) -> bool:
        return self.conference.room.ended

    def now(self) -> float:
        """The room clock: packets' ``composed_at`` and mix times are on it."""
        return self.conference.room.clock.monotonic()

    def broadcast_encoders(self) -> list[EncoderKey]:
        """The H.264 encoders of the broadcast view running now."""
        return [k for k in self.conference.room.encoder_keys if k.view_id == BROADCAST and k.codec == "h264"]

    def subscribe_broadcast(self, sink: Callable[[EncodedPacket], None], width: int, height: int,
                            single_nal: bool = False) -> Subscription | None:
        """Receive the broadcast view's H.264 packets of this size; None when the room has ended."""
        try:
            return self.conference.room.subscribe_view(BROADCAST, sink, codec="h264", width=width, height=height,
                                                       single_nal=single_nal)
        except RoomError:
            return None

    def subscribe_content(self, sink: Callable[[EncodedPacket], None]) -> Subscription | None:
        """Receive the content view's H.264 packets (the shared content encoder the second-stream
        receivers use: 1920x1080, encoded only while content is live); None when the room has ended."""
        try:
            return self.conference.room.subscribe_view(CONTENT_VIEW, sink, codec="h264", width=CONTENT_SIZE[0],
                                                       height=CONTENT_SIZE[1])
        except RoomError:
            return None

    def add_mix_listener(self, listener: Callable[[AudioFrame, float], None]) -> None:
        """Receive the full mix of every unmuted site each tick."""
        self.conference.room.add_mix_listener(listener)

    def remove_mix_listener(self, listener: Callable[[AudioFrame, float], None]) -> None:
        """Stop a mix listener (idempotent)."""
        self.conference.room.remove_mix_listener(listener)


class RecordingTap:
    """This node's conferences, for conference recording (the recorder's ``LiveSource``)."""

    def __init__(self, conferences: ConferenceService) -> None:
        self._conferences = conferences

    def running(self, conference_id: str) -> TappedConference | None:
        """The conference when it runs on this node, else None."""
        conference = self._conferences.running(conference_id)
        return TappedConference(conference) if conference is not None else None

    async def summary(self, conference_id: str) -> ConferenceRecord | None:
        """The schedule's record of the conference; None when there is no such conference."""
        return await self._conferences.get(conference_id)
