"""The BFCP floor control server (RFC 8855 §13) of one conference, as a sans-I/O state machine.

The MCU is the floor control server of every conference with one floor: the conference's content
(presentation) token. The floor's state lives in the token (:class:`Floor`, which
``mcu.content.token.ContentToken`` is); this machine maps BFCP onto it and back:

* ``FloorRequest`` -> :meth:`Floor.request`. Granted -> ``FloorRequestStatus`` Granted; queued for the
  chair (the token's ``"chair"`` policy), or still being decided elsewhere (a lower node of an MCU
  cascade asks the root) -> Pending with the queue position; refused (another site presents) ->
  **Denied**, and the request ends. A Pending request that leaves the floor's queue without being
  granted (the chair dismissed it, the cascade's root refused it) ends **Denied** (RFC 8855 §5.2.4:
  Pending, then Denied); one its client released ends Cancelled.
* ``FloorRelease`` -> :meth:`Floor.release`: Released (Cancelled for a request that was still pending).
* ``FloorRequestQuery`` -> the request's ``FloorRequestStatus``; ``FloorQuery`` -> ``FloorStatus`` and
  the client is told of every later change of the floor (RFC 8855 §13.5).
* ``Hello`` -> ``HelloAck`` (the primitives and attributes we support); ``Goodbye`` -> ``GoodbyeAck``
  and the client's request ends (a granted floor is released).
* The chair (grant, revoke, take), a media timeout or another protocol changing the token: the adapter
  calls :meth:`FloorControlServer.floor_changed`, which sends Granted / Revoked ``FloorRequestStatus``
  to the requesters concerned and ``FloorStatus`` to the subscribed clients. A floor that tells its
  listeners synchronously during our own request/release (``ConferenceContent`` does) is ignored then:
  the server brings the requests in line itself once the call returns.

Clients are the SIP sites that negotiated BFCP: the SDP answer gave each one ``a=userid`` (its BFCP
User ID) and :meth:`add_client` binds that id to the site's participant id. Refusals are ``Error``
messages echoing the faulty message's conference, transaction and user ids (RFC 8855 §13.8): unknown
conference (1), unknown user (2), a user id other than the connection's (5), unknown primitive (3),
unknown mandatory attribute (4), a third-party request or a ChairAction (5), unknown floor (6),
unknown floor request (7), a second ongoing request (8), unparsable (10), wrong version (12), bad length
(13). A refused message changes nothing.

Server-initiated messages over a reliable transport carry transaction id 0. Inputs carry ``now``
(seconds) for the token's timers; nothing reads a clock.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .message import (
    Attribute,
    AttributeType,
    BfcpError,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    decode,
    encode,
    error_code,
    grouped,
    request_status,
    text,
    u16,
    unknown_mandatory,
)

SERVER_PRIMITIVES = (Primitive.FLOOR_REQUEST, Primitive.FLOOR_RELEASE, Primitive.FLOOR_REQUEST_QUERY,
                     Primitive.FLOOR_REQUEST_STATUS, Primitive.FLOOR_QUERY, Primitive.FLOOR_STATUS,
                     Primitive.HELLO, Primitive.HELLO_ACK, Primitive.ERROR, Primitive.GOODBYE,
                     Primitive.GOODBYE_ACK)
SERVER_ATTRIBUTES = tuple(AttributeType)
FOREIGN_REQUEST_ID = 0xFFFF  # the floor request id FloorStatus shows for a holder that is not a BFCP client


class FloorVerdict(Protocol):
    @property
    def granted(self) -> bool: ...
    @property
    def queued(self) -> bool: ...


class Floor(Protocol):
    """The conference's content token as the floor (``mcu.content.token.ContentToken`` is one)."""

    @property
    def holder(self) -> str | None: ...
    @property
    def requests(self) -> Sequence[tuple[str, float]]: ...  # queued for the chair, oldest first

    def request(self, who: str, now: float) -> FloorVerdict: ...
    def release(self, who: str, now: float) -> FloorVerdict: ...


@dataclass
class FloorRequestState:
    request_id: int
    user_id: int
    participant: str
    status: RequestStatus


@dataclass
class Client:
    user_id: int
    participant: str
    subscribed: bool = False
    hosts: frozenset[str] = frozenset()  # addresses its connection may come from (empty: any)


@dataclass(frozen=True)
class Outgoing:
    """A message for the client ``user_id`` (the adapter writes it on that client's connection)."""

    user_id: int
    data: bytes
    message: Message


class FloorControlServer:
    """The floor control server of one conference (``conference_id``) with one floor (``floor_id``)."""

    def __init__(self, conference_id: int, floor_id: int, floor: Floor, *, version: int = 1) -> None:
        self.conference_id = conference_id
        self.floor_id = floor_id
        self.floor = floor
        self.version = version
        self.clients: dict[int, Client] = {}
        self.requests: dict[int, FloorRequestState] = {}  # ongoing (Pending or Granted) by request id
        self._next_request_id = 1
        self._last_status: tuple[Attribute, ...] = ()
        self._deciding = False  # inside a floor call: its own change notice comes back re-entrantly

    # ---- clients (from the SDP offer/answer) ------------------------------------------------------
    def add_client(self, user_id: int, participant: str, hosts: frozenset[str] = frozenset()) -> None:
        """A client (its User ID from our SDP answer); ``hosts``: the addresses its BFCP connection may
        come from (the SIP call's), so a guessed User ID from elsewhere is refused."""
        if not 1 <= user_id <= 0xFFFF:
            raise ValueError("BFCP user id must be 1..65535")
        self.clients[user_id] = Client(user_id, participant, hosts=hosts)

    def remove_client(self, user_id: int, now: float) -> list[Outgoing]:
        """The site left (its call ended): its floor request ends (a held floor is released)."""
        client = self.clients.pop(user_id, None)
        if client is None:
            return []
        for state in [s for s in self.requests.values() if s.user_id == user_id]:
            self._release(client.participant, now)
            self.requests.pop(state.request_id, None)
        return self.floor_changed(now)

    def client_of(self, participant: str) -> int | None:
        return next((c.user_id for c in self.clients.values() if c.participant == participant), None)

    # ---- messages in ---------------------------------------------------------------------------
    def receive(self, data: bytes, now: float, *, bound_user: int | None = None,
                peer: str | None = None) -> list[Outgoing]:
        """One message from a client's connection (``bound_user``: the user id this connection
        already spoke as, None for a new connection; ``peer``: its remote address). Returns what to
        send (the answer first)."""
        try:
            message = decode(data, versions=(self.version,))
        except BfcpError as exc:
            return [self._error_for_raw(data, exc.code, exc.text, bound_user)]
        return self.handle(message, now, bound_user=bound_user, peer=peer)

    def handle(self, message: Message, now: float, *, bound_user: int | None = None,
               peer: str | None = None) -> list[Outgoing]:
        if message.conference_id != self.conference_id:
            return [self._error(message, ErrorCode.CONFERENCE_DOES_NOT_EXIST, "unknown conference")]
        client = self.clients.get(message.user_id)
        if client is None:
            return [self._error(message, ErrorCode.USER_DOES_NOT_EXIST, "unknown user")]
        if bound_user is not None and bound_user != message.user_id:
            return [self._error(message, ErrorCode.UNAUTHORIZED_OPERATION, "not this connection's user")]
        if client.hosts and peer is not None and peer not in client.hosts:
            return [self._error(message, ErrorCode.UNAUTHORIZED_OPERATION, "not this user's address")]
        unknown = unknown_mandatory(message.attributes)
        if unknown:
            return [self._error(message, ErrorCode.UNKNOWN_MANDATORY_ATTRIBUTE, "unknown mandatory attribute",
                                bytes((t << 1) & 0xFF for t in unknown[:32]))]
        kind = message.primitive
        if kind != Primitive.ERROR and message.transaction_id == 0 and kind not in (
                Primitive.FLOOR_REQUEST_STATUS_ACK, Primitive.ERROR_ACK, Primitive.FLOOR_STATUS_ACK,
                Primitive.GOODBYE_ACK):
            return [self._error(message, ErrorCode.UNABLE_TO_PARSE, "transaction id 0 in a request")]
        if kind == Primitive.HELLO:
            return [self._reply(message, Primitive.HELLO_ACK, (
                Attribute(AttributeType.SUPPORTED_PRIMITIVES, bytes(int(p) for p in SERVER_PRIMITIVES), True),
                Attribute(AttributeType.SUPPORTED_ATTRIBUTES, bytes(int(a) << 1 for a in SERVER_ATTRIBUTES), True),
            ))]
        if kind == Primitive.FLOOR_REQUEST:
            return self._floor_request(message, client, now)
        if kind == Primitive.FLOOR_RELEASE:
            return self._floor_release(message, client, now)
        if kind == Primitive.FLOOR_REQUEST_QUERY:
            state = self._own_request(message, client)
            if isinstance(state, Outgoing):
                return [state]
            return [self._reply(message, Primitive.FLOOR_REQUEST_STATUS, (self._request_info(state),))]
        if kind == Primitive.FLOOR_QUERY:
            floors = [a.number for a in message.all(AttributeType.FLOOR_ID)]
            if any(f != self.floor_id for f in floors):
                return [self._error(message, ErrorCode.INVALID_FLOOR_ID, "unknown floor")]
            client.subscribed = bool(floors)
            return [self._reply(message, Primitive.FLOOR_STATUS, self._floor_status_attributes())]
        if kind == Primitive.GOODBYE:
            out = [self._reply(message, Primitive.GOODBYE_ACK, ())]
            client.subscribed = False
            for state in [s for s in self.requests.values() if s.user_id == client.user_id]:
                self._release(client.participant, now)
                self.requests.pop(state.request_id, None)
            return out + self.floor_changed(now)
        if kind in (Primitive.FLOOR_REQUEST_STATUS_ACK, Primitive.ERROR_ACK, Primitive.FLOOR_STATUS_ACK,
                    Primitive.GOODBYE_ACK, Primitive.ERROR):
            return []  # acknowledgements (meaningful over UDP only) and a client's error report
        if kind == Primitive.CHAIR_ACTION:
            return [self._error(message, ErrorCode.UNAUTHORIZED_OPERATION, "the chair acts from the console")]
        return [self._error(message, ErrorCode.UNKNOWN_PRIMITIVE, f"primitive {kind} not supported")]

    def _floor_request(self, message: Message, client: Client, now: float) -> list[Outgoing]:
        floors = message.all(AttributeType.FLOOR_ID)
        if not floors:
            return [self._error(message, ErrorCode.UNABLE_TO_PARSE, "FloorRequest without FLOOR-ID")]
        if any(f.number != self.floor_id for f in floors):
            return [self._error(message, ErrorCode.INVALID_FLOOR_ID, "unknown floor")]
        beneficiary = message.first(AttributeType.BENEFICIARY_ID)
        if beneficiary is not None and beneficiary.number != client.user_id:
            return [self._error(message, ErrorCode.UNAUTHORIZED_OPERATION, "third-party requests are not allowed")]
        if any(s.user_id == client.user_id for s in self.requests.values()):
            return [self._error(message, ErrorCode.MAX_FLOOR_REQUESTS_REACHED, "a request is ongoing")]
        self._deciding = True
        try:
            verdict = self.floor.request(client.participant, now)
        finally:
            self._deciding = False
        state = FloorRequestState(self._new_request_id(), client.user_id, client.participant,
                                  RequestStatus.GRANTED if verdict.granted else
                                  RequestStatus.PENDING if verdict.queued else RequestStatus.DENIED)
        if state.status != RequestStatus.DENIED:
            self.requests[state.request_id] = state
        out = [self._reply(message, Primitive.FLOOR_REQUEST_STATUS, (self._request_info(state),))]
        return out + self.floor_changed(now)

    def _floor_release(self, message: Message, client: Client, now: float) -> list[Outgoing]:
        state = self._own_request(message, client)
        if isinstance(state, Outgoing):
            return [state]
        self._release(client.participant, now)
        self.requests.pop(state.request_id, None)
        state.status = RequestStatus.RELEASED if state.status == RequestStatus.GRANTED else RequestStatus.CANCELLED
        out = [self._reply(message, Primitive.FLOOR_REQUEST_STATUS, (self._request_info(state),))]
        return out + self.floor_changed(now)

    def _release(self, participant: str, now: float) -> None:
        self._deciding = True
        try:
            self.floor.release(participant, now)
        finally:
            self._deciding = False

    def _own_request(self, message: Message, client: Client) -> FloorRequestState | Outgoing:
        attribute = message.first(AttributeType.FLOOR_REQUEST_ID)
        if attribute is None:
            return self._error(message, ErrorCode.UNABLE_TO_PARSE, "FLOOR-REQUEST-ID missing")
        state = self.requests.get(attribute.number)
        if state is None or state.user_id != client.user_id:
            return self._error(message, ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST, "no such floor request")
        return state

    # ---- the floor changed (chair, timeout, another protocol, or one of ours) -----------------------
    def floor_changed(self, now: float) -> list[Outgoing]:
        """Bring every ongoing request in line with the token: notifications for what changed, and a
        ``FloorStatus`` to each subscribed client when the floor's state differs from the last one sent."""
        del now  # the token already decided; kept so every input has the same shape
        if self._deciding:
            return []  # the floor told its listeners in the middle of our own call: we notify after it
        out: list[Outgoing] = []
        holder = self.floor.holder
        queued = [who for who, _ in self.floor.requests]
        for state in list(self.requests.values()):
            if state.participant == holder:
                new = RequestStatus.GRANTED
            elif state.status == RequestStatus.PENDING and state.participant in queued:
                new = RequestStatus.PENDING
            else:
                new = RequestStatus.REVOKED if state.status == RequestStatus.GRANTED else RequestStatus.DENIED
            if new == state.status:
                continue
            state.status = new
            if new not in (RequestStatus.GRANTED, RequestStatus.PENDING):
                del self.requests[state.request_id]
            out.append(self._notify(state.user_id, Primitive.FLOOR_REQUEST_STATUS, (self._request_info(state),)))
        status = self._floor_status_attributes()
        if status != self._last_status:
            self._last_status = status
            for client in self.clients.values():
                if client.subscribed:
                    out.append(self._notify(client.user_id, Primitive.FLOOR_STATUS, status))
        return out

    # ---- building messages -----------------------------------------------------------------------
    def _new_request_id(self) -> int:
        for _ in range(0xFFFE):
            rid = self._next_request_id
            self._next_request_id = rid % 0xFFFE + 1
            if rid not in self.requests:
                return rid
        raise RuntimeError("no free floor request id")  # unreachable: one request per client

    def _request_info(self, state: FloorRequestState) -> Attribute:
        position = 0
        if state.status == RequestStatus.PENDING:
            queued = [who for who, _ in self.floor.requests]
            position = queued.index(state.participant) + 1 if state.participant in queued else 0
        status = request_status(state.status, min(position, 255))
        return grouped(AttributeType.FLOOR_REQUEST_INFORMATION, state.request_id,
                       grouped(AttributeType.OVERALL_REQUEST_STATUS, state.request_id, status),
                       grouped(AttributeType.FLOOR_REQUEST_STATUS, self.floor_id),
                       grouped(AttributeType.BENEFICIARY_INFORMATION, state.user_id))

    def _floor_status_attributes(self) -> tuple[Attribute, ...]:
        attributes: list[Attribute] = [u16(AttributeType.FLOOR_ID, self.floor_id)]
        ours = sorted(self.requests.values(), key=lambda s: (s.status != RequestStatus.GRANTED, s.request_id))
        attributes += [self._request_info(s) for s in ours]
        holder = self.floor.holder
        if holder is not None and all(s.participant != holder for s in ours):
            attributes.append(grouped(AttributeType.FLOOR_REQUEST_INFORMATION, FOREIGN_REQUEST_ID,
                                      grouped(AttributeType.OVERALL_REQUEST_STATUS, FOREIGN_REQUEST_ID,
                                              request_status(RequestStatus.GRANTED)),
                                      grouped(AttributeType.FLOOR_REQUEST_STATUS, self.floor_id)))
        return tuple(attributes)

    def _reply(self, to: Message, primitive: Primitive, attributes: tuple[Attribute, ...]) -> Outgoing:
        message = Message(primitive, self.conference_id, to.transaction_id, to.user_id, attributes,
                          self.version, responder=self.version == 2)
        return Outgoing(to.user_id, encode(message), message)

    def _notify(self, user_id: int, primitive: Primitive, attributes: tuple[Attribute, ...]) -> Outgoing:
        message = Message(primitive, self.conference_id, 0, user_id, attributes, self.version)
        return Outgoing(user_id, encode(message), message)

    def _error(self, to: Message, code: ErrorCode, info: str, details: bytes = b"") -> Outgoing:
        return error_reply(to, code, info, self.version, details)

    def _error_for_raw(self, data: bytes, code: ErrorCode, info: str, bound_user: int | None) -> Outgoing:
        return error_for_raw(data, code, info, self.version, bound_user)


def error_reply(to: Message, code: ErrorCode, info: str, version: int = 1, details: bytes = b"") -> Outgoing:
    """The Error answer to ``to`` (its conference, transaction and user ids echoed)."""
    message = Message(Primitive.ERROR, to.conference_id, to.transaction_id, to.user_id,
                      (error_code(code, details), text(AttributeType.ERROR_INFO, info)), version,
                      responder=version == 2)
    return Outgoing(to.user_id, encode(message), message)


def error_for_raw(data: bytes, code: ErrorCode, info: str, version: int = 1,
                  bound_user: int | None = None) -> Outgoing:
    """An Error for bytes that did not decode: echo what of the common header there is."""
    padded = data[:12] + bytes(max(0, 12 - len(data)))
    conference_id = int.from_bytes(padded[4:8], "big")
    transaction_id = int.from_bytes(padded[8:10], "big")
    user_id = bound_user if bound_user is not None else int.from_bytes(padded[10:12], "big")
    return error_reply(Message(Primitive.ERROR, conference_id, transaction_id, user_id), code, info, version)
