"""BFCP over an unreliable transport (RFC 8855 §6.2, §8; RFC 8856 ``UDP/BFCP``), sans-I/O.

One :class:`DatagramEndpoint` serves every conference's
:class:`~sip_gateway.bfcp.server.FloorControlServer` on the node's BFCP UDP port. It adds to the
floor control server what UDP needs and TCP gives for free:

* **Version 2.** Messages must carry version 2; anything else gets Error 12 (Unsupported Version).
  Our responses carry the **R** (responder) flag; our server-initiated messages do not.
* **Server-initiated transactions.** A ``FloorRequestStatus`` or ``FloorStatus`` the server sends on
  its own (transaction id 0 over TCP) gets a fresh non-zero transaction id per client and is
  **retransmitted** until the client's ``FloorRequestStatusAck``/``FloorStatusAck`` with that id
  arrives: first after ``T1`` (0.5 s), the interval doubling each time, at most ``MAX_RETRANSMITS``
  (4) times; then the transaction has failed (counted in :attr:`failed`, and given up).
* **Retransmitted requests.** The responses to a request are kept for ``T2`` (10 s) under the
  client's address and transaction id; the same request again within that time gets the same
  responses again and is not processed twice (a repeated FloorRequest never makes a second request).
* **Addresses.** A client is a UDP address bound to (conference, user id) by the first message the
  floor control server accepts from it (the server checks the address's host against the SIP call's).
  That address then speaks only as that user (another user id: Error 5; another conference: Error 1).
  Server-initiated messages go to the user's address; a ``Hello`` from a new address of the
  same user (the room restarted its client) moves it there.
* **Bad input.** Fewer than 12 octets is dropped without an answer (nothing to echo, and no reflection
  of junk). Fragmented messages get Error 10 (we never fragment; every message we send fits one
  datagram). Acknowledgements that match no pending transaction are ignored. Nothing raises.

Time comes in as ``now`` (seconds); :meth:`next_deadline` says when :meth:`on_timer` wants to run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .message import HEADER_LEN, BfcpError, ErrorCode, Primitive, decode, decode_header, encode
from .server import FloorControlServer, Outgoing, error_for_raw

VERSION = 2
T1 = 0.5  # initial retransmission interval (RFC 8855 §8.3)
T2 = 10.0  # how long responses are kept for retransmitted requests
MAX_RETRANSMITS = 4
MAX_CACHE = 4096  # cached responses (oldest go first)
ACKS: dict[int, int] = {Primitive.FLOOR_REQUEST_STATUS_ACK: Primitive.FLOOR_REQUEST_STATUS,
        Primitive.FLOOR_STATUS_ACK: Primitive.FLOOR_STATUS,
        Primitive.ERROR_ACK: Primitive.ERROR,
        Primitive.GOODBYE_ACK: Primitive.GOODBYE}

Address = tuple[str, int]
Key = tuple[int, int]  # (conference id, user id)


@dataclass(frozen=True)
class Datagram:
    address: Address
    data: bytes


@dataclass
class _Pending:
    address: Address
    data: bytes
    primitive: int
    due: float
    interval: float = T1
    sent: int = 1


@dataclass
class _Cached:
    expires: float
    datagrams: tuple[Datagram, ...]


@dataclass
class Received:
    """What one datagram leads to: ``datagrams`` to send, and ``elsewhere`` (notifications for clients
    of the same conference that have no UDP address here: the adapter gives them to the TCP side)."""

    datagrams: list[Datagram] = field(default_factory=list)
    elsewhere: list[tuple[int, Outgoing]] = field(default_factory=list)


class DatagramEndpoint:
    def __init__(self, lookup: Callable[[int], FloorControlServer | None]) -> None:
        self._lookup = lookup
        self.bindings: dict[Address, Key] = {}
        self.addresses: dict[Key, Address] = {}
        self.pending: dict[tuple[Key, int], _Pending] = {}
        self.failed = 0  # server-initiated transactions given up after MAX_RETRANSMITS
        self._cache: dict[tuple[Address, int], _Cached] = {}
        self._next_tid: dict[Key, int] = {}

    # ---- input -----------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, address: Address, now: float) -> Received:
        out = Received()
        if len(data) < HEADER_LEN:
            return out
        header = decode_header(data)
        if header.version != VERSION:
            out.datagrams.append(self._raw_error(data, address, ErrorCode.UNSUPPORTED_VERSION,
                                                 f"version {header.version} over UDP (2 expected)"))
            return out
        bound = self.bindings.get(address)
        if header.primitive in ACKS:
            if bound is not None and (bound[0], header.user_id) == bound:
                pending = self.pending.get((bound, header.transaction_id))
                if pending is not None and pending.primitive == ACKS[header.primitive]:
                    del self.pending[(bound, header.transaction_id)]
            return out
        cached = self._cache.get((address, header.transaction_id))
        if cached is not None and cached.expires > now and header.transaction_id:
            out.datagrams += cached.datagrams  # a retransmitted request: the same answer, not done twice
            return out
        if header.fragmented:
            out.datagrams.append(self._raw_error(data, address, ErrorCode.UNABLE_TO_PARSE,
                                                 "fragmented messages are not supported"))
            return out
        if bound is not None and header.conference_id != bound[0]:
            out.datagrams.append(self._raw_error(data, address, ErrorCode.CONFERENCE_DOES_NOT_EXIST,
                                                 "not this address's conference", bound[1]))
            return out
        server = self._lookup(header.conference_id)
        if server is None:
            out.datagrams.append(self._raw_error(data, address, ErrorCode.CONFERENCE_DOES_NOT_EXIST,
                                                 "unknown conference"))
            return out
        try:
            message = decode(data, versions=(VERSION,))
        except BfcpError as exc:
            out.datagrams.append(self._raw_error(data, address, exc.code, exc.text,
                                                 bound[1] if bound is not None else None))
            return out
        outputs = server.handle(message, now, bound_user=bound[1] if bound is not None else None,
                                peer=address[0])
        key = (header.conference_id, message.user_id)
        accepted = bool(outputs) and outputs[0].message.primitive != Primitive.ERROR \
            and message.user_id in server.clients
        if accepted and bound is None:
            old = self.addresses.get(key)
            if old is None or message.primitive == Primitive.HELLO:
                if old is not None:
                    self.bindings.pop(old, None)
                self.bindings[address] = key
                self.addresses[key] = address
        answers: list[Datagram] = []
        for item in outputs:
            if item.user_id == message.user_id and item.message.transaction_id == message.transaction_id:
                answer = Datagram(address, encode(replace(item.message, version=VERSION, responder=True)))
                answers.append(answer)
            else:
                sent = self.notify(header.conference_id, item, now)
                if sent is None:
                    out.elsewhere.append((header.conference_id, item))
                else:
                    out.datagrams.append(sent)
        if message.transaction_id:
            self._remember(address, message.transaction_id, answers, now)
        out.datagrams[0:0] = answers
        return out

    # ---- server-initiated messages ---------------------------------------------------------------
    def notify(self, conference_id: int, item: Outgoing, now: float) -> Datagram | None:
        """A notification for ``item.user_id`` (None: that user has no UDP address here). It gets a
        transaction id of its own and is retransmitted until acknowledged."""
        key = (conference_id, item.user_id)
        address = self.addresses.get(key)
        if address is None:
            return None
        tid = self._tid(key)
        data = encode(replace(item.message, version=VERSION, responder=False, transaction_id=tid))
        self.pending[(key, tid)] = _Pending(address, data, item.message.primitive, now + T1)
        return Datagram(address, data)

    def forget(self, conference_id: int, user_id: int) -> None:
        """The client left (its call ended): its address and pending transactions go."""
        key = (conference_id, user_id)
        address = self.addresses.pop(key, None)
        if address is not None:
            self.bindings.pop(address, None)
        for pending_key in [k for k in self.pending if k[0] == key]:
            del self.pending[pending_key]
        self._next_tid.pop(key, None)

    def _tid(self, key: Key) -> int:
        tid = self._next_tid.get(key, 0) % 0xFFFF + 1
        self._next_tid[key] = tid
        return tid

    # ---- time ------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        dues = [p.due for p in self.pending.values()]
        if self._cache:  # kept in expiry order (insertion order, every entry lives T2): the first is next
            dues.append(next(iter(self._cache.values())).expires)
        return min(dues) if dues else None

    def on_timer(self, now: float) -> list[Datagram]:
        """Retransmit what is due, give up what has been sent too often, forget old responses."""
        out: list[Datagram] = []
        for key, pending in list(self.pending.items()):
            if pending.due > now:
                continue
            if pending.sent > MAX_RETRANSMITS:
                del self.pending[key]
                self.failed += 1
                continue
            pending.sent += 1
            pending.interval *= 2
            pending.due = now + pending.interval
            out.append(Datagram(pending.address, pending.data))
        while self._cache:
            oldest, cached = next(iter(self._cache.items()))
            if cached.expires > now:
                break
            del self._cache[oldest]
        return out

    # ---- helpers ---------------------------------------------------------------------------------
    def _remember(self, address: Address, tid: int, answers: list[Datagram], now: float) -> None:
        self._cache.pop((address, tid), None)  # re-inserted at the end: the dict stays in expiry order
        self._cache[(address, tid)] = _Cached(now + T2, tuple(answers))
        while len(self._cache) > MAX_CACHE:
            del self._cache[next(iter(self._cache))]

    def _raw_error(self, data: bytes, address: Address, code: ErrorCode, info: str,
                   bound_user: int | None = None) -> Datagram:
        return Datagram(address, error_for_raw(data, code, info, VERSION, bound_user).data)


__all__ = ["MAX_RETRANSMITS", "T1", "T2", "Datagram", "DatagramEndpoint", "Received"]
