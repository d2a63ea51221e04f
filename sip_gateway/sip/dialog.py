"""Dialog state: one INVITE dialog (:class:`Call`) and one outgoing registration.

Plain data with a few derived properties; the :class:`~.useragent.UserAgent` drives them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import Enum

from ..rtp.media_description import LocalMedia, MediaStream
from .actions import T1, Flow
from .digest import Credentials
from .errors import SipParseError
from .message import Request, Response
from .sdp import SessionDescription
from .transaction import MAGIC_COOKIE, ClientTransaction, ServerTransaction
from .uri import NameAddr


def new_tag() -> str:
    """A random From/To tag."""
    return secrets.token_hex(6)


def new_branch() -> str:
    """A random RFC 3261 branch."""
    return MAGIC_COOKIE + secrets.token_hex(10)


class CallState(Enum):
    """Where a call is in its life."""

    INCOMING = "incoming"  # INVITE received, the application has not decided yet
    CALLING = "calling"  # our INVITE sent
    EARLY = "early"  # provisional with to-tag
    CONNECTING = "connecting"  # 2xx sent, waiting for ACK
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(eq=False)
class Call:
    """One INVITE dialog (we are a UA, never a proxy, so no forking is handled)."""

    call_id: str
    local_tag: str
    outgoing: bool
    flow: Flow
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    remote_tag: str | None = None
    local_cseq: int = 1
    remote_cseq: int | None = None
    state: CallState = CallState.INCOMING
    invite: Request | None = None
    invite_tx: ServerTransaction | ClientTransaction | None = None
    offer: SessionDescription | None = None  # the remote offer of the initial INVITE
    remote_answer: SessionDescription | None = None  # the peer's answer to our last offer (2xx)
    local_media: LocalMedia | None = None
    local_sdp: SessionDescription | None = None
    streams: list[MediaStream] = field(default_factory=list)
    sdp_version: int = 1
    late_offer: bool = False
    authenticated_user: str | None = None
    session_expires: int | None = None
    we_refresh: bool = False
    peer_allows_update: bool = False
    final_response: Response | None = None
    reinvite_pending: bool = False
    cancel_requested: bool = False
    credentials: Credentials | None = None
    auth_attempts: int = 0
    auth_header: tuple[str, str] | None = None
    retransmit_interval: float = T1
    user_data: dict[str, object] = field(default_factory=dict)
    # Where the initial INVITE really came from (the packet's source; ``flow`` may follow the Via).
    source: Flow | None = None

    @property
    def key(self) -> str:
        """Unique id of the dialog on our side."""
        return f"{self.call_id}|{self.local_tag}"

    @property
    def remote_user(self) -> str | None:
        """User part of the remote party's URI (for logs and UI)."""
        try:
            return NameAddr.parse(self.remote_uri).uri.user
        except SipParseError:
            return None

    @property
    def request_user(self) -> str | None:
        """User part of the Request-URI of the initial INVITE (the dialled conference id)."""
        if self.invite is None:
            return None
        try:
            return self.invite.request_uri.user
        except SipParseError:
            return None


@dataclass(eq=False)
class ClientRegistration:
    """Our registration with an upstream registrar (trunk)."""

    registrar: str
    aor: str
    credentials: Credentials | None
    expires: int
    flow: Flow
    call_id: str = field(default_factory=lambda: secrets.token_hex(10))
    tag: str = field(default_factory=new_tag)
    cseq: int = 0
    registered: bool = False
    auth_attempts: int = 0
    stopping: bool = False

    @property
    def key(self) -> str:
        """Timer owner id."""
        return f"reg|{self.call_id}"
