"""One client's BFCP connection over a reliable transport (RFC 8856: TCP, or TLS over TCP), sans-I/O.

BFCP over TCP has no framing of its own beyond the common header: each message's length is the
12-octet header plus its Payload Length (in 4-octet words), and messages follow one another on the
stream (RFC 8855 §6.1). :meth:`StreamConnection.data_received` buffers the stream, cuts it into
messages, routes each to its conference's :class:`~.server.FloorControlServer` (one listener serves
every conference of the node) and returns what to write back.

Rules:

* The connection speaks for one client: the first message accepted by a floor control server binds
  the connection to that (conference, user id); messages for another user id get Error 5 and messages
  for another conference Error 1 — a site cannot act for another.
* A message whose header can be framed but whose body is bad gets an Error (10 or 13) and the stream
  goes on with the next message. A header that cannot be framed (wrong version: the length cannot be
  trusted) or a message longer than ``max_message`` gets an Error and :attr:`closed` is set: the
  adapter closes the connection, since the stream can no longer be cut into messages.
* Only notifications for the bound user come out of :meth:`data_received`; notifications for other
  clients of the same conference are returned too, and the adapter writes them to those clients'
  connections (:attr:`Outgoing.user_id`).
"""
from __future__ import annotations

from collections.abc import Callable

from .message import HEADER_LEN, BfcpError, ErrorCode, Primitive, decode_header
from .server import FloorControlServer, Outgoing, error_for_raw

MAX_MESSAGE = 16384  # octets; every message we understand is far smaller


class StreamConnection:
    def __init__(self, lookup: Callable[[int], FloorControlServer | None], *, version: int = 1,
                 max_message: int = MAX_MESSAGE, peer: str | None = None) -> None:
        self._lookup = lookup
        self.peer = peer  # the remote address (checked against the client's SIP call)
        self.version = version
        self.max_message = max_message
        self.conference_id: int | None = None
        self.user_id: int | None = None
        self.closed = False
        self._buffer = bytearray()

    def data_received(self, data: bytes, now: float) -> list[tuple[int | None, Outgoing]]:
        """Bytes from the peer: ``(conference id, message)`` pairs to send (conference id None: an
        Error on this connection for input that reached no conference)."""
        out: list[tuple[int | None, Outgoing]] = []
        if self.closed:
            return out
        self._buffer += data
        while len(self._buffer) >= HEADER_LEN and not self.closed:
            header = decode_header(bytes(self._buffer[:HEADER_LEN]))
            if header.version != self.version:
                out.append((None, self._fatal(ErrorCode.UNSUPPORTED_VERSION, f"version {header.version}")))
                break
            length = HEADER_LEN + header.payload_length
            if length > self.max_message:
                out.append((None, self._fatal(ErrorCode.INCORRECT_LENGTH, f"message of {length} octets")))
                break
            if len(self._buffer) < length:
                break
            raw = bytes(self._buffer[:length])
            del self._buffer[:length]
            out += self._one(raw, header.conference_id, now)
        return out

    def _one(self, raw: bytes, conference_id: int, now: float) -> list[tuple[int | None, Outgoing]]:
        if self.conference_id is not None and conference_id != self.conference_id:
            return [(None, error_for_raw(raw, ErrorCode.CONFERENCE_DOES_NOT_EXIST, "not this connection's conference",
                                         self.version, self.user_id))]
        server = self._lookup(conference_id)
        if server is None:
            return [(None, error_for_raw(raw, ErrorCode.CONFERENCE_DOES_NOT_EXIST, "unknown conference",
                                         self.version))]
        outputs = server.receive(raw, now, bound_user=self.user_id, peer=self.peer)
        user_id = int.from_bytes(raw[10:12], "big")
        if self.user_id is None and outputs and outputs[0].message.primitive != Primitive.ERROR and user_id in server.clients:
            self.conference_id, self.user_id = conference_id, user_id
        return [(conference_id, o) for o in outputs]

    def _fatal(self, code: ErrorCode, info: str) -> Outgoing:
        self.closed = True
        raw = bytes(self._buffer[:HEADER_LEN])
        self._buffer.clear()
        return error_for_raw(raw, code, info, self.version, self.user_id)


__all__ = ["MAX_MESSAGE", "BfcpError", "StreamConnection"]
