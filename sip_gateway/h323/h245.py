"""H.245 control protocol for one call, sans-I/O.

:class:`H245Session` runs master/slave determination (with retries), the capability
exchange (including the empty capability set used to pause media), logical channel
signalling (open/ack/reject/close), round-trip-delay keep-alives, user input (DTMF),
video fast update and flow control. It consumes decoded MultimediaSystemControlMessage
values and produces encoded PDUs; whether those travel tunnelled in H.225.0 messages or
on a separate TCP connection is the call's business (:mod:`.call`).

H.239 (:mod:`.h239`): with ``H245Config.content_formats`` the capability set announces the
presentation role; a peer's content OLC (role presentation) is accepted on session 3 and
reported as a ``ChannelOpened`` whose channel has ``content=True``; ``open_channel(...,
content=True)`` opens ours; H.239 generic messages arrive as ``H239MessageReceived`` events
and leave through :meth:`H245Session.send_h239`. Malformed H.239 is logged and ignored.

Far-end camera control (:mod:`.h224_data`, H.323 Annex Q): with ``H245Config.h224`` the capability
set announces the H.224 data application; when the peer announced it too we open our H.224 channel
(``dataType`` ``data``, session :data:`~.capabilities.H224_SESSION`, a dynamic payload type) and
accept the peer's; both are ``ChannelOpened`` with ``format.codec`` ``Codec.H224``. Without
``h224`` (or paused, or bidirectional) a peer's H.224 OLC is rejected.

Size: one H.245 session state machine of about 700 lines: capability exchange, master/slave
determination, logical channels (camera and H.239 content) all read and write the same
session state; the H.239 values themselves live in :mod:`.h239`.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from . import h224_data, h239
from .asn1 import decode_h245, encode_h245
from .capabilities import (
    AUDIO_SESSION,
    H224_SESSION,
    VIDEO_SESSION,
    Codec,
    MediaFormat,
    RemoteCapabilities,
    build_terminal_capability_set,
    choose_format,
    data_type_from_format,
    format_from_data_type,
    media_packetization,
    parse_terminal_capability_set,
    with_channel_parameters,
)
from .events import (
    CapabilitiesReceived,
    CapabilityMismatch,
    ChannelClosed,
    ChannelOpened,
    ChannelRejected,
    Event,
    FlowControlRequested,
    H245Failed,
    LogicalChannel,
    MasterSlaveDetermined,
    MediaAddress,
    MediaPaused,
    MediaResumed,
    ProtocolErrorLogged,
    RoundTripDelayMeasured,
    UserInputReceived,
    VideoFastUpdateRequested,
)
from .timers import Timers

__all__ = [
    "H245Config",
    "H245Session",
    "TERMINAL_TYPE_MCU",
    "TERMINAL_TYPE_TERMINAL",
    "transport_address",
    "media_address_from",
]

TERMINAL_TYPE_TERMINAL = 50  # H.323 table 1: terminal
TERMINAL_TYPE_MCU = 190  # H.323 table 1: MCU with MC and MP
DTMF_SIGNALS = frozenset("0123456789#*ABCD!")
_SDN_MODULO = 1 << 24


def transport_address(address: MediaAddress) -> tuple[str, Any]:
    """H.245 TransportAddress (unicast IPv4) for a media address."""
    octets = bytes(int(x) for x in address.host.split("."))
    if len(octets) != 4:
        raise ValueError(f"not an IPv4 address: {address.host}")
    return ("unicastAddress", ("iPAddress", {"network": octets, "tsapIdentifier": address.port}))


def media_address_from(value: Any) -> MediaAddress | None:
    """MediaAddress of an H.245 TransportAddress value; None for anything but unicast IPv4."""
    try:
        if value[0] != "unicastAddress" or value[1][0] != "iPAddress":
            return None
        ip = value[1][1]
        network = bytes(ip["network"])
        if len(network) != 4:
            return None
        return MediaAddress(".".join(str(b) for b in network), int(ip["tsapIdentifier"]))
    except (KeyError, TypeError, IndexError, ValueError):
        return None


@dataclass
class H245Config:
    """Local side of H.245: what we receive, where, and the procedure timers (seconds)."""

    formats: Sequence[MediaFormat]  # what we receive: our capability set
    transmit_formats: Sequence[MediaFormat] | None = None  # what we can send (None: ``formats``)
    media_host: str = "127.0.0.1"
    media_ports: dict[int, int] = field(default_factory=lambda: {AUDIO_SESSION: 0, VIDEO_SESSION: 0})
    terminal_type: int = TERMINAL_TYPE_MCU
    t101_capability: float = 10.0
    t103_open_channel: float = 10.0
    t105_round_trip: float = 10.0
    t106_master_slave: float = 10.0
    n100_msd_retries: int = 3
    round_trip_interval: float = 0.0  # 0 disables keep-alives
    open_channels: bool = True  # open our transmit channels once capabilities are known
    content_formats: Sequence[MediaFormat] = ()  # H.239 presentation we receive (empty: no H.239)
    h224: bool = False  # far-end camera control: announce H.224, open and accept its channel

    def local_rtp(self, session_id: int) -> MediaAddress:
        return MediaAddress(self.media_host, self.media_ports.get(session_id, 0))

    def local_rtcp(self, session_id: int) -> MediaAddress:
        port = self.media_ports.get(session_id, 0)
        return MediaAddress(self.media_host, port + 1 if port else 0)


class MsdState(Enum):
    IDLE = "idle"
    OUTGOING_AWAITING = "outgoing-awaiting-response"
    INCOMING_AWAITING = "incoming-awaiting-response"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _PendingChannel:
    number: int
    fmt: MediaFormat
    content: bool = False


def _pending_session(pending: _PendingChannel) -> int:
    """The session a proposed channel is filed under (3 for an H.239 content channel)."""
    return h239.CONTENT_SESSION if pending.content else pending.fmt.session_id


class H245Session:
    """One H.245 control channel (tunnelled or not): feed PDUs, collect PDUs and events."""

    def __init__(self, config: H245Config, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._outgoing: list[bytes] = []
        self._events: list[Event] = []
        self.timers = Timers()
        # master/slave determination
        self.msd_state = MsdState.IDLE
        self.master: bool | None = None
        self._sdn = 0
        self._msd_retries = 0
        self._msd_ack_received = False
        self._msd_ack_sent = False
        # capability exchange
        self._tcs_sequence = 0
        self.local_capabilities_acked = False
        self.remote_capabilities: RemoteCapabilities | None = None
        self.remote_h239 = False  # the peer announced the H.239 control capability
        self.remote_content_formats: list[MediaFormat] = []  # H.239 presentation it receives
        self.remote_h224 = False  # the peer announced the H.224 data application (FECC)
        self.paused_by_remote = False
        self.paused_locally = False
        # logical channels
        self._next_channel = 1
        self._pending: dict[int, _PendingChannel] = {}
        self.channels: dict[tuple[int, bool], LogicalChannel] = {}  # (number, outgoing)
        self._outgoing_opened_for: set[int] = set()  # session ids with an outgoing channel
        self._mismatch_reported = False
        # round trip delay
        self._rtd_sequence = 0
        self._rtd_sent_at: float | None = None
        self.ended = False
        self.started = False

    # ------------------------------------------------------------------ I/O surface

    def take_outgoing(self) -> list[bytes]:
        """Encoded MultimediaSystemControlMessages to send, in order."""
        out, self._outgoing = self._outgoing, []
        return out

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def _send(self, message: tuple[str, Any]) -> None:
        self._outgoing.append(encode_h245(message))

    # ------------------------------------------------------------------ commands

    def start(self, now: float) -> None:
        """Begin: send our capabilities and start master/slave determination."""
        if self.started:
            return
        self.started = True
        self.send_capabilities(now)
        self._start_msd(now)
        if self.config.round_trip_interval > 0:
            self.timers.start("rtd-interval", now, self.config.round_trip_interval)

    def send_capabilities(self, now: float, formats: Sequence[MediaFormat] | None = None) -> None:
        """Send a TerminalCapabilitySet (empty ``formats`` = pause the peer's media)."""
        self._tcs_sequence = (self._tcs_sequence + 1) & 0xFF
        chosen = self.config.formats if formats is None else formats
        tcs = build_terminal_capability_set(self._tcs_sequence, chosen)
        if chosen and self.config.content_formats:
            h239.add_to_capability_set(tcs, self.config.content_formats)
        if chosen and self.config.h224:
            h224_data.add_to_capability_set(tcs)
        self._send(("request", ("terminalCapabilitySet", tcs)))
        self.local_capabilities_acked = False
        self.timers.start("t101", now, self.config.t101_capability)

    def pause(self, now: float) -> None:
        """Ask the peer to stop sending (empty capability set, H.323 8.4.6)."""
        self.paused_locally = True
        self.send_capabilities(now, [])

    def resume(self, now: float) -> None:
        """Send our full capabilities again after :meth:`pause`."""
        self.paused_locally = False
        self.send_capabilities(now)

    def open_channel(self, fmt: MediaFormat, now: float, content: bool = False) -> int:
        """Propose an outgoing logical channel for ``fmt``; returns its number. ``content``
        opens an H.239 presentation channel (session 3, role label presentation)."""
        number = self._allocate_channel()
        session_id = h239.CONTENT_SESSION if content else fmt.session_id
        h2250: dict[str, Any] = {
            "sessionID": session_id,
            "mediaControlChannel": transport_address(self.config.local_rtcp(session_id)),
        }
        if fmt.codec is not Codec.H224:
            h2250["silenceSuppression"] = False
        packetization = media_packetization(fmt)
        if packetization is not None:  # dynamic payload formats: H.264, H.263 as H263-1998
            h2250["dynamicRTPPayloadType"] = fmt.rtp_payload_type
            h2250["mediaPacketization"] = packetization
        data_type: tuple[str, Any]
        if fmt.codec is Codec.H224:
            h2250["dynamicRTPPayloadType"] = fmt.rtp_payload_type
            data_type = h224_data.h224_data_type()
        elif content:
            data_type = h239.content_data_type(data_type_from_format(fmt)[1])
        else:
            data_type = data_type_from_format(fmt)
        olc = {
            "forwardLogicalChannelNumber": number,
            "forwardLogicalChannelParameters": {
                "dataType": data_type,
                "multiplexParameters": ("h2250LogicalChannelParameters", h2250),
            },
        }
        self._pending[number] = _PendingChannel(number, fmt, content)
        self._outgoing_opened_for.add(session_id)
        self._send(("request", ("openLogicalChannel", olc)))
        self.timers.start(f"t103:{number}", now, self.config.t103_open_channel)
        return number

    def close_channel(self, number: int, now: float) -> None:
        """Close one of our outgoing channels."""
        channel = self.channels.pop((number, True), None)
        if channel is None:
            return
        self._outgoing_opened_for.discard(channel.session_id)
        self._send(("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": number,
                                                         "source": ("user", 0)})))
        self.timers.start(f"clc:{number}", now, self.config.t103_open_channel)
        self._events.append(ChannelClosed(number, True))

    def register_fast_start_channel(self, channel: LogicalChannel) -> None:
        """Record a channel opened by fast start so commands and closes know it."""
        self.channels[(channel.number, channel.outgoing)] = channel
        if channel.outgoing:
            self._outgoing_opened_for.add(channel.session_id)
            self._next_channel = max(self._next_channel, channel.number + 1)

    def send_user_input(self, text: str, signal: bool = True, duration_ms: int = 100) -> None:
        """DTMF as ``signal`` (one character per indication) or one alphanumeric string."""
        if signal:
            for char in text:
                if char not in DTMF_SIGNALS:
                    raise ValueError(f"{char!r} is not a DTMF signal")
                self._send(("indication", ("userInput", ("signal", {
                    "signalType": char, "duration": max(1, min(duration_ms, 65535))}))))
        else:
            self._send(("indication", ("userInput", ("alphanumeric", text))))

    def request_fast_update(self, channel: int) -> None:
        """Ask the peer for a key frame on its outgoing (our incoming) channel."""
        self._send(("command", ("miscellaneousCommand", {
            "logicalChannelNumber": channel, "type": ("videoFastUpdatePicture", 0)})))

    def flow_control(self, channel: int | None, bitrate_bps: int | None) -> None:
        """Limit the peer's transmit rate on one channel (or the whole call)."""
        scope: tuple[str, Any] = ("wholeMultiplex", 0) if channel is None else ("logicalChannelNumber", channel)
        restriction: tuple[str, Any] = ("noRestriction", 0) if bitrate_bps is None else (
            "maximumBitRate", max(0, min(bitrate_bps // 100, 16777215)))
        self._send(("command", ("flowControlCommand", {"scope": scope, "restriction": restriction})))

    def send_round_trip_delay(self, now: float) -> None:
        self._rtd_sequence = (self._rtd_sequence + 1) & 0xFF
        self._rtd_sent_at = now
        self._send(("request", ("roundTripDelayRequest", {"sequenceNumber": self._rtd_sequence})))
        self.timers.start("t105", now, self.config.t105_round_trip)

    def end_session(self) -> None:
        """Send endSessionCommand (H.323 8.5 step 3) and stop all procedures."""
        if not self.ended:
            self.ended = True
            self._send(("command", ("endSessionCommand", ("disconnect", 0))))
        self.timers.clear()

    # ------------------------------------------------------------------ input

    def receive_pdu(self, data: bytes, now: float) -> None:
        """Handle one encoded MultimediaSystemControlMessage.

        Raises :class:`Asn1Error` when it cannot be decoded: the call turns that into a
        release with cause (a malformed peer cannot be trusted to recover).
        """
        message = decode_h245(data)
        self.receive_message(message, now)

    def receive_message(self, message: tuple[str, Any], now: float) -> None:
        kind, inner = message
        if kind.startswith("_ext_") or not isinstance(inner, tuple) or len(inner) != 2:
            # An alternative added by a later H.245 version (pycrate: ('_ext_N', b'')): skip it.
            self._events.append(ProtocolErrorLogged(f"H.245 {kind}: unknown extension ignored"))
            return
        name, body = inner
        handler = getattr(self, f"_on_{kind}_{name}", None)
        if handler is None:
            self._events.append(ProtocolErrorLogged(f"H.245 {kind} {name} not handled"))
            if kind in ("request", "command"):
                self._send(("indication", ("functionNotUnderstood", (kind, (name, body)))))
            return
        handler(body, now)

    def handle_timer(self, now: float) -> None:
        for name in self.timers.pop_expired(now):
            self._on_timer(name, now)

    # ------------------------------------------------------------------ master/slave

    def _start_msd(self, now: float) -> None:
        self._sdn = self._rng.getrandbits(24)
        self.msd_state = MsdState.OUTGOING_AWAITING
        self._send(("request", ("masterSlaveDetermination", {
            "terminalType": self.config.terminal_type, "statusDeterminationNumber": self._sdn})))
        self.timers.start("t106", now, self.config.t106_master_slave)

    def _determine(self, terminal_type: int, sdn: int) -> bool | None:
        """True if we are master, False if slave, None if indeterminate (H.245 C.2)."""
        if self.config.terminal_type != terminal_type:
            return self.config.terminal_type > terminal_type
        diff = (self._sdn - sdn) % _SDN_MODULO
        if diff in (0, _SDN_MODULO // 2):
            return None
        return diff < _SDN_MODULO // 2

    def _on_request_masterSlaveDetermination(self, body: dict[str, Any], now: float) -> None:
        if self.msd_state is MsdState.DONE:
            # A new determination from the peer: answer with the settled result.
            self._send_msd_ack()
            return
        if self.msd_state is MsdState.IDLE:
            self._sdn = self._rng.getrandbits(24)
        decision = self._determine(int(body["terminalType"]), int(body["statusDeterminationNumber"]))
        if decision is None:
            self._send(("response", ("masterSlaveDeterminationReject", {"cause": ("identicalNumbers", 0)})))
            return
        self.master = decision
        self._send_msd_ack()
        if self._msd_ack_received or self.msd_state is MsdState.IDLE:
            self.msd_state = MsdState.INCOMING_AWAITING
        self.timers.start("t106", now, self.config.t106_master_slave)
        self._maybe_msd_done(now)

    def _send_msd_ack(self) -> None:
        # The decision field states the status of the terminal that receives the Ack.
        self._send(("response", ("masterSlaveDeterminationAck", {
            "decision": ("slave", 0) if self.master else ("master", 0)})))
        self._msd_ack_sent = True

    def _on_response_masterSlaveDeterminationAck(self, body: dict[str, Any], now: float) -> None:
        ours = body["decision"][0] == "master"
        if self.master is None:
            self.master = ours
            self._send_msd_ack()
        elif self.master != ours:
            self._msd_failed("inconsistent master/slave decision", now)
            return
        self._msd_ack_received = True
        self._maybe_msd_done(now)

    def _maybe_msd_done(self, now: float) -> None:
        if self._msd_ack_received and self._msd_ack_sent and self.msd_state is not MsdState.DONE:
            self.msd_state = MsdState.DONE
            self.timers.stop("t106")
            self._events.append(MasterSlaveDetermined(bool(self.master)))
            self._maybe_open_channels(now)

    def _on_response_masterSlaveDeterminationReject(self, body: dict[str, Any], now: float) -> None:
        self._msd_retries += 1
        if self._msd_retries >= self.config.n100_msd_retries:
            self._msd_failed(f"indeterminate after {self._msd_retries} attempts", now)
            return
        self.master = None
        self._msd_ack_sent = False
        self._msd_ack_received = False
        self._start_msd(now)

    def _on_indication_masterSlaveDeterminationRelease(self, body: dict[str, Any], now: float) -> None:
        self._msd_failed("released by peer", now)

    def _msd_failed(self, detail: str, now: float) -> None:
        self.msd_state = MsdState.FAILED
        self.timers.stop("t106")
        self._events.append(H245Failed("master-slave-determination", detail))

    # ------------------------------------------------------------------ capabilities

    def _on_request_terminalCapabilitySet(self, body: dict[str, Any], now: float) -> None:
        remote = parse_terminal_capability_set(body)
        self._send(("response", ("terminalCapabilitySetAck", {"sequenceNumber": remote.sequence_number})))
        was_paused = self.paused_by_remote
        self.remote_capabilities = remote
        self.remote_h239, self.remote_content_formats = h239.remote_content_formats(body)
        self.remote_h224 = h224_data.remote_has_h224(body)
        if remote.empty:
            self.paused_by_remote = True
            for number, _outgoing in [k for k in self.channels if k[1]]:
                self.close_channel(number, now)
            self._events.append(MediaPaused())
            return
        self.paused_by_remote = False
        self._events.append(CapabilitiesReceived(tuple(remote.formats), remote.skipped,
                                                 tuple(sorted(remote.user_input))))
        if was_paused:
            self._events.append(MediaResumed())
        self._maybe_open_channels(now)

    def _on_response_terminalCapabilitySetAck(self, body: dict[str, Any], now: float) -> None:
        if int(body["sequenceNumber"]) == self._tcs_sequence:
            self.local_capabilities_acked = True
            self.timers.stop("t101")

    def _on_response_terminalCapabilitySetReject(self, body: dict[str, Any], now: float) -> None:
        self.timers.stop("t101")
        self._events.append(H245Failed("capability-exchange", f"rejected: {body.get('cause')!r}"))

    def _on_indication_terminalCapabilitySetRelease(self, body: dict[str, Any], now: float) -> None:
        self._events.append(ProtocolErrorLogged("peer released its capability exchange"))

    def _maybe_open_channels(self, now: float) -> None:
        remote = self.remote_capabilities
        if (not self.config.open_channels or remote is None or self.paused_by_remote
                or self.msd_state is not MsdState.DONE):
            return
        sendable = self.config.formats if self.config.transmit_formats is None else self.config.transmit_formats
        audio = choose_format(sendable, remote.formats, video=False)
        video = choose_format(sendable, remote.formats, video=True)
        local_has_video = any(f.codec.is_video for f in sendable)
        if (audio is None or (video is None and local_has_video)) and not self._mismatch_reported:
            self._mismatch_reported = True
            self._events.append(CapabilityMismatch(audio=audio is None,
                                                   video=video is None and local_has_video))
        for fmt in (audio, video):
            if fmt is not None and fmt.session_id not in self._outgoing_opened_for:
                self.open_channel(fmt, now)
        if self.config.h224 and self.remote_h224 and H224_SESSION not in self._outgoing_opened_for:
            self.open_channel(h224_data.H224_FORMAT, now)

    # ------------------------------------------------------------------ logical channels

    def _allocate_channel(self) -> int:
        number = self._next_channel
        self._next_channel = number + 1 if number < 65535 else 1
        return number

    def allocate_channel_number(self, avoid: frozenset[int] = frozenset()) -> int:
        """A number for a channel we transmit on, unused by our channels and not in ``avoid``.

        The callee of a fast start numbers the reverse channels it accepts itself (H.323
        8.1.7.1): the caller's reverse proposals carry a placeholder number (H323Plus puts 1
        in every one), so reusing it would give two of our channels the same number.
        """
        for _ in range(65535):
            number = self._allocate_channel()
            if number not in avoid and (number, True) not in self.channels and number not in self._pending:
                return number
        raise ValueError("no free logical channel number")

    def _on_request_openLogicalChannel(self, body: dict[str, Any], now: float) -> None:
        number = int(body["forwardLogicalChannelNumber"])
        forward = body["forwardLogicalChannelParameters"]
        if h224_data.is_h224(forward["dataType"]):
            return self._open_h224_channel(number, forward.get("multiplexParameters"), body)
        fmt = format_from_data_type(forward["dataType"])
        content_fmt = h239.content_format(forward["dataType"]) if fmt is None else None
        if content_fmt is not None:
            return self._open_content_channel(number, content_fmt, forward.get("multiplexParameters"), body)
        mux = forward.get("multiplexParameters")
        cause: str | None = None
        if "reverseLogicalChannelParameters" in body:
            cause = "unsuitableReverseParameters"  # bidirectional channels are not supported
        elif self.paused_locally:
            cause = "dataTypeNotAvailable"  # we sent the empty capability set
        elif fmt is None or not isinstance(mux, tuple) or mux[0] != "h2250LogicalChannelParameters":
            cause = "dataTypeNotSupported"
        elif choose_format(self.config.formats, [fmt], video=fmt.codec.is_video) is None:
            cause = "dataTypeNotSupported"
        elif (number, False) in self.channels:
            cause = "invalidSessionID"
        if cause is not None or fmt is None or not isinstance(mux, tuple):
            self._send(("response", ("openLogicalChannelReject", {
                "forwardLogicalChannelNumber": number, "cause": (cause or "unspecified", 0)})))
            return
        params = mux[1]
        session_id = int(params.get("sessionID", fmt.session_id)) or fmt.session_id
        fmt = with_channel_parameters(fmt, params)
        payload_type = fmt.rtp_payload_type
        channel = LogicalChannel(
            number=number, outgoing=False, format=fmt, session_id=session_id, payload_type=payload_type,
            local_rtp=self.config.local_rtp(fmt.session_id), local_rtcp=self.config.local_rtcp(fmt.session_id),
            remote_rtcp=media_address_from(params.get("mediaControlChannel")))
        self.channels[(number, False)] = channel
        self._send(("response", ("openLogicalChannelAck", {
            "forwardLogicalChannelNumber": number,
            "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
                "sessionID": session_id,
                "mediaChannel": transport_address(channel.local_rtp or self.config.local_rtp(session_id)),
                "mediaControlChannel": transport_address(channel.local_rtcp or self.config.local_rtcp(session_id)),
            }),
        })))
        self._events.append(ChannelOpened(channel))

    def _refused_side_channel(self, number: int, mux: Any, body: dict[str, Any], supported: bool, *,
                              supported_first: bool) -> bool:
        """The checks an incoming content or H.224 channel shares; True when it was refused (answered
        with openLogicalChannelReject and nothing changed). ``supported``: we announced what it carries."""
        well_formed = (isinstance(mux, tuple) and mux[0] == "h2250LogicalChannelParameters"
                       and isinstance(mux[1], dict))
        checks = [("unsuitableReverseParameters", "reverseLogicalChannelParameters" in body),
                  ("dataTypeNotAvailable", self.paused_locally), ("dataTypeNotSupported", not well_formed)]
        unsupported = ("dataTypeNotSupported", not supported)
        checks = [unsupported, *checks] if supported_first else [*checks, unsupported]
        checks.append(("invalidSessionID", (number, False) in self.channels))
        cause = next((c for c, failed in checks if failed), None)
        if cause is not None:
            self._send(("response", ("openLogicalChannelReject", {
                "forwardLogicalChannelNumber": number, "cause": (cause, 0)})))
        return cause is not None

    def _accept_side_channel(self, channel: LogicalChannel, local_rtp: MediaAddress, local_rtcp: MediaAddress) -> None:
        """Record an accepted incoming channel and acknowledge it with our ports for its session."""
        self.channels[(channel.number, False)] = channel
        self._send(("response", ("openLogicalChannelAck", {
            "forwardLogicalChannelNumber": channel.number,
            "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
                "sessionID": channel.session_id, "mediaChannel": transport_address(local_rtp),
                "mediaControlChannel": transport_address(local_rtcp)}),
        })))
        self._events.append(ChannelOpened(channel))

    def _open_content_channel(self, number: int, fmt: MediaFormat, mux: Any, body: dict[str, Any]) -> None:
        """An incoming H.239 presentation channel: accepted when we announced content formats."""
        supported = choose_format(self.config.content_formats, [fmt], video=True) is not None
        if self._refused_side_channel(number, mux, body, supported, supported_first=False):
            return
        params = mux[1]
        session_id = int(params.get("sessionID", h239.CONTENT_SESSION)) or h239.CONTENT_SESSION
        fmt = with_channel_parameters(fmt, params)
        local_rtp = self.config.local_rtp(h239.CONTENT_SESSION)
        local_rtcp = self.config.local_rtcp(h239.CONTENT_SESSION)
        channel = LogicalChannel(
            number=number, outgoing=False, format=fmt, session_id=session_id, payload_type=fmt.rtp_payload_type,
            local_rtp=local_rtp, local_rtcp=local_rtcp, remote_rtcp=media_address_from(params.get("mediaControlChannel")),
            content=True)
        self._accept_side_channel(channel, local_rtp, local_rtcp)

    def _open_h224_channel(self, number: int, mux: Any, body: dict[str, Any]) -> None:
        """An incoming H.224 (FECC) channel: accepted when we announced H.224, on its own session's
        port, with the payload type the peer's ``dynamicRTPPayloadType`` names."""
        if self._refused_side_channel(number, mux, body, self.config.h224, supported_first=True):
            return
        params = mux[1]
        try:
            payload_type = int(params.get("dynamicRTPPayloadType", h224_data.H224_PAYLOAD_TYPE))
            session_id = int(params.get("sessionID", H224_SESSION)) or H224_SESSION
        except (TypeError, ValueError):
            payload_type, session_id = h224_data.H224_PAYLOAD_TYPE, H224_SESSION
        fmt = replace(h224_data.H224_FORMAT, payload_type=payload_type)
        local_rtp, local_rtcp = self.config.local_rtp(H224_SESSION), self.config.local_rtcp(H224_SESSION)
        channel = LogicalChannel(
            number=number, outgoing=False, format=fmt, session_id=session_id, payload_type=payload_type,
            local_rtp=local_rtp, local_rtcp=local_rtcp, remote_rtcp=media_address_from(params.get("mediaControlChannel")))
        self._accept_side_channel(channel, local_rtp, local_rtcp)

    # ------------------------------------------------------------------ H.239 (generic messages)

    def send_h239(self, message: h239.H239Message) -> None:
        """Send an H.239 token or flow-control message (see :mod:`.h239`)."""
        self._send(h239.message_value(message))

    def _on_generic(self, kind: str, name: str, body: Any) -> None:
        try:
            message = h239.parse_message((kind, (name, body)))
        except h239.H239Error as exc:
            self._events.append(ProtocolErrorLogged(f"H.239 {name}: {exc}"))
            return
        if message is not None:
            self._events.append(h239.H239MessageReceived(message))
            return
        self._events.append(ProtocolErrorLogged(f"H.245 {kind} {name}: not H.239, ignored"))
        if kind in ("request", "command"):
            self._send(("indication", ("functionNotUnderstood", (kind, (name, body)))))

    def _on_request_genericRequest(self, body: Any, now: float) -> None:
        self._on_generic("request", "genericRequest", body)

    def _on_response_genericResponse(self, body: Any, now: float) -> None:
        self._on_generic("response", "genericResponse", body)

    def _on_command_genericCommand(self, body: Any, now: float) -> None:
        self._on_generic("command", "genericCommand", body)

    def _on_indication_genericIndication(self, body: Any, now: float) -> None:
        self._on_generic("indication", "genericIndication", body)

    def _on_response_openLogicalChannelAck(self, body: dict[str, Any], now: float) -> None:
        number = int(body["forwardLogicalChannelNumber"])
        pending = self._pending.pop(number, None)
        self.timers.stop(f"t103:{number}")
        if pending is None:
            self._events.append(ProtocolErrorLogged(f"OLC ack for unknown channel {number}"))
            return
        ack = body.get("forwardMultiplexAckParameters")
        # An unknown extension alternative decodes as ('_ext_N', b''): no parameters.
        params: dict[str, Any] = ack[1] if isinstance(ack, tuple) and isinstance(ack[1], dict) else {}
        fmt = pending.fmt
        payload_type = int(params.get("dynamicRTPPayloadType", fmt.rtp_payload_type))
        local_session = h239.CONTENT_SESSION if pending.content else fmt.session_id
        channel = LogicalChannel(
            number=number, outgoing=True, format=replace(fmt, payload_type=payload_type),
            session_id=int(params.get("sessionID", local_session)) or local_session,
            payload_type=payload_type,
            local_rtp=self.config.local_rtp(local_session), local_rtcp=self.config.local_rtcp(local_session),
            remote_rtp=media_address_from(params.get("mediaChannel")),
            remote_rtcp=media_address_from(params.get("mediaControlChannel")), content=pending.content)
        self.channels[(number, True)] = channel
        self._send(("indication", ("openLogicalChannelConfirm", {"forwardLogicalChannelNumber": number})))
        self._events.append(ChannelOpened(channel))

    def _on_response_openLogicalChannelReject(self, body: dict[str, Any], now: float) -> None:
        number = int(body["forwardLogicalChannelNumber"])
        pending = self._pending.pop(number, None)
        self.timers.stop(f"t103:{number}")
        session_id = _pending_session(pending) if pending else 0
        self._outgoing_opened_for.discard(session_id)
        self._events.append(ChannelRejected(number, session_id, str(body["cause"][0])))

    def _on_indication_openLogicalChannelConfirm(self, body: dict[str, Any], now: float) -> None:
        return  # confirms our ack; nothing to do

    def _on_request_closeLogicalChannel(self, body: dict[str, Any], now: float) -> None:
        number = int(body["forwardLogicalChannelNumber"])
        self._send(("response", ("closeLogicalChannelAck", {"forwardLogicalChannelNumber": number})))
        if self.channels.pop((number, False), None) is not None:
            self._events.append(ChannelClosed(number, False))

    def _on_response_closeLogicalChannelAck(self, body: dict[str, Any], now: float) -> None:
        self.timers.stop(f"clc:{int(body['forwardLogicalChannelNumber'])}")

    def _on_request_requestChannelClose(self, body: dict[str, Any], now: float) -> None:
        number = int(body["forwardLogicalChannelNumber"])
        self._send(("response", ("requestChannelCloseAck", {"forwardLogicalChannelNumber": number})))
        self.close_channel(number, now)

    # ------------------------------------------------------------------ commands/indications

    def _on_command_miscellaneousCommand(self, body: dict[str, Any], now: float) -> None:
        kind = body["type"][0]
        if kind in ("videoFastUpdatePicture", "videoFastUpdateGOB", "videoFastUpdateMB"):
            self._events.append(VideoFastUpdateRequested(int(body["logicalChannelNumber"])))
        else:
            self._events.append(ProtocolErrorLogged(f"miscellaneousCommand {kind} ignored"))

    def _on_command_flowControlCommand(self, body: dict[str, Any], now: float) -> None:
        scope, restriction = body["scope"], body["restriction"]
        channel = int(scope[1]) if scope[0] == "logicalChannelNumber" else None
        bitrate = int(restriction[1]) * 100 if restriction[0] == "maximumBitRate" else None
        self._events.append(FlowControlRequested(channel, bitrate))

    def _on_command_endSessionCommand(self, body: Any, now: float) -> None:
        # The call (not the session) decides what to do: it releases.
        self.ended = True
        self.timers.clear()

    def _on_indication_userInput(self, body: tuple[str, Any], now: float) -> None:
        kind, value = body
        if kind == "alphanumeric":
            self._events.append(UserInputReceived(str(value), signal=False))
        elif kind == "signal":
            duration = value.get("duration")
            self._events.append(UserInputReceived(str(value["signalType"]), signal=True,
                                                  duration_ms=int(duration) if duration is not None else None))
        elif kind == "extendedAlphanumeric":
            self._events.append(UserInputReceived(str(value["alphanumeric"]), signal=False))
        # signalUpdate and support indications carry nothing new for us.

    def _on_request_roundTripDelayRequest(self, body: dict[str, Any], now: float) -> None:
        self._send(("response", ("roundTripDelayResponse", {"sequenceNumber": int(body["sequenceNumber"])})))

    def _on_response_roundTripDelayResponse(self, body: dict[str, Any], now: float) -> None:
        if int(body["sequenceNumber"]) == self._rtd_sequence and self._rtd_sent_at is not None:
            self.timers.stop("t105")
            self._events.append(RoundTripDelayMeasured(max(0.0, now - self._rtd_sent_at)))
            self._rtd_sent_at = None

    def _on_indication_functionNotUnderstood(self, body: Any, now: float) -> None:
        self._events.append(ProtocolErrorLogged("peer did not understand one of our H.245 messages"))

    def _on_indication_vendorIdentification(self, body: Any, now: float) -> None:
        return

    # ------------------------------------------------------------------ timers

    def _on_timer(self, name: str, now: float) -> None:
        if name == "t106":
            self._send(("indication", ("masterSlaveDeterminationRelease", {})))
            self._msd_failed("no response (T106)", now)
        elif name == "t101":
            self._send(("indication", ("terminalCapabilitySetRelease", {})))
            self._events.append(H245Failed("capability-exchange", "no response (T101)"))
        elif name.startswith("t103:"):
            number = int(name[5:])
            pending = self._pending.pop(number, None)
            if pending is not None:
                self._outgoing_opened_for.discard(_pending_session(pending))
                self._send(("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": number,
                                                                 "source": ("lcse", 0)})))
                self._events.append(ChannelRejected(number, _pending_session(pending), "timeout"))
        elif name.startswith("clc:"):
            # The channel is closed on our side anyway; a peer that never acknowledges is noted.
            self._events.append(ProtocolErrorLogged(f"closeLogicalChannel {name[4:]} not acknowledged"))
        elif name == "t105":
            self._events.append(H245Failed("round-trip-delay", "no response (T105)"))
        elif name == "rtd-interval":
            self.send_round_trip_delay(now)
            self.timers.start("rtd-interval", now, self.config.round_trip_interval)

