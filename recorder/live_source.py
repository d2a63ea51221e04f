"""What recording a conference needs from the conferences live on this node.

The recorder declares these protocols and the MCU implements them (``mcu/recording_tap.py``);
the composition root hands the implementation to :class:`recorder.conference_recording.ConferenceRecorder`.
Neither package imports the other: only the media units of
:mod:`sip_gateway.rtp.media_primitives` (``EncodedPacket``, ``AudioFrame``) cross.

Times are seconds on the conference's own monotonic clock (``LiveConference.now``): the
``composed_at`` of a video packet and the time handed to a mix listener are on it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from sip_gateway.rtp.media_primitives import AudioFrame, EncodedPacket

PacketSink = Callable[[EncodedPacket], None]
# (20 ms of the full mix, conference time of the tick that produced it)
MixListener = Callable[[AudioFrame, float], None]


class SharedEncoder(Protocol):
    """An H.264 encoder of the broadcast view that runs now (sites watching it share it)."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def single_nal(self) -> bool:
        """H.264 packetization-mode 0 (slices capped for RTP)."""


class LiveVideo(Protocol):
    """A subscription to one shared encoder's packets."""

    def request_keyframe(self) -> None:
        """Ask the encoder for a key frame (coalesced and rate-limited like any receiver's)."""

    def close(self) -> None:
        """Stop receiving (idempotent)."""


class LiveConference(Protocol):
    """One conference running on this node, as a recording sees it.

    Two views of the same running conference compare equal; a conference that ended and runs
    again is a different one.
    """

    @property
    def ended(self) -> bool:
        """The conference has ended: nothing can subscribe any more."""

    def now(self) -> float:
        """The conference clock (monotonic seconds)."""

    def broadcast_encoders(self) -> Sequence[SharedEncoder]:
        """The H.264 encoders of the broadcast view running now."""

    def subscribe_broadcast(self, sink: PacketSink, width: int, height: int,
                            single_nal: bool = False) -> LiveVideo | None:
        """Receive the broadcast view's H.264 packets of this size (joining a running encoder of
        that size, else starting one); None when the conference has ended."""

    def subscribe_content(self, sink: PacketSink) -> LiveVideo | None:
        """Receive the packets of the conference's one shared H.264 content encoder (the content
        alone, the second stream: packets only while someone presents, at its low frame rate);
        None when the conference has ended."""

    def add_mix_listener(self, listener: MixListener) -> None:
        """Receive the full mix of every unmuted site each 20 ms tick."""

    def remove_mix_listener(self, listener: MixListener) -> None:
        """Stop a mix listener (idempotent)."""


class ConferenceSummary(Protocol):
    """The schedule's record of a conference, what a recording names and checks."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> str:
        """"scheduled", "running" or "ended"."""


class LiveSource(Protocol):
    """The conferences of this node: the one way conference recording reaches the MCU."""

    def running(self, conference_id: str) -> LiveConference | None:
        """The conference when it runs on this node, else None."""

    async def summary(self, conference_id: str) -> ConferenceSummary | None:
        """The conference's record (any node, any state); None when there is no such conference."""
