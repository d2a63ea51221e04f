"""Bit-exact joining of RTP payload pieces that split a bitstream mid-octet.

RFC 2190 (H.263) and RFC 4587 (H.261) let a packet start and end at any bit: SBIT bits are
ignored at the start of its first octet, EBIT bits at the end of its last octet, and the
octet a split falls in travels in both packets.
"""
from __future__ import annotations

from collections.abc import Iterable

__all__ = ["join_bit_pieces"]


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
