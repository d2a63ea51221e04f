"""What one leg keeps of its sent video to answer NACKs, and how much resending it allows (sans-I/O).

A generic NACK (RFC 4585 §6.2.1) names packets the peer lost; we resend them unchanged (same SSRC
and sequence number; no RTX stream on SIP). On a lossy leased line resending must not take the
line over: a loss burst NACKed in full would be resent as a burst on the line that just lost it.

Rules:

* **History**: the last ``max_packets`` video packets by sequence number, each at most ``max_age_s``
  old (about one second: a packet resent later than that arrives after the receiver gave up on
  its frame and only costs bytes). Older or unknown packets are not resent (``counters.unknown``).
* **Byte budget**: resends draw from a token bucket that fills at ``share`` of the leg's video
  rate (``video_kbps`` given on each call; 20 % by default) and holds at most ``burst_s`` of it
  (at least one full packet). A resend that does not fit is refused (``counters.refused``): the
  receiver then falls back to asking for a key frame. Bytes count as on the wire (RTP + UDP/IPv4).
  ``video_kbps=None`` (an unpaced leg, no site budget) means no byte budget.
* **Per packet**: one packet is resent at most ``max_resends`` times (a peer repeating a NACK, or a
  forged NACK flood, cannot turn one packet into many).
* Duplicate sequence numbers in one NACK count once; sequence numbers are taken modulo 2^16.
* Time is an argument (seconds, any monotonic origin).

::

    store = RetransmissionStore()
    store.remember(seq, datagram, now)            # every video packet we send
    for datagram in store.resend(nacked, now, video_kbps):
        send(datagram)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RetransmissionCounters", "RetransmissionStore"]

UDP_IP_OVERHEAD = 28
MIN_BURST_BYTES = 1500


@dataclass
class RetransmissionCounters:
    requested: int = 0  # sequence numbers NACKed
    resent: int = 0  # packets resent
    resent_bytes: int = 0  # on the wire
    refused: int = 0  # over the byte budget (or resent too often)
    unknown: int = 0  # not in history (never sent, or too old)


@dataclass
class _Sent:
    data: bytes
    at: float
    resends: int = 0


class RetransmissionStore:
    """Recent video packets of one leg and the byte budget for resending them."""

    def __init__(self, max_packets: int = 512, max_age_s: float = 1.0, share: float = 0.2,
                 burst_s: float = 0.5, max_resends: int = 2) -> None:
        if max_packets < 1 or max_age_s <= 0 or not 0 < share <= 1 or burst_s <= 0 or max_resends < 1:
            raise ValueError("retransmission store: sizes, age, share and burst must be positive (share <= 1)")
        self.max_packets = max_packets
        self.max_age_s = max_age_s
        self.share = share
        self.burst_s = burst_s
        self.max_resends = max_resends
        self.counters = RetransmissionCounters()
        self._packets: OrderedDict[int, _Sent] = OrderedDict()
        self._tokens: float | None = None  # bytes; None until the first budgeted resend
        self._tokens_at = 0.0

    def __len__(self) -> int:
        return len(self._packets)

    def remember(self, sequence: int, data: bytes, now: float) -> None:
        """Keep a packet we just sent (a sequence number reused after wraparound replaces the old one)."""
        sequence &= 0xFFFF
        self._packets.pop(sequence, None)
        self._packets[sequence] = _Sent(data, now)
        while len(self._packets) > self.max_packets:
            self._packets.popitem(last=False)
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._packets:
            oldest = next(iter(self._packets.values()))
            if now - oldest.at <= self.max_age_s:
                break
            self._packets.popitem(last=False)

    def _capacity(self, video_kbps: int) -> tuple[float, float]:
        rate = max(video_kbps, 0) * 1000 / 8 * self.share  # bytes/s
        return rate, max(rate * self.burst_s, MIN_BURST_BYTES)

    def _refill(self, now: float, video_kbps: int) -> float:
        rate, cap = self._capacity(video_kbps)
        if self._tokens is None:
            self._tokens = cap
        else:
            self._tokens = min(cap, self._tokens + rate * max(0.0, now - self._tokens_at))
        self._tokens_at = now
        return self._tokens

    def resend(self, sequence_numbers: tuple[int, ...] | list[int], now: float,
               video_kbps: int | None) -> list[bytes]:
        """The datagrams to resend for a NACK, in the order asked, within history and budget."""
        self._expire(now)
        out: list[bytes] = []
        seen: set[int] = set()
        for raw in sequence_numbers:
            sequence = raw & 0xFFFF
            if sequence in seen:
                continue
            seen.add(sequence)
            self.counters.requested += 1
            sent = self._packets.get(sequence)
            if sent is None:
                self.counters.unknown += 1
                continue
            size = len(sent.data) + UDP_IP_OVERHEAD
            if sent.resends >= self.max_resends:
                self.counters.refused += 1
                continue
            if video_kbps is not None:
                tokens = self._refill(now, video_kbps)
                if tokens < size:
                    self.counters.refused += 1
                    continue
                self._tokens = tokens - size
            sent.resends += 1
            self.counters.resent += 1
            self.counters.resent_bytes += size
            out.append(sent.data)
        return out
