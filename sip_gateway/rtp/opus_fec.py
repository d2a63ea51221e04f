"""An Opus encoder whose in-band FEC (RFC 6716 §2.1.7, LBRR) and bitrate switch while it runs.

It produces what aiortc's ``OpusEncoder`` produces (48 kHz stereo, ``voip``, 20 ms packets,
96 kbit/s by default) so it can stand in for it on an aiortc audio sender (WebRTC legs,
:mod:`mcu.legs.audio_fec`) and inside :class:`~sip_gateway.rtp.codecs.AudioEncoder` (SIP legs on
Opus). With FEC on and a packet-loss percentage above 0, libopus puts a low-rate copy of the
previous frame into each packet (hybrid or SILK mode; at 96 kbit/s it leaves CELT-only for hybrid
to do so); a decoder that misses packet *n* can decode it from packet *n+1*.

A change opens a new libopus context at the next frame (encoding may run in another thread); the
RTP timestamp counts the samples encoded, so it runs on across the change.
"""
from __future__ import annotations

import fractions
from typing import Any

import av

OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms
OPUS_BITRATE = 96000  # aiortc's OpusEncoder's


class OpusFecEncoder:
    """aiortc's Opus encoder with FEC and bitrate switchable while it runs (see the module docstring)."""

    def __init__(self) -> None:
        self.loss_perc = 0  # 0: FEC off
        self.bitrate = OPUS_BITRATE
        self._wanted = (0, OPUS_BITRATE)
        self._samples = 0
        self.codec = self._open(0, OPUS_BITRATE)
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_FRAME)

    @staticmethod
    def _open(loss_perc: int, bitrate: int) -> Any:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = bitrate
        codec.format = "s16"
        codec.layout = "stereo"
        codec.sample_rate = OPUS_RATE
        codec.time_base = fractions.Fraction(1, OPUS_RATE)
        codec.options = {"application": "voip", "fec": "1" if loss_perc else "0", "packet_loss": str(loss_perc)}
        return codec

    @property
    def wanted(self) -> int:
        """The loss percentage asked for (applied at the next frame; 0: off)."""
        return self._wanted[0]

    @property
    def wanted_bitrate(self) -> int:
        """The bitrate asked for (bit/s, applied at the next frame)."""
        return self._wanted[1]

    def set_fec(self, loss_perc: int) -> None:
        """FEC for this loss percentage (0: off); applied at the next frame."""
        self._wanted = (max(0, min(100, int(loss_perc))), self._wanted[1])

    def set_bitrate(self, bitrate: int) -> None:
        """The encoder's bitrate (bit/s, 6-510 kbit/s as libopus allows); applied at the next frame."""
        self._wanted = (self._wanted[0], max(6000, min(510000, int(bitrate))))

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int | None]:
        if self._wanted != (self.loss_perc, self.bitrate):
            self.loss_perc, self.bitrate = self._wanted
            self.codec = self._open(self.loss_perc, self.bitrate)
        packets: list[bytes] = []
        for chunk in self.resampler.resample(frame):
            chunk.pts = None
            packets += [bytes(p) for p in self.codec.encode(chunk)]
        if not packets:
            return [], None
        timestamp = self._samples
        self._samples += OPUS_FRAME * len(packets)
        return packets, timestamp

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        raise NotImplementedError("the mix is raw audio: nothing to pack")


__all__ = ["OPUS_BITRATE", "OPUS_FRAME", "OPUS_RATE", "OpusFecEncoder"]
