"""RTCP rate feedback: TMMBR/TMMBN (RFC 5104 §4.2) and REMB (draft-alvestrand-rmcat-remb).

aiortc parses RTCP but reads every transport-layer feedback as a generic NACK and keeps
payload-specific FCI as bytes, so these three are parsed here from the compound packet itself.
Pure: bytes in, values out.

* TMMBR (RTPFB, PT 205, FMT 3) and TMMBN (FMT 4): the packet's media SSRC is 0; each 8-octet
  FCI entry is ``SSRC | MxTBR Exp (6) | MxTBR Mantissa (17) | Measured Overhead (9)`` and the
  bit rate is ``mantissa << exp`` bit/s. In a TMMBR the SSRC is the media sender asked to limit
  itself; in a TMMBN it is the owner of the tuple (who asked).
* REMB (PSFB, PT 206, FMT 15): media SSRC 0; FCI ``'REMB' | Num SSRC (8) | BR Exp (6) |
  BR Mantissa (18) | SSRC feedback...``.

:func:`parse_feedback` raises :class:`RtcpFeedbackError` (a ValueError) on a packet whose
lengths do not add up; values (0, absurd rates) are returned as written: the rate budget clamps.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTCP_RTPFB = 205
RTCP_PSFB = 206
RTPFB_TMMBR = 3
RTPFB_TMMBN = 4
PSFB_AFB = 15
REMB_ID = b"REMB"
MAX_TMMBR_MANTISSA = (1 << 17) - 1
MAX_REMB_MANTISSA = (1 << 18) - 1
MAX_OVERHEAD = (1 << 9) - 1
MAX_EXP = (1 << 6) - 1


class RtcpFeedbackError(ValueError):
    """A compound RTCP packet whose lengths or feedback entries are malformed."""


@dataclass(frozen=True)
class TmmbEntry:
    """One TMMBR/TMMBN tuple."""

    ssrc: int
    bitrate_bps: int
    overhead: int = 0


@dataclass(frozen=True)
class Tmmbr:
    """A temporary maximum media stream bit rate request."""

    sender_ssrc: int
    entries: tuple[TmmbEntry, ...]


@dataclass(frozen=True)
class Tmmbn:
    """A TMMBN: the media sender's current bounding set."""

    sender_ssrc: int
    entries: tuple[TmmbEntry, ...]


@dataclass(frozen=True)
class Remb:
    """A receiver estimated maximum bitrate for the listed SSRCs."""

    sender_ssrc: int
    bitrate_bps: int
    ssrcs: tuple[int, ...]


Feedback = Tmmbr | Tmmbn | Remb


def parse_feedback(data: bytes) -> list[Feedback]:
    """The TMMBR, TMMBN and REMB messages in a compound RTCP packet (other packets skipped)."""
    out: list[Feedback] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtcpFeedbackError("truncated RTCP header")
        first, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise RtcpFeedbackError("RTCP version is not 2")
        end = pos + 4 + words * 4
        if end > len(data):
            raise RtcpFeedbackError("RTCP length runs past the datagram")
        body = data[pos + 4:end]
        if first & 0x20:  # padding: the last octet says how much
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpFeedbackError("bad RTCP padding")
            body = body[:-body[-1]]
        fmt = first & 0x1F
        if packet_type == RTCP_RTPFB and fmt in (RTPFB_TMMBR, RTPFB_TMMBN):
            out.append(_parse_tmmb(body, fmt))
        elif packet_type == RTCP_PSFB and fmt == PSFB_AFB and body[8:12] == REMB_ID:
            out.append(_parse_remb(body))
        pos = end
    return out


def _parse_tmmb(body: bytes, fmt: int) -> Tmmbr | Tmmbn:
    if len(body) < 8 or (len(body) - 8) % 8:
        raise RtcpFeedbackError("TMMBR/TMMBN FCI is not a whole number of 8-octet entries")
    sender = struct.unpack_from("!I", body, 0)[0]
    entries = []
    for at in range(8, len(body), 8):
        ssrc, word = struct.unpack_from("!II", body, at)
        exp, mantissa, overhead = word >> 26, (word >> 9) & MAX_TMMBR_MANTISSA, word & MAX_OVERHEAD
        entries.append(TmmbEntry(ssrc, mantissa << exp, overhead))
    if fmt == RTPFB_TMMBR and not entries:
        raise RtcpFeedbackError("TMMBR without an entry")
    return (Tmmbr if fmt == RTPFB_TMMBR else Tmmbn)(sender, tuple(entries))


def _parse_remb(body: bytes) -> Remb:
    if len(body) < 16:
        raise RtcpFeedbackError("REMB too short")
    sender = struct.unpack_from("!I", body, 0)[0]
    word = struct.unpack_from("!I", body, 12)[0]
    count, exp, mantissa = word >> 24, (word >> 18) & MAX_EXP, word & MAX_REMB_MANTISSA
    if len(body) < 16 + 4 * count:
        raise RtcpFeedbackError("REMB lists more SSRCs than it carries")
    ssrcs = struct.unpack_from(f"!{count}I", body, 16)
    return Remb(sender, mantissa << exp, tuple(ssrcs))


def _exp_mantissa(bitrate: int, mantissa_bits: int) -> tuple[int, int]:
    """The smallest exponent whose mantissa holds ``bitrate`` (rounded down; clamped to the field)."""
    bitrate = max(0, bitrate)
    exp = 0
    while bitrate >> exp >= 1 << mantissa_bits and exp < MAX_EXP:
        exp += 1
    return exp, min(bitrate >> exp, (1 << mantissa_bits) - 1)


def _build_tmmb(fmt: int, sender_ssrc: int, entries: tuple[TmmbEntry, ...]) -> bytes:
    fci = b""
    for entry in entries:
        exp, mantissa = _exp_mantissa(entry.bitrate_bps, 17)
        overhead = min(max(0, entry.overhead), MAX_OVERHEAD)
        fci += struct.pack("!II", entry.ssrc & 0xFFFFFFFF, (exp << 26) | (mantissa << 9) | overhead)
    body = struct.pack("!II", sender_ssrc & 0xFFFFFFFF, 0) + fci
    return struct.pack("!BBH", 0x80 | fmt, RTCP_RTPFB, len(body) // 4) + body


def build_tmmbr(sender_ssrc: int, media_ssrc: int, bitrate_bps: int, overhead: int = 0) -> bytes:
    """A TMMBR asking the sender of ``media_ssrc`` for at most ``bitrate_bps``."""
    return _build_tmmb(RTPFB_TMMBR, sender_ssrc, (TmmbEntry(media_ssrc, bitrate_bps, overhead),))


def build_tmmbn(sender_ssrc: int, entries: tuple[TmmbEntry, ...]) -> bytes:
    """A TMMBN with the bounding set ``entries`` (each owned by the SSRC that asked)."""
    return _build_tmmb(RTPFB_TMMBN, sender_ssrc, entries)


def build_remb(sender_ssrc: int, bitrate_bps: int, ssrcs: tuple[int, ...]) -> bytes:
    """A REMB for ``ssrcs`` (at most 255)."""
    ssrcs = ssrcs[:255]
    exp, mantissa = _exp_mantissa(bitrate_bps, 18)
    body = struct.pack("!II", sender_ssrc & 0xFFFFFFFF, 0) + REMB_ID
    body += struct.pack("!I", (len(ssrcs) << 24) | (exp << 18) | mantissa)
    body += b"".join(struct.pack("!I", s & 0xFFFFFFFF) for s in ssrcs)
    return struct.pack("!BBH", 0x80 | PSFB_AFB, RTCP_PSFB, len(body) // 4) + body


__all__ = ["Feedback", "Remb", "RtcpFeedbackError", "TmmbEntry", "Tmmbn", "Tmmbr", "build_remb", "build_tmmbn",
           "build_tmmbr", "parse_feedback"]
