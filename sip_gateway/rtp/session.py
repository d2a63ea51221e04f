"""Sans-I/O RTP/RTCP session for one negotiated stream (RFC 3550, 4585, 5104, 4733).

Takes datagrams (RTP or RTCP, mux or not) with their arrival time and returns events:
reassembled encoded frames (from aiortc's jitter buffer), DTMF digits, key-frame requests,
NACKs, and the rate feedback a sender's rate budget needs: TMMBR (answered at once with a TMMBN
of the bounding set, :class:`SendRtcp`), REMB and the receiver reports about our stream. Builds outgoing RTP (sequence numbers, timestamps, marker bit), SR/RR with
SDES, PLI/FIR/NACK, and RFC 4733 digit packets. Never touches sockets or clocks.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
)

from .codecs import depayload_media
from .dtmf import EventDetector, digit_packets
from .loss_tracker import LIFTED_BPS, LossTracker, Nack, NeedKeyframe, SlowDown, SpeedUp
from .media_description import MediaStream
from .retransmission import RetransmissionStore
from .rtcp_feedback import Remb, RtcpFeedbackError, TmmbEntry, Tmmbr, build_tmmbn, build_tmmbr, parse_feedback
from .stats import ReceiveStats

log = logging.getLogger(__name__)

PSFB_PLI = 1
PSFB_FIR = 4
RTPFB_NACK = 1
NTP_EPOCH_OFFSET = 2_208_988_800


@dataclass(frozen=True)
class EncodedFrame:
    """A complete encoded frame (audio payload or reassembled video access unit)."""

    data: bytes
    timestamp: int


@dataclass(frozen=True)
class DtmfDigit:
    """An RFC 4733 telephone-event digit."""

    digit: str


@dataclass(frozen=True)
class KeyframeRequest:
    """The peer asked for a key frame (PLI or FIR)."""

    kind: str  # "pli" or "fir"


@dataclass(frozen=True)
class NackRequest:
    """The peer lost these sequence numbers; :meth:`RtpSession.retransmit` resends them."""

    sequence_numbers: tuple[int, ...]


@dataclass(frozen=True)
class PacketLossDetected:
    """Our jitter buffer dropped data: ask the sender for a key frame."""


@dataclass(frozen=True)
class PeerLeft:
    """RTCP BYE."""


@dataclass(frozen=True)
class SendNack:
    """We noticed missing packets: send :meth:`RtpSession.nack` (the peer negotiated nack)."""

    sequence_numbers: tuple[int, ...]


@dataclass(frozen=True)
class RateLimitRequest:
    """The peer limits our stream (TMMBR, the bounding set's lowest tuple): bit/s incl. overhead."""

    bitrate_bps: int
    overhead: int


@dataclass(frozen=True)
class RateEstimate:
    """The peer's REMB for our stream (bit/s)."""

    bitrate_bps: int


@dataclass(frozen=True)
class ReceptionReport:
    """An RR/SR report block about our stream (RFC 3550 §6.4.1)."""

    fraction_lost: float  # 0..1 since the peer's previous report
    packets_lost: int
    jitter: int  # timestamp units
    highest_sequence: int = 0  # the extended highest sequence number received


@dataclass(frozen=True)
class SendRtcp:
    """Send this RTCP packet to the peer (e.g. the TMMBN that answers a TMMBR)."""

    data: bytes


RateFeedback = RateLimitRequest | RateEstimate | ReceptionReport | KeyframeRequest
RtpEvent = (EncodedFrame | DtmfDigit | KeyframeRequest | NackRequest | PacketLossDetected | PeerLeft | SendNack
            | RateLimitRequest | RateEstimate | ReceptionReport | SendRtcp)
MAX_TMMBR_OWNERS = 16  # tuples kept for the bounding set (one per SSRC that asked)


def sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one CNAME item (RFC 3550 §6.5).

    Built here because aiortc's SDES adds null octets past the 32-bit boundary after the END
    item, which Wireshark reports as a malformed length.
    """
    text = cname.encode()[:255]
    chunk = ssrc.to_bytes(4, "big") + bytes([1, len(text)]) + text + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return bytes([0x81, 202]) + (len(chunk) // 4).to_bytes(2, "big") + chunk


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp for a Unix time."""
    seconds = unix_time + NTP_EPOCH_OFFSET
    return (int(seconds) << 32) | int((seconds % 1) * (1 << 32))


@dataclass
class SendState:
    """Our outgoing stream."""

    ssrc: int
    sequence: int
    timestamp_base: int
    packets: int = 0
    octets: int = 0
    last_timestamp: int = 0
    history: RetransmissionStore = field(default_factory=RetransmissionStore)  # video only


class RtpSession:
    """One RTP stream pair (we send one SSRC, accept whatever the peer sends)."""

    def __init__(self, stream: MediaStream, cname: str = "commandcenter") -> None:
        self.stream = stream
        self.kind = stream.kind
        self.codec = stream.codec
        # What arrives may differ from what we send (H.323 opens each direction on its own).
        self.receive_codec = stream.codec
        self.cname = cname
        self.send = SendState(secrets.randbits(32), secrets.randbits(16), secrets.randbits(32))
        self.remote_ssrc: int | None = None
        self.stats = ReceiveStats(stream.codec.clock_rate)
        if self.kind == "video":
            self.jitter = JitterBuffer(capacity=256, is_video=True)
        else:
            self.jitter = JitterBuffer(capacity=16, prefetch=2)
        self._dtmf = EventDetector()
        self._fir_seq = 0
        self.malformed = 0
        self.tmmbr_owners: OrderedDict[int, TmmbEntry] = OrderedDict()  # who limits us, newest last
        self.loss: LossTracker | None = LossTracker(nack=stream.nack) if self.kind == "video" else None
        self.tmmbr_sent = 0
        # What the owner asks of the source for its own reasons (the pane it is shown in, TMMBR):
        # the loss tracker's TMMBRs never ask for more, and a pane request never undoes a slow-down.
        self.wanted_bps: int | None = None

    def continue_stream(self, previous: RtpSession) -> None:
        """Send as the continuation of ``previous``'s stream (a re-INVITE changed the codec's
        parameters): the same SSRC, the next sequence number, the same timestamp base.

        RFC 3550 lets one SSRC change its payload type. A new SSRC with an unrelated random
        sequence number is legal too, but libre's jitter buffer (baresip, and room systems built
        on it) keeps the old stream's sequence position across an SSRC change and then drops every
        packet of the new stream as too late when its number happens to be behind: frozen video.
        """
        self.send = previous.send

    # ------------------------------------------------------------------ receive

    def receive(self, data: bytes, now: float) -> list[RtpEvent]:
        """Handle one datagram from the RTP or RTCP port. Malformed input is counted and dropped."""
        if len(data) < 2:
            self.malformed += 1
            return []
        if is_rtcp(data):
            return self._receive_rtcp(data, now)
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.malformed += 1
            return []
        if self.stream.telephone_event_pt is not None and packet.payload_type == self.stream.telephone_event_pt:
            digit = self._dtmf.feed(packet.payload, packet.timestamp)
            return [DtmfDigit(digit)] if digit else []
        if packet.payload_type == 13:  # comfort noise: nothing to decode
            return []
        events: list[RtpEvent] = []
        if self.loss is not None:
            if self.remote_ssrc is not None and self.remote_ssrc != packet.ssrc:
                self.loss = LossTracker(nack=self.stream.nack)  # a new source: its own numbering
            self.loss.packet(packet.sequence_number, len(packet.payload), now,
                             packet.timestamp / max(1, self.receive_codec.clock_rate))
        self.remote_ssrc = packet.ssrc
        self.stats.add(packet.sequence_number, packet.timestamp, len(packet.payload), now)
        try:
            packet._data = depayload_media(self.receive_codec, packet.payload)  # type: ignore[attr-defined]
        except (ValueError, IndexError):
            self.malformed += 1
            return []
        loss, frame = self.jitter.add(packet)
        if loss:
            events.append(PacketLossDetected())
        if frame is not None:
            events.append(EncodedFrame(frame.data, frame.timestamp))
        return events

    def poll_loss(self, now: float) -> list[RtpEvent]:
        """Repair of the incoming video (:mod:`.loss_tracker`): NACKs due now, a key frame request when
        repair failed (the jitter buffer is flushed past the hole so later frames flow again), a TMMBR
        when the source's line is congested, and raised TMMBRs once it is not (only if it negotiated
        ``ccm tmmbr``)."""
        if self.loss is None:
            return []
        self.loss.nack = self.stream.nack  # a re-INVITE may change it
        events: list[RtpEvent] = []
        for action in self.loss.poll(now):
            if isinstance(action, Nack):
                events.append(SendNack(action.sequence_numbers))
            elif isinstance(action, NeedKeyframe):
                self.jitter = JitterBuffer(capacity=256, is_video=True)
                events.append(PacketLossDetected())
            elif isinstance(action, SlowDown | SpeedUp) and self.stream.tmmbr and self.remote_ssrc is not None:
                self.tmmbr_sent += 1
                events.append(SendRtcp(build_tmmbr(self.send.ssrc, self.remote_ssrc, self.rate_request())))
        return events

    def rate_request(self, wanted_bps: int | None = None) -> int:
        """The rate to ask of the source now (TMMBR, bit/s): the smaller of what the owner wants
        (``wanted_bps`` replaces :attr:`wanted_bps` when given) and the loss tracker's limit."""
        if wanted_bps is not None:
            self.wanted_bps = wanted_bps
        limits = [b for b in (self.wanted_bps, self.loss.limit_bps if self.loss is not None else None) if b]
        return min(limits) if limits else LIFTED_BPS

    def loss_due(self) -> float | None:
        """When :meth:`poll_loss` next has something to do (``None``: nothing pending)."""
        return self.loss.next_due() if self.loss is not None else None

    def _receive_rtcp(self, data: bytes, now: float) -> list[RtpEvent]:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.malformed += 1
            return []
        events: list[RtpEvent] = []
        for packet in packets:
            if isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                events += [ReceptionReport(r.fraction_lost / 256, r.packets_lost, r.jitter, r.highest_sequence)
                           for r in packet.reports if r.ssrc == self.send.ssrc]
            if isinstance(packet, RtcpSrPacket):
                self.stats.last_sr_ntp_middle = (packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
                self.stats.last_sr_arrival = now
            elif isinstance(packet, RtcpPsfbPacket):
                if packet.fmt == PSFB_PLI:
                    events.append(KeyframeRequest("pli"))
                elif packet.fmt == PSFB_FIR:
                    events.append(KeyframeRequest("fir"))
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTPFB_NACK and self.stream.nack:
                events.append(NackRequest(tuple(packet.lost)))  # only if negotiated (RFC 4585 §4.2)
            elif isinstance(packet, RtcpByePacket):
                events.append(PeerLeft())
        return events + self._rate_feedback(data)

    def _rate_feedback(self, data: bytes) -> list[RtpEvent]:
        """TMMBR (answered with TMMBN) and REMB for our SSRC in a compound packet aiortc accepted."""
        try:
            feedback = parse_feedback(data)
        except RtcpFeedbackError:
            self.malformed += 1
            return []
        events: list[RtpEvent] = []
        for item in feedback:
            if isinstance(item, Tmmbr):
                mine = [e for e in item.entries if e.ssrc == self.send.ssrc]
                if not mine:
                    continue
                self.tmmbr_owners.pop(item.sender_ssrc, None)
                self.tmmbr_owners[item.sender_ssrc] = TmmbEntry(item.sender_ssrc, mine[-1].bitrate_bps,
                                                                mine[-1].overhead)
                while len(self.tmmbr_owners) > MAX_TMMBR_OWNERS:
                    self.tmmbr_owners.popitem(last=False)
                # The bounding set, simplified to its lowest tuple (RFC 5104 §3.5.4.2 allows a
                # sender to keep the most restrictive one); it is what we obey and announce.
                bound = min(self.tmmbr_owners.values(), key=lambda e: e.bitrate_bps)
                events.append(RateLimitRequest(bound.bitrate_bps, bound.overhead))
                events.append(SendRtcp(build_tmmbn(self.send.ssrc, (bound,))))
            elif isinstance(item, Remb) and (not item.ssrcs or self.send.ssrc in item.ssrcs):
                events.append(RateEstimate(item.bitrate_bps))
        return events

    # ------------------------------------------------------------------ send

    def packetize(self, payloads: list[bytes], timestamp_offset: int, marker: bool | None = None,
                  now: float = 0.0) -> list[bytes]:
        """RTP packets for one frame at ``timestamp_offset`` (codec clock units from our start).

        Video packets are kept for NACKs (:class:`~.retransmission.RetransmissionStore`) as sent at ``now``.

        Video: the marker bit is set on the last packet of the frame (RFC 6184/7741).
        Audio: set it on the first packet after silence by passing ``marker=True``.
        """
        s = self.send
        timestamp = (s.timestamp_base + timestamp_offset) & 0xFFFFFFFF
        s.last_timestamp = timestamp
        out: list[bytes] = []
        for i, payload in enumerate(payloads):
            if self.kind == "video":
                mark = i == len(payloads) - 1
            else:
                mark = bool(marker) and i == 0
            packet = RtpPacket(
                payload_type=self.codec.payload_type, marker=int(mark), sequence_number=s.sequence,
                timestamp=timestamp, ssrc=s.ssrc, payload=payload,
            )
            data = packet.serialize()
            if self.kind == "video":
                s.history.remember(s.sequence, data, now)
            s.sequence = (s.sequence + 1) & 0xFFFF
            s.packets += 1
            s.octets += len(payload)
            out.append(data)
        return out

    def retransmit(self, sequence_numbers: tuple[int, ...], now: float = 0.0,
                   video_kbps: int | None = None) -> list[bytes]:
        """Resend packets still in history (NACK; plain retransmission, no RTX stream), within the
        byte budget of ``video_kbps`` (``None``: unbudgeted)."""
        return self.send.history.resend(sequence_numbers, now, video_kbps)

    def dtmf(self, digit: str, timestamp_offset: int, duration_ms: int = 160) -> list[tuple[float, bytes]]:
        """RFC 4733 packets for ``digit`` as (send offset in seconds, datagram)."""
        pt = self.stream.telephone_event_pt
        if pt is None:
            raise ValueError("peer did not negotiate telephone-event")
        s = self.send
        timestamp = (s.timestamp_base + timestamp_offset) & 0xFFFFFFFF
        out = []
        for ev in digit_packets(digit, duration_ms, clock_rate=8000):
            packet = RtpPacket(payload_type=pt, marker=int(ev.marker), sequence_number=s.sequence,
                               timestamp=timestamp, ssrc=s.ssrc, payload=ev.payload)
            s.sequence = (s.sequence + 1) & 0xFFFF
            out.append((ev.offset, packet.serialize()))
        return out

    # ------------------------------------------------------------------ RTCP out

    def report(self, unix_time: float, now: float) -> bytes:
        """A compound RTCP packet: SR (if we have sent) or RR, plus SDES CNAME."""
        blocks = []
        if self.remote_ssrc is not None:
            dlsr = 0
            if self.stats.last_sr_arrival is not None:
                dlsr = int((now - self.stats.last_sr_arrival) * 65536)
            blocks.append(RtcpReceiverInfo(
                ssrc=self.remote_ssrc, fraction_lost=self.stats.fraction_lost(),
                packets_lost=min(self.stats.lost, 0x7FFFFF), highest_sequence=self.stats.extended_max & 0xFFFFFFFF,
                jitter=int(self.stats.jitter) & 0xFFFFFFFF, lsr=self.stats.last_sr_ntp_middle, dlsr=dlsr,
            ))
        s = self.send
        first: RtcpSrPacket | RtcpRrPacket
        if s.packets:
            info = RtcpSenderInfo(ntp_timestamp=ntp_timestamp(unix_time), rtp_timestamp=s.last_timestamp,
                                  packet_count=s.packets & 0xFFFFFFFF, octet_count=s.octets & 0xFFFFFFFF)
            first = RtcpSrPacket(ssrc=s.ssrc, sender_info=info, reports=blocks)
        else:
            first = RtcpRrPacket(ssrc=s.ssrc, reports=blocks)
        return bytes(first) + sdes_cname(s.ssrc, self.cname)

    def bye(self) -> bytes:
        """RTCP BYE for our SSRC."""
        return bytes(RtcpByePacket(sources=[self.send.ssrc]))

    def keyframe_request(self) -> bytes:
        """PLI when the peer supports it (or by default), FIR when only FIR was negotiated."""
        media = self.remote_ssrc or 0
        if self.stream.fir and not self.stream.pli:
            self._fir_seq = (self._fir_seq + 1) & 0xFF
            fci = media.to_bytes(4, "big") + bytes([self._fir_seq, 0, 0, 0])
            return bytes(RtcpPsfbPacket(fmt=PSFB_FIR, ssrc=self.send.ssrc, media_ssrc=0, fci=fci))
        return bytes(RtcpPsfbPacket(fmt=PSFB_PLI, ssrc=self.send.ssrc, media_ssrc=media))

    def nack(self, sequence_numbers: list[int]) -> bytes:
        """Generic NACK (RFC 4585) for lost packets."""
        return bytes(RtcpRtpfbPacket(fmt=RTPFB_NACK, ssrc=self.send.ssrc, media_ssrc=self.remote_ssrc or 0,
                                     lost=sorted(sequence_numbers)))
