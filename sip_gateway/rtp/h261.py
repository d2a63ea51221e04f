"""H.261 over RTP (RFC 4587, static payload type 31).

Each packet carries a 4-octet header (SBIT, EBIT, I, V, GOBN, MBAP, QUANT, HMVD, VMVD) and a
piece of the bitstream. H.261 start codes (16-bit GBSC) are not octet aligned, so the sender
cuts a picture at the bit position of each GOB start code and packs whole GOBs up to the
MTU, with SBIT/EBIT saying which bits of the shared first/last octets belong to the packet
(GOBN/MBAP = the GOB the packet starts with, MBAP 0: a GOB start). A GOB larger than the MTU
is split at an octet boundary with GOBN/MBAP/QUANT of 0 (what FFmpeg does; decoders resync at
the next GBSC). The RTP marker bit goes on the last packet of a picture.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .bits import frame_piece, join_bit_pieces

__all__ = ["RFC4587Header", "depacketize_rfc4587", "gob_starts", "packetize_rfc4587", "parse_rfc4587_header",
           "strip_rfc4587"]

MTU_PAYLOAD = 1200


@dataclass(frozen=True)
class RFC4587Header:
    sbit: int
    ebit: int
    intra: bool
    motion_vectors: bool
    gobn: int
    mbap: int
    quant: int


def gob_starts(data: bytes) -> list[tuple[int, int]]:
    """Bit positions and group numbers of start codes: 15 zeros, a one, then GN (4 bits).

    GN 0 is the picture start code; GN 1..12 start a GOB.
    """
    value = int.from_bytes(data, "big")
    total = len(data) * 8
    found = []
    pos = 0
    while pos + 20 <= total:
        word = (value >> (total - pos - 20)) & 0xFFFFF
        if word >> 4 == 1:
            found.append((pos, word & 0xF))
            pos += 20
        else:
            pos += 1
    return found


def _header(sbit: int, ebit: int, gobn: int, mbap: int = 0, quant: int = 0) -> bytes:
    # I=0 (not intra-only), V=1 (motion vectors may be used); HMVD/VMVD 0 at a GOB start.
    word = (sbit << 29) | (ebit << 26) | (0 << 25) | (1 << 24) | (gobn << 20) | (mbap << 15) | (quant << 10)
    return word.to_bytes(4, "big")


def _bit_slice(data: bytes, start: int, end: int) -> tuple[bytes, int, int]:
    """Octets covering bits [start, end) with SBIT/EBIT."""
    first, last = start // 8, (end + 7) // 8
    return data[first:last], start % 8, (8 - end % 8) % 8


def packetize_rfc4587(picture: bytes, mtu: int = MTU_PAYLOAD) -> list[bytes]:
    """RFC 4587 payloads for one encoded picture."""
    if not picture:
        return []
    starts = [(pos, gn) for pos, gn in gob_starts(picture) if gn]  # GOB starts (GN>0)
    total = len(picture) * 8
    # Segments: [0, first GOB) is the picture header (with GOB 1's start when GN 0 directly follows).
    bounds = [0] + [pos for pos, _ in starts] + [total]
    numbers = [0] + [gn for _, gn in starts]
    limit = (mtu - 4) * 8
    packets: list[bytes] = []
    i = 0
    while i < len(numbers):
        start, gobn = bounds[i], numbers[i]
        end = bounds[i + 1]
        if end - start > limit:
            # An oversize GOB: octet-aligned pieces after the first (which keeps the GOB's bits).
            cut = ((start + limit) // 8) * 8
            chunk, sbit, ebit = _bit_slice(picture, start, cut)
            packets.append(_header(sbit, ebit, gobn) + chunk)
            while cut < end:
                nxt = min(end, cut + limit)
                chunk, sbit, ebit = _bit_slice(picture, cut, nxt)
                packets.append(_header(sbit, ebit, 0) + chunk)
                cut = nxt
            i += 1
            continue
        j = i + 1
        while j < len(numbers) and bounds[j + 1] - start <= limit:
            j += 1
        chunk, sbit, ebit = _bit_slice(picture, start, bounds[j])
        if bounds[j] == total:
            ebit = 0  # the encoder's own padding ends the picture
        packets.append(_header(sbit, ebit, gobn) + chunk)
        i = j
    return packets


def parse_rfc4587_header(payload: bytes) -> RFC4587Header:
    if len(payload) < 4:
        raise ValueError("RFC 4587 payload shorter than its header")
    word = int.from_bytes(payload[:4], "big")
    return RFC4587Header(word >> 29, (word >> 26) & 7, bool(word >> 25 & 1), bool(word >> 24 & 1),
                         (word >> 20) & 0xF, (word >> 15) & 0x1F, (word >> 10) & 0x1F)


def strip_rfc4587(payload: bytes) -> bytes:
    """One packet's bits for the RTP session's jitter buffer, as a :func:`~.bits.frame_piece`
    record (data plus SBIT/EBIT); the decoder joins a picture's records bit-exactly with
    :func:`~.bits.join_framed_pieces`.

    A split inside an octet puts that octet in both packets, and the bits each packet does
    not own (EBIT at the end of one, SBIT at the start of the next) may hold anything.
    """
    header = parse_rfc4587_header(payload)
    return frame_piece(payload[4:], header.sbit, header.ebit)


def depacketize_rfc4587(payloads: Sequence[bytes]) -> bytes:
    """Reassemble one picture bit-exactly from its packets."""
    pieces = []
    for payload in payloads:
        header = parse_rfc4587_header(payload)
        pieces.append((payload[4:], header.sbit, header.ebit))
    return join_bit_pieces(pieces)
