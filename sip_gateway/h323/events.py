"""Events the H.323 state machines report to the application (adapter, MCU, console).

They are plain frozen dataclasses: the state machines return them, the asyncio adapter
forwards them, a later session maps them onto MCU participants and RTP sessions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .capabilities import MediaFormat

__all__ = [
    "CallAlerting",
    "CallConnected",
    "CallIncoming",
    "CallProceeding",
    "CallReleased",
    "CapabilitiesReceived",
    "CapabilityMismatch",
    "ChannelClosed",
    "ChannelOpened",
    "ChannelRejected",
    "Event",
    "FlowControlRequested",
    "H245ConnectRequested",
    "H245Failed",
    "MasterSlaveDetermined",
    "MediaAddress",
    "MediaPaused",
    "MediaResumed",
    "ProtocolErrorLogged",
    "RoundTripDelayMeasured",
    "UserInputReceived",
    "VideoFastUpdateRequested",
]


@dataclass(frozen=True)
class MediaAddress:
    """An IPv4 transport address (H.323 media and signalling addresses are IPv4 here)."""

    host: str
    port: int


@dataclass(frozen=True)
class LogicalChannel:
    """A negotiated unidirectional media channel.

    ``outgoing`` channels are ones we transmit on: send RTP to ``remote_rtp``. Incoming
    channels are ones the peer transmits on: it sends to ``local_rtp`` (the port the RTP
    layer must listen on) and its RTCP comes from ``remote_rtcp``.
    """

    number: int
    outgoing: bool
    format: MediaFormat
    session_id: int
    payload_type: int
    local_rtp: MediaAddress | None = None
    local_rtcp: MediaAddress | None = None
    remote_rtp: MediaAddress | None = None
    remote_rtcp: MediaAddress | None = None
    fast_start: bool = False
    content: bool = False  # an H.239 presentation channel (sip_gateway.h323.h239)


class Event:
    """Base class of all events."""


@dataclass(frozen=True)
class CallIncoming(Event):
    """A Setup arrived; the application should alert/answer or release the call."""

    call_id: bytes
    calling_number: str | None
    called_number: str | None
    source_aliases: tuple[str, ...]
    destination_aliases: tuple[str, ...]
    display: str | None
    fast_start_offered: bool
    tunnelling: bool


@dataclass(frozen=True)
class CallProceeding(Event):
    call_id: bytes


@dataclass(frozen=True)
class CallAlerting(Event):
    call_id: bytes


@dataclass(frozen=True)
class CallConnected(Event):
    call_id: bytes
    fast_start: bool
    tunnelling: bool


@dataclass(frozen=True)
class CallReleased(Event):
    """The call is over. ``cause`` is the Q.850 cause (sent or received); ``h225_reason`` the
    H.225.0 ReleaseCompleteReason (sent or received, e.g. ``securityDenied``; "" when none)."""

    call_id: bytes
    cause: int
    by_remote: bool
    reason: str = ""
    h225_reason: str = ""


@dataclass(frozen=True)
class H245ConnectRequested(Event):
    """No tunnelling: open a TCP connection to this address for H.245, then call
    :meth:`Call.h245_connected`."""

    address: MediaAddress


@dataclass(frozen=True)
class ProtocolErrorLogged(Event):
    """Something malformed or unexpected arrived; ``detail`` is for the log."""

    detail: str


@dataclass(frozen=True)
class MasterSlaveDetermined(Event):
    master: bool


@dataclass(frozen=True)
class CapabilitiesReceived(Event):
    formats: tuple[MediaFormat, ...]
    skipped: int
    user_input: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class CapabilityMismatch(Event):
    """No common audio or video format; ``video_only`` means audio still works."""

    audio: bool
    video: bool


@dataclass(frozen=True)
class ChannelOpened(Event):
    channel: LogicalChannel


@dataclass(frozen=True)
class ChannelRejected(Event):
    number: int
    session_id: int
    cause: str


@dataclass(frozen=True)
class ChannelClosed(Event):
    number: int
    outgoing: bool


@dataclass(frozen=True)
class MediaPaused(Event):
    """The peer sent the empty capability set: our outgoing channels were closed."""


@dataclass(frozen=True)
class MediaResumed(Event):
    """The peer sent a capability set again after a pause."""


@dataclass(frozen=True)
class FlowControlRequested(Event):
    """Limit what we send on ``channel`` (None: the whole call) to ``bitrate_bps`` (None: no limit)."""

    channel: int | None
    bitrate_bps: int | None


@dataclass(frozen=True)
class VideoFastUpdateRequested(Event):
    """The peer asks for a key frame on our outgoing channel ``channel``."""

    channel: int


@dataclass(frozen=True)
class UserInputReceived(Event):
    """DTMF or text: ``text`` holds alphanumeric input or the signal character."""

    text: str
    signal: bool
    duration_ms: int | None = None


@dataclass(frozen=True)
class RoundTripDelayMeasured(Event):
    seconds: float


@dataclass(frozen=True)
class H245Failed(Event):
    """An H.245 procedure failed (timer expiry, retries exhausted, rejection)."""

    procedure: str
    detail: str
