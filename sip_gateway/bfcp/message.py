"""BFCP messages (RFC 8855 §5): the common header, the attributes, encode and decode.

Pure functions over bytes; nothing here keeps state or touches I/O.

Wire format (all integers big-endian):

* **Common header**, 12 octets: ``Ver(3) R(1) F(1) Res(3)``, ``Primitive(8)``, ``Payload Length(16)``
  (the payload after the header, in 4-octet units), ``Conference ID(32)``, ``Transaction ID(16)``,
  ``User ID(16)``. When ``F`` is set (fragmentation, unreliable transports only) ``Fragment
  Offset(16)`` and ``Fragment Length(16)`` follow. Version 1 is used over reliable transports (TCP,
  TLS), version 2 over unreliable ones (UDP, DTLS) (RFC 8855 §5.1). ``R`` marks a response over an
  unreliable transport; over TCP it is 0.
* **Attributes**: ``Type(7) M(1)``, ``Length(8)`` (octets including this 2-octet header, excluding
  padding), the contents, zero padding to a 4-octet boundary. Three shapes: Unsigned16 and
  OctetString16 (Length 4: one 16-bit value), OctetString (any contents) and Grouped (a 16-bit
  header value such as the floor request id, then nested attributes, each padded).

Decoding refuses with :class:`BfcpError` carrying the RFC 8855 §5.2.6 error code the server answers
with (``UNABLE_TO_PARSE``, ``INCORRECT_LENGTH``, ``UNSUPPORTED_VERSION``); attributes of unknown
types are kept as opaque :class:`Attribute` values (the server refuses unknown *mandatory* ones).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER_LEN = 12
MAX_DEPTH = 4  # grouped attributes nested deeper than this are refused


class Primitive(IntEnum):
    FLOOR_REQUEST = 1
    FLOOR_RELEASE = 2
    FLOOR_REQUEST_QUERY = 3
    FLOOR_REQUEST_STATUS = 4
    USER_QUERY = 5
    USER_STATUS = 6
    FLOOR_QUERY = 7
    FLOOR_STATUS = 8
    CHAIR_ACTION = 9
    CHAIR_ACTION_ACK = 10
    HELLO = 11
    HELLO_ACK = 12
    ERROR = 13
    FLOOR_REQUEST_STATUS_ACK = 14
    ERROR_ACK = 15
    FLOOR_STATUS_ACK = 16
    GOODBYE = 17
    GOODBYE_ACK = 18


class AttributeType(IntEnum):
    BENEFICIARY_ID = 1
    FLOOR_ID = 2
    FLOOR_REQUEST_ID = 3
    PRIORITY = 4
    REQUEST_STATUS = 5
    ERROR_CODE = 6
    ERROR_INFO = 7
    PARTICIPANT_PROVIDED_INFO = 8
    STATUS_INFO = 9
    SUPPORTED_ATTRIBUTES = 10
    SUPPORTED_PRIMITIVES = 11
    USER_DISPLAY_NAME = 12
    USER_URI = 13
    BENEFICIARY_INFORMATION = 14
    FLOOR_REQUEST_INFORMATION = 15
    REQUESTED_BY_INFORMATION = 16
    FLOOR_REQUEST_STATUS = 17
    OVERALL_REQUEST_STATUS = 18


class RequestStatus(IntEnum):
    PENDING = 1
    ACCEPTED = 2
    GRANTED = 3
    DENIED = 4
    CANCELLED = 5
    RELEASED = 6
    REVOKED = 7


class ErrorCode(IntEnum):
    CONFERENCE_DOES_NOT_EXIST = 1
    USER_DOES_NOT_EXIST = 2
    UNKNOWN_PRIMITIVE = 3
    UNKNOWN_MANDATORY_ATTRIBUTE = 4
    UNAUTHORIZED_OPERATION = 5
    INVALID_FLOOR_ID = 6
    FLOOR_REQUEST_ID_DOES_NOT_EXIST = 7
    MAX_FLOOR_REQUESTS_REACHED = 8
    USE_TLS = 9
    UNABLE_TO_PARSE = 10
    USE_DTLS = 11
    UNSUPPORTED_VERSION = 12
    INCORRECT_LENGTH = 13
    GENERIC_ERROR = 14


_UNSIGNED16 = frozenset({AttributeType.BENEFICIARY_ID, AttributeType.FLOOR_ID, AttributeType.FLOOR_REQUEST_ID})
_OCTET16 = frozenset({AttributeType.PRIORITY, AttributeType.REQUEST_STATUS})
GROUPED = frozenset({AttributeType.BENEFICIARY_INFORMATION, AttributeType.FLOOR_REQUEST_INFORMATION,
                     AttributeType.REQUESTED_BY_INFORMATION, AttributeType.FLOOR_REQUEST_STATUS,
                     AttributeType.OVERALL_REQUEST_STATUS})
KNOWN_ATTRIBUTES = frozenset(int(t) for t in AttributeType)


class BfcpError(ValueError):
    """Input that is not a BFCP message we can use; ``code`` is the Error primitive's code to answer with."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Attribute:
    """One attribute. ``value`` is an int (Unsigned16/OctetString16), bytes (OctetString, and any
    attribute type we do not know) or a tuple of nested attributes (Grouped, with ``header`` the
    group's 16-bit id)."""

    type: int
    value: int | bytes | tuple[Attribute, ...] = b""
    mandatory: bool = False
    header: int = 0

    @property
    def children(self) -> tuple[Attribute, ...]:
        return self.value if isinstance(self.value, tuple) else ()

    @property
    def number(self) -> int:
        return self.value if isinstance(self.value, int) else 0

    @property
    def octets(self) -> bytes:
        return self.value if isinstance(self.value, bytes) else b""


@dataclass(frozen=True)
class Message:
    primitive: int
    conference_id: int
    transaction_id: int
    user_id: int
    attributes: tuple[Attribute, ...] = ()
    version: int = 1
    responder: bool = False

    def all(self, kind: AttributeType) -> list[Attribute]:
        return [a for a in self.attributes if a.type == kind]

    def first(self, kind: AttributeType) -> Attribute | None:
        return next((a for a in self.attributes if a.type == kind), None)


# ---- attribute constructors ------------------------------------------------------------------------
def u16(kind: AttributeType, value: int, mandatory: bool = False) -> Attribute:
    return Attribute(kind, value & 0xFFFF, mandatory)


def request_status(status: RequestStatus, queue_position: int = 0) -> Attribute:
    return Attribute(AttributeType.REQUEST_STATUS, (int(status) << 8) | (queue_position & 0xFF))


def text(kind: AttributeType, value: str) -> Attribute:
    return Attribute(kind, value.encode()[:250])


def error_code(code: ErrorCode, details: bytes = b"") -> Attribute:
    return Attribute(AttributeType.ERROR_CODE, bytes([int(code)]) + details[:250], True)


def grouped(kind: AttributeType, header: int, *children: Attribute) -> Attribute:
    return Attribute(kind, tuple(children), False, header & 0xFFFF)


def split_request_status(attribute: Attribute) -> tuple[int, int]:
    """(request status, queue position) of a REQUEST-STATUS attribute."""
    return attribute.number >> 8, attribute.number & 0xFF


# ---- encoding --------------------------------------------------------------------------------------
def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def encode_attribute(attribute: Attribute) -> bytes:
    kind = attribute.type
    if isinstance(attribute.value, tuple):
        body = struct.pack("!H", attribute.header) + b"".join(encode_attribute(a) for a in attribute.value)
    elif isinstance(attribute.value, int):
        body = struct.pack("!H", attribute.value & 0xFFFF)
    else:
        body = attribute.value
    length = 2 + len(body)
    if length > 255:
        raise BfcpError(ErrorCode.GENERIC_ERROR, f"attribute {kind} too long to encode ({length} octets)")
    return bytes([((kind & 0x7F) << 1) | int(attribute.mandatory), length]) + body + bytes(_pad(length))


def encode(message: Message) -> bytes:
    """The message on the wire (never fragmented)."""
    payload = b"".join(encode_attribute(a) for a in message.attributes)
    if len(payload) % 4 or len(payload) // 4 > 0xFFFF:
        raise BfcpError(ErrorCode.GENERIC_ERROR, "payload too long to encode")
    first = ((message.version & 0x7) << 5) | (0x10 if message.responder else 0)
    return struct.pack("!BBHIHH", first, message.primitive & 0xFF, len(payload) // 4,
                       message.conference_id & 0xFFFFFFFF, message.transaction_id & 0xFFFF,
                       message.user_id & 0xFFFF) + payload


# ---- decoding --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    version: int
    responder: bool
    fragmented: bool
    primitive: int
    payload_length: int  # octets
    conference_id: int
    transaction_id: int
    user_id: int


def decode_header(data: bytes) -> Header:
    """The common header of ``data`` (which may hold more than one message)."""
    if len(data) < HEADER_LEN:
        raise BfcpError(ErrorCode.INCORRECT_LENGTH, "shorter than the common header")
    first, primitive, words, conference_id, transaction_id, user_id = struct.unpack_from("!BBHIHH", data)
    return Header(first >> 5, bool(first & 0x10), bool(first & 0x08), primitive, words * 4,
                  conference_id, transaction_id, user_id)


def message_length(data: bytes) -> int | None:
    """Octets of the first message in a stream buffer (None: the header is not complete yet)."""
    if len(data) < HEADER_LEN:
        return None
    return HEADER_LEN + decode_header(data).payload_length


def decode(data: bytes, *, versions: tuple[int, ...] = (1, 2)) -> Message:
    """Exactly one unfragmented message (its length must match the header's)."""
    header = decode_header(data)
    if header.version not in versions:
        raise BfcpError(ErrorCode.UNSUPPORTED_VERSION, f"version {header.version} not supported")
    if header.fragmented:
        raise BfcpError(ErrorCode.UNABLE_TO_PARSE, "fragmented messages are not supported")
    if len(data) != HEADER_LEN + header.payload_length:
        raise BfcpError(ErrorCode.INCORRECT_LENGTH,
                        f"payload length {header.payload_length} but {len(data) - HEADER_LEN} octets")
    attributes = _decode_attributes(data, HEADER_LEN, len(data), 0)
    return Message(header.primitive, header.conference_id, header.transaction_id, header.user_id,
                   attributes, header.version, header.responder)


def _decode_attributes(data: bytes, start: int, end: int, depth: int) -> tuple[Attribute, ...]:
    if depth > MAX_DEPTH:
        raise BfcpError(ErrorCode.UNABLE_TO_PARSE, "grouped attributes nested too deep")
    out: list[Attribute] = []
    at = start
    while at < end:
        if end - at < 2:
            raise BfcpError(ErrorCode.UNABLE_TO_PARSE, "truncated attribute header")
        kind, mandatory, length = data[at] >> 1, bool(data[at] & 1), data[at + 1]
        if length < 2 or at + length > end:
            raise BfcpError(ErrorCode.UNABLE_TO_PARSE, f"attribute {kind} has a bad length {length}")
        body = data[at + 2:at + length]
        padded = length + _pad(length)
        if at + padded > end:
            raise BfcpError(ErrorCode.UNABLE_TO_PARSE, f"attribute {kind} is not padded")
        if kind in _UNSIGNED16 or kind in _OCTET16:
            if length != 4:
                raise BfcpError(ErrorCode.UNABLE_TO_PARSE, f"attribute {kind} must be 4 octets long")
            out.append(Attribute(kind, struct.unpack("!H", body)[0], mandatory))
        elif kind in GROUPED:
            if length < 4:
                raise BfcpError(ErrorCode.UNABLE_TO_PARSE, f"grouped attribute {kind} too short")
            children = _decode_attributes(data, at + 4, at + length, depth + 1)
            out.append(Attribute(kind, children, mandatory, struct.unpack("!H", body[:2])[0]))
        else:
            if kind == AttributeType.ERROR_CODE and length < 3:
                raise BfcpError(ErrorCode.UNABLE_TO_PARSE, "ERROR-CODE without a code")
            out.append(Attribute(kind, bytes(body), mandatory))
        at += padded
    return tuple(out)


def unknown_mandatory(attributes: tuple[Attribute, ...]) -> list[int]:
    """Types of mandatory attributes (at any depth) this implementation does not know."""
    found: list[int] = []
    for attribute in attributes:
        if attribute.mandatory and attribute.type not in KNOWN_ATTRIBUTES:
            found.append(attribute.type)
        found.extend(unknown_mandatory(attribute.children))
    return found
