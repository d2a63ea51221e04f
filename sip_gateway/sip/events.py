"""Application events emitted by the SIP user-agent core (:mod:`sip_gateway.sip.useragent`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .actions import Flow

if TYPE_CHECKING:
    from .dialog import Call, ClientRegistration


@dataclass(frozen=True)
class IncomingCall:
    """A new INVITE: call :meth:`UserAgent.answer`, :meth:`~UserAgent.reject` or
    :meth:`~UserAgent.challenge` (``call.offer`` is ``None`` for a late-offer INVITE)."""

    call: Call


@dataclass(frozen=True)
class CallProgress:
    """A provisional response to our outgoing INVITE."""

    call: Call
    status: int


@dataclass(frozen=True)
class CallEstablished:
    """Offer/answer is complete; ``call.streams`` holds the negotiated media."""

    call: Call


@dataclass(frozen=True)
class MediaUpdated:
    """A re-INVITE/UPDATE changed the media (hold, unhold, new address or codec)."""

    call: Call


@dataclass(frozen=True)
class CallEnded:
    """The call is over (BYE either way, CANCEL, rejection, timeout)."""

    call: Call
    reason: str
    status: int | None = None


@dataclass(frozen=True)
class DtmfReceived:
    """A DTMF digit by SIP INFO (RFC 4733 digits come from the RTP layer)."""

    call: Call
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class PictureFastUpdate:
    """The peer asked for a key frame (INFO application/media_control+xml)."""

    call: Call


@dataclass(frozen=True)
class RegistrationChanged:
    """The registrar's bindings for ``aor`` changed."""

    aor: str
    contacts: tuple[str, ...]


@dataclass(frozen=True)
class ClientRegistrationState:
    """Our registration to an upstream registrar succeeded, failed or ended."""

    registration: ClientRegistration
    registered: bool
    status: int | None


@dataclass(frozen=True)
class QualifyResult:
    """Answer (or timeout) of an OPTIONS keepalive."""

    target: str
    ok: bool
    status: int | None


@dataclass(frozen=True)
class MessageRejected:
    """We answered a bad or refused request with an error (for logs/metrics)."""

    flow: Flow
    status: int
    reason: str


@dataclass(frozen=True)
class MessageDropped:
    """We dropped a message without answering (oversized, unparseable, rate limited)."""

    flow: Flow
    reason: str


@dataclass(frozen=True)
class AuthThrottled:
    """Digest failures started a block (:mod:`.authguard`); one event per block, for the audit log.

    ``scope`` is ``source+account``, ``account`` or ``source``; ``username`` is the one the
    guesser claimed (it may not exist); until ``blocked_for`` seconds pass, attempts on that key
    get 403 with Retry-After, even with the right password.
    """

    flow: Flow
    method: str
    username: str
    scope: str
    failures: int
    blocked_for: float


Event = (
    IncomingCall | CallProgress | CallEstablished | MediaUpdated | CallEnded | DtmfReceived
    | PictureFastUpdate | RegistrationChanged | ClientRegistrationState | QualifyResult
    | MessageRejected | MessageDropped | AuthThrottled
)
