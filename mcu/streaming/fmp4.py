"""A minimal fragmented-MP4 writer for the live stream: H.264 video + AAC audio (pure, no I/O).

Just what LL-HLS needs (ISO/IEC 14496-12 and -15, the CMAF subset players read):

* :func:`init_segment`: ``ftyp`` + ``moov`` (two tracks, empty sample tables, ``mvex``/``trex``).
  Track 1 is H.264 (``avc1`` with an ``avcC`` built from the stream's SPS and PPS), timescale
  90 kHz; track 2 is AAC (``mp4a`` with an ``esds`` carrying the AudioSpecificConfig), timescale
  48 kHz.
* :func:`fragment`: one ``moof`` + ``mdat`` holding a run of video samples and a run of audio
  samples (each track's ``tfdt`` is its decode time; ``default-base-is-moof``; per-sample
  duration, size and, for video, sync flags in ``trun``). An LL-HLS partial segment is one
  fragment; a segment is its parts concatenated.
* :func:`annexb_to_samples`: an Annex B access unit to a length-prefixed sample; SPS/PPS (which
  the init segment carries) and access-unit delimiters are dropped from the sample.

Rules: every sample needs a duration > 0 and < 2**32; video samples are in decode order (the
shared encoder makes no B-frames, so decode order is presentation order and no ``ctts`` is
written). Box sizes are 32-bit; a fragment larger than 4 GiB is refused (ValueError).
"""
from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

VIDEO_TRACK = 1
AUDIO_TRACK = 2
VIDEO_TIMESCALE = 90_000
AUDIO_TIMESCALE = 48_000

_START = re.compile(rb"\x00\x00\x01")
_SYNC_FLAGS = 0x02000000  # sample_depends_on = 2 (an I picture)
_DELTA_FLAGS = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample


@dataclass(frozen=True)
class Sample:
    data: bytes
    duration: int  # in the track's timescale
    keyframe: bool = True


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    if len(body) + 8 > 0xFFFFFFFF:
        raise ValueError("box too large")
    return struct.pack(">I4s", len(body) + 8, kind) + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def nal_units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte string (3- or 4-byte start codes), empty ones dropped."""
    units: list[bytes] = []
    starts = [m.end() for m in _START.finditer(access_unit)]
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(access_unit)
        unit = access_unit[start:end]
        if i + 1 < len(starts):
            unit = unit.rstrip(b"\x00")  # the leading zero of a following 4-byte start code
        if unit:
            units.append(unit)
    return units


def parameter_sets(access_unit: bytes) -> tuple[bytes, bytes] | None:
    """(SPS, PPS) of an access unit, the first of each; None when it lacks either."""
    sps = pps = None
    for unit in nal_units(access_unit):
        kind = unit[0] & 0x1F
        if kind == 7 and sps is None:
            sps = unit
        elif kind == 8 and pps is None:
            pps = unit
    return (sps, pps) if sps is not None and pps is not None and len(sps) >= 4 else None


def annexb_to_sample(access_unit: bytes) -> bytes:
    """Length-prefixed (4 bytes) NAL units, without SPS (7), PPS (8) and delimiters (9)."""
    return b"".join(struct.pack(">I", len(u)) + u for u in nal_units(access_unit) if u[0] & 0x1F not in (7, 8, 9))


def _avcc(sps: bytes, pps: bytes) -> bytes:
    return _box(b"avcC", bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps,
                b"\x01", struct.pack(">H", len(pps)), pps)


def _descriptor(tag: int, body: bytes) -> bytes:
    if len(body) >= 0x80:
        raise ValueError("descriptor too large")
    return bytes([tag, len(body)]) + body


def _esds(audio_config: bytes, bitrate: int) -> bytes:
    decoder_specific = _descriptor(0x05, audio_config)
    decoder_config = _descriptor(0x04, bytes([0x40, 0x15]) + b"\x00\x00\x00"
                                 + struct.pack(">II", bitrate, bitrate) + decoder_specific)
    es = _descriptor(0x03, struct.pack(">HB", AUDIO_TRACK, 0) + decoder_config + _descriptor(0x06, b"\x02"))
    return _full(b"esds", 0, 0, es)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _trak(track: int, timescale: int, handler: bytes, media_header: bytes, entry: bytes,
          width: int = 0, height: int = 0) -> bytes:
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, track, 0, 0), b"\x00" * 8,
                 struct.pack(">hhhH", 0, 0, 0x0100 if handler == b"soun" else 0, 0), _MATRIX,
                 struct.pack(">II", width << 16, height << 16))
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, 0), struct.pack(">HH", 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), b"\x00" * 12, b"commandcenter\x00")
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    stbl = _box(b"stbl", _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
                _full(b"stts", 0, 0, b"\x00" * 4), _full(b"stsc", 0, 0, b"\x00" * 4),
                _full(b"stsz", 0, 0, b"\x00" * 8), _full(b"stco", 0, 0, b"\x00" * 4))
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, _box(b"minf", media_header, dinf, stbl)))


def init_segment(sps: bytes, pps: bytes, width: int, height: int, audio_config: bytes,
                 audio_bitrate: int = 64_000, channels: int = 1) -> bytes:
    """``ftyp`` + ``moov`` for one H.264 track (1) and one AAC track (2)."""
    if len(sps) < 4 or not pps:
        raise ValueError("SPS/PPS missing")
    if not (0 < width < 0x10000 and 0 < height < 0x10000):
        raise ValueError("bad picture size")
    ftyp = _box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcisommp41")
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, 0), struct.pack(">IH", 0x10000, 0x0100),
                 b"\x00" * 10, _MATRIX, b"\x00" * 24, struct.pack(">I", 3))
    avc1 = _box(b"avc1", b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 16, struct.pack(">HH", width, height),
                struct.pack(">II", 0x480000, 0x480000), b"\x00" * 4, struct.pack(">H", 1), b"\x00" * 32,
                struct.pack(">Hh", 0x18, -1), _avcc(sps, pps))
    mp4a = _box(b"mp4a", b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 8,
                struct.pack(">HHHHI", channels, 16, 0, 0, AUDIO_TIMESCALE << 16), _esds(audio_config, audio_bitrate))
    video = _trak(VIDEO_TRACK, VIDEO_TIMESCALE, b"vide", _full(b"vmhd", 0, 1, b"\x00" * 8), avc1, width, height)
    audio = _trak(AUDIO_TRACK, AUDIO_TIMESCALE, b"soun", _full(b"smhd", 0, 0, b"\x00" * 4), mp4a)
    mvex = _box(b"mvex", *(_full(b"trex", 0, 0, struct.pack(">IIIII", track, 1, 0, 0, 0))
                           for track in (VIDEO_TRACK, AUDIO_TRACK)))
    return ftyp + _box(b"moov", mvhd, video, audio, mvex)


def _traf(track: int, decode_time: int, samples: Sequence[Sample], data_offset: int, video: bool) -> bytes:
    flags = 0x000001 | 0x000100 | 0x000200 | (0x000400 if video else 0)
    rows = b"".join(struct.pack(">III", s.duration, len(s.data), _SYNC_FLAGS if s.keyframe else _DELTA_FLAGS)
                    if video else struct.pack(">II", s.duration, len(s.data)) for s in samples)
    return _box(b"traf", _full(b"tfhd", 0, 0x020000, struct.pack(">I", track)),
                _full(b"tfdt", 1, 0, struct.pack(">Q", decode_time)),
                _full(b"trun", 0, flags, struct.pack(">Ii", len(samples), data_offset), rows))


def fragment(sequence: int, video: Sequence[Sample], video_time: int, audio: Sequence[Sample],
             audio_time: int) -> bytes:
    """One ``moof`` + ``mdat``: ``video`` from decode time ``video_time`` (90 kHz), ``audio`` from
    ``audio_time`` (48 kHz). A track without samples is left out of the fragment."""
    for s in (*video, *audio):
        if not 0 < s.duration < 2 ** 32:
            raise ValueError("sample duration out of range")
    if not video and not audio:
        raise ValueError("empty fragment")

    def build(video_offset: int, audio_offset: int) -> bytes:
        trafs = b""
        if video:
            trafs += _traf(VIDEO_TRACK, video_time, video, video_offset, True)
        if audio:
            trafs += _traf(AUDIO_TRACK, audio_time, audio, audio_offset, False)
        return _box(b"moof", _full(b"mfhd", 0, 0, struct.pack(">I", sequence & 0xFFFFFFFF)), trafs)

    size = len(build(0, 0))  # offsets do not change the size
    video_bytes = sum(len(s.data) for s in video)
    moof = build(size + 8, size + 8 + video_bytes)
    return moof + _box(b"mdat", *(s.data for s in video), *(s.data for s in audio))
