"""RED for Opus (RFC 2198, ``red/48000/2``) towards a browser, on top of aiortc's audio sender (issue 16).

Chromium offers ``red/48000/2`` with ``a=fmtp:<red> <opus>/<opus>`` after Opus in every audio
m-line (libwebrtc adds it next to Opus unconditionally; see docs/mcu.md "Audio loss"). aiortc
neither answers it nor sends it. Like :mod:`mcu.legs.webrtc_fec` for video, this module adds both
without copying aiortc code:

* **SDP** (:func:`offered_audio_red`, :func:`add_audio_red`): when the offer's audio has RED whose
  fmtp names only the offer's Opus payload type, RED is appended to the transceiver's negotiated
  codecs *after* Opus, so the answer carries it with the offer's numbers. Opus stays first: aiortc
  sends Opus, and Chromium, which sends RED only when RED precedes its send codec in the answer
  (libwebrtc ``WebRtcVoiceSendChannel::SetSendCodecs``), keeps sending us plain Opus. Its NetEq
  accepts RED from us all the same (the answer lists it).
* **Sending** (:class:`RedAudioStream`, pure; :class:`AudioRedHook` wires it onto the audio
  sender's transport): while :attr:`RedAudioStream.distance` is 0 aiortc's Opus packets pass
  unchanged; with ``distance`` *d* each goes out as RED carrying the previous *d* Opus payloads
  as redundant blocks (oldest first, RFC 2198 §3 headers: timestamp offset, block length) and its
  own as the primary block, with the same sequence number and timestamp (no packet is inserted,
  so nothing needs renumbering). A browser that lost packet *n* plays it from packet *n+1*'s
  copy (or *n+2*'s) instead of concealing it. Chromium's getStats shows the copies of frames it
  already had as ``packetsDiscarded`` (NetEq's ``fecPacketsReceived`` counts only Opus in-band
  FEC, libwebrtc ``neteq_impl.cc``).
* **When** and **how much**: :class:`~mcu.legs.audio_fec.AudioFec` decides from the browser's
  receiver reports (the same loss switch as Opus in-band FEC).
"""
from __future__ import annotations

import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription

from mcu.legs.webrtc_fec import rtp_header_length

MAX_DISTANCE = 2  # redundant copies per packet at most
MAX_OFFSET = (1 << 14) - 1  # RFC 2198: a redundant block's timestamp offset has 14 bits ...
MAX_BLOCK = (1 << 10) - 1  # ... and its length 10


@dataclass(frozen=True)
class AudioRedTypes:
    """The payload types of the offer's ``red/48000/2`` and of the Opus it carries."""

    red: int
    opus: int


def offered_audio_red(offer_sdp: str, mid: str | None = None) -> AudioRedTypes | None:
    """RED for Opus in the offer's audio section (``mid``, else the first audio); None unless offered."""
    for media in SessionDescription.parse(offer_sdp).media:
        if media.kind != "audio" or media.port == 0 or (mid is not None and media.rtp.muxId != mid):
            continue
        opus = next((c.payloadType for c in media.rtp.codecs if c.mimeType.lower() == "audio/opus"
                     and c.clockRate == 48000 and c.payloadType is not None), None)
        if opus is None:
            return None
        for codec in media.rtp.codecs:
            if codec.mimeType.lower() != "audio/red" or codec.clockRate != 48000 or codec.payloadType is None:
                continue
            blocks = [key for key, value in codec.parameters.items() if value is None]
            pts = blocks[0].split("/") if len(blocks) == 1 else []
            if len(pts) >= 2 and all(pt.strip() == str(opus) for pt in pts):
                return AudioRedTypes(codec.payloadType, opus)
        return None
    return None


def add_audio_red(transceiver: Any, types: AudioRedTypes) -> None:
    """Append RED (after Opus) to an answering audio transceiver's negotiated codecs (aiortc's ``_codecs``)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    if any(c.payloadType == types.red for c in codecs) or not any(c.payloadType == types.opus for c in codecs):
        return
    red = RTCRtpCodecParameters(mimeType="audio/red", clockRate=48000, channels=2, payloadType=types.red,
                                parameters={f"{types.opus}/{types.opus}": None})
    transceiver._codecs = codecs + [red]


def red_payload(primary_pt: int, primary: bytes, redundant: list[tuple[int, bytes]]) -> bytes:
    """An RFC 2198 payload: ``redundant`` blocks as (timestamp offset, data), oldest first, then the primary."""
    headers = b""
    for offset, data in redundant:
        if not 0 < offset <= MAX_OFFSET or len(data) > MAX_BLOCK:
            raise ValueError("a redundant block's offset or length does not fit RFC 2198's header")
        headers += bytes([0x80 | primary_pt]) + ((offset << 10) | len(data)).to_bytes(3, "big")
    return headers + bytes([primary_pt]) + b"".join(data for _, data in redundant) + primary


class RedAudioStream:
    """The sending side for one audio sender (pure: bytes in, bytes out). See the module docstring."""

    def __init__(self, types: AudioRedTypes, ssrc: int) -> None:
        self.types = types
        self.ssrc = ssrc
        self._distance = 0
        self._history: deque[tuple[int, bytes]] = deque(maxlen=MAX_DISTANCE)  # (timestamp, Opus payload)
        self.packets = 0  # Opus packets seen
        self.red_packets = 0
        self.redundant_blocks = 0
        self.redundant_bytes = 0

    @property
    def distance(self) -> int:
        """How many previous frames each packet carries (0: RED off, plain Opus)."""
        return self._distance

    @distance.setter
    def distance(self, value: int) -> None:
        self._distance = max(0, min(MAX_DISTANCE, int(value)))

    def outgoing(self, data: bytes) -> bytes:
        """What to send for one serialized packet from aiortc (our Opus, or anything else, passed on)."""
        if len(data) < 12 or data[0] >> 6 != 2 or 64 <= data[1] & 0x7F < 96:  # RFC 5761: RTCP passes
            return data
        if struct.unpack_from("!I", data, 8)[0] != self.ssrc or data[1] & 0x7F != self.types.opus or data[0] & 0x20:
            return data  # another stream, not Opus, or padded (aiortc never pads audio)
        try:
            header = rtp_header_length(data)
        except ValueError:
            return data
        timestamp = struct.unpack_from("!I", data, 4)[0]
        payload = data[header:]
        self.packets += 1
        earlier = list(self._history)[-self._distance:] if self._distance else []
        self._history.append((timestamp, payload))
        if not self._distance:
            return data
        blocks = []
        for then, copy in earlier:
            offset = (timestamp - then) & 0xFFFFFFFF
            if 0 < offset <= MAX_OFFSET and len(copy) <= MAX_BLOCK:
                blocks.append((offset, copy))
        self.red_packets += 1
        self.redundant_blocks += len(blocks)
        self.redundant_bytes += sum(len(copy) + 4 for _, copy in blocks) + 1
        return (bytes([data[0], (data[1] & 0x80) | self.types.red]) + data[2:header]
                + red_payload(self.types.opus, payload, blocks))


SendRtp = Callable[[bytes], Awaitable[None]]


class AudioRedHook:
    """Wires a :class:`RedAudioStream` into an aiortc audio sender's transport (RuntimeError if aiortc changed).

    Wraps the transport's ``_send_rtp`` (with bundle the transport is shared with video: other
    SSRCs pass unchanged).
    """

    def __init__(self) -> None:
        self.stream: RedAudioStream | None = None

    def install(self, sender: Any, types: AudioRedTypes) -> RedAudioStream:
        transport = sender.transport
        ssrc = getattr(sender, "_ssrc", None)
        if transport is None or not hasattr(transport, "_send_rtp") or not isinstance(ssrc, int):
            raise RuntimeError("aiortc internals changed: cannot send RED for Opus")
        stream = RedAudioStream(types, ssrc)
        self.stream = stream
        send: SendRtp = transport._send_rtp

        async def send_rtp(data: bytes) -> None:
            await send(stream.outgoing(data))

        transport._send_rtp = send_rtp
        return stream


__all__ = ["MAX_DISTANCE", "AudioRedHook", "AudioRedTypes", "RedAudioStream", "add_audio_red", "offered_audio_red",
           "red_payload"]
