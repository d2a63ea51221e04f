"""H.263 over RTP: RFC 2190 (static payload type 34, what H.323's h263VideoCapability uses)
and RFC 4629 (H263-1998/2000, dynamic payload types).

Sending, RFC 2190 mode A: packets start at a picture or GOB start code when the encoder puts
one on an octet boundary (FFmpeg's H.263 encoder does, with GOB headers in RTP mode), so a
picture is cut at its start codes and the pieces are packed up to the MTU; a GOB larger than
the MTU is split at an octet boundary (SBIT = EBIT = 0). Receiving accepts modes A, B and C
with bit-exact joining of SBIT/EBIT pieces. The RTP marker bit goes on the last packet of a
picture (the session sets it on the last payload of a frame).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .bits import frame_piece, join_bit_pieces

__all__ = [
    "H263PictureInfo",
    "RFC2190Header",
    "depacketize_rfc2190",
    "depacketize_rfc4629",
    "packetize_rfc2190",
    "packetize_rfc4629",
    "parse_picture_header",
    "parse_rfc2190_header",
    "start_code_offsets",
    "strip_rfc2190",
    "strip_rfc4629",
]

MTU_PAYLOAD = 1200


@dataclass(frozen=True)
class H263PictureInfo:
    """What RFC 2190 copies from the picture header into every packet of the picture."""

    temporal_reference: int
    source_format: int  # 1 sub-QCIF, 2 QCIF, 3 CIF, 4 4CIF, 5 16CIF, 7 extended (H.263+)
    inter: bool
    unrestricted_mv: bool = False
    sac: bool = False
    advanced_prediction: bool = False


@dataclass(frozen=True)
class RFC2190Header:
    mode: str  # "A", "B" or "C"
    sbit: int
    ebit: int
    source_format: int
    inter: bool
    length: int  # header octets: 4, 8 or 12
    temporal_reference: int = 0


def parse_picture_header(data: bytes) -> H263PictureInfo:
    """Read TR and PTYPE from a picture that starts with the 22-bit PSC at octet 0."""
    if len(data) < 6 or data[0] != 0 or data[1] != 0 or data[2] & 0xFC != 0x80:
        raise ValueError("no H.263 picture start code at the start of the picture")
    bits = int.from_bytes(data[:6], "big")  # 48 bits: PSC(22) TR(8) PTYPE(13...)

    def field(start: int, width: int) -> int:
        return (bits >> (48 - start - width)) & ((1 << width) - 1)

    if field(30, 2) != 0b10:
        raise ValueError("bad H.263 PTYPE marker bits")
    return H263PictureInfo(
        temporal_reference=field(22, 8), source_format=field(35, 3), inter=bool(field(38, 1)),
        unrestricted_mv=bool(field(39, 1)), sac=bool(field(40, 1)), advanced_prediction=bool(field(41, 1)),
    )


def start_code_offsets(data: bytes) -> list[int]:
    """Octet offsets of octet-aligned picture (PSC) and GOB (GBSC) start codes.

    Both begin with 16 zero bits followed by a one bit: ``00 00 1x``.
    """
    offsets = []
    i = data.find(b"\x00\x00")
    while i != -1 and i + 2 < len(data):
        if data[i + 2] & 0x80:
            offsets.append(i)
            i = data.find(b"\x00\x00", i + 3)
        else:
            i = data.find(b"\x00\x00", i + 1)
    return offsets


def _pieces(data: bytes, mtu: int) -> list[bytes]:
    """Cut at start codes, pack whole pieces up to ``mtu``, split oversize pieces."""
    cuts = [o for o in start_code_offsets(data) if o > 0] + [len(data)]
    segments = []
    start = 0
    for cut in cuts:
        segments.append(data[start:cut])
        start = cut
    packets: list[bytes] = []
    current = b""
    for segment in segments:
        if current and len(current) + len(segment) > mtu:
            packets.append(current)
            current = b""
        if len(segment) > mtu:
            for k in range(0, len(segment), mtu):
                packets.append(segment[k:k + mtu])
            continue
        current += segment
    if current:
        packets.append(current)
    return packets


def packetize_rfc2190(picture: bytes, mtu: int = MTU_PAYLOAD) -> list[bytes]:
    """RFC 2190 mode A payloads for one encoded picture (starts with its PSC)."""
    info = parse_picture_header(picture)
    header = bytes([
        0x00,  # F=0, P=0 (mode A), SBIT=0, EBIT=0
        (info.source_format << 5) | (int(info.inter) << 4) | (int(info.unrestricted_mv) << 3)
        | (int(info.sac) << 2) | (int(info.advanced_prediction) << 1),  # SRC I U S A, R high bit 0
        0x00,  # R (low 3 bits), DBQ, TRB
        info.temporal_reference,
    ])
    return [header + piece for piece in _pieces(picture, mtu - 4)]


def parse_rfc2190_header(payload: bytes) -> RFC2190Header:
    """Parse the mode A/B/C header (ValueError when the payload is too short)."""
    if len(payload) < 4:
        raise ValueError("RFC 2190 payload shorter than its header")
    f, p = payload[0] >> 7, (payload[0] >> 6) & 1
    sbit, ebit = (payload[0] >> 3) & 7, payload[0] & 7
    mode, length = ("A", 4) if not f else (("B", 8) if not p else ("C", 12))
    if len(payload) < length:
        raise ValueError(f"RFC 2190 mode {mode} payload shorter than its {length}-octet header")
    src = payload[1] >> 5
    inter = bool(payload[1] & 0x10) if mode == "A" else bool(payload[4] & 0x80)
    tr = payload[3] if mode == "A" else (payload[11] if mode == "C" else 0)
    return RFC2190Header(mode, sbit, ebit, src, inter, length, tr)


def strip_rfc2190(payload: bytes) -> bytes:
    """One packet's H.263 bits for the RTP session's jitter buffer, as a
    :func:`~.bits.frame_piece` record joined bit-exactly by the decoder (modes B and C split
    pictures inside octets; see ``h261.strip_rfc4587``)."""
    header = parse_rfc2190_header(payload)
    return frame_piece(payload[header.length:], header.sbit, header.ebit)


def depacketize_rfc2190(payloads: Sequence[bytes]) -> bytes:
    """Reassemble one picture from its RFC 2190 packets (bit-exact SBIT/EBIT joining)."""
    pieces = []
    for payload in payloads:
        header = parse_rfc2190_header(payload)
        pieces.append((payload[header.length:], header.sbit, header.ebit))
    return join_bit_pieces(pieces)


def packetize_rfc4629(picture: bytes, mtu: int = MTU_PAYLOAD) -> list[bytes]:
    """RFC 4629 payloads: P=1 (the two zero start-code octets omitted) at start codes."""
    out = []
    for piece in _pieces(picture, mtu - 2 + 2):
        if piece[:2] == b"\x00\x00" and len(piece) > 2 and piece[2] & 0x80:
            out.append(b"\x04\x00" + piece[2:])  # RR=0, P=1, V=0, PLEN=0, PEBIT=0
        else:
            out.append(b"\x00\x00" + piece)
    return out


def strip_rfc4629(payload: bytes) -> bytes:
    """The H.263 bits of one RFC 4629 packet (start code zeros restored, extra header skipped)."""
    if len(payload) < 2:
        raise ValueError("RFC 4629 payload shorter than its header")
    p = (payload[0] >> 2) & 1
    v = (payload[0] >> 1) & 1
    plen = ((payload[0] & 1) << 5) | (payload[1] >> 3)
    skip = 2 + v + plen
    if len(payload) < skip:
        raise ValueError("RFC 4629 payload shorter than its extra picture header")
    body = payload[skip:]
    return b"\x00\x00" + body if p else body


def depacketize_rfc4629(payloads: Sequence[bytes]) -> bytes:
    """Reassemble one picture from RFC 4629 packets."""
    return b"".join(strip_rfc4629(p) for p in payloads)
