"""The recording tap stream between nodes: a conference's broadcast and content H.264 packets and full mix, framed.

A recorder node records a conference that runs on another (MCU) node through one TCP connection
(``mcu/recording_stream.py`` serves it, ``recorder/remote_tap.py`` reads it). This module is the
pure wire format: bytes in, frames out; no sockets, no clock.

A frame is one kind octet, a 4-byte big-endian payload length and the payload:

=====  ==========  ===========================================================================
kind   direction   payload
=====  ==========  ===========================================================================
``T``  rec → mcu   the one-time token (UTF-8) that opens the stream, first frame
``S``  rec → mcu   subscribe to the broadcast view: JSON ``{"width", "height", "single_nal"}``
``K``  rec → mcu   ask the encoder for a key frame (empty)
``M``  rec → mcu   start (``b"1"``) or stop (``b"0"``) the full mix
``C``  rec → mcu   the content stream: start (``b"1"``), stop (``b"0"``) or ask its encoder for a
                   key frame (``b"K"``)
``V``  mcu → rec   ``!qd?HH`` pts (90 kHz), composed_at (conference clock), keyframe, width,
                   height; then the H.264 access unit (Annex B)
``P``  mcu → rec   a content access unit (the shared content encoder's, sent only while content
                   is live): the same layout as ``V``
``A``  mcu → rec   ``!d`` conference time of the mixer tick; then 960 int16 samples (big-endian)
``N``  mcu → rec   ``!d`` the conference clock now (sent once a second: the receiver's offset)
``E``  mcu → rec   the conference ended (empty); the sender closes
=====  ==========  ===========================================================================

Rules: a payload longer than ``MAX_PAYLOAD`` or an unknown kind is a ``TapStreamError`` (the reader
closes the connection); a truncated frame waits for more bytes. A video or audio payload that does
not parse is a ``TapStreamError`` too: nothing half-parsed reaches the recording.

The content frames (``C``, ``P``) came later than the rest: a hosting node that serves them says so
in its ``tap.open`` answer (``"content": true``), and a recorder sends ``C`` only to such a node.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from .media_primitives import FRAME_SAMPLES, AudioFrame, EncodedPacket

MAX_PAYLOAD = 4 * 1024 * 1024
KINDS = frozenset(b"TSKMCVPANE")
CONTENT_CONTROLS = frozenset((b"1", b"0", b"K"))  # a C frame: start, stop, key frame
_HEADER = struct.Struct("!cI")
_VIDEO = struct.Struct("!qd?HH")
_TIME = struct.Struct("!d")
AUDIO_BYTES = FRAME_SAMPLES * 2


class TapStreamError(ValueError):
    """A frame that breaks the format: the connection is closed."""


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    if len(kind) != 1 or kind[0] not in KINDS:
        raise TapStreamError(f"unknown kind {kind!r}")
    if len(payload) > MAX_PAYLOAD:
        raise TapStreamError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return _HEADER.pack(kind, len(payload)) + payload


def _encoded(kind: bytes, packet: EncodedPacket) -> bytes:
    return frame(kind, _VIDEO.pack(packet.pts, packet.composed_at, packet.keyframe, packet.width, packet.height)
                 + packet.data)


def video_frame(packet: EncodedPacket) -> bytes:
    """A broadcast view access unit (``V``)."""
    return _encoded(b"V", packet)


def content_frame(packet: EncodedPacket) -> bytes:
    """A content access unit (``P``): parsed by `parse_video` like a ``V`` payload."""
    return _encoded(b"P", packet)


def content_control(action: bytes) -> bytes:
    """A ``C`` frame: ``b"1"`` start the content stream, ``b"0"`` stop it, ``b"K"`` ask for a key frame."""
    return frame(b"C", parse_content_control(action))


def audio_frame(samples: AudioFrame, at: float) -> bytes:
    return frame(b"A", _TIME.pack(at) + np.asarray(samples, dtype=">i2").tobytes())


def time_frame(kind: bytes, now: float) -> bytes:
    return frame(kind, _TIME.pack(now))


def subscribe_frame(width: int, height: int, single_nal: bool) -> bytes:
    return frame(b"S", json.dumps({"width": width, "height": height, "single_nal": single_nal}).encode())


def parse_video(payload: bytes, view_id: str = "broadcast") -> EncodedPacket:
    if len(payload) <= _VIDEO.size:
        raise TapStreamError("video frame too short")
    pts, composed_at, keyframe, width, height = _VIDEO.unpack_from(payload)
    if not (width and height) or composed_at != composed_at:  # NaN
        raise TapStreamError("video frame with no size or no time")
    return EncodedPacket(payload[_VIDEO.size:], pts, keyframe, "h264", width, height, view_id, composed_at)


def parse_audio(payload: bytes) -> tuple[AudioFrame, float]:
    if len(payload) != _TIME.size + AUDIO_BYTES:
        raise TapStreamError(f"audio frame of {len(payload)} bytes, want {_TIME.size + AUDIO_BYTES}")
    (at,) = _TIME.unpack_from(payload)
    if at != at:
        raise TapStreamError("audio frame with no time")
    return np.frombuffer(payload[_TIME.size:], dtype=">i2").astype(np.int16), at


def parse_time(payload: bytes) -> float:
    if len(payload) != _TIME.size:
        raise TapStreamError("time frame of the wrong size")
    (t,) = _TIME.unpack(payload)
    if t != t:
        raise TapStreamError("time frame with no time")
    return float(t)


def parse_content_control(payload: bytes) -> bytes:
    if payload not in CONTENT_CONTROLS:
        raise TapStreamError(f"bad content control {payload[:8]!r}")
    return payload


def parse_subscribe(payload: bytes) -> tuple[int, int, bool]:
    try:
        body = json.loads(payload)
        width, height, single_nal = int(body["width"]), int(body["height"]), bool(body.get("single_nal", False))
    except (ValueError, KeyError, TypeError) as exc:
        raise TapStreamError(f"bad subscribe frame: {exc}") from None
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise TapStreamError("subscribe size out of range")
    return width, height, single_nal


class FrameReader:
    """Bytes in (any split), whole frames out: ``feed(data)`` returns [(kind, payload), …]."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        out: list[tuple[bytes, bytes]] = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if kind[0] not in KINDS:
                raise TapStreamError(f"unknown kind {kind!r}")
            if length > MAX_PAYLOAD:
                raise TapStreamError(f"payload of {length} bytes exceeds {MAX_PAYLOAD}")
            if len(self._buffer) < _HEADER.size + length:
                break
            out.append((kind, bytes(self._buffer[_HEADER.size:_HEADER.size + length])))
            del self._buffer[:_HEADER.size + length]
        return out


__all__ = ["AUDIO_BYTES", "CONTENT_CONTROLS", "MAX_PAYLOAD", "FrameReader", "TapStreamError", "audio_frame",
           "content_control", "content_frame", "frame", "parse_audio", "parse_content_control", "parse_subscribe",
           "parse_time", "parse_video", "subscribe_frame", "time_frame", "video_frame"]
