"""RED (RFC 2198) + ULPFEC (RFC 5109) towards a browser, on top of aiortc's video sender (issue 16).

aiortc 1.16 neither negotiates ``red``/``ulpfec`` for video nor sends them: its ``RTCRtpSender``
writes every packet with the codec's payload type. This module adds both without copying aiortc
code, the way :class:`~mcu.legs.webrtc_aiortc.RetransmitGuard` adds a budget to its NACK answers:

* **SDP** (:func:`offered_fec`, :func:`add_fec_codecs`): when the browser's offer has ``red/90000``
  *and* ``ulpfec/90000`` for video (Chromium's offers do), their payload types, and the ``rtx``
  whose ``apt`` is RED's, are appended to the transceiver's negotiated codecs after aiortc matched
  the rest, so the answer carries them with the offer's numbers. Not offered: nothing is added.
* **Sending** (:class:`FecStream`, pure; :class:`FecHook` wires it): aiortc's serialized packets
  pass through the stream on their way to the transport. With FEC off a media packet only gets
  its sequence number shifted. With FEC on it goes out as RED (one primary block, the media
  payload type), and after the last packet of a frame the packets since the previous FEC packet
  are protected by one ULPFEC packet (:func:`sip_gateway.rtp.ulpfec.encode_fec` over the media
  packets as the receiver rebuilds them: media payload type, final sequence numbers), sent as RED
  carrying ``ulpfec`` on the media SSRC with the next sequence number. That insertion is why
  every media packet is renumbered (``+`` the FEC packets so far): the browser's NACKs are mapped
  back to aiortc's numbers and aiortc's RTX packets get their original sequence number (OSN)
  mapped forward. Media retransmissions stay RTX of the media codec (RFC 4588: the retransmitted
  packet is the media packet), which Chromium restores like any. A NACKed **FEC packet is resent
  too**, as RTX of RED (the ``rtx`` whose ``apt`` is RED's, on aiortc's RTX SSRC and sequence
  numbers), paid from FEC's own byte budget (below): H.264 has no picture ID, so Chromium's
  frame assembler cannot step over a sequence number it never got and waits for it (libwebrtc
  retransmits its ULPFEC packets for the same reason).
* **Byte budget**: FEC may use at most ``share`` (25 %) of the media bytes sent: each media packet
  earns ``share`` of its size, an FEC packet (and each resend of one) costs its size (a resend
  may take the credit down to two packets' worth below zero, later FEC waits for it to be paid
  back, so NACKed FEC never eats the media's resend budget); a frame whose group cannot be paid
  yet carries it on into the next frame (up to 48 packets, ULPFEC's widest mask, then the group
  is dropped unprotected). :class:`FecAwareBudget` counts that overhead in the leg's rate budget:
  while FEC is on the tier machine sees ``budget / (1 + share)`` for the video itself.
* **When**: :class:`~mcu.legs.loss_switch.LossSwitch` from the browser's receiver reports about
  our video (RTCP RR/SR report blocks on the media SSRC): on after ≥ 2 % loss for 2 s (or one
  report ≥ 10 %), off after 10 s at ≤ 0.5 %. Clean lines never see FEC.
* **Receiving**: the answer's payload types are the same both ways, so a browser may send us
  RED (and RTX of RED). :class:`RedUnwrap` unwraps it in front of aiortc's receiver (which would
  otherwise hand RED to a decoder); ULPFEC from the browser is dropped (NACK repairs our side).
"""
from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket, RtpPacket, unwrap_rtx
from aiortc.sdp import SessionDescription

from mcu.legs.loss_switch import LossSwitch
from mcu.tiers import UpBudget, VideoBudget
from sip_gateway.rtp.ulpfec import MAX_MASK_LONG, FecError, encode_fec, red_unwrap, red_wrap

FEC_SHARE = 0.25  # FEC bytes at most this share of the media bytes
SEQ_MEMORY = 1024  # sequence numbers remembered for NACK/RTX mapping (aiortc keeps 128 packets)
RED_HEADER = 1
FEC_RTP_OVERHEAD = 12 + RED_HEADER + 28 + 10  # an FEC packet's bytes beyond its FEC payload: RTP, RED, UDP/IPv4, SRTP


@dataclass(frozen=True)
class FecTypes:
    """The payload types a browser offered for RED, ULPFEC and the RTX of RED (None: not offered)."""

    red: int
    ulpfec: int
    red_rtx: int | None = None


def offered_fec(offer_sdp: str, mid: str | None = None) -> FecTypes | None:
    """RED + ULPFEC of the offer's video section (``mid``, else the first video); None unless both."""
    for media in SessionDescription.parse(offer_sdp).media:
        if media.kind != "video" or media.port == 0 or (mid is not None and media.rtp.muxId != mid):
            continue
        by_name: dict[str, int] = {}
        rtx_apt: dict[int, int] = {}
        for codec in media.rtp.codecs:
            name = codec.mimeType.lower()
            pt = codec.payloadType
            if codec.clockRate != 90000 or pt is None:
                continue
            apt = codec.parameters.get("apt")
            if name == "video/rtx" and isinstance(apt, int):
                rtx_apt[apt] = pt
            else:
                by_name.setdefault(name, pt)
        if "video/red" in by_name and "video/ulpfec" in by_name:
            red = by_name["video/red"]
            return FecTypes(red, by_name["video/ulpfec"], rtx_apt.get(red))
        return None
    return None


def add_fec_codecs(transceiver: Any, types: FecTypes) -> None:
    """Append RED, its RTX and ULPFEC to an answering transceiver's negotiated codecs (aiortc's ``_codecs``)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    taken = {c.payloadType for c in codecs}
    wanted = [RTCRtpCodecParameters(mimeType="video/red", clockRate=90000, payloadType=types.red)]
    if types.red_rtx is not None:
        wanted.append(RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=types.red_rtx,
                                            parameters={"apt": types.red}))
    wanted.append(RTCRtpCodecParameters(mimeType="video/ulpfec", clockRate=90000, payloadType=types.ulpfec))
    transceiver._codecs = codecs + [c for c in wanted if c.payloadType not in taken]


def rtp_header_length(packet: bytes) -> int:
    """An RTP packet's header length (fixed header, CSRCs, extension); ValueError if cut short."""
    if len(packet) < 12:
        raise ValueError("RTP packet shorter than its header")
    length = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < length + 4:
            raise ValueError("RTP extension header cut short")
        length += 4 + 4 * int.from_bytes(packet[length + 2:length + 4], "big")
    if len(packet) < length:
        raise ValueError("RTP header runs past the packet")
    return length


class FecStream:
    """The sending side for one video sender (pure: bytes in, bytes out, time as an argument).

    ``media_pt``/``ssrc``/``rtx_ssrc``: aiortc's media payload type and SSRCs; ``types``: what was
    negotiated (None: FEC never turns on, packets pass unchanged).
    """

    def __init__(self, types: FecTypes | None, media_pt: int, ssrc: int, rtx_ssrc: int | None, *,
                 share: float = FEC_SHARE, switch: LossSwitch | None = None) -> None:
        if not 0 < share <= 1:
            raise ValueError("FEC share must be in (0, 1]")
        self.types = types
        self.media_pt = media_pt
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.share = share
        self.switch = switch or LossSwitch()
        self._offset = 0  # FEC packets inserted so far: out = in + offset
        self._out_of: dict[int, int] = {}  # aiortc's sequence number -> the one sent
        self._in_of: dict[int, int] = {}  # the one sent -> aiortc's (media packets only)
        self._group: list[bytes] = []  # media packets (as rebuilt by the receiver) since the last FEC
        self._credit = 0.0
        self.media_packets = 0
        self.media_bytes = 0
        self.fec_packets = 0
        self.fec_bytes = 0
        self.groups_dropped = 0
        self.fec_nacked = 0
        self.fec_resent = 0
        self.fec_refused = 0
        self._fec_sent: dict[int, bytes] = {}  # the last FEC packets sent, by sequence number

    @property
    def on(self) -> bool:
        return self.types is not None and self.switch.on

    def overhead(self) -> float:
        """The share of the budget FEC may take now (0 while off)."""
        return self.share if self.on else 0.0

    def report(self, fraction_lost: float, now: float) -> bool | None:
        """A receiver report's loss (0..1) about our video; the new FEC state when it changed."""
        if self.types is None:
            return None
        changed = self.switch.report(fraction_lost, now)
        if changed is False:
            self._group.clear()
        return changed

    def original(self, sent_seq: int) -> int | None:
        """aiortc's sequence number of a packet the browser NACKs (None: an FEC packet or unknown)."""
        return self._in_of.get(sent_seq & 0xFFFF)

    def _remember(self, seq_in: int, seq_out: int) -> None:
        self._out_of[seq_in] = seq_out
        self._in_of[seq_out] = seq_in
        if len(self._out_of) > SEQ_MEMORY:
            old_in = next(iter(self._out_of))
            self._in_of.pop(self._out_of.pop(old_in), None)

    def outgoing(self, data: bytes) -> list[bytes]:
        """What to send for one serialized packet from aiortc (media, its RTX, or another stream's)."""
        if len(data) < 12 or data[0] >> 6 != 2 or 64 <= data[1] & 0x7F < 96:  # RFC 5761: RTCP passes
            return [data]
        ssrc = struct.unpack_from("!I", data, 8)[0]
        if ssrc == self.rtx_ssrc and self.rtx_ssrc is not None:
            return [self._rtx(data)]
        if ssrc != self.ssrc or data[1] & 0x7F != self.media_pt:
            return [data]
        seq_in = struct.unpack_from("!H", data, 2)[0]
        seq_out = (seq_in + self._offset) & 0xFFFF
        self._remember(seq_in, seq_out)
        media = data[:2] + struct.pack("!H", seq_out) + data[4:]
        self.media_packets += 1
        self.media_bytes += len(media)
        if not self.on:
            return [media]
        assert self.types is not None
        try:
            header = rtp_header_length(media)
        except ValueError:
            return [media]
        red = bytes([media[0], (media[1] & 0x80) | self.types.red]) + media[2:header] + red_wrap(
            self.media_pt, media[header:])
        out = [red]
        self._group.append(media)
        self._credit = min(self._credit + self.share * len(media), 4.0 * 1500)
        if media[1] & 0x80:  # the frame's last packet
            fec = self._fec(media)
            if fec is not None:
                out.append(fec)
        elif len(self._group) >= MAX_MASK_LONG:
            self._group.clear()
            self.groups_dropped += 1
        return out

    def _fec(self, last: bytes) -> bytes | None:
        assert self.types is not None
        size = max(len(p) for p in self._group) - 12 + 16 + FEC_RTP_OVERHEAD
        if self._credit < size:
            if len(self._group) >= MAX_MASK_LONG:
                self._group.clear()
                self.groups_dropped += 1
            return None
        payload = encode_fec(self._group)
        self._group.clear()
        self._offset += 1
        seq = (struct.unpack_from("!H", last, 2)[0] + 1) & 0xFFFF
        packet = bytes([0x80, self.types.red]) + struct.pack("!HII", seq, struct.unpack_from("!I", last, 4)[0],
                                                             self.ssrc) + red_wrap(self.types.ulpfec, payload)
        self._credit -= size
        self.fec_packets += 1
        self.fec_bytes += len(packet)
        self._fec_sent[seq] = packet
        if len(self._fec_sent) > SEQ_MEMORY // 8:
            del self._fec_sent[next(iter(self._fec_sent))]
        return packet

    def fec_packet(self, sent_seq: int) -> bytes | None:
        """The FEC packet sent with this sequence number (None: not one of the last FEC packets)."""
        return self._fec_sent.get(sent_seq & 0xFFFF)

    def fec_retransmission(self, sent_seq: int, rtx_seq: int) -> bytes | None:
        """A NACKed FEC packet again: RTX of RED with sequence number ``rtx_seq`` when that RTX was
        negotiated, else the same packet (RFC 4585 without RTX); None: not an FEC packet we kept,
        or FEC's byte budget cannot pay for it now (counted in ``fec_refused``)."""
        packet = self.fec_packet(sent_seq)
        if packet is None or self.types is None:
            return None
        cost = len(packet) + FEC_RTP_OVERHEAD - 12 + 2
        if self._credit - cost < -2 * 1500:
            self.fec_refused += 1
            return None
        self._credit -= cost
        self.fec_resent += 1
        self.fec_bytes += len(packet) + 2
        if self.types.red_rtx is None or self.rtx_ssrc is None:
            return packet
        return bytes([0x80, self.types.red_rtx]) + struct.pack("!HII", rtx_seq & 0xFFFF, struct.unpack_from(
            "!I", packet, 4)[0], self.rtx_ssrc) + struct.pack("!H", sent_seq & 0xFFFF) + packet[12:]

    def _rtx(self, data: bytes) -> bytes:
        """aiortc's RTX packet with its original sequence number mapped to the one sent."""
        try:
            header = rtp_header_length(data)
        except ValueError:
            return data
        if len(data) < header + 2:
            return data
        osn = struct.unpack_from("!H", data, header)[0]
        sent = self._out_of.get(osn)
        if sent is None:
            return data
        return data[:header] + struct.pack("!H", sent) + data[header + 2:]


class FecAwareBudget:
    """A leg's :class:`~mcu.tiers.VideoBudget` with FEC's share taken out while FEC is on."""

    def __init__(self, inner: VideoBudget, overhead: Callable[[], float]) -> None:
        self.inner = inner
        self._overhead = overhead

    def video_kbps(self) -> int:
        kbps = self.inner.video_kbps()
        share = self._overhead()
        return int(kbps / (1 + share)) if kbps > 0 and share > 0 else kbps

    def up_kbps(self) -> int | None:
        """The inner budget's bound on moves up (:class:`mcu.tiers.UpBudget`), FEC's share taken out."""
        up = self.inner.up_kbps() if isinstance(self.inner, UpBudget) else None
        share = self._overhead()
        return int(up / (1 + share)) if up is not None and up > 0 and share > 0 else up


SendRtp = Callable[[bytes], Awaitable[None]]


class FecHook:
    """Wires a :class:`FecStream` into an aiortc video sender (RuntimeError if aiortc's internals changed).

    Wraps the sender's transport's ``_send_rtp`` (the bundle transport, shared with audio: other
    SSRCs pass unchanged), ``_retransmit`` (NACKed sequence numbers mapped back; install after
    :class:`~mcu.legs.webrtc_aiortc.RetransmitGuard`) and ``_handle_rtcp_packet`` (report blocks
    about the media SSRC feed the loss switch). ``out`` is where packets go next (tests put a line there).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream: FecStream | None = None
        self.out: SendRtp | None = None
        self._clock = clock

    def overhead(self) -> float:
        return self.stream.overhead() if self.stream is not None else 0.0

    def describe(self) -> dict[str, Any]:
        s = self.stream
        if s is None or s.types is None:
            return {"fec": "not negotiated"}
        return {"fec": "on" if s.on else "off", "fec_packets": s.fec_packets, "fec_bytes": s.fec_bytes,
                "fec_media_bytes": s.media_bytes, "fec_changes": s.switch.changes, "fec_resent": s.fec_resent,
                "fec_resends_refused": s.fec_refused}

    def install(self, sender: Any, types: FecTypes | None, media_pt: int) -> None:
        transport = sender.transport
        retransmit = getattr(sender, "_retransmit", None)
        handle_rtcp = getattr(sender, "_handle_rtcp_packet", None)
        if (transport is None or not hasattr(transport, "_send_rtp") or retransmit is None or handle_rtcp is None
                or not isinstance(getattr(sender, "_RTCRtpSender__rtx_sequence_number", None), int)):
            raise RuntimeError("aiortc internals changed: cannot send FEC")
        stream = FecStream(types, media_pt, sender._ssrc, getattr(sender, "_rtx_ssrc", None))
        self.stream = stream
        self.out = transport._send_rtp
        if types is None:
            return  # nothing negotiated: aiortc's packets go out untouched

        async def send_rtp(data: bytes) -> None:
            assert self.out is not None
            for packet in stream.outgoing(data):
                await self.out(packet)

        async def mapped_retransmit(sequence_number: int) -> None:
            original = stream.original(sequence_number)
            if original is not None:
                await retransmit(original)
                return
            fec = stream.fec_packet(sequence_number)
            if fec is None:
                return
            stream.fec_nacked += 1
            rtx_seq = sender._RTCRtpSender__rtx_sequence_number
            again = stream.fec_retransmission(sequence_number, rtx_seq)
            if again is not None and self.out is not None:
                if again[1] & 0x7F == types.red_rtx:
                    sender._RTCRtpSender__rtx_sequence_number = (rtx_seq + 1) & 0xFFFF
                await self.out(again)

        async def reports(packet: Any) -> None:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for block in packet.reports:
                    if block.ssrc == stream.ssrc:
                        stream.report(block.fraction_lost / 256, self._clock())
            await handle_rtcp(packet)

        transport._send_rtp = send_rtp
        sender._retransmit = mapped_retransmit
        sender._handle_rtcp_packet = reports


class RedUnwrap:
    """Unwraps RED (and RTX of RED) a browser sends before aiortc's receiver sees it; drops its ULPFEC."""

    def __init__(self, types: FecTypes) -> None:
        self.types = types
        self.fec_dropped = 0
        self.malformed = 0

    def unwrap(self, packet: RtpPacket, rtx_ssrc: dict[int, int]) -> RtpPacket | None:
        """The media packet inside (``packet`` itself when not RED); None: drop it."""
        t = self.types
        if t.red_rtx is not None and packet.payload_type == t.red_rtx:
            original = rtx_ssrc.get(packet.ssrc)
            if original is None or len(packet.payload) < 2:
                return None
            packet = unwrap_rtx(packet, payload_type=t.red, ssrc=original)
        if packet.payload_type != t.red:
            return packet
        try:
            pt, data = red_unwrap(packet.payload)
        except FecError:
            self.malformed += 1
            return None
        if pt == t.ulpfec:
            self.fec_dropped += 1
            return None
        packet.payload_type = pt
        packet.payload = data
        return packet

    def install(self, receiver: Any) -> None:
        handle = getattr(receiver, "_handle_rtp_packet", None)
        rtx_ssrc = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", None)
        if handle is None or not isinstance(rtx_ssrc, dict):
            raise RuntimeError("aiortc internals changed: cannot unwrap RED")

        async def unwrapped(packet: RtpPacket, arrival_time_ms: int) -> None:
            inner = self.unwrap(packet, rtx_ssrc)
            if inner is not None:
                await handle(inner, arrival_time_ms)

        receiver._handle_rtp_packet = unwrapped


__all__ = ["FEC_SHARE", "FecAwareBudget", "FecHook", "FecStream", "FecTypes", "RedUnwrap", "add_fec_codecs",
           "offered_fec", "rtp_header_length"]
