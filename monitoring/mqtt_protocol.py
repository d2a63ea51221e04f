"""MQTT 3.1.1 (OASIS, protocol level 4), the client side the ingest needs, sans-I/O: bytes and calls
in, events and bytes out. No sockets, no asyncio, no clock (time comes in as an argument).

What it speaks: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH in both directions at QoS 0, 1 and 2
(receiving QoS 2: PUBREC, then PUBCOMP on PUBREL), PUBACK, PINGREQ/PINGRESP, DISCONNECT. Not
UNSUBSCRIBE, not will messages, not MQTT 5.

Rules (the asyncio adapter, monitoring/mqtt.py, relies on them):
- `receive_data` parses every whole packet in the bytes it has (a packet may come in pieces) and
  returns their events in order; the rest waits for more bytes. Incoming PUBLISH packets are
  acknowledged in `data_to_send` **after** `receive_data` returns, so an adapter that hands each
  `Publish` to its consumer before writing `data_to_send()` acknowledges only what was handed over
  (QoS 1 at least once: a message is never acknowledged and then dropped). The acknowledgements of
  one `receive_data` call leave in one write.
- A malformed packet (reserved type, bad flags, remaining length over 4 bytes or over
  `max_packet`, a topic that is not UTF-8, a packet the server must not send, a CONNACK out of
  turn) raises `ProtocolError` naming what was wrong; the connection is unusable afterwards (the
  adapter closes it and connects again; the broker redelivers what was not acknowledged).
- A refused CONNECT (return code ≠ 0) and a refused subscription (SUBACK 0x80) are events, not
  errors: the adapter decides.
- Keep-alive: `poll(now)` queues a PINGREQ once nothing was sent for half the keep-alive, and
  returns False once nothing was received for 1.5 keep-alives (MQTT-3.1.2-24: the connection is dead).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
MAX_PACKET = 16 * 1024 * 1024
CONNACK_REASONS = {1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
                   4: "bad user name or password", 5: "not authorized"}


class ProtocolError(ValueError):
    """The peer sent something MQTT 3.1.1 forbids; the connection must be closed."""


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    code: int  # 0 accepted; CONNACK_REASONS otherwise

    @property
    def reason(self) -> str:
        return "accepted" if self.code == 0 else CONNACK_REASONS.get(self.code, f"refused ({self.code})")


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    granted: tuple[int, ...]  # per filter: the QoS granted, or 0x80 for a refusal


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int  # 0 at QoS 0
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int  # our QoS 1 publish was taken (or our QoS 2 publish completed)


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


Event = ConnAck | SubAck | Publish | PubAck | PingResp


def _varint(n: int) -> bytes:
    if not 0 <= n < 268_435_456:
        raise ValueError(f"remaining length {n} cannot be encoded")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    raw = s.encode("utf-8") if isinstance(s, str) else s
    if len(raw) > 0xFFFF:
        raise ValueError("a string field is over 65,535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def encode_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, *, retain: bool = False,
                   dup: bool = False) -> bytes:
    """One PUBLISH packet (for publishers built on this module, and for tests)."""
    if qos not in (0, 1, 2) or (qos and not 0 < packet_id <= 0xFFFF) or not topic or "+" in topic or "#" in topic:
        raise ValueError("bad PUBLISH: topic must be a name (no wildcards), QoS 0-2, QoS>0 needs a packet id")
    first = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    return _packet(first, _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload)


class ClientConnection:
    """One MQTT 3.1.1 client connection's state (see the module's rules)."""

    def __init__(self, client_id: str, *, keepalive: int = 30, clean_session: bool = True,
                 username: str | None = None, password: str | None = None, max_packet: int = MAX_PACKET) -> None:
        if not 0 <= keepalive <= 0xFFFF:
            raise ValueError("keep-alive must be 0-65535 s")
        self.client_id, self.keepalive, self.clean_session = client_id, keepalive, clean_session
        self.username, self.password, self.max_packet = username, password, max_packet
        self.connected = False
        self._in = bytearray()
        self._out: list[bytes] = []
        self._next_id = 0
        self._connect_sent = False
        self._awaiting_rel: set[int] = set()
        self._sent_at = self._received_at = 0.0

    # -- outgoing -------------------------------------------------------------------------------
    def connect(self, now: float) -> None:
        flags = (0x02 if self.clean_session else 0) | (0x80 if self.username is not None else 0) | (
            0x40 if self.password is not None else 0)
        body = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", self.keepalive) + _string(self.client_id)
        if self.username is not None:
            body += _string(self.username)
        if self.password is not None:
            body += _string(self.password)
        self._connect_sent = True
        self._sent_at = self._received_at = now
        self._out.append(_packet(CONNECT << 4, body))

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def subscribe(self, filters: list[tuple[str, int]]) -> int:
        """Queue a SUBSCRIBE for (topic filter, QoS) pairs; returns its packet id (its SubAck's)."""
        if not filters or any(q not in (0, 1, 2) or not f for f, q in filters):
            raise ValueError("SUBSCRIBE needs topic filters with QoS 0-2")
        pid = self._packet_id()
        body = struct.pack("!H", pid) + b"".join(_string(f) + bytes((q,)) for f, q in filters)
        self._out.append(_packet((SUBSCRIBE << 4) | 0x02, body))
        return pid

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> int:
        """Queue a PUBLISH; returns its packet id (0 at QoS 0), which its PubAck names."""
        pid = self._packet_id() if qos else 0
        self._out.append(encode_publish(topic, payload, qos, pid))
        return pid

    def disconnect(self) -> None:
        self._out.append(bytes((DISCONNECT << 4, 0)))

    def poll(self, now: float) -> bool:
        """Keep-alive: queue a PINGREQ when due; False once the server has been silent too long."""
        if not self.keepalive:
            return True
        if now - self._received_at > 1.5 * self.keepalive:
            return False
        if now - self._sent_at >= self.keepalive / 2:
            self._out.append(bytes((PINGREQ << 4, 0)))
        return True

    def data_to_send(self, now: float = 0.0) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        self._sent_at = max(self._sent_at, now)
        return data

    # -- incoming -------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float = 0.0) -> list[Event]:
        buf = self._in
        buf += data
        if data:
            self._received_at = max(self._received_at, now)
        events: list[Event] = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= 2:
                first = buf[pos]
                length, shift, i = 0, 0, pos + 1
                while True:
                    if i >= end:
                        return events  # the length is not all here yet
                    b = buf[i]
                    length |= (b & 0x7F) << shift
                    i += 1
                    if not b & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("remaining length longer than 4 bytes")
                if length > self.max_packet:
                    raise ProtocolError(f"packet of {length} bytes (limit {self.max_packet})")
                if end - i < length:
                    return events
                body = bytes(buf[i:i + length])
                pos = i + length
                event = self._packet(first, body)
                if event is not None:
                    events.append(event)
            return events
        finally:
            del buf[:pos]

    def _packet(self, first: int, body: bytes) -> Event | None:
        kind, flags = first >> 4, first & 0x0F
        if kind == PUBLISH:
            return self._publish(flags, body)
        if kind == PUBREL:
            if flags != 0x02 or len(body) != 2:
                raise ProtocolError("malformed PUBREL")
            (pid,) = struct.unpack("!H", body)
            self._awaiting_rel.discard(pid)
            self._out.append(_packet(PUBCOMP << 4, body))
            return None
        if flags:
            raise ProtocolError(f"packet type {kind} with flags {flags:#x}")
        if kind == CONNACK:
            if len(body) != 2 or body[0] & 0xFE or not self._connect_sent or self.connected:
                raise ProtocolError("malformed or unexpected CONNACK")
            self.connected = body[1] == 0
            return ConnAck(bool(body[0] & 1), body[1])
        if kind in (PUBACK, PUBCOMP, UNSUBACK):
            if len(body) != 2:
                raise ProtocolError(f"malformed packet type {kind}")
            (pid,) = struct.unpack("!H", body)
            return PubAck(pid) if kind != UNSUBACK else None
        if kind == PUBREC:
            if len(body) != 2:
                raise ProtocolError("malformed PUBREC")
            self._out.append(_packet((PUBREL << 4) | 0x02, body))
            return None
        if kind == SUBACK:
            if len(body) < 3:
                raise ProtocolError("malformed SUBACK")
            granted = tuple(body[2:])
            if any(g not in (0, 1, 2, 0x80) for g in granted):
                raise ProtocolError("SUBACK with an invalid return code")
            return SubAck(struct.unpack("!H", body[:2])[0], granted)
        if kind == PINGRESP:
            if body:
                raise ProtocolError("malformed PINGRESP")
            return PingResp()
        raise ProtocolError(f"packet type {kind} is not one a server sends")

    def _publish(self, flags: int, body: bytes) -> Publish | None:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise ProtocolError("PUBLISH with QoS 3")
        if len(body) < 2:
            raise ProtocolError("PUBLISH too short")
        n = (body[0] << 8) | body[1]
        head = 2 + n + (2 if qos else 0)
        if len(body) < head or n == 0:
            raise ProtocolError("PUBLISH topic or packet id truncated")
        try:
            topic = body[2:2 + n].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("PUBLISH topic is not UTF-8") from None
        if "+" in topic or "#" in topic or "\x00" in topic:
            raise ProtocolError("PUBLISH topic with a wildcard or NUL")
        pid = 0
        if qos:
            pid = (body[2 + n] << 8) | body[3 + n]
            if pid == 0:
                raise ProtocolError("PUBLISH with packet id 0")
            if qos == 1:
                self._out.append(bytes((PUBACK << 4, 2)) + body[2 + n:4 + n])
            else:
                self._out.append(bytes((PUBREC << 4, 2)) + body[2 + n:4 + n])
                if pid in self._awaiting_rel:
                    return None  # a redelivery of a QoS 2 message already handed over
                self._awaiting_rel.add(pid)
        return Publish(topic, body[head:], qos, pid, bool(flags & 1), bool(flags & 8))
