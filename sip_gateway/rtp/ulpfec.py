"""ULPFEC (RFC 5109) XOR forward error correction and RED (RFC 2198) single-block framing; sans-I/O.

No maintained Python package provides ULPFEC (aiortc has none; checked 2026-12), so this is our
own: pure functions on bytes, no sockets, no clock.

* :func:`encode_fec` protects a list of whole RTP packets (same SSRC, sequence numbers within 16
  of the first) with one FEC payload (10-byte FEC header, one level-0 header with a 16-bit mask,
  ``L = 0``, and the XOR of the packets' bytes after their 12-byte header, each zero-padded to the
  longest). The caller puts it in an RTP packet of the ``ulpfec`` payload type, or in a RED block
  of that type (WebRTC's way: ``red`` carrying ``ulpfec``, as Chromium negotiates).
* :func:`parse_fec` reads such a payload (:class:`FecError` when it is not one: too short, a
  48-bit mask announced with too few bytes, a protection length past the end). ``L = 1``
  (48-bit masks) is read too.
* :func:`recover` rebuilds the one missing packet of a protected set from the FEC payload and the
  others (RFC 5109 section 8): every header field the FEC header recovers (P, X, CC, M, PT,
  timestamp, length) and the payload; the sequence number from the mask; the SSRC from the
  caller (the stream's). None when more or fewer than one protected packet is missing, or when
  what the XOR gives is inconsistent (a recovered length longer than the protection).
* :func:`red_wrap` / :func:`red_unwrap`: a RED payload of one primary block (``F = 0``, a 1-byte
  header with the block's payload type), which is what libwebrtc sends; :func:`red_unwrap` also
  skips redundant blocks (``F = 1``, 4-byte headers) and returns the primary one.

The rules for *when* to send FEC (measured loss, hysteresis) are not here: see
:mod:`mcu.legs.loss_switch`.
"""
from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RTP_HEADER = 12
FEC_HEADER = 10
MAX_MASK_SHORT = 16
MAX_MASK_LONG = 48


class FecError(ValueError):
    """Not a ULPFEC (RFC 5109) payload, or not a RED payload."""


@dataclass(frozen=True)
class FecPacket:
    """A parsed ULPFEC payload (one protection level)."""

    long_mask: bool  # L: 48-bit mask
    recovery_first: int  # P, X, CC recovery bits (the first octet with E and L cleared)
    recovery_marker_pt: int  # M and PT recovery (the second octet)
    sn_base: int
    ts_recovery: int
    length_recovery: int
    protected: tuple[int, ...]  # sequence numbers the mask covers, in order
    payload: bytes  # the level-0 payload (protection length bytes)


def _seq(packet: bytes) -> int:
    return int.from_bytes(packet[2:4], "big")


def encode_fec(packets: Sequence[bytes]) -> bytes:
    """One FEC payload protecting ``packets`` (whole RTP packets). ValueError when the set is
    empty, a packet is shorter than an RTP header, or the sequence numbers do not fit a mask."""
    if not packets:
        raise ValueError("nothing to protect")
    if any(len(p) < RTP_HEADER for p in packets):
        raise ValueError("an RTP packet is shorter than its header")
    base = _seq(packets[0])
    offsets = sorted({(_seq(p) - base) & 0xFFFF for p in packets})
    if len(offsets) != len(packets):
        raise ValueError("a sequence number is protected twice")
    if offsets[-1] >= MAX_MASK_LONG:
        raise ValueError("sequence numbers span more than 48")
    long_mask = offsets[-1] >= MAX_MASK_SHORT  # offsets[0] is packets[0]'s: 0
    first = marker_pt = ts = length = 0
    size = max(len(p) - RTP_HEADER for p in packets)
    body = bytearray(size)
    mask = 0
    bits = MAX_MASK_LONG if long_mask else MAX_MASK_SHORT
    for p in packets:
        first ^= p[0]
        marker_pt ^= p[1]
        ts ^= int.from_bytes(p[4:8], "big")
        length ^= len(p) - RTP_HEADER
        for i, byte in enumerate(p[RTP_HEADER:]):
            body[i] ^= byte
        mask |= 1 << (bits - 1 - ((_seq(p) - base) & 0xFFFF))
    head = bytes([(first & 0x3F) | (0x40 if long_mask else 0), marker_pt]) + struct.pack(
        "!HIH", base, ts, length)
    level = struct.pack("!H", size) + mask.to_bytes(bits // 8, "big")
    return head + level + bytes(body)


def parse_fec(payload: bytes) -> FecPacket:
    """A ULPFEC payload (see the module docstring); FecError when it is not one."""
    if len(payload) < FEC_HEADER + 4:
        raise FecError(f"ULPFEC payload of {len(payload)} bytes is shorter than its headers")
    if payload[0] & 0x80:
        raise FecError("ULPFEC E bit set (no extension is defined)")
    long_mask = bool(payload[0] & 0x40)
    sn_base, ts, length = struct.unpack_from("!HIH", payload, 2)
    mask_bytes = 6 if long_mask else 2
    if len(payload) < FEC_HEADER + 2 + mask_bytes:
        raise FecError("ULPFEC level-0 header cut short")
    (protection,) = struct.unpack_from("!H", payload, FEC_HEADER)
    start = FEC_HEADER + 2 + mask_bytes
    if start + protection > len(payload):
        raise FecError(f"ULPFEC protection length {protection} runs past the payload")
    mask = int.from_bytes(payload[FEC_HEADER + 2:start], "big")
    bits = mask_bytes * 8
    protected = tuple((sn_base + i) & 0xFFFF for i in range(bits) if mask >> (bits - 1 - i) & 1)
    if not protected:
        raise FecError("ULPFEC mask protects nothing")
    return FecPacket(long_mask, payload[0] & 0x3F, payload[1], sn_base, ts, length, protected,
                     bytes(payload[start:start + protection]))


def recover(fec: FecPacket, received: Mapping[int, bytes], ssrc: int) -> bytes | None:
    """The one missing packet of ``fec``'s set, rebuilt from the others (``received``: sequence
    number -> whole RTP packet); None when it cannot be (see the module docstring)."""
    missing = [s for s in fec.protected if s not in received]
    if len(missing) != 1:
        return None
    first, marker_pt, ts, length = fec.recovery_first, fec.recovery_marker_pt, fec.ts_recovery, fec.length_recovery
    body = bytearray(fec.payload)
    for seq in fec.protected:
        if seq == missing[0]:
            continue
        p = received[seq]
        if len(p) < RTP_HEADER or len(p) - RTP_HEADER > len(body):
            return None  # not the packet this FEC protected
        first ^= p[0]
        marker_pt ^= p[1]
        ts ^= int.from_bytes(p[4:8], "big")
        length ^= len(p) - RTP_HEADER
        for i, byte in enumerate(p[RTP_HEADER:]):
            body[i] ^= byte
    if length > len(body):
        return None
    header = bytes([0x80 | (first & 0x3F), marker_pt]) + struct.pack("!HII", missing[0], ts & 0xFFFFFFFF,
                                                                       ssrc & 0xFFFFFFFF)
    return header + bytes(body[:length])


def red_wrap(block_pt: int, payload: bytes) -> bytes:
    """A RED payload with one primary block of payload type ``block_pt``."""
    if not 0 <= block_pt <= 127:
        raise ValueError("payload type out of range")
    return bytes([block_pt]) + payload


def red_unwrap(payload: bytes) -> tuple[int, bytes]:
    """(payload type, data) of a RED payload's primary block; FecError when it is not RED."""
    pos = 0
    skip = 0
    while True:
        if pos >= len(payload):
            raise FecError("RED payload ends inside its block headers")
        octet = payload[pos]
        if not octet & 0x80:  # the primary block's 1-byte header
            pt = octet & 0x7F
            pos += 1
            break
        if pos + 4 > len(payload):
            raise FecError("RED block header cut short")
        skip += int.from_bytes(payload[pos + 2:pos + 4], "big") & 0x3FF
        pos += 4
    if pos + skip > len(payload):
        raise FecError("RED redundant blocks run past the payload")
    return pt, bytes(payload[pos + skip:])


__all__ = ["FecError", "FecPacket", "encode_fec", "parse_fec", "recover", "red_unwrap", "red_wrap"]
