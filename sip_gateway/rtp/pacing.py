"""Send pacing for one leg's video: a leaky bucket at the site's video budget (sans-I/O).

A 720p key frame is 48-65 kB: sent at once it is 0.5-0.7 s of a 768 kbit/s line in one burst, and
the line's router queue (about 200 ms) drops the tail of it, audio included. The pacer spreads each
frame's packets over time at the leg's video rate instead, so the router queue stays short and
audio (which never waits here) sees none of it.

Rules:

* **Rate**: the leg's :class:`SendBudget` says how many kbit/s its video may use
  (``video_kbps()``, read on every call). ``None`` as budget is today's behaviour: no pacing, every
  packet is released at once. Values are clamped to :data:`MIN_KBPS`..:data:`MAX_KBPS` (a budget
  of 0 or -1 or 10 Gbit/s is not a reason to stop or to burst). Bytes are counted as on the wire
  (RTP packet + UDP/IPv4 headers).
* **Bucket**: tokens (bytes) fill at the rate up to ``burst_s`` of it (at least one full packet).
  The head packet leaves when the bucket is not in debt; it may take it into debt (a packet is
  never split), and the next packet waits until the debt is paid back.
* **Audio first**: audio and RTCP are not queued here at all; they are sent when they are made.
  The rate is the video's share (the budget leaves room for audio and RTCP).
  Retransmissions (NACK) are sent at once and charged to the bucket (:meth:`VideoPacer.charge`),
  so they slow the video after them instead of adding a burst.
* **Frames, not packets, are dropped**: a frame is admitted (:meth:`VideoPacer.admit`) before it
  is packetised, so a dropped frame costs no RTP sequence numbers (the receiver sees no loss, only
  fewer frames). Once admitted, all its packets are sent. A frame is refused when the queue would
  then hold more than ``max_queue_s`` of video at the current rate; a key frame is also admitted
  when nothing is queued, whatever its size (it is the way out). After a refusal, every frame up
  to the next key frame is refused too (they refer to the dropped one) and :attr:`keyframe_wanted`
  asks the adapter for a key frame. Audio is never dropped here.
* Time is an argument (seconds, any monotonic origin); the adapter schedules one wake-up at
  :meth:`VideoPacer.next_release` while packets wait (no periodic tick).

::

    pacer = VideoPacer()
    if pacer.admit(sizes, keyframe, now, budget):
        pacer.enqueue(packetize(...))
    for packet in pacer.release(now, budget):
        send(packet)
    wake_at = pacer.next_release(budget)     # None: nothing waits
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .codecs import split_annexb
from .h263 import parse_picture_header

__all__ = ["MAX_KBPS", "MIN_KBPS", "FixedBudget", "PacerCounters", "SendBudget", "VideoPacer", "is_keyframe",
           "wire_bytes"]

MIN_KBPS = 32
MAX_KBPS = 100_000
UDP_IP_OVERHEAD = 28  # IPv4 + UDP headers
RTP_HEADER = 12
MIN_BURST_BYTES = 1500
DEBT_TOLERANCE = 0.5  # bytes: a debt this small is paid (float rounding at the due time must not stall)


class SendBudget(Protocol):
    """The rate a leg's video may be sent at (the site's line budget minus audio and RTCP)."""

    def video_kbps(self) -> int:
        """kbit/s for video now (read on every admit and release, so it may change at any time)."""
        ...


@dataclass(frozen=True)
class FixedBudget:
    """A constant budget (tests, benchmarks, a configured line without feedback)."""

    kbps: int

    def video_kbps(self) -> int:
        return self.kbps


@dataclass
class PacerCounters:
    frames_admitted: int = 0
    frames_dropped: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0
    max_queue_bytes: int = 0


def wire_bytes(packet_or_payload_size: int, rtp_header: bool = False) -> int:
    """Bytes one packet occupies on the line (its UDP/IPv4 headers added; the RTP header if asked)."""
    return packet_or_payload_size + UDP_IP_OVERHEAD + (RTP_HEADER if rtp_header else 0)


def clamp_kbps(kbps: int) -> int:
    return max(MIN_KBPS, min(MAX_KBPS, int(kbps)))


class VideoPacer:
    """One leg's video leaky bucket (see the module docstring for the rules)."""

    def __init__(self, max_queue_s: float = 0.5, burst_s: float = 0.005) -> None:
        if max_queue_s <= 0 or burst_s < 0:
            raise ValueError("max_queue_s must be positive and burst_s not negative")
        self.max_queue_s = max_queue_s
        self.burst_s = burst_s
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0  # on the wire
        self.tokens = 0.0  # bytes; negative = debt
        self.last: float | None = None
        self.keyframe_wanted = False  # a frame was dropped: the adapter should ask for a key frame
        self.counters = PacerCounters()
        self._dropping = False

    # ------------------------------------------------------------------ the bucket
    def _rate(self, budget: SendBudget | None) -> float | None:
        """Bytes per second, or None for no pacing."""
        return None if budget is None else clamp_kbps(budget.video_kbps()) * 1000 / 8

    def _refill(self, now: float, rate: float) -> None:
        if self.last is not None and now > self.last:
            cap = max(MIN_BURST_BYTES, rate * self.burst_s)
            self.tokens = min(cap, self.tokens + (now - self.last) * rate)
        if self.last is None or now > self.last:
            self.last = now

    def charge(self, size: int, now: float, budget: SendBudget | None) -> None:
        """Bytes sent outside the queue (a retransmission): the queue waits for them."""
        rate = self._rate(budget)
        if rate is None:
            return
        self._refill(now, rate)
        self.tokens -= wire_bytes(size)

    # ------------------------------------------------------------------ frames in
    def admit(self, payload_sizes: Sequence[int], keyframe: bool, now: float, budget: SendBudget | None) -> bool:
        """May a frame of these RTP payload sizes be queued? False: drop it (it costs nothing)."""
        rate = self._rate(budget)
        size = sum(wire_bytes(s, rtp_header=True) for s in payload_sizes)
        if rate is None:
            ok = True
        elif keyframe and not self.queue:
            ok = True  # the way out of a drop, whatever its size
        elif self._dropping and not keyframe:
            ok = False  # it refers to a frame that was dropped
        else:
            ok = (self.queued_bytes + size) / rate <= self.max_queue_s
        if ok:
            self._dropping = False
            self.counters.frames_admitted += 1
        else:
            self._dropping = True
            self.keyframe_wanted = True
            self.counters.frames_dropped += 1
        return ok

    def enqueue(self, packets: Iterable[bytes]) -> None:
        """The packets of an admitted frame, in order."""
        for packet in packets:
            self.queue.append(packet)
            self.queued_bytes += wire_bytes(len(packet))
        self.counters.max_queue_bytes = max(self.counters.max_queue_bytes, self.queued_bytes)

    # ------------------------------------------------------------------ packets out
    def release(self, now: float, budget: SendBudget | None) -> list[bytes]:
        """The packets that may leave at ``now``, in order."""
        rate = self._rate(budget)
        out: list[bytes] = []
        if rate is not None:
            self._refill(now, rate)
        while self.queue and (rate is None or self.tokens > -DEBT_TOLERANCE):
            packet = self.queue.popleft()
            size = wire_bytes(len(packet))
            self.queued_bytes -= size
            if rate is not None:
                self.tokens -= size
            self.counters.packets_sent += 1
            self.counters.bytes_sent += size
            out.append(packet)
        return out

    def next_release(self, budget: SendBudget | None) -> float | None:
        """When :meth:`release` next has something to send (None: the queue is empty)."""
        if not self.queue:
            return None
        rate = self._rate(budget)
        if rate is None or self.last is None or self.tokens > -DEBT_TOLERANCE:
            return self.last if self.last is not None else 0.0
        return self.last + (-self.tokens) / rate

    def queue_delay(self, budget: SendBudget | None) -> float:
        """Seconds the queued video needs at the current rate."""
        rate = self._rate(budget)
        return 0.0 if rate is None else self.queued_bytes / rate


def is_keyframe(codec: str, access_unit: bytes) -> bool:
    """Is this encoded picture decodable on its own? H.264: it has an IDR slice (or an SPS);
    H.263: an INTRA picture. Codecs whose pictures cannot be told apart here (H.261) count as
    key frames, so the pacer never waits for one that it would not recognise."""
    name = codec.upper()
    if name == "H264":
        return any(nal and nal[0] & 0x1F in (5, 7) for nal in split_annexb(access_unit))
    if name.startswith("H263"):
        try:
            info = parse_picture_header(access_unit)
        except ValueError:
            return False
        return info.source_format == 7 or not info.inter  # 7: PLUSPTYPE (H.263+), type not read here
    return True
