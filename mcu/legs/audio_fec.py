"""Opus in-band FEC towards a browser, turned on from the loss its receiver reports (issue 16).

A lost audio packet is heard as concealment (the browser's PLC) unless the next packet carries a
copy of it. Opus has that copy built in (LBRR, RFC 6716 §2.1.7): with FEC on and a packet-loss
percentage above 0, libopus puts a low-rate copy of the previous frame into each packet (hybrid
or SILK mode; at aiortc's 96 kbit/s it leaves CELT-only for hybrid to do so), and a decoder that
misses packet *n* decodes it from packet *n+1* (Chromium's NetEq does, counted as received, not
concealed).

* **When**: only towards a peer whose offer says its decoder uses it (``useinbandfec=1`` in the
  Opus fmtp, RFC 7587 §6.1; Chromium offers it), and only while the peer's receiver reports show
  loss: :class:`~mcu.legs.loss_switch.LossSwitch` with :data:`AUDIO_FEC_RULES` (on at 0.5 % over
  2 s, off after 20 s at or below 0.1 %). Its input is the loss over the last
  :data:`LOSS_WINDOW_S` from the reports' cumulative counts (:class:`LossWindow`): at 50 packets
  per second a 1 % line loses a packet every two reports, so single reports would say 0 % half
  the time and the switch would never see a run.
* **How much**: ``packet_loss_perc`` is the measured loss, at least 10 % and at most 30 %.
* **Our answer does not claim ``useinbandfec=1``**: it describes our decoder (aiortc's libopus
  via PyAV), which does not decode FEC; a browser's redundancy towards us would be wasted bytes.
* Not done: RED for Opus (RFC 2198, ``red/48000/2``): aiortc writes each packet with the codec's
  payload type (the same patch as RED for video, docs/mcu.md "FEC (issue 16)").

The encoder replaces aiortc's ``OpusEncoder`` on the leg's audio sender (the name-mangled
``_RTCRtpSender__encoder``, like the video sender's pass-through encoder) and the reports come
from wrapping ``_handle_rtcp_packet``; both are checked so an aiortc upgrade fails loudly.
"""
from __future__ import annotations

import fractions
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av

from mcu.legs.loss_switch import LossRules, LossSwitch

OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms
OPUS_BITRATE = 96000  # aiortc's OpusEncoder's
LOSS_WINDOW_S = 5.0
MIN_LOSS_PERC = 10
MAX_LOSS_PERC = 30
AUDIO_FEC_RULES = LossRules(on_loss=0.005, on_after=2.0, burst_loss=0.05, off_loss=0.001, off_after=20.0,
                            min_hold=10.0)


def peer_decodes_opus_fec(offer_sdp: str) -> bool:
    """True when the offer's audio has Opus with ``useinbandfec=1`` in its fmtp (RFC 7587)."""
    opus_pts: set[str] = set()
    fmtp: dict[str, str] = {}
    in_audio = False
    for raw in offer_sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            in_audio = line.startswith("m=audio ")
        elif in_audio and line.startswith("a=rtpmap:"):
            pt, _, codec = line[len("a=rtpmap:"):].partition(" ")
            if codec.lower().startswith("opus/48000"):
                opus_pts.add(pt)
        elif in_audio and line.startswith("a=fmtp:"):
            pt, _, params = line[len("a=fmtp:"):].partition(" ")
            fmtp[pt] = params
    for pt in opus_pts:
        for item in fmtp.get(pt, "").split(";"):
            key, _, value = item.strip().partition("=")
            if key.strip().lower() == "useinbandfec" and value.strip() == "1":
                return True
    return False


class LossWindow:
    """Loss over the last ``window`` seconds from receiver reports' cumulative counts (pure)."""

    def __init__(self, window: float = LOSS_WINDOW_S) -> None:
        self.window = window
        self._reports: deque[tuple[float, int, int]] = deque()

    def report(self, now: float, packets_lost: int, highest_sequence: int) -> float | None:
        """One report (cumulative lost, extended highest sequence); the fraction lost, None until known."""
        if self._reports and (now < self._reports[-1][0] or highest_sequence < self._reports[-1][2]):
            return None  # time or sequence going backwards: a broken or reordered report
        self._reports.append((now, packets_lost, highest_sequence))
        while len(self._reports) > 2 and now - self._reports[1][0] >= self.window:
            self._reports.popleft()
        first = self._reports[0]
        expected = highest_sequence - first[2]
        if expected <= 0:
            return None
        return min(1.0, max(0.0, (packets_lost - first[1]) / expected))


def loss_percentage(fraction: float) -> int:
    """The encoder's ``packet_loss_perc`` for a measured loss (0..1)."""
    return max(MIN_LOSS_PERC, min(MAX_LOSS_PERC, math.ceil(fraction * 100)))


class OpusFecEncoder:
    """aiortc's Opus encoder with FEC switchable while it runs (a new libopus context per change).

    Same output as aiortc's ``OpusEncoder`` (48 kHz stereo, 96 kbit/s, ``voip``, 20 ms); the RTP
    timestamp counts the samples encoded, so it runs on across a change of context.
    """

    def __init__(self) -> None:
        self.loss_perc = 0  # 0: FEC off
        self._wanted = 0
        self._samples = 0
        self.codec = self._open(0)
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_FRAME)

    @staticmethod
    def _open(loss_perc: int) -> Any:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = OPUS_BITRATE
        codec.format = "s16"
        codec.layout = "stereo"
        codec.sample_rate = OPUS_RATE
        codec.time_base = fractions.Fraction(1, OPUS_RATE)
        codec.options = {"application": "voip", "fec": "1" if loss_perc else "0", "packet_loss": str(loss_perc)}
        return codec

    @property
    def wanted(self) -> int:
        """The loss percentage asked for (applied at the next frame; 0: off)."""
        return self._wanted

    def set_fec(self, loss_perc: int) -> None:
        """FEC for this loss percentage (0: off); applied at the next frame (encoding runs in a thread)."""
        self._wanted = max(0, min(100, int(loss_perc)))

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int | None]:
        if self._wanted != self.loss_perc:
            self.loss_perc = self._wanted
            self.codec = self._open(self.loss_perc)
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


class AudioFec:
    """One leg's audio FEC: the encoder, the switch, the reports that drive them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.encoder = OpusFecEncoder()
        self.switch = LossSwitch(AUDIO_FEC_RULES)
        self.window = LossWindow()
        self.peer_decodes = False
        self.loss = 0.0  # the last measured fraction
        self._clock = clock

    def install(self, sender: Any, peer_decodes: bool) -> None:
        """Swap the audio sender's encoder and listen to its receiver reports."""
        if not hasattr(sender, "_RTCRtpSender__encoder") or not hasattr(sender, "_handle_rtcp_packet"):
            raise RuntimeError("aiortc internals changed: cannot swap the audio sender's Opus encoder")
        self.peer_decodes = peer_decodes
        sender._RTCRtpSender__encoder = self.encoder
        handle = sender._handle_rtcp_packet

        async def handle_and_measure(packet: Any) -> None:
            await handle(packet)
            for report in getattr(packet, "reports", ()) or ():
                if report.ssrc == sender._ssrc:
                    self.on_report(report.packets_lost, report.highest_sequence, self._clock())

        sender._handle_rtcp_packet = handle_and_measure

    def on_report(self, packets_lost: int, highest_sequence: int, now: float) -> None:
        fraction = self.window.report(now, packets_lost, highest_sequence)
        if fraction is None or not self.peer_decodes:
            return
        self.loss = fraction
        changed = self.switch.report(fraction, now)
        if changed is True:
            self.encoder.set_fec(loss_percentage(fraction))
        elif changed is False:
            self.encoder.set_fec(0)

    def describe(self) -> dict[str, Any]:
        return {"audio_fec": self.switch.on, "audio_fec_peer": self.peer_decodes,
                "audio_loss": round(self.loss, 4), "audio_fec_loss_perc": self.encoder.wanted}


__all__ = ["AUDIO_FEC_RULES", "AudioFec", "LossWindow", "OpusFecEncoder", "loss_percentage",
           "peer_decodes_opus_fec"]
