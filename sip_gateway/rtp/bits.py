"""Bit-exact joining of RTP payload pieces that split a bitstream mid-octet.

RFC 2190 (H.263) and RFC 4587 (H.261) let a packet start and end at any bit: SBIT bits are
ignored at the start of its first octet, EBIT bits at the end of its last octet, and the
octet a split falls in travels in both packets.
"""
from __future__ import annotations

from collections.abc import Iterable

__all__ = ["frame_piece", "join_bit_pieces", "join_framed_pieces"]

_PIECE_HEADER = 3  # SBIT/EBIT octet + 16-bit length


def join_bit_pieces(pieces: Iterable[tuple[bytes, int, int]]) -> bytes:
    """Concatenate ``(data, sbit, ebit)`` pieces bit-exactly; the tail is zero-padded to an octet."""
    value = 0
    length = 0
    for data, sbit, ebit in pieces:
        if not 0 <= sbit <= 7 or not 0 <= ebit <= 7:
            raise ValueError(f"SBIT/EBIT out of range: {sbit}/{ebit}")
        bits = len(data) * 8 - sbit - ebit
        if bits < 0:
            raise ValueError("SBIT + EBIT exceed the payload")
        if bits == 0:
            continue
        piece = (int.from_bytes(data, "big") >> ebit) & ((1 << bits) - 1)
        value = (value << bits) | piece
        length += bits
    pad = (-length) % 8
    return (value << pad).to_bytes((length + pad) // 8, "big")


def frame_piece(data: bytes, sbit: int, ebit: int) -> bytes:
    """One packet's piece with its SBIT/EBIT, self-delimiting, so the RTP jitter buffer can
    concatenate a picture's pieces as it does for octet-aligned payloads and the decoder
    side still joins them bit-exactly (:func:`join_framed_pieces`)."""
    if not 0 <= sbit <= 7 or not 0 <= ebit <= 7:
        raise ValueError(f"SBIT/EBIT out of range: {sbit}/{ebit}")
    if len(data) > 0xFFFF:
        raise ValueError("piece longer than 65535 octets")
    return bytes([sbit << 4 | ebit]) + len(data).to_bytes(2, "big") + data


def join_framed_pieces(blob: bytes) -> bytes:
    """A picture from concatenated :func:`frame_piece` records (ValueError when truncated)."""
    pieces: list[tuple[bytes, int, int]] = []
    pos = 0
    aligned = True
    while pos < len(blob):
        if pos + _PIECE_HEADER > len(blob):
            raise ValueError("truncated piece header")
        bits, length = blob[pos], int.from_bytes(blob[pos + 1:pos + 3], "big")
        start = pos + _PIECE_HEADER
        if start + length > len(blob):
            raise ValueError("truncated piece")
        sbit, ebit = bits >> 4, bits & 0x0F
        pieces.append((blob[start:start + length], sbit, ebit))
        aligned = aligned and sbit == 0 and ebit == 0
        pos = start + length
    if aligned:  # the common case (RFC 2190 mode A, octet-aligned senders): plain concatenation
        return b"".join(data for data, _, _ in pieces)
    return join_bit_pieces(pieces)
