"""The H.224 frame (ITU-T H.224 §3, H.323 Annex Q, RFC 4573): encode, parse, segment, reassemble.

On IP networks an H.224 frame is carried whole in one RTP packet (payload type ``H224/4800``)
*without* the HDLC flags, the zero-bit insertion and the frame check sequence (RFC 4573 §3,
H.323 Annex Q). What is left, octet by octet:

====  ==================================================================================
0-1   Q.922 address: DLCI 6 (low-priority data) or 7 (high priority), EA bits 0/1
      (``0x00 0x61`` for DLCI 6)
2     Q.922 control: UI (``0x03``), the only frame type H.224 uses
3-4   destination terminal address (MCU number, terminal number; 0/0 point to point)
5-6   source terminal address
7     client ID: ``0x00`` CME, ``0x01`` H.281 far-end camera control, ``0x7E`` + one octet
      (extended), ``0x7F`` + country, extension, manufacturer (2) and client octet
      (non-standard); bit 8 is reserved (0)
8     ES (bit 8), BS (bit 7), C1 C0 (bits 6-5), segment number (bits 4-1)
9-    client data
====  ==================================================================================

Rules:

* A message longer than ``max_data`` octets is split into segments: BS on the first, ES on the
  last (both on a single-segment message), the segment number counting 0..15 and wrapping.
* Reassembly (:class:`Reassembler`) is per (source, client): a segment without BS when nothing
  is open, a BS while one is open (the old one is dropped), a number out of sequence, or more
  than :data:`MAX_MESSAGE` octets each drop the message; the reassembler counts every drop.
* :func:`parse_frame` refuses anything that is not a well-formed UI frame on DLCI 6/7 with
  :class:`H224Error`; it never raises anything else, whatever the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CLIENT_CME", "CLIENT_H281", "DLCI_HIGH", "DLCI_LOW", "MAX_MESSAGE", "UI", "ClientId", "H224Error",
    "H224Frame", "Reassembler", "encode_frame", "parse_frame", "segment",
]

DLCI_LOW = 6
DLCI_HIGH = 7
UI = 0x03
CLIENT_CME = 0x00
CLIENT_H281 = 0x01
CLIENT_EXTENDED = 0x7E
CLIENT_NON_STANDARD = 0x7F
HEADER = 9  # octets before the client data, for a standard client ID
MAX_MESSAGE = 1024  # a reassembled client message larger than this is dropped (H.281/CME use < 64)
DEFAULT_MAX_DATA = 248  # client data octets per frame we send (H.224 info field limit minus header)


class H224Error(ValueError):
    """Bytes that are not an H.224 frame (or a frame we cannot build)."""


@dataclass(frozen=True)
class ClientId:
    """A client ID: standard (``0x00``-``0x7D``), extended (``0x7E`` + ``extended``) or
    non-standard (``0x7F`` + ``country``, ``extension``, ``manufacturer``, ``extended``)."""

    standard: int
    extended: int = 0
    country: int = 0
    extension: int = 0
    manufacturer: int = 0

    def encode(self) -> bytes:
        """Wire octets of the ID (bit 8 of the first is 0)."""
        if not 0 <= self.standard <= 0x7F:
            raise H224Error(f"client ID {self.standard} out of range")
        if self.standard == CLIENT_EXTENDED:
            return bytes((CLIENT_EXTENDED, self.extended & 0xFF))
        if self.standard == CLIENT_NON_STANDARD:
            return bytes((CLIENT_NON_STANDARD, self.country & 0xFF, self.extension & 0xFF,
                          (self.manufacturer >> 8) & 0xFF, self.manufacturer & 0xFF, self.extended & 0xFF))
        return bytes((self.standard,))

    @classmethod
    def parse(cls, data: bytes, offset: int) -> tuple[ClientId, int]:
        """The ID at ``offset`` (bit 8 ignored) and the offset after it; :class:`H224Error` if cut short."""
        if offset >= len(data):
            raise H224Error("no client ID")
        first = data[offset] & 0x7F
        if first == CLIENT_EXTENDED:
            if offset + 2 > len(data):
                raise H224Error("extended client ID cut short")
            return cls(first, data[offset + 1]), offset + 2
        if first == CLIENT_NON_STANDARD:
            if offset + 6 > len(data):
                raise H224Error("non-standard client ID cut short")
            d = data[offset + 1: offset + 6]
            return cls(first, d[4], d[0], d[1], (d[2] << 8) | d[3]), offset + 6
        return cls(first), offset + 1


@dataclass(frozen=True)
class H224Frame:
    """One H.224 frame."""

    client: ClientId
    data: bytes
    destination: int = 0  # terminal address: MCU number << 8 | terminal number
    source: int = 0
    beginning: bool = True  # BS
    ending: bool = True  # ES
    segment_number: int = 0
    c1c0: int = 0
    dlci: int = DLCI_LOW


def encode_frame(frame: H224Frame) -> bytes:
    """The frame's octets as they go into an RTP payload."""
    if frame.dlci not in (DLCI_LOW, DLCI_HIGH):
        raise H224Error(f"DLCI {frame.dlci} is not an H.224 DLCI")
    if not (0 <= frame.destination <= 0xFFFF and 0 <= frame.source <= 0xFFFF):
        raise H224Error("terminal address out of range")
    address = bytes(((frame.dlci >> 4) << 2, ((frame.dlci & 0x0F) << 4) | 0x01))
    flags = (0x80 if frame.ending else 0) | (0x40 if frame.beginning else 0) \
        | ((frame.c1c0 & 0x03) << 4) | (frame.segment_number & 0x0F)
    return address + bytes((UI,)) + frame.destination.to_bytes(2, "big") + frame.source.to_bytes(2, "big") \
        + frame.client.encode() + bytes((flags,)) + frame.data


def parse_frame(data: bytes) -> H224Frame:
    """Parse one RTP payload as an H.224 frame; :class:`H224Error` for anything else."""
    if len(data) < HEADER:
        raise H224Error(f"{len(data)} octets is shorter than an H.224 header")
    if data[0] & 0x01 or not data[1] & 0x01:
        raise H224Error("Q.922 address extension bits wrong")
    dlci = ((data[0] >> 2) << 4) | (data[1] >> 4)
    if dlci not in (DLCI_LOW, DLCI_HIGH):
        raise H224Error(f"DLCI {dlci} is not H.224 data")
    if data[2] != UI:
        raise H224Error(f"Q.922 control {data[2]:#04x} is not UI")
    client, offset = ClientId.parse(data, 7)
    if offset >= len(data):
        raise H224Error("no ES/BS octet")
    flags = data[offset]
    return H224Frame(client, bytes(data[offset + 1:]), int.from_bytes(data[3:5], "big"),
                     int.from_bytes(data[5:7], "big"), bool(flags & 0x40), bool(flags & 0x80),
                     flags & 0x0F, (flags >> 4) & 0x03, dlci)


def segment(client: ClientId, message: bytes, destination: int = 0, source: int = 0,
            max_data: int = DEFAULT_MAX_DATA, dlci: int = DLCI_LOW) -> list[bytes]:
    """``message`` as one or more encoded frames of at most ``max_data`` client octets each."""
    if max_data < 1:
        raise H224Error("max_data must be positive")
    if len(message) > MAX_MESSAGE:
        raise H224Error(f"message of {len(message)} octets is longer than {MAX_MESSAGE}")
    pieces = [message[i:i + max_data] for i in range(0, len(message), max_data)] or [b""]
    return [encode_frame(H224Frame(client, piece, destination, source, i == 0, i == len(pieces) - 1,
                                   i & 0x0F, 0, dlci)) for i, piece in enumerate(pieces)]


@dataclass
class _Open:
    parts: list[bytes]
    next_number: int


@dataclass
class Reassembler:
    """Joins segmented client messages; counts what it had to drop."""

    dropped: int = 0
    _open: dict[tuple[int, ClientId], _Open] = field(default_factory=dict)

    def push(self, frame: H224Frame) -> bytes | None:
        """The whole message once ``frame`` completes one, else None."""
        key = (frame.source, frame.client)
        current = self._open.get(key)
        if frame.beginning:
            if current is not None:
                self.dropped += 1  # a new message before the old one ended
            if frame.ending:
                self._open.pop(key, None)
                return frame.data
            self._open[key] = _Open([frame.data], (frame.segment_number + 1) & 0x0F)
            return None
        if current is None or frame.segment_number != current.next_number:
            self.dropped += 1
            self._open.pop(key, None)
            return None
        current.parts.append(frame.data)
        current.next_number = (current.next_number + 1) & 0x0F
        if sum(len(p) for p in current.parts) > MAX_MESSAGE:
            self.dropped += 1
            del self._open[key]
            return None
        if frame.ending:
            del self._open[key]
            return b"".join(current.parts)
        return None
