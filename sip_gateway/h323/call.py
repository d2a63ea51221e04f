"""H.225.0 call signalling state machine for one call, sans-I/O.

Feed it the bytes of the call-signalling TCP stream (:meth:`Call.receive_data`) and, when
H.245 runs on its own connection, of that stream (:meth:`Call.receive_h245_data`); send
what :meth:`Call.data_to_send` / :meth:`Call.h245_data_to_send` return; call
:meth:`Call.handle_timer` at :meth:`Call.next_deadline`. Every method returns the events
that happened. Nothing here touches a socket or a clock: ``now`` is always passed in.

Covered: incoming and outgoing calls (Setup, CallProceeding, Alerting, Connect, Facility,
Progress, Status, StatusInquiry, ReleaseComplete), fast start for audio and video, H.245
tunnelling with fallback to a separate H.245 connection, timers for every procedure, and
release with Q.850 causes. Malformed input never raises: it is reported as
:class:`ProtocolErrorLogged` and the call is released with a cause.

Fast start lives in :mod:`.fast_start`, the H.225.0 address helpers (shared with RAS) in
:mod:`.addresses`. What remains (about 800 lines) is one state machine: the Q.931 procedures,
the H.245 transport (tunnelled or separate) and release all read and write the same call
state, so splitting it further would scatter one procedure over several modules.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from . import fast_start
from .addresses import address_from_h225, alias_address, alias_text, h225_transport_address
from .asn1 import H225_PROTOCOL_ID, Asn1Error, decode_uuie, encode_uuie
from .capabilities import (
    DEFAULT_FORMATS,
    MediaFormat,
)
from .events import (
    CallAlerting,
    CallConnected,
    CallIncoming,
    CallProceeding,
    CallReleased,
    CapabilityMismatch,
    ChannelOpened,
    Event,
    H245ConnectRequested,
    H245Failed,
    LogicalChannel,
    MediaAddress,
    ProtocolErrorLogged,
)
from .h239 import H239Message
from .h245 import (
    TERMINAL_TYPE_MCU,
    TERMINAL_TYPE_TERMINAL,
    H245Config,
    H245Session,
)
from .q931 import (
    IE,
    Cause,
    MessageType,
    Q931Error,
    Q931Message,
    decode_cause,
    decode_number,
    encode_bearer_capability,
    encode_call_state,
    encode_cause,
    encode_display,
    encode_number,
    encode_progress_indicator,
    user_user_ie,
)
from .timers import Timers
from .tpkt import TpktError, TpktFramer, encode_tpkt

__all__ = ["Call", "CallIdentity", "CallState", "EndpointConfig"]


class CallState(Enum):
    """Q.931 call states (H.225.0 subset) plus our initial/final ones."""

    IDLE = 0  # incoming call object waiting for its Setup
    CALL_INITIATED = 1  # Setup sent
    OUTGOING_CALL_PROCEEDING = 3
    CALL_DELIVERED = 4  # Alerting received
    CALL_PRESENT = 6  # Setup received
    CALL_RECEIVED = 7  # Alerting sent
    INCOMING_CALL_PROCEEDING = 9  # CallProceeding sent
    ACTIVE = 10
    RELEASED = 99


@dataclass
class EndpointConfig:
    """How our side of H.323 presents itself and behaves. Timers are in seconds."""

    formats: Sequence[MediaFormat] = DEFAULT_FORMATS  # what we receive (our capability set)
    # What we are able to send, when it differs from what we receive (None: the same). Room
    # systems are often asymmetric (send H.263, receive H.261 only); a test terminal needs it.
    transmit_formats: Sequence[MediaFormat] | None = None
    content_formats: Sequence[MediaFormat] = ()  # H.239 presentation we receive (empty: no H.239)
    h224: bool = False  # far-end camera control (the H.224 data channel, H.323 Annex Q)
    h323_id: str = "commandcenter"
    e164: str | None = None
    display: str = "commandcenter MCU"
    is_mcu: bool = True
    product: str = "commandcenter"
    version: str = "0.1"
    signalling_host: str = "127.0.0.1"
    signalling_port: int = 1720
    media_host: str = "127.0.0.1"
    fast_start: bool = True
    tunnelling: bool = True
    h245_port: int = 0  # listening port for a separate H.245 connection; 0 = any free port
    early_h245: bool = False  # caller: start tunnelled H.245 in the Setup (as many room systems do)
    t303_setup: float = 4.0  # Setup -> any answer
    t310_proceeding: float = 30.0  # CallProceeding -> Alerting/Connect
    t301_alerting: float = 180.0  # Alerting -> Connect (both directions)
    t_h245_connect: float = 10.0  # Connect with h245Address -> H.245 TCP established
    t101_capability: float = 10.0
    t103_open_channel: float = 10.0
    t105_round_trip: float = 10.0
    t106_master_slave: float = 10.0
    round_trip_interval: float = 0.0

    def h245_config(self, media_ports: dict[int, int]) -> H245Config:
        return H245Config(
            formats=self.formats, transmit_formats=self.transmit_formats, media_host=self.media_host,
            media_ports=dict(media_ports),
            terminal_type=TERMINAL_TYPE_MCU if self.is_mcu else TERMINAL_TYPE_TERMINAL,
            t101_capability=self.t101_capability, t103_open_channel=self.t103_open_channel,
            t105_round_trip=self.t105_round_trip, t106_master_slave=self.t106_master_slave,
            round_trip_interval=self.round_trip_interval, content_formats=self.content_formats,
            h224=self.h224)


_RELEASE_REASONS: dict[int, str] = {
    Cause.NO_ROUTE_TO_DESTINATION: "unreachableDestination",
    Cause.UNALLOCATED_NUMBER: "unreachableDestination",
    Cause.CALL_REJECTED: "destinationRejection",
    Cause.INVALID_NUMBER_FORMAT: "badFormatAddress",
    Cause.NO_CIRCUIT_AVAILABLE: "gatewayResources",
    Cause.RESOURCE_UNAVAILABLE: "gatewayResources",
    Cause.USER_BUSY: "inConf",
}
_CAUSE_BY_REASON: dict[str, int] = {
    "noBandwidth": Cause.RESOURCE_UNAVAILABLE, "gatekeeperResources": Cause.RESOURCE_UNAVAILABLE,
    "unreachableDestination": Cause.NO_ROUTE_TO_DESTINATION, "destinationRejection": Cause.CALL_REJECTED,
    "badFormatAddress": Cause.INVALID_NUMBER_FORMAT, "inConf": Cause.USER_BUSY,
    "adaptiveBusy": Cause.USER_BUSY, "gatewayResources": Cause.RESOURCE_UNAVAILABLE,
    "undefinedReason": Cause.NORMAL_CALL_CLEARING, "securityDenied": Cause.CALL_REJECTED,
}
_EXPECTED: dict[CallState, frozenset[int]] = {
    CallState.IDLE: frozenset({MessageType.SETUP}),
    CallState.CALL_INITIATED: frozenset({MessageType.CALL_PROCEEDING, MessageType.ALERTING,
                                         MessageType.CONNECT, MessageType.PROGRESS, MessageType.FACILITY}),
    CallState.OUTGOING_CALL_PROCEEDING: frozenset({MessageType.ALERTING, MessageType.CONNECT,
                                                   MessageType.PROGRESS, MessageType.FACILITY}),
    CallState.CALL_DELIVERED: frozenset({MessageType.CONNECT, MessageType.PROGRESS, MessageType.FACILITY}),
    CallState.CALL_PRESENT: frozenset({MessageType.FACILITY}),
    CallState.INCOMING_CALL_PROCEEDING: frozenset({MessageType.FACILITY}),
    CallState.CALL_RECEIVED: frozenset({MessageType.FACILITY}),
    CallState.ACTIVE: frozenset({MessageType.FACILITY}),
}
# States in which tunnelled H.245 waits for the next message instead of a Facility.
_NO_FACILITY_YET = frozenset({CallState.IDLE, CallState.CALL_INITIATED, CallState.RELEASED})
# Handled in any state.
_ANY_STATE = frozenset({MessageType.RELEASE_COMPLETE, MessageType.STATUS, MessageType.STATUS_INQUIRY,
                        MessageType.INFORMATION, MessageType.NOTIFY})
_BODY_BY_TYPE: dict[int, str] = {
    MessageType.SETUP: "setup", MessageType.CALL_PROCEEDING: "callProceeding",
    MessageType.ALERTING: "alerting", MessageType.CONNECT: "connect", MessageType.FACILITY: "facility",
    MessageType.PROGRESS: "progress", MessageType.RELEASE_COMPLETE: "releaseComplete",
    MessageType.STATUS: "status", MessageType.STATUS_INQUIRY: "statusInquiry",
    MessageType.INFORMATION: "information", MessageType.NOTIFY: "notify",
}


@dataclass(frozen=True)
class CallIdentity:
    """The identifiers of a call: callIdentifier, conferenceID and the Q.931 call reference."""

    call_id: bytes
    conference_id: bytes
    call_reference: int

    @classmethod
    def random(cls, rng: random.Random) -> CallIdentity:
        return cls(bytes(rng.getrandbits(8) for _ in range(16)), bytes(rng.getrandbits(8) for _ in range(16)),
                   rng.randrange(1, 0x8000))


@dataclass
class Call:
    """One H.323 call (one call-signalling connection, one optional H.245 connection)."""

    config: EndpointConfig
    media_ports: dict[int, int]
    outgoing: bool
    rng: random.Random = field(default_factory=random.Random)
    state: CallState = CallState.IDLE
    call_id: bytes = b""
    conference_id: bytes = b""
    call_reference: int = 0
    tunnelling: bool = True
    fast_start_active: bool = False
    release_cause: int | None = None
    remote_aliases: tuple[str, ...] = ()
    h245: H245Session | None = None
    h245_address: MediaAddress | None = None  # where our separate H.245 listener is
    h245_connected_flag: bool = False

    def __post_init__(self) -> None:
        self.tunnelling = self.config.tunnelling
        self.timers = Timers()
        self._framer = TpktFramer()
        self._h245_framer = TpktFramer()
        self._out = bytearray()
        self._h245_out = bytearray()
        self._events: list[Event] = []
        self._fast_start_reply: list[bytes] | None = None  # callee: accepted OLCs to return
        self._fast_start_refused = False
        self._fast_start_sent = False
        self._proposals: list[fast_start.FastStartOffer] = []  # caller: what we proposed
        self._pending_h245: list[bytes] = []  # tunnelled PDUs to piggyback on the next message
        self._fast_start_channels: list[LogicalChannel] = []  # callee: accepted, not yet reported

    # ------------------------------------------------------------------ construction

    @classmethod
    def outgoing_call(cls, config: EndpointConfig, destination: str | None, address: MediaAddress,
                      media_ports: dict[int, int], now: float, rng: random.Random | None = None,
                      identity: CallIdentity | None = None) -> Call:
        """Create a call and queue its Setup to ``address`` (alias/number ``destination``).

        ``identity`` carries ids chosen beforehand (a gatekeeper admission needs them)."""
        call = cls(config, media_ports, outgoing=True, rng=rng or random.Random())
        identity = identity or CallIdentity.random(call.rng)
        call.call_id = identity.call_id
        call.conference_id = identity.conference_id
        call.call_reference = identity.call_reference
        call._send_setup(destination, address, now)
        return call

    @classmethod
    def incoming_call(cls, config: EndpointConfig, media_ports: dict[int, int],
                      rng: random.Random | None = None) -> Call:
        """Create the call object for a newly accepted call-signalling connection."""
        return cls(config, media_ports, outgoing=False, rng=rng or random.Random())

    def _random_bytes(self, n: int) -> bytes:
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    # ------------------------------------------------------------------ I/O surface

    def data_to_send(self) -> bytes:
        """Bytes for the call-signalling TCP connection."""
        data, self._out = bytes(self._out), bytearray()
        return data

    def h245_data_to_send(self) -> bytes:
        """Bytes for the separate H.245 TCP connection (empty when tunnelling)."""
        data, self._h245_out = bytes(self._h245_out), bytearray()
        return data

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.timers.next_deadline(),
                                 self.h245.next_deadline() if self.h245 else None) if d is not None]
        return min(deadlines, default=None)

    @property
    def released(self) -> bool:
        return self.state is CallState.RELEASED

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ application commands

    def alert(self, now: float) -> list[Event]:
        """Incoming call: tell the caller it is ringing (Alerting)."""
        if self.state in (CallState.CALL_PRESENT, CallState.INCOMING_CALL_PROCEEDING):
            body = self._response_body("alerting")
            self._send_q931(MessageType.ALERTING, "alerting", body, [])
            self.state = CallState.CALL_RECEIVED
            self.timers.start("t301", now, self.config.t301_alerting)
        return self._take_events()

    def progress(self, now: float) -> list[Event]:
        """Incoming call: send Progress (in-band information available), e.g. before an IVR
        prompt; it carries the fast start answer when none was sent yet (early media)."""
        if self.state in (CallState.CALL_PRESENT, CallState.INCOMING_CALL_PROCEEDING, CallState.CALL_RECEIVED):
            body = self._response_body("progress")
            self._send_q931(MessageType.PROGRESS, "progress", body, [encode_progress_indicator()])
        return self._take_events()

    def answer(self, now: float, h245_address: MediaAddress | None = None) -> list[Event]:
        """Incoming call: accept it (Connect).

        Without tunnelling the caller needs an address for H.245: the adapter listens and
        passes it as ``h245_address``.
        """
        if self.state not in (CallState.CALL_PRESENT, CallState.INCOMING_CALL_PROCEEDING,
                              CallState.CALL_RECEIVED):
            return self._take_events()
        body = self._response_body("connect")
        body["conferenceID"] = self.conference_id
        if not self.tunnelling:
            if h245_address is None:
                raise ValueError("answering without tunnelling needs an H.245 address")
            self.h245_address = h245_address
            body["h245Address"] = h225_transport_address(h245_address)
            self.timers.start("h245-connect", now, self.config.t_h245_connect)
        self._send_q931(MessageType.CONNECT, "connect", body, [])
        self.state = CallState.ACTIVE
        self.timers.stop("t301")
        self._events.append(CallConnected(self.call_id, self.fast_start_active, self.tunnelling))
        if self.tunnelling:
            self._start_h245(now)
        return self._take_events()

    def release(self, cause: int, now: float, h225_reason: str | None = None) -> list[Event]:
        """Clear the call with a Q.850 cause (ReleaseComplete; endSessionCommand first).

        ``h225_reason`` is the ReleaseCompleteReason to send (e.g. ``securityDenied``); by
        default the one H.225.0 maps to ``cause``."""
        self._release(cause, now, by_remote=False, reason="local release", h225_reason=h225_reason)
        return self._take_events()

    def h245_connected(self, now: float) -> list[Event]:
        """The separate H.245 TCP connection is up (either direction): start H.245."""
        self.timers.stop("h245-connect")
        self.h245_connected_flag = True
        if not self.released:
            self._start_h245(now)
            self._flush_h245(now)
        return self._take_events()

    def send_user_input(self, text: str, now: float, signal: bool = True) -> list[Event]:
        """Send DTMF (``signal``) or alphanumeric user input."""
        if self.h245 is not None and not self.released:
            self.h245.send_user_input(text, signal=signal)
            self._flush_h245(now)
        return self._take_events()

    def request_fast_update(self, channel: int, now: float) -> list[Event]:
        """Ask the peer for a key frame on the channel it sends to us."""
        if self.h245 is not None and not self.released:
            self.h245.request_fast_update(channel)
            self._flush_h245(now)
        return self._take_events()

    def send_h239(self, message: H239Message, now: float) -> list[Event]:
        """Send an H.239 token or flow-control message (:mod:`.h239`)."""
        if self.h245 is not None and not self.released:
            self.h245.send_h239(message)
            self._flush_h245(now)
        return self._take_events()

    def open_content_channel(self, fmt: MediaFormat, now: float) -> list[Event]:
        """Open our H.239 presentation channel (the peer must have announced H.239)."""
        if self.h245 is not None and not self.released:
            self.h245.open_channel(fmt, now, content=True)
            self._flush_h245(now)
        return self._take_events()

    def close_channel(self, number: int, now: float) -> list[Event]:
        """Close one of our outgoing logical channels (the H.239 content channel when content stops)."""
        if self.h245 is not None and not self.released:
            self.h245.close_channel(number, now)
            self._flush_h245(now)
        return self._take_events()

    def flow_control(self, channel: int | None, bitrate_bps: int | None, now: float) -> list[Event]:
        if self.h245 is not None and not self.released:
            self.h245.flow_control(channel, bitrate_bps)
            self._flush_h245(now)
        return self._take_events()

    def pause_media(self, now: float) -> list[Event]:
        """Send the empty capability set (the peer closes its channels)."""
        if self.h245 is not None and not self.released:
            self.h245.pause(now)
            self._flush_h245(now)
        return self._take_events()

    def resume_media(self, now: float) -> list[Event]:
        if self.h245 is not None and not self.released:
            self.h245.resume(now)
            self._flush_h245(now)
        return self._take_events()

    def round_trip_delay(self, now: float) -> list[Event]:
        if self.h245 is not None and not self.released:
            self.h245.send_round_trip_delay(now)
            self._flush_h245(now)
        return self._take_events()

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Bytes from the call-signalling connection (empty ``data`` = the peer closed it)."""
        if self.released:
            return self._take_events()
        if not data:
            self._release(Cause.NORMAL_UNSPECIFIED, now, by_remote=True, reason="signalling connection closed",
                          send=False)
            return self._take_events()
        try:
            frames = self._framer.feed(data)
        except TpktError as exc:
            self._protocol_error(f"TPKT: {exc}", Cause.PROTOCOL_ERROR, now)
            return self._take_events()
        for frame in frames:
            if self.released:
                break
            self._receive_q931(frame, now)
        return self._take_events()

    def receive_h245_data(self, data: bytes, now: float) -> list[Event]:
        """Bytes from the separate H.245 connection (empty = closed)."""
        if self.released:
            return self._take_events()
        if not data:
            if self.h245 is not None and not self.h245.ended:
                self._release(Cause.NORMAL_UNSPECIFIED, now, by_remote=True, reason="H.245 connection closed")
            return self._take_events()
        try:
            frames = self._h245_framer.feed(data)
        except TpktError as exc:
            self._protocol_error(f"H.245 TPKT: {exc}", Cause.PROTOCOL_ERROR, now)
            return self._take_events()
        for frame in frames:
            if self.released:
                break
            self._receive_h245_pdu(frame, now)
        self._flush_h245(now)
        return self._take_events()

    def handle_timer(self, now: float) -> list[Event]:
        """Run expired timers; release the call when a procedure timed out."""
        for name in self.timers.pop_expired(now):
            if self.released:
                break
            cause = {
                "t303": Cause.RECOVERY_ON_TIMER_EXPIRY,
                "t310": Cause.NO_USER_RESPONDING,
                "t301": Cause.NO_ANSWER,
                "h245-connect": Cause.RECOVERY_ON_TIMER_EXPIRY,
            }.get(name, Cause.RECOVERY_ON_TIMER_EXPIRY)
            self._release(cause, now, by_remote=False, reason=f"timer {name} expired")
        if self.h245 is not None and not self.released:
            self.h245.handle_timer(now)
            self._flush_h245(now)
        return self._take_events()

    # ------------------------------------------------------------------ Q.931 reception

    def _receive_q931(self, frame: bytes, now: float) -> None:
        try:
            message = Q931Message.decode(frame)
        except Q931Error as exc:
            self._protocol_error(f"Q.931: {exc}", Cause.INVALID_MESSAGE, now)
            return
        if self.state is not CallState.IDLE and message.call_reference != self.call_reference:
            self._events.append(ProtocolErrorLogged(
                f"message for call reference {message.call_reference} ignored (ours {self.call_reference})"))
            return
        try:
            MessageType(message.message_type)
        except ValueError:
            self._send_status(Cause.MESSAGE_TYPE_NOT_IMPLEMENTED)
            self._events.append(ProtocolErrorLogged(f"unknown Q.931 message type 0x{message.message_type:02x}"))
            return
        if message.message_type not in _ANY_STATE and message.message_type not in _EXPECTED.get(
                self.state, frozenset()):
            self._send_status(Cause.MESSAGE_NOT_COMPATIBLE_WITH_STATE)
            self._events.append(ProtocolErrorLogged(
                f"{MessageType(message.message_type).name} not expected in state {self.state.name}"))
            return
        uuie: dict[str, Any] | None = None
        body: dict[str, Any] = {}
        try:
            payload = message.user_user
            if payload is not None:
                uuie = decode_uuie(payload)
        except (Q931Error, Asn1Error) as exc:
            self._protocol_error(f"user-user: {exc}", Cause.INVALID_MESSAGE, now)
            return
        if uuie is None:
            if message.message_type == MessageType.RELEASE_COMPLETE:
                uuie = {"h323-uu-pdu": {"h323-message-body": ("releaseComplete", {})}}
            else:
                self._protocol_error(f"{MessageType(message.message_type).name} without H.225.0 user-user IE",
                                     Cause.MANDATORY_IE_MISSING, now)
                return
        pdu = uuie.get("h323-uu-pdu", {})
        body_name, body_value = pdu.get("h323-message-body", ("empty", 0))
        expected = _BODY_BY_TYPE.get(message.message_type)
        if body_name != expected and not (message.message_type == MessageType.FACILITY and body_name == "empty"):
            self._protocol_error(f"{MessageType(message.message_type).name} carries a {body_name} body",
                                 Cause.INVALID_MESSAGE, now)
            return
        body = body_value if isinstance(body_value, dict) else {}
        try:
            self._dispatch(message, pdu, body, now)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            # A structurally valid PDU with contents we cannot use (e.g. bad addresses).
            self._protocol_error(f"{MessageType(message.message_type).name}: {exc!r}", Cause.INVALID_MESSAGE, now)
            return
        if not self.released:
            for pdu_bytes in pdu.get("h245Control", []):
                self._receive_h245_pdu(bytes(pdu_bytes), now)
                if self.released:
                    return
            self._flush_h245(now)

    def _dispatch(self, message: Q931Message, pdu: dict[str, Any], body: dict[str, Any], now: float) -> None:
        kind = message.message_type
        if kind == MessageType.SETUP:
            self._on_setup(message, pdu, body, now)
        elif kind == MessageType.CALL_PROCEEDING:
            self._on_answer_progress(pdu, body, now)
            if self.state is CallState.CALL_INITIATED:
                self.state = CallState.OUTGOING_CALL_PROCEEDING
                self.timers.stop("t303")
                self.timers.start("t310", now, self.config.t310_proceeding)
                self._events.append(CallProceeding(self.call_id))
        elif kind == MessageType.ALERTING:
            self._on_answer_progress(pdu, body, now)
            self.state = CallState.CALL_DELIVERED
            self.timers.stop("t303")
            self.timers.stop("t310")
            self.timers.start("t301", now, self.config.t301_alerting)
            self._events.append(CallAlerting(self.call_id))
        elif kind == MessageType.PROGRESS:
            self._on_answer_progress(pdu, body, now)
        elif kind == MessageType.CONNECT:
            self._on_answer_progress(pdu, body, now)
            self.state = CallState.ACTIVE
            self.timers.stop("t303")
            self.timers.stop("t310")
            self.timers.stop("t301")
            self._events.append(CallConnected(self.call_id, self.fast_start_active, self.tunnelling))
            if self.tunnelling:
                self._start_h245(now)
            elif self.h245_address is None:
                self._protocol_error("no tunnelling and no h245Address in Connect", Cause.PROTOCOL_ERROR, now)
        elif kind == MessageType.FACILITY:
            self._on_facility(pdu, body, now)
        elif kind == MessageType.RELEASE_COMPLETE:
            cause_ie = message.get(IE.CAUSE)
            cause: int = Cause.NORMAL_CALL_CLEARING
            if cause_ie is not None:
                cause = decode_cause(cause_ie)
            elif "reason" in body:
                cause = _CAUSE_BY_REASON.get(body["reason"][0], Cause.NORMAL_CALL_CLEARING)
            received = str(body["reason"][0]) if isinstance(body, dict) and isinstance(body.get("reason"), tuple) else ""
            self._release(cause, now, by_remote=True, reason="ReleaseComplete received", send=False,
                          h225_reason=received)
        elif kind == MessageType.STATUS_INQUIRY:
            self._send_status(30)  # response to STATUS ENQUIRY
        elif kind == MessageType.STATUS:
            cause_ie = message.get(IE.CAUSE)
            state_ie = message.get(IE.CALL_STATE)
            detail = f"cause {decode_cause(cause_ie)}" if cause_ie else "no cause"
            self._events.append(ProtocolErrorLogged(f"peer STATUS: {detail}"))
            if state_ie is not None and len(state_ie) == 1 and state_ie[0] & 0x3F == 0:
                # Q.931 5.8.11: the peer has no such call (null state), so neither do we.
                self._release(decode_cause(cause_ie) if cause_ie else Cause.MESSAGE_NOT_COMPATIBLE_WITH_STATE,
                              now, by_remote=True, reason="peer reports null call state", send=False)
        # INFORMATION and NOTIFY carry nothing we act on.

    # ------------------------------------------------------------------ incoming call

    def _on_setup(self, message: Q931Message, pdu: dict[str, Any], body: dict[str, Any], now: float) -> None:
        self.call_reference = message.call_reference
        guid = body.get("callIdentifier", {}).get("guid")
        if guid is None:
            # H.225.0 v1 endpoints omit it; make one up rather than refuse the call.
            self._events.append(ProtocolErrorLogged("Setup without callIdentifier"))
            guid = self._random_bytes(16)
        self.call_id = bytes(guid)
        self.conference_id = bytes(body["conferenceID"])
        self.tunnelling = bool(pdu.get("h245Tunnelling", False)) and self.config.tunnelling
        self.state = CallState.CALL_PRESENT
        sources = tuple(t for t in (alias_text(a) for a in body.get("sourceAddress", [])) if t)
        destinations = tuple(t for t in (alias_text(a) for a in body.get("destinationAddress", [])) if t)
        self.remote_aliases = sources
        calling = message.get(IE.CALLING_PARTY_NUMBER)
        called = message.get(IE.CALLED_PARTY_NUMBER)
        display = message.get(IE.DISPLAY)
        try:
            calling_number = decode_number(calling) if calling else None
            called_number = decode_number(called) if called else None
        except Q931Error as exc:
            self._events.append(ProtocolErrorLogged(f"party number ignored: {exc}"))
            calling_number = called_number = None
        address = body.get("h245Address")
        if address is not None and not self.tunnelling:
            self.h245_address = address_from_h225(address)
        offers = body.get("fastStart")
        if offers and self.config.fast_start:
            self._select_fast_start([bytes(o) for o in offers])
        elif offers:
            self._fast_start_refused = True
        self._send_q931(MessageType.CALL_PROCEEDING, "callProceeding",
                        self._response_body("callProceeding", with_fast_start=False), [])
        self.state = CallState.INCOMING_CALL_PROCEEDING
        self.timers.start("t301", now, self.config.t301_alerting)
        self._events.append(CallIncoming(
            call_id=self.call_id, calling_number=calling_number, called_number=called_number,
            source_aliases=sources, destination_aliases=destinations,
            display=display.decode("ascii", "replace") if display else None,
            fast_start_offered=bool(offers), tunnelling=self.tunnelling))

    def _select_fast_start(self, offers: list[bytes]) -> None:
        """Callee side of fast start: answer the caller's proposals (see :mod:`.fast_start`)."""
        answer = fast_start.select(offers, self.config.formats, self._transmit_formats, self._ensure_h245)
        self._events.extend(ProtocolErrorLogged(detail) for detail in answer.errors)
        # Reported when the answer carrying them is sent, after CallIncoming.
        self._fast_start_channels.extend(answer.channels)
        if answer.reply:
            self._fast_start_reply = answer.reply
            self.fast_start_active = True
        else:
            self._fast_start_refused = True

    @property
    def _transmit_formats(self) -> Sequence[MediaFormat]:
        return self.config.transmit_formats if self.config.transmit_formats is not None else self.config.formats

    # ------------------------------------------------------------------ outgoing call

    def _send_setup(self, destination: str | None, address: MediaAddress, now: float) -> None:
        cfg = self.config
        source = [("h323-ID", cfg.h323_id)]
        if cfg.e164:
            source.insert(0, ("dialledDigits", cfg.e164))
        body: dict[str, Any] = {
            "protocolIdentifier": H225_PROTOCOL_ID,
            "sourceAddress": source,
            "sourceInfo": self._endpoint_type(),
            "destCallSignalAddress": h225_transport_address(address),
            "activeMC": False,
            "conferenceID": self.conference_id,
            "conferenceGoal": ("create", 0),
            "callType": ("pointToPoint", 0),
            "sourceCallSignalAddress": h225_transport_address(MediaAddress(cfg.signalling_host, cfg.signalling_port)),
            "callIdentifier": {"guid": self.call_id},
            "mediaWaitForConnect": False,
            "canOverlapSend": False,
            "multipleCalls": False,
            "maintainConnection": False,
        }
        if destination:
            body["destinationAddress"] = [alias_address(destination)]
        if cfg.fast_start:
            body["fastStart"] = self._fast_start_proposals()
        ies = [encode_bearer_capability(), encode_display(cfg.display)]
        if cfg.e164:
            ies.append(encode_number(IE.CALLING_PARTY_NUMBER, cfg.e164))
        if destination and all(c in "0123456789*#" for c in destination):
            ies.append(encode_number(IE.CALLED_PARTY_NUMBER, destination))
        if cfg.tunnelling and cfg.early_h245:
            self._start_h245(now)  # its first PDUs are piggybacked on the Setup
        self._send_q931(MessageType.SETUP, "setup", body, ies)
        self.state = CallState.CALL_INITIATED
        self.timers.start("t303", now, cfg.t303_setup)

    def _fast_start_proposals(self) -> list[bytes]:
        """Caller side of fast start: our proposals, remembered to match the answer."""
        offers, encoded = fast_start.proposals(self._ensure_h245(), self.config.formats, self._transmit_formats)
        self._proposals.extend(offers)
        return encoded

    def _on_answer_progress(self, pdu: dict[str, Any], body: dict[str, Any], now: float) -> None:
        """Common handling of CallProceeding/Alerting/Progress/Connect at the caller."""
        if "h245Tunnelling" in pdu:
            self.tunnelling = self.config.tunnelling and bool(pdu["h245Tunnelling"])
        address = body.get("h245Address")
        if address is not None and not self.tunnelling and self.h245_address is None:
            self.h245_address = address_from_h225(address)
            if self.h245_address is None:
                raise ValueError("h245Address is not an IPv4 transport address")
            self._events.append(H245ConnectRequested(self.h245_address))
            self.timers.start("h245-connect", now, self.config.t_h245_connect)
        if "fastConnectRefused" in body:
            self.fast_start_active = False
            self._proposals.clear()
        elif "fastStart" in body and self._proposals and not self.fast_start_active:
            self._accept_fast_start_reply([bytes(b) for b in body["fastStart"]])

    def _accept_fast_start_reply(self, olcs: list[bytes]) -> None:
        events = fast_start.accept_reply(olcs, self._ensure_h245())
        self._events.extend(events)
        if any(isinstance(e, ChannelOpened) for e in events):
            self.fast_start_active = True

    def _on_facility(self, pdu: dict[str, Any], body: dict[str, Any], now: float) -> None:
        reason = body.get("reason", ("undefinedReason", 0))[0] if body else "transportedInformation"
        if reason == "startH245" and self.h245_address is None:
            address = address_from_h225(body.get("h245Address"))
            if address is not None:
                self.tunnelling = False
                self.h245_address = address
                self._events.append(H245ConnectRequested(address))
                self.timers.start("h245-connect", now, self.config.t_h245_connect)
        if body.get("fastStart") and self.outgoing and self._proposals and not self.fast_start_active:
            self._accept_fast_start_reply([bytes(b) for b in body["fastStart"]])

    # ------------------------------------------------------------------ H.245 glue

    def _ensure_h245(self) -> H245Session:
        if self.h245 is None:
            self.h245 = H245Session(self.config.h245_config(self.media_ports), self.rng)
        return self.h245

    def _start_h245(self, now: float) -> None:
        h245 = self._ensure_h245()
        if not h245.started:
            h245.start(now)
            self._flush_h245(now)

    def _receive_h245_pdu(self, data: bytes, now: float) -> None:
        h245 = self._ensure_h245()
        if not h245.started and (self.tunnelling or self.h245_connected_flag):
            self._start_h245(now)
        try:
            h245.receive_pdu(data, now)
        except Asn1Error as exc:
            self._protocol_error(f"H.245: {exc}", Cause.PROTOCOL_ERROR, now)
            return
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            self._protocol_error(f"H.245 contents: {exc!r}", Cause.PROTOCOL_ERROR, now)
            return
        if h245.ended and not self.released:
            self._release(Cause.NORMAL_CALL_CLEARING, now, by_remote=True, reason="endSessionCommand received")

    def _flush_h245(self, now: float) -> None:
        """Move H.245 output to its transport and act on H.245 events."""
        h245 = self.h245
        if h245 is None:
            return
        for event in h245.take_events():
            self._events.append(event)
            if self.released:
                continue
            if isinstance(event, H245Failed):
                self._release(Cause.RECOVERY_ON_TIMER_EXPIRY if "T10" in event.detail else Cause.PROTOCOL_ERROR,
                              now, by_remote=False, reason=f"H.245 {event.procedure}: {event.detail}")
            elif isinstance(event, CapabilityMismatch) and event.audio and (event.video or not any(
                    c.outgoing for c in h245.channels.values())):
                self._release(Cause.INCOMPATIBLE_DESTINATION, now, by_remote=False, reason="no common audio codec")
        if self.released:
            return
        if self.tunnelling:
            pdus = h245.take_outgoing()
            if (pdus or self._pending_h245) and self.state not in _NO_FACILITY_YET:
                # Facility may carry tunnelled H.245 once the peer has answered the Setup
                # (early H.245 before Connect included).
                body = self._response_body("facility", with_fast_start=False)
                body["reason"] = ("transportedInformation", 0)
                self._send_q931(MessageType.FACILITY, "facility", body, [], h245_control=pdus)
            elif pdus:
                self._pending_h245.extend(pdus)  # piggybacked on the next message (e.g. Setup)
        elif self.h245_connected_flag:
            for pdu in h245.take_outgoing():
                self._h245_out += encode_tpkt(pdu)

    # ------------------------------------------------------------------ building messages

    def _endpoint_type(self) -> dict[str, Any]:
        cfg = self.config
        endpoint: dict[str, Any] = {
            "vendor": {"vendor": {"t35CountryCode": 38, "t35Extension": 0, "manufacturerCode": 0},
                       "productId": cfg.product.encode()[:256], "versionId": cfg.version.encode()[:256]},
            "mc": cfg.is_mcu,
            "undefinedNode": False,
        }
        endpoint["mcu" if cfg.is_mcu else "terminal"] = {}
        return endpoint

    def _response_body(self, name: str, with_fast_start: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "protocolIdentifier": H225_PROTOCOL_ID,
            "callIdentifier": {"guid": self.call_id},
            "multipleCalls": False,
            "maintainConnection": False,
        }
        if name in ("callProceeding", "alerting", "connect", "progress"):
            body["destinationInfo"] = self._endpoint_type()
        if with_fast_start and not self._fast_start_sent:
            if self._fast_start_reply:
                body["fastStart"] = self._fast_start_reply
                self._fast_start_sent = True
                self._events.extend(ChannelOpened(c) for c in self._fast_start_channels)
            elif self._fast_start_refused:
                body["fastConnectRefused"] = 0
                self._fast_start_sent = True
        return body

    def _send_q931(self, message_type: int, body_name: str, body: dict[str, Any],
                   ies: list[tuple[int, bytes]], h245_control: list[bytes] | None = None,
                   call_reference: int | None = None) -> None:
        pdu: dict[str, Any] = {"h323-message-body": (body_name, body), "h245Tunnelling": self.tunnelling}
        control = list(self._pending_h245) + list(h245_control or [])
        if control and self.tunnelling:
            pdu["h245Control"] = control
            self._pending_h245.clear()
        uuie = {"h323-uu-pdu": pdu}
        message = Q931Message(message_type, self.call_reference if call_reference is None else call_reference,
                              from_destination=not self.outgoing,
                              ies=[*ies, user_user_ie(encode_uuie(uuie))])
        self._out += encode_tpkt(message.encode())

    def _send_status(self, cause: int) -> None:
        body = {"protocolIdentifier": H225_PROTOCOL_ID, "callIdentifier": {"guid": self.call_id or bytes(16)}}
        state = self.state.value if self.state is not CallState.RELEASED else 0
        self._send_q931(MessageType.STATUS, "status", body, [encode_cause(cause), encode_call_state(state)])

    # ------------------------------------------------------------------ release

    def _protocol_error(self, detail: str, cause: int, now: float) -> None:
        self._events.append(ProtocolErrorLogged(detail))
        self._release(cause, now, by_remote=False, reason=detail)

    def _release(self, cause: int, now: float, by_remote: bool, reason: str, send: bool = True,
                 h225_reason: str | None = None) -> None:
        if self.released:
            return
        if h225_reason is None and not by_remote:
            h225_reason = _RELEASE_REASONS.get(cause, "undefinedReason")
        if send and not by_remote or (send and by_remote and reason.startswith("endSession")):
            if self.h245 is not None and self.h245.started and not self.h245.ended:
                self.h245.end_session()
                if not self.tunnelling and self.h245_connected_flag:
                    for pdu in self.h245.take_outgoing():
                        self._h245_out += encode_tpkt(pdu)
            control: list[bytes] = []
            if self.h245 is not None and self.tunnelling:
                control = self.h245.take_outgoing()
            if self.state is not CallState.IDLE:
                body: dict[str, Any] = {
                    "protocolIdentifier": H225_PROTOCOL_ID,
                    "reason": (h225_reason or "undefinedReason", 0),
                    "callIdentifier": {"guid": self.call_id or bytes(16)},
                }
                self._send_q931(MessageType.RELEASE_COMPLETE, "releaseComplete", body,
                                [encode_cause(cause)], h245_control=control)
        if self.h245 is not None:
            self.h245.timers.clear()
            self.h245.take_events()
        self.timers.clear()
        self.state = CallState.RELEASED
        self.release_cause = cause
        self._events.append(CallReleased(self.call_id, cause, by_remote, reason, h225_reason or ""))

