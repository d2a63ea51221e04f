"""H.225.0 RAS (registration, admission, status) over UDP 1719, sans-I/O.

The MCU works without a gatekeeper by default. When configured, :class:`RasClient`
discovers a gatekeeper (GRQ), registers (RRQ, kept alive by lightweight RRQs before
``timeToLive`` runs out), asks admission per call (ARQ) and reports the end of calls
(DRQ). :class:`Gatekeeper` is the minimal gatekeeper the issue asks for: it registers
local terminals so the console can dial them by alias, admits calls between registered
aliases (direct call model) and forgets registrations when their time to live expires.

H.235.1 (baseline security profile, :mod:`.h235`): a client with a ``password`` signs every
RRQ, ARQ, DRQ and URQ with an HMAC-SHA1-96 CryptoToken. A gatekeeper with ``accounts``
(alias → password) registers such an alias only with a valid token (else RRJ
``securityDenial``), then expects a valid token from that registration on keep-alive RRQs,
ARQs and URQs (ARJ/RRJ/URJ ``securityDenial`` otherwise), refuses replayed tokens and signs its
answers to them. :meth:`Gatekeeper.authenticated_call` tells the MCU whether a call it receives
was admitted (ARQ) for such an authenticated registration from that address.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .addresses import address_from_h225, alias_address, alias_texts, h225_transport_address
from .asn1 import H225_PROTOCOL_ID, Asn1Error, decode_ras, encode_ras
from .events import MediaAddress
from .h235 import check_ras, sign_ras, token_info
from .timers import Timers

__all__ = [
    "AdmissionConfirmed",
    "AdmissionRejected",
    "AuthenticatedCall",
    "Gatekeeper",
    "RasClient",
    "RasClientConfig",
    "RasEvent",
    "Registered",
    "RegistrationLost",
    "RAS_PORT",
]

RAS_PORT = 1719


def _vendor() -> dict[str, Any]:
    return {"vendor": {"t35CountryCode": 38, "t35Extension": 0, "manufacturerCode": 0},
            "productId": b"commandcenter", "versionId": b"0.1"}


def _endpoint_type(is_mcu: bool) -> dict[str, Any]:
    kind = "mcu" if is_mcu else "terminal"
    return {"vendor": _vendor(), kind: {}, "mc": is_mcu, "undefinedNode": False}


class RasEvent:
    """Base class of RAS client events."""


@dataclass(frozen=True)
class Registered(RasEvent):
    gatekeeper_id: str | None
    endpoint_id: str
    time_to_live: int | None


@dataclass(frozen=True)
class RegistrationLost(RasEvent):
    reason: str


@dataclass(frozen=True)
class AdmissionConfirmed(RasEvent):
    call_id: bytes
    destination: MediaAddress
    bandwidth: int


@dataclass(frozen=True)
class AdmissionRejected(RasEvent):
    call_id: bytes
    reason: str


@dataclass
class RasClientConfig:
    """Our RAS identity and timers (seconds)."""

    aliases: tuple[str, ...]
    ras_address: MediaAddress
    call_signal_address: MediaAddress
    is_mcu: bool = True
    time_to_live: int = 300
    keepalive_margin: float = 30.0
    request_timeout: float = 3.0
    retries: int = 2
    # H.235.1: sign RRQ/ARQ/DRQ/URQ with this password as ``account`` (default: the first alias).
    password: str | None = None
    account: str | None = None
    clock_offset: float = 0.0  # wall-clock seconds minus the ``now`` the client is driven with


class ClientState(Enum):
    IDLE = "idle"
    DISCOVERING = "discovering"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


@dataclass
class _Request:
    message: bytes
    kind: str
    attempts: int = 1
    call_id: bytes = b""


class RasClient:
    """Gatekeeper client: feed datagrams from the gatekeeper, send what it returns."""

    def __init__(self, config: RasClientConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.state = ClientState.IDLE
        self.timers = Timers()
        self.gatekeeper_id: str | None = None
        self.endpoint_id: str | None = None
        self.time_to_live: int | None = None
        self._rng = rng or random.Random()
        self._seq = self._rng.randrange(1, 60000)
        self._random = 0  # H.235.1 ClearToken random: one more per signed message
        self._pending: dict[int, _Request] = {}
        self._out: list[bytes] = []
        self._events: list[RasEvent] = []

    # ------------------------------------------------------------------ surface

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[RasEvent]:
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def _next_seq(self) -> int:
        self._seq = self._seq % 65535 + 1
        return self._seq

    def _request(self, kind: str, body: dict[str, Any], now: float, call_id: bytes = b"") -> int:
        seq = self._next_seq()
        body["requestSeqNum"] = seq
        password = self.config.password
        if password is not None and kind != "gatekeeperRequest":
            self._random += 1
            account = self.config.account or (self.config.aliases[0] if self.config.aliases else "")
            data = sign_ras(kind, body, password, account, self.gatekeeper_id, int(now + self.config.clock_offset),
                            self._random)
        else:
            data = encode_ras((kind, body))
        self._pending[seq] = _Request(data, kind, call_id=call_id)
        self._out.append(data)
        self.timers.start(f"req:{seq}", now, self.config.request_timeout)
        return seq

    # ------------------------------------------------------------------ commands

    def discover(self, now: float) -> None:
        """Start with GRQ (gatekeeper discovery), then register."""
        self.state = ClientState.DISCOVERING
        self._request("gatekeeperRequest", {
            "protocolIdentifier": H225_PROTOCOL_ID,
            "rasAddress": h225_transport_address(self.config.ras_address),
            "endpointType": _endpoint_type(self.config.is_mcu),
            "endpointAlias": [alias_address(a) for a in self.config.aliases],
            "supportsAssignedGK": False,
        }, now)

    def register(self, now: float, keep_alive: bool = False) -> None:
        """Full RRQ, or the lightweight keep-alive RRQ once registered."""
        body: dict[str, Any] = {
            "protocolIdentifier": H225_PROTOCOL_ID,
            "discoveryComplete": self.gatekeeper_id is not None or self.state is not ClientState.IDLE,
            "callSignalAddress": [h225_transport_address(self.config.call_signal_address)],
            "rasAddress": [h225_transport_address(self.config.ras_address)],
            "terminalType": _endpoint_type(self.config.is_mcu),
            "endpointVendor": _vendor(),
            "timeToLive": self.config.time_to_live,
            "keepAlive": keep_alive,
            "willSupplyUUIEs": False,
            "maintainConnection": False,
            "supportsAssignedGK": False,
        }
        if keep_alive and self.endpoint_id is not None:
            body["endpointIdentifier"] = self.endpoint_id
        else:
            body["terminalAlias"] = [alias_address(a) for a in self.config.aliases]
        if self.gatekeeper_id:
            body["gatekeeperIdentifier"] = self.gatekeeper_id
        if not keep_alive:
            self.state = ClientState.REGISTERING
        self._request("registrationRequest", body, now)

    def admit(self, call_id: bytes, conference_id: bytes, call_reference: int, destination: str | None,
              destination_address: MediaAddress | None, answer: bool, now: float, bandwidth: int = 7680) -> int:
        """ARQ for a call (``answer``: we are the called side). Bandwidth in 100 bit/s."""
        if self.endpoint_id is None:
            raise RuntimeError("not registered")
        body: dict[str, Any] = {
            "callType": ("pointToPoint", 0),
            "callModel": ("direct", 0),
            "endpointIdentifier": self.endpoint_id,
            "srcInfo": [alias_address(a) for a in self.config.aliases],
            "bandWidth": bandwidth,
            "callReferenceValue": call_reference,
            "conferenceID": conference_id,
            "activeMC": False,
            "answerCall": answer,
            "canMapAlias": False,
            "callIdentifier": {"guid": call_id},
            "willSupplyUUIEs": False,
            "canMapSrcAlias": False,
        }
        if destination:
            body["destinationInfo"] = [alias_address(destination)]
        if destination_address is not None:
            body["destCallSignalAddress"] = h225_transport_address(destination_address)
        if self.gatekeeper_id:
            body["gatekeeperIdentifier"] = self.gatekeeper_id
        return self._request("admissionRequest", body, now, call_id=call_id)

    def disengage(self, call_id: bytes, conference_id: bytes, call_reference: int, answered: bool,
                  now: float) -> int:
        """DRQ when a call admitted by the gatekeeper ends."""
        if self.endpoint_id is None:
            raise RuntimeError("not registered")
        return self._request("disengageRequest", {
            "endpointIdentifier": self.endpoint_id, "conferenceID": conference_id,
            "callReferenceValue": call_reference, "disengageReason": ("normalDrop", 0),
            "callIdentifier": {"guid": call_id}, "answeredCall": answered,
        }, now, call_id=call_id)

    def unregister(self, now: float) -> None:
        body: dict[str, Any] = {"callSignalAddress": [h225_transport_address(self.config.call_signal_address)]}
        if self.endpoint_id is not None:
            body["endpointIdentifier"] = self.endpoint_id
        self._request("unregistrationRequest", body, now)
        self.timers.stop("keepalive")
        self.state = ClientState.IDLE

    # ------------------------------------------------------------------ input

    def receive_datagram(self, data: bytes, now: float) -> None:
        """One RAS datagram from the gatekeeper; malformed ones are dropped (UDP)."""
        try:
            kind, body = decode_ras(data)
        except Asn1Error:
            return
        seq = body.get("requestSeqNum") if isinstance(body, dict) else None
        if kind == "requestInProgress" and seq in self._pending:
            delay = int(body.get("delay", 1000)) / 1000.0
            self.timers.start(f"req:{seq}", now, delay + self.config.request_timeout)
            return
        request = self._pending.pop(seq, None) if seq is not None else None
        if request is None:
            return  # a stale or foreign answer
        self.timers.stop(f"req:{seq}")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(body, request, now)

    def handle_timer(self, now: float) -> None:
        for name in self.timers.pop_expired(now):
            if name == "keepalive":
                self.register(now, keep_alive=True)
                continue
            seq = int(name.split(":")[1])
            request = self._pending.get(seq)
            if request is None:
                continue
            if request.attempts <= self.config.retries:
                request.attempts += 1
                self._out.append(request.message)
                self.timers.start(name, now, self.config.request_timeout)
                continue
            del self._pending[seq]
            self._on_timeout(request)

    def _on_timeout(self, request: _Request) -> None:
        if request.kind in ("gatekeeperRequest", "registrationRequest"):
            was_registered = self.state is ClientState.REGISTERED
            self.state = ClientState.FAILED
            self.timers.stop("keepalive")
            self._events.append(RegistrationLost("gatekeeper did not answer" if not was_registered
                                                 else "keep-alive not answered"))
        elif request.kind == "admissionRequest":
            self._events.append(AdmissionRejected(request.call_id, "timeout"))

    # ------------------------------------------------------------------ answers

    def _on_gatekeeperConfirm(self, body: dict[str, Any], request: _Request, now: float) -> None:
        self.gatekeeper_id = body.get("gatekeeperIdentifier")
        self.register(now)

    def _on_gatekeeperReject(self, body: dict[str, Any], request: _Request, now: float) -> None:
        self.state = ClientState.FAILED
        self._events.append(RegistrationLost(f"GRJ {body['rejectReason'][0]}"))

    def _on_registrationConfirm(self, body: dict[str, Any], request: _Request, now: float) -> None:
        self.endpoint_id = str(body["endpointIdentifier"])
        self.gatekeeper_id = body.get("gatekeeperIdentifier", self.gatekeeper_id)
        ttl = body.get("timeToLive")
        self.time_to_live = int(ttl) if ttl is not None else None
        first = self.state is not ClientState.REGISTERED
        self.state = ClientState.REGISTERED
        if self.time_to_live:
            self.timers.start("keepalive", now, max(1.0, self.time_to_live - self.config.keepalive_margin))
        if first:
            self._events.append(Registered(self.gatekeeper_id, self.endpoint_id, self.time_to_live))

    def _on_registrationReject(self, body: dict[str, Any], request: _Request, now: float) -> None:
        self.state = ClientState.FAILED
        self.timers.stop("keepalive")
        self._events.append(RegistrationLost(f"RRJ {body['rejectReason'][0]}"))

    def _on_admissionConfirm(self, body: dict[str, Any], request: _Request, now: float) -> None:
        address = address_from_h225(body["destCallSignalAddress"])
        if address is None:
            self._events.append(AdmissionRejected(request.call_id, "unusable destCallSignalAddress"))
            return
        self._events.append(AdmissionConfirmed(request.call_id, address, int(body["bandWidth"])))

    def _on_admissionReject(self, body: dict[str, Any], request: _Request, now: float) -> None:
        self._events.append(AdmissionRejected(request.call_id, str(body["rejectReason"][0])))

    def _on_disengageConfirm(self, body: dict[str, Any], request: _Request, now: float) -> None:
        return

    def _on_unregistrationConfirm(self, body: dict[str, Any], request: _Request, now: float) -> None:
        self.endpoint_id = None


@dataclass
class Registration:
    endpoint_id: str
    aliases: tuple[str, ...]
    call_signal: MediaAddress
    ras: MediaAddress
    expires: float
    account: str | None = None  # the alias authenticated by H.235.1 (None: unauthenticated)


@dataclass(frozen=True)
class AuthenticatedCall:
    """A call admitted (ARQ/ACF) for an H.235.1-authenticated registration."""

    account: str
    host: str  # the registration's call-signalling host
    admitted_at: float


_SECURITY_REJECTS = {"registrationRequest": "registrationReject", "admissionRequest": "admissionReject",
                     "unregistrationRequest": "unregistrationReject"}


@dataclass
class Gatekeeper:
    """Minimal gatekeeper: registrations with time to live, direct-model admission."""

    identifier: str = "commandcenter-gk"
    ras_address: MediaAddress = field(default_factory=lambda: MediaAddress("127.0.0.1", RAS_PORT))
    time_to_live: int = 300
    registrations: dict[str, Registration] = field(default_factory=dict)  # by endpoint id
    admitted: dict[tuple[bytes, str], float] = field(default_factory=dict)  # (callIdentifier, endpoint) -> time
    # Aliases the gatekeeper's own host answers without registering (the MCU's conference ids).
    local_aliases: Callable[[str], MediaAddress | None] | None = None
    # H.235.1 passwords by alias: such an alias registers only with a valid token.
    accounts: dict[str, str] = field(default_factory=dict)
    clock_offset: float = 0.0  # wall-clock seconds minus ``now`` (the adapter sets it)
    token_window: float = 300.0  # accepted clock difference of a token's timestamp (seconds)
    call_window: float = 60.0  # a Setup must follow its ARQ within this many seconds
    authenticated_calls: dict[bytes, AuthenticatedCall] = field(default_factory=dict)  # by callIdentifier
    security_log: list[str] = field(default_factory=list)  # the last refusals (newest last, at most 100)
    _last_token: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # account -> (time, random, seq)
    _token_random: int = 0
    _counter: int = 0

    def lookup(self, alias: str, now: float) -> MediaAddress | None:
        """Call-signalling address of a registered (or local) alias (what the console dials)."""
        self.expire(now)
        for registration in self.registrations.values():
            if alias in registration.aliases:
                return registration.call_signal
        return self.local_aliases(alias) if self.local_aliases is not None else None

    def expire(self, now: float) -> None:
        for endpoint_id in [k for k, r in self.registrations.items() if r.expires <= now]:
            del self.registrations[endpoint_id]

    def receive_datagram(self, data: bytes, source: MediaAddress, now: float) -> list[tuple[bytes, MediaAddress]]:
        """Answer one request; returns (datagram, destination) pairs. Garbage gets no answer."""
        try:
            kind, body = decode_ras(data)
        except Asn1Error:
            return []
        self.expire(now)
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None or not isinstance(body, dict):
            seq = body.get("requestSeqNum", 1) if isinstance(body, dict) else 1
            return [(encode_ras(("unknownMessageResponse", {"requestSeqNum": seq})), source)]
        try:
            account, denied = self._authenticate(kind, body, data, source, now)
            reply: tuple[str, Any] | None
            if denied:
                reply = self._security_reject(kind, body)
            else:
                reply = handler(body, source, now)
        except (KeyError, TypeError, ValueError, IndexError):
            return []
        if reply is None:
            return []
        destination = source
        if kind == "locationRequest":  # LRQ answers go to its replyAddress
            destination = address_from_h225(body.get("replyAddress")) or source
        if account is not None and not denied:  # answer a protected request in kind
            self._token_random += 1
            return [(sign_ras(reply[0], reply[1], self.accounts[account], self.identifier, account,
                              int(now + self.clock_offset), self._token_random), destination)]
        return [(encode_ras(reply), destination)]

    # ------------------------------------------------------------------ H.235.1

    def _claimed_account(self, kind: str, body: dict[str, Any]) -> str | None:
        """The account a request must authenticate as (None: it needs no token)."""
        if kind == "registrationRequest" and not body.get("keepAlive"):
            token = token_info(body)
            aliases = alias_texts(body.get("terminalAlias"))
            if token is not None and token.sender in self.accounts and token.sender in aliases:
                return token.sender
            return next((a for a in aliases if a in self.accounts), None)
        if kind in _SECURITY_REJECTS:
            registration = self.registrations.get(str(body.get("endpointIdentifier", "")))
            return registration.account if registration is not None else None
        return None

    def _authenticate(self, kind: str, body: dict[str, Any], data: bytes, source: MediaAddress,
                      now: float) -> tuple[str | None, bool]:
        """(account whose token verified, denied?) for one request."""
        account = self._claimed_account(kind, body)
        if account is None:
            return None, False
        wall = now + self.clock_offset
        check = check_ras(data, body, self.accounts[account], wall, self.token_window)
        why = check.reason
        if check.ok and check.token is not None:
            token = check.token
            last = self._last_token.get(account)
            stamp = (token.timestamp, token.random, int(body.get("requestSeqNum", 0)))
            if token.sender != account:
                why = f"token signed as {token.sender!r}"
            elif token.recipient and token.recipient != self.identifier:
                why = f"token for gatekeeper {token.recipient!r}"
            elif last is not None and stamp[:2] <= last[:2] and stamp != last:  # a retransmission is equal
                why = "replayed token"
            else:
                self._last_token[account] = stamp
                return account, False
        self.security_log.append(f"{kind} from {source.host}:{source.port} as {account}: {why}")
        del self.security_log[:-100]
        return None, True

    def _security_reject(self, kind: str, body: dict[str, Any]) -> tuple[str, Any] | None:
        reject = _SECURITY_REJECTS.get(kind)
        if reject is None:
            return None
        out: dict[str, Any] = {"requestSeqNum": body["requestSeqNum"], "rejectReason": ("securityDenial", 0)}
        if reject == "registrationReject":
            out["protocolIdentifier"] = H225_PROTOCOL_ID
        return (reject, out)

    def authenticated_call(self, call_id: bytes, host: str, now: float) -> str | None:
        """The H.235.1 account of a call we receive: admitted by ARQ for an authenticated
        registration whose call-signalling host is ``host``, at most ``call_window`` seconds ago.
        Each admission answers once (a replayed Setup with the same callIdentifier gets None)."""
        entry = self.authenticated_calls.pop(call_id, None)
        for key in [k for k, v in self.authenticated_calls.items() if now - v.admitted_at > self.call_window]:
            del self.authenticated_calls[key]
        if entry is None or entry.host != host or now - entry.admitted_at > self.call_window:
            return None
        return entry.account

    def _registration_of(self, alias: str, now: float) -> tuple[MediaAddress, MediaAddress] | None:
        """(call signalling, RAS) addresses of a registered or local alias."""
        self.expire(now)
        for registration in self.registrations.values():
            if alias in registration.aliases:
                return registration.call_signal, registration.ras
        local = self.local_aliases(alias) if self.local_aliases is not None else None
        return (local, self.ras_address) if local is not None else None

    def _on_locationRequest(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any]:
        """LRQ (another gatekeeper or an endpoint asks where an alias is): LCF or LRJ."""
        seq = body["requestSeqNum"]
        for alias in alias_texts(body.get("destinationInfo")):
            found = self._registration_of(alias, now)
            if found is not None:
                return ("locationConfirm", {"requestSeqNum": seq, "callSignalAddress": h225_transport_address(found[0]),
                                            "rasAddress": h225_transport_address(found[1])})
        return ("locationReject", {"requestSeqNum": seq, "rejectReason": ("requestDenied", 0)})

    def _on_bandwidthRequest(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any]:
        """BRQ: a registered endpoint changes its call bandwidth; granted as asked (no policing)."""
        seq = body["requestSeqNum"]
        if str(body["endpointIdentifier"]) not in self.registrations:
            return ("bandwidthReject", {"requestSeqNum": seq, "rejectReason": ("notBound", 0),
                                        "allowedBandWidth": 0})
        return ("bandwidthConfirm", {"requestSeqNum": seq, "bandWidth": int(body["bandWidth"])})

    def _on_infoRequestResponse(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any] | None:
        """Unsolicited IRR (status of the endpoint's calls): acknowledged when it asks for it."""
        if not body.get("needResponse"):
            return None
        return ("infoRequestAck", {"requestSeqNum": body["requestSeqNum"]})

    def _on_gatekeeperRequest(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any]:
        return ("gatekeeperConfirm", {
            "requestSeqNum": body["requestSeqNum"], "protocolIdentifier": H225_PROTOCOL_ID,
            "gatekeeperIdentifier": self.identifier, "rasAddress": h225_transport_address(self.ras_address)})

    def _on_registrationRequest(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any]:
        seq = body["requestSeqNum"]
        ttl = min(int(body.get("timeToLive", self.time_to_live)), self.time_to_live)
        if body.get("keepAlive"):
            registration = self.registrations.get(str(body.get("endpointIdentifier", "")))
            if registration is None:
                return ("registrationReject", {"requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL_ID,
                                               "rejectReason": ("fullRegistrationRequired", 0)})
            registration.expires = now + ttl
        else:
            aliases = tuple(alias_texts(body.get("terminalAlias")))
            signal = [a for a in (address_from_h225(x) for x in body["callSignalAddress"]) if a is not None]
            ras = [a for a in (address_from_h225(x) for x in body["rasAddress"]) if a is not None]
            if not signal or not ras:
                return ("registrationReject", {"requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL_ID,
                                               "rejectReason": ("invalidCallSignalAddress", 0)})
            taken = {a for r in self.registrations.values() if r.call_signal != signal[0] for a in r.aliases}
            if taken & set(aliases):
                return ("registrationReject", {"requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL_ID,
                                               "rejectReason": ("duplicateAlias", [])})
            for key in [k for k, r in self.registrations.items() if r.call_signal == signal[0]]:
                del self.registrations[key]  # re-registration of the same endpoint
            self._counter += 1
            endpoint_id = f"EP{self._counter:06d}"
            registration = Registration(endpoint_id, aliases, signal[0], ras[0], now + ttl,
                                        account=self._claimed_account("registrationRequest", body))
            self.registrations[endpoint_id] = registration
        return ("registrationConfirm", {
            "requestSeqNum": seq, "protocolIdentifier": H225_PROTOCOL_ID,
            "callSignalAddress": [], "gatekeeperIdentifier": self.identifier,
            "endpointIdentifier": registration.endpoint_id, "timeToLive": ttl,
            "willRespondToIRR": False, "maintainConnection": False})

    def _on_unregistrationRequest(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any]:
        self.registrations.pop(str(body.get("endpointIdentifier", "")), None)
        return ("unregistrationConfirm", {"requestSeqNum": body["requestSeqNum"]})

    def _on_admissionRequest(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any]:
        seq = body["requestSeqNum"]
        if str(body["endpointIdentifier"]) not in self.registrations:
            return ("admissionReject", {"requestSeqNum": seq, "rejectReason": ("callerNotRegistered", 0)})
        if body.get("answerCall"):
            destination = self.registrations[str(body["endpointIdentifier"])].call_signal
        else:
            destination_or_none = None
            for alias in alias_texts(body.get("destinationInfo")):
                destination_or_none = self.lookup(alias, now)
                if destination_or_none is not None:
                    break
            if destination_or_none is None and "destCallSignalAddress" in body:
                destination_or_none = address_from_h225(body["destCallSignalAddress"])
            if destination_or_none is None:
                return ("admissionReject", {"requestSeqNum": seq, "rejectReason": ("calledPartyNotRegistered", 0)})
            destination = destination_or_none
        call_id = bytes(body["callIdentifier"]["guid"])
        self.admitted[(call_id, str(body["endpointIdentifier"]))] = now
        caller = self.registrations[str(body["endpointIdentifier"])]
        if caller.account is not None and not body.get("answerCall"):
            self.authenticated_calls[call_id] = AuthenticatedCall(caller.account, caller.call_signal.host, now)
        return ("admissionConfirm", {
            "requestSeqNum": seq, "bandWidth": int(body["bandWidth"]), "callModel": ("direct", 0),
            "destCallSignalAddress": h225_transport_address(destination), "willRespondToIRR": False,
            "uuiesRequested": {"setup": False, "callProceeding": False, "connect": False, "alerting": False,
                               "information": False, "releaseComplete": False, "facility": False,
                               "progress": False, "empty": False}})

    def _on_disengageRequest(self, body: dict[str, Any], source: MediaAddress, now: float) -> tuple[str, Any]:
        self.admitted.pop((bytes(body["callIdentifier"]["guid"]), str(body["endpointIdentifier"])), None)
        return ("disengageConfirm", {"requestSeqNum": body["requestSeqNum"]})
