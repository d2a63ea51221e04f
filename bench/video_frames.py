"""Which frames of a captured RTP video stream a decoder can show (pure; bench/lines.py's figures).

Input: what reached the site, one row per RTP packet ``(arrival, seq, timestamp, marker, rtp bytes,
payload)`` in any order (a capture behind the line). Per frame (the packets of one RTP timestamp,
in sequence-number order):

* **complete**: its packets' sequence numbers are contiguous, the last one carries the marker bit,
  and its first packet is the picture's first: the payload says so (:data:`PICTURES`), or, where
  the payload cannot tell, the packet follows the previous frame's marker packet directly;
* **intra**: the picture codes without reference to another (None: the packet that says is lost):

  - H.264: an IDR slice or an SPS in it;
  - H.263, RFC 2190 (payload type 34, what H.323 uses): the payload header's I bit (a copy of the
    picture header's PTYPE picture coding type, in every packet);
  - H.263, RFC 4629 (H263-1998/2000): PTYPE bit 9 of the picture header in the first packet, or,
    with PLUSPTYPE (H.263+), the MPPTYPE picture type;
  - H.261, RFC 4587: H.261 has no picture coding type and our packetizer sends the header's I flag
    as 0 (it means "the whole stream is intra" anyway). FFmpeg's H.261 encoder, the MCU's, sets
    PTYPE bit 3 (freeze picture release) on exactly the pictures it codes as intra, and FFmpeg's
    decoder reads that bit back as its key frame flag: that is the marking used here. A P-picture
    whose every macroblock happens to be intra counts as inter (a conservative error: it only
    undercounts intact frames after a loss);

* **intact**: complete, and intra or the next frame after an intact one (no sequence number missing
  in between): its reference chain back to an intra frame arrived whole. The MCU's pacer drops
  whole frames before they get sequence numbers, and then every frame up to the next key frame
  (sip_gateway/rtp/pacing.py), so a frame it dropped breaks no chain here; what the line loses
  does.

:func:`analyse_video` turns the frames into the benchmark's figures.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sip_gateway.rtp.h263 import parse_rfc2190_header

__all__ = ["PICTURES", "Frame", "RtpRow", "analyse_video", "frames", "unwrap"]

RtpRow = tuple[float, int, int, bool, int, bytes]  # arrival, seq, timestamp, marker, rtp bytes, payload


@dataclass(frozen=True)
class Frame:
    timestamp: int
    first_seq: int  # unwrapped (see unwrap)
    last_seq: int
    completed_at: float  # arrival of its last packet to arrive
    complete: bool
    intra: bool | None  # None: no packet of it that tells arrived
    intact: bool


# Per packet: (is it the first packet of a picture?, is the picture intra?), None where it cannot tell.
PacketInfo = Callable[[bytes], tuple[bool | None, bool | None]]


def _h264_slice_start(nal_type: int, after_header: int | None) -> bool | None:
    """Does an access unit start with this NAL unit? Our encoder's (x264, repeat-headers) start with
    an SPS (key frames) or a slice with first_mb_in_slice 0 (others). An IDR slice's start may
    follow parameter sets that were lost: it cannot tell."""
    if nal_type in (7, 9):  # SPS, access unit delimiter
        return True
    if nal_type == 8:  # PPS: after its SPS
        return False
    if nal_type in (1, 5) and after_header is not None:
        if not after_header & 0x80:  # first_mb_in_slice, ue(v): "1" is 0
            return False
        return True if nal_type == 1 else None
    return None


def h264_packet(payload: bytes) -> tuple[bool | None, bool | None]:
    if not payload:
        return None, None
    kind = payload[0] & 0x1F
    if kind == 28 and len(payload) > 1:  # FU-A
        inner = payload[1] & 0x1F
        start = _h264_slice_start(inner, payload[2] if len(payload) > 2 else None) if payload[1] & 0x80 else False
        return start, inner in (5, 7)
    if kind == 24:  # STAP-A
        types, pos = [], 1
        while pos + 3 <= len(payload):
            size = int.from_bytes(payload[pos:pos + 2], "big")
            types.append(payload[pos + 2] & 0x1F)
            pos += 2 + size
        first = _h264_slice_start(types[0], payload[4] if len(payload) > 4 else None) if types else None
        return first, any(t in (5, 7) for t in types)
    return _h264_slice_start(kind, payload[1] if len(payload) > 1 else None), kind in (5, 7)


def _psc_at(data: bytes) -> bool:
    return len(data) >= 3 and data[0] == 0 and data[1] == 0 and data[2] & 0xFC == 0x80


def rfc2190_packet(payload: bytes) -> tuple[bool | None, bool | None]:
    try:
        header = parse_rfc2190_header(payload)
    except ValueError:
        return None, None
    return header.sbit == 0 and _psc_at(payload[header.length:]), not header.inter


def h263_picture_intra(picture: bytes) -> bool | None:
    """Intra from an H.263 picture header at octet 0 (PSC), with PLUSPTYPE; None: too short."""
    if len(picture) < 8 or not _psc_at(picture):
        return None
    bits = int.from_bytes(picture[:8], "big")  # 64 bits: PSC(22) TR(8) PTYPE(13), PLUSPTYPE after

    def field(start: int, width: int) -> int:
        return (bits >> (64 - start - width)) & ((1 << width) - 1)

    if field(35, 3) != 7:
        return not field(38, 1)  # PTYPE bit 9: picture coding type, 0 intra
    ufep = field(38, 3)
    mpptype = 41 + (18 if ufep == 1 else 0)  # OPPTYPE (18 bits) when UFEP = 001
    return field(mpptype, 3) == 0  # 000: I-picture


def rfc4629_packet(payload: bytes) -> tuple[bool | None, bool | None]:
    if len(payload) < 2:
        return None, None
    p = (payload[0] >> 2) & 1
    skip = 2 + ((payload[0] >> 1) & 1) + (((payload[0] & 1) << 5) | (payload[1] >> 3))
    if not p:
        return False, None
    picture = b"\x00\x00" + payload[skip:]
    if not _psc_at(picture):
        return False, None  # a GOB or slice start
    return True, h263_picture_intra(picture)


def rfc4587_packet(payload: bytes) -> tuple[bool | None, bool | None]:
    if len(payload) < 8:
        return None, None
    sbit = payload[0] >> 5
    data = payload[4:]
    # PSC: 0000 0000 0000 0001 0000, then TR (5 bits) and PTYPE: bit 3 = freeze picture release.
    if sbit != 0 or data[0] != 0 or data[1] != 1 or data[2] & 0xF0:
        return False, None
    word = int.from_bytes(data[:4], "big")
    return True, bool((word >> (32 - 28)) & 1)


PICTURES: dict[str, PacketInfo] = {"H264": h264_packet, "H263": rfc2190_packet, "H263-1998": rfc4629_packet,
                                   "H263-2000": rfc4629_packet, "H261": rfc4587_packet}


def unwrap(rows: Iterable[RtpRow]) -> list[RtpRow]:
    """``rows`` with 16-bit sequence numbers unwrapped, in sequence order.

    Sequence numbers start at random and wrap at 65536: they are unwrapped in arrival order (sorted
    by the raw number first, a wrap is never seen and the packets after it count as before it)."""
    out: list[RtpRow] = []
    base, last = 0, None
    for r in sorted(rows, key=lambda r: r[0]):
        seq = r[1]
        if last is not None and seq < last - 30000:
            base += 65536
        elif last is not None and seq > last + 30000:  # a late packet from before the wrap
            out.append((r[0], base - 65536 + seq, r[2], r[3], r[4], r[5]))
            continue
        last = seq
        out.append((r[0], base + seq, r[2], r[3], r[4], r[5]))
    out.sort(key=lambda r: r[1])
    return out


def frames(rows: Iterable[RtpRow], codec: str = "H264") -> list[Frame]:
    """The frames of one stream, in sequence order (see the module's docstring)."""
    info = PICTURES[codec.upper()]
    groups: list[list[RtpRow]] = []
    seen: set[int] = set()
    for r in unwrap(rows):
        if r[1] in seen:  # a duplicate
            continue
        seen.add(r[1])
        if groups and r[2] == groups[-1][-1][2]:
            groups[-1].append(r)
        else:
            groups.append([r])
    out: list[Frame] = []
    previous: Frame | None = None
    previous_marker = False
    for group in groups:
        first, last = group[0][1], group[-1][1]
        follows = previous is not None and previous_marker and first == previous.last_seq + 1
        starts, _ = info(group[0][5])
        if starts is None:  # the payload cannot tell: right after the previous frame's end (or the stream's first)
            starts = previous is None or follows
        says = [i for i in (info(r[5])[1] for r in group) if i is not None]
        intra = True if any(says) else (False if says else None)
        complete = group[-1][3] and last - first + 1 == len(group) and starts
        intact = complete and (intra is True or (previous is not None and previous.intact and follows))
        frame = Frame(group[0][2], first, last, max(r[0] for r in group), complete, intra, intact)
        out.append(frame)
        previous, previous_marker = frame, group[-1][3]
    return out


def analyse_video(rows: list[RtpRow], joined_at: float, ended_at: float, sent_packets: int,
                  codec: str = "H264") -> dict[str, float]:
    """The benchmark's figures from what reached the site (rows: see the module's docstring).

    ``video_delivered_kbps``: RTP bytes that arrived from ``joined_at`` to ``ended_at``;
    ``video_loss_capture_pct``: sequence numbers missing against ``sent_packets``; intact frames/s
    from 2 s after the first intact intra frame (``first_picture_s``, from ``joined_at``) to
    ``ended_at``; freezes: gaps between intact frames (and from the last one to ``ended_at``) longer
    than 1 s. Frames completed after ``ended_at`` do not count."""
    out: dict[str, float] = {}
    if not rows:
        return {"video_delivered_kbps": 0.0, "video_loss_capture_pct": 100.0, "intact_fps_after_2s": 0.0,
                "freezes_over_1s": 1, "longest_freeze_s": round(ended_at - joined_at, 2), "first_picture_s": -1}
    received = len({r[1] for r in unwrap(rows)})
    out["video_loss_capture_pct"] = (round(100 * max(0, sent_packets - received) / sent_packets, 2)
                                     if sent_packets else 0.0)
    during = [r for r in rows if joined_at <= r[0] <= ended_at]  # the same window as "sent"
    out["video_delivered_kbps"] = round(sum(r[4] for r in during) * 8 / 1000 / max(1e-3, ended_at - joined_at), 1)
    # Frames that complete after the window (the call's release) are not counted: a figure per second of it.
    intact = [f.completed_at for f in frames(rows, codec) if f.intact and f.completed_at <= ended_at]
    if not intact:
        out.update(intact_fps_after_2s=0.0, freezes_over_1s=1, longest_freeze_s=round(ended_at - joined_at, 2),
                   first_picture_s=-1)
        return out
    first = intact[0]
    later = [t for t in intact if t >= first + 2]
    out["intact_fps_after_2s"] = round(len(later) / max(1e-3, ended_at - (first + 2)), 1)
    gaps = [b - a for a, b in zip(intact, [*intact[1:], ended_at], strict=True)]
    out["freezes_over_1s"] = sum(1 for g in gaps if g > 1.0)
    out["longest_freeze_s"] = round(max(gaps), 2)
    out["first_picture_s"] = round(first - joined_at, 2)
    return out
