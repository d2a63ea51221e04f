"""TPKT framing (RFC 1006 section 6, used by H.225.0 call signalling and H.245 over TCP).

Each packet is ``03 00 LL LL`` followed by ``LLLL - 4`` payload octets. Written by hand: it
is four octets, and the strict checks (version, reserved octet, length bounds) are the
point.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TPKT_HEADER_LEN", "TPKT_MAX_LEN", "TpktError", "TpktFramer", "encode_tpkt"]

TPKT_VERSION = 3
TPKT_HEADER_LEN = 4
TPKT_MAX_LEN = 0xFFFF


class TpktError(ValueError):
    """The byte stream is not valid TPKT; the connection cannot be resynchronised."""


def encode_tpkt(payload: bytes) -> bytes:
    """Frame one payload; raises :class:`TpktError` if it does not fit in one TPKT."""
    length = len(payload) + TPKT_HEADER_LEN
    if length > TPKT_MAX_LEN:
        raise TpktError(f"payload of {len(payload)} octets does not fit in a TPKT")
    return bytes((TPKT_VERSION, 0, length >> 8, length & 0xFF)) + payload


@dataclass
class TpktFramer:
    """Incremental TPKT deframer for one TCP stream.

    ``feed`` returns complete payloads in order. Empty TPKTs (length 4) are keep-alives and
    are dropped. After a :class:`TpktError` the stream is unusable (there is no way to find
    the next header), so the framer stays failed.
    """

    _buffer: bytearray = field(default_factory=bytearray)
    failed: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads of all packets completed by them."""
        if self.failed:
            raise TpktError("stream already failed")
        self._buffer += data
        payloads: list[bytes] = []
        while len(self._buffer) >= TPKT_HEADER_LEN:
            version, reserved, hi, lo = self._buffer[:TPKT_HEADER_LEN]
            if version != TPKT_VERSION or reserved != 0:
                self.failed = True
                raise TpktError(f"bad TPKT header {bytes(self._buffer[:4]).hex()}")
            length = (hi << 8) | lo
            if length < TPKT_HEADER_LEN:
                self.failed = True
                raise TpktError(f"TPKT length {length} shorter than its header")
            if len(self._buffer) < length:
                break
            payload = bytes(self._buffer[TPKT_HEADER_LEN:length])
            del self._buffer[:length]
            if payload:
                payloads.append(payload)
        return payloads

    @property
    def pending(self) -> int:
        """Octets buffered for an incomplete packet."""
        return len(self._buffer)
