"""Audio loss protection towards a browser or a SIP site on Opus, turned on from the loss its receiver reports (issue 16).

A lost audio packet is heard as concealment (the receiver's PLC) unless a later packet carries a
copy of it. Two copies are used, whichever the peer negotiated:

* **RED** (RFC 2198, :mod:`mcu.legs.audio_red`), towards a browser that offered
  ``red/48000/2`` (Chromium does): each packet carries the previous one (two on a line losing
  5 % or more) as a full-quality copy; the Opus encoder drops to :data:`RED_OPUS_BITRATE` while
  RED is on, so one copy costs what the unprotected stream did (and in-band FEC stays off: RED's
  copy already covers the frame it would).
* **Opus in-band FEC** (LBRR, RFC 6716 §2.1.7; :class:`~sip_gateway.rtp.opus_fec.OpusFecEncoder`)
  otherwise: towards a browser without RED, and towards a SIP site on Opus (the SIP leg's
  :class:`~sip_gateway.rtp.codecs.AudioEncoder`, through :meth:`MediaLeg.set_audio_fec`). Only
  where the peer's SDP says its decoder uses it (``useinbandfec=1`` in its Opus fmtp, RFC 7587
  §6.1); ``packet_loss_perc`` is the measured loss, at least 10 % and at most 30 %. libopus
  adds the copy only to frames its voice detector calls speech (a pause is not protected).

* **When**: only while the peer's receiver reports show loss: :class:`~mcu.legs.loss_switch.LossSwitch`
  with :data:`AUDIO_FEC_RULES` (on at 0.5 % over 2 s, off after 20 s at or below 0.1 %). Its
  input is the loss over the last :data:`LOSS_WINDOW_S` from the reports' cumulative counts
  (:class:`LossWindow`): at 50 packets per second a 1 % line loses a packet every two reports,
  so single reports would say 0 % half the time and the switch would never see a run.
* **Our WebRTC answer does not claim ``useinbandfec=1``**: it describes our decoder (aiortc's
  libopus via PyAV), which does not decode FEC; a browser's redundancy towards us would be
  wasted bytes. (A SIP answer keeps the offer's Opus fmtp verbatim, ``useinbandfec=1`` included:
  :mod:`sip_gateway.sip.sdp`.)

On a WebRTC leg the encoder replaces aiortc's ``OpusEncoder`` on the audio sender (the
name-mangled ``_RTCRtpSender__encoder``, like the video sender's pass-through encoder) and the
reports come from wrapping ``_handle_rtcp_packet``; both are checked so an aiortc upgrade fails
loudly. On a SIP leg the reports come from the leg's RTCP (:class:`SipAudioFec`).
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from mcu.legs.audio_red import AudioRedHook, AudioRedTypes, RedAudioStream
from mcu.legs.loss_switch import LossRules, LossSwitch
from sip_gateway.rtp.opus_fec import OPUS_BITRATE, OpusFecEncoder

LOSS_WINDOW_S = 10.0  # Chromium reports on audio every ~5 s: two reports, ~500 packets
RED_OPUS_BITRATE = 48000  # the Opus rate while RED sends copies: one copy costs what 96 kbit/s alone did
RED_TWO_COPIES_AT = 0.05  # measured loss from which each packet carries two previous frames
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
    return any(opus_fmtp_uses_fec(fmtp.get(pt, "")) for pt in opus_pts)


def opus_fmtp_uses_fec(params: str) -> bool:
    """True when an Opus fmtp parameter string has ``useinbandfec=1``."""
    for item in params.split(";"):
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


class FecEncoder(Protocol):
    """What switches a leg's Opus in-band FEC (:class:`OpusFecEncoder`, or a SIP leg's encoder)."""

    @property
    def wanted(self) -> int:
        """The loss percentage asked for (0: off)."""
        ...

    def set_fec(self, loss_perc: int) -> None:
        """In-band FEC for this loss percentage (0: off)."""


class RtpLegAudio(Protocol):
    """The SIP media leg as :class:`SipAudioFec` needs it (:class:`sip_gateway.aio.rtp_leg.MediaLeg`)."""

    def set_audio_fec(self, loss_perc: int) -> bool:
        """Opus in-band FEC for this loss percentage (0: off); False while the audio is not Opus."""
        ...


class SipAudioFec:
    """A SIP leg's Opus encoder as a :class:`FecEncoder`."""

    def __init__(self, leg: RtpLegAudio) -> None:
        self._leg = leg
        self._wanted = 0

    @property
    def wanted(self) -> int:
        return self._wanted

    def set_fec(self, loss_perc: int) -> None:
        self._wanted = loss_perc
        self._leg.set_audio_fec(loss_perc)


def red_distance(fraction: float) -> int:
    """How many previous frames each RED packet carries for a measured loss (0..1)."""
    return 2 if fraction >= RED_TWO_COPIES_AT else 1


class AudioFec:
    """One leg's audio protection: the encoder (and RED, when negotiated), the switch, the reports that drive them.

    ``encoder``: a SIP leg's (:class:`SipAudioFec`); by default a new :class:`OpusFecEncoder` for
    an aiortc sender (:meth:`install`).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, encoder: FecEncoder | None = None) -> None:
        self._opus = OpusFecEncoder() if encoder is None else None
        self.encoder: FecEncoder = encoder if encoder is not None else self._opus  # type: ignore[assignment]
        self.switch = LossSwitch(AUDIO_FEC_RULES)
        self.window = LossWindow()
        self.peer_decodes = False
        self.red: RedAudioStream | None = None
        self.loss = 0.0  # the last measured fraction
        self._clock = clock

    @property
    def protects(self) -> bool:
        """Whether the peer can use any protection we would send (RED, or its decoder uses in-band FEC)."""
        return self.red is not None or self.peer_decodes

    def install(self, sender: Any, peer_decodes: bool) -> None:
        """Swap the audio sender's encoder and listen to its receiver reports."""
        if not hasattr(sender, "_RTCRtpSender__encoder") or not hasattr(sender, "_handle_rtcp_packet"):
            raise RuntimeError("aiortc internals changed: cannot swap the audio sender's Opus encoder")
        if self._opus is None:
            raise RuntimeError("a leg with its own audio encoder has no aiortc sender to install on")
        self.peer_decodes = peer_decodes
        sender._RTCRtpSender__encoder = self._opus
        handle = sender._handle_rtcp_packet

        async def handle_and_measure(packet: Any) -> None:
            await handle(packet)
            for report in getattr(packet, "reports", ()) or ():
                if report.ssrc == sender._ssrc:
                    self.on_report(report.packets_lost, report.highest_sequence, self._clock())

        sender._handle_rtcp_packet = handle_and_measure

    def install_red(self, sender: Any, types: AudioRedTypes) -> None:
        """Send RED on this (installed) sender's Opus while protection is on (the answer carried RED)."""
        self.red = AudioRedHook().install(sender, types)
        self._apply()

    def on_reception_report(self, packets_lost: int, highest_sequence: int) -> None:
        """A report block about our audio, now (the leg's clock)."""
        self.on_report(packets_lost, highest_sequence, self._clock())

    def on_report(self, packets_lost: int, highest_sequence: int, now: float) -> None:
        fraction = self.window.report(now, packets_lost, highest_sequence)
        if fraction is None or not self.protects:
            return
        self.loss = fraction
        if self.switch.report(fraction, now) is not None or (self.switch.on and self.red is not None):
            self._apply()

    def _apply(self) -> None:
        on = self.switch.on
        if self.red is not None:
            self.red.distance = red_distance(self.loss) if on else 0
            if self._opus is not None:
                self._opus.set_bitrate(RED_OPUS_BITRATE if on else OPUS_BITRATE)
            if self.encoder.wanted:
                self.encoder.set_fec(0)
        elif on:
            self.encoder.set_fec(loss_percentage(self.loss))
        elif self.encoder.wanted:
            self.encoder.set_fec(0)

    def describe(self) -> dict[str, Any]:
        red = self.red
        return {"audio_fec": self.switch.on, "audio_fec_peer": self.peer_decodes,
                "audio_loss": round(self.loss, 4), "audio_fec_loss_perc": self.encoder.wanted,
                "audio_red": "not negotiated" if red is None else red.distance,
                **({"audio_red_packets": red.red_packets, "audio_red_bytes": red.redundant_bytes}
                   if red is not None else {})}


__all__ = ["AUDIO_FEC_RULES", "RED_OPUS_BITRATE", "AudioFec", "FecEncoder", "LossWindow", "OpusFecEncoder",
           "SipAudioFec", "loss_percentage", "opus_fmtp_uses_fec", "peer_decodes_opus_fec", "red_distance"]
