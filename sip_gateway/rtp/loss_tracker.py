"""Receive-side loss repair for one incoming video stream: NACK first, key frame last (sans-I/O).

A lost packet stalls the jitter buffer at its hole. Asking for a key frame at once (what we did)
costs the source a 50-65 kB frame on a line that is already losing; a generic NACK (RFC 4585
§6.2.1) costs one packet. The tracker decides which to send, and when to ask the source to slow down.

Rules:

* **Gaps**: sequence numbers are unwrapped (16-bit wraparound); a packet more than one past the
  highest seen opens a gap of missing packets. A packet at or below the highest closes its hole
  if it had one (reordered or resent) and is otherwise a duplicate (ignored). A jump of more than
  ``max_gap`` is a restart of the source, not loss: no NACK, the tracker starts over.
* **NACK**: a hole still open ``reorder_wait_s`` after it was seen is NACKed (:class:`Nack`), then
  NACKed again every ``rtt_s`` up to ``max_nacks`` times in all.
* **Key frame**: a hole still open ``rtt_s`` after its last NACK has failed: :class:`NeedKeyframe`
  (once), and every open hole is dropped (the key frame repairs them all). Without negotiated
  ``nack``, a hole still open after ``reorder_wait_s`` asks at once. More than ``max_missing``
  open holes (a burst too long to repair) also asks at once.
* **Slow down**: packets that were missing after the reorder wait count as lost on the line (even
  if a resend repaired them). When, over the last ``window_s``, at least ``min_packets`` arrived and
  the lost share reaches ``sustained_loss`` (judged once a full window was observed), :class:`SlowDown` asks for ``backoff`` times the rate
  that arrived (not under ``floor_bps``), at most once per ``window_s``; the adapter sends it as a
  TMMBR (RFC 5104) to the source.
* Time is an argument (seconds, any monotonic origin); :meth:`LossTracker.next_due` says when
  :meth:`LossTracker.poll` next has something to do.

::

    tracker = LossTracker(nack=stream.nack)
    tracker.packet(seq, size, now)
    for action in tracker.poll(now):   # Nack | NeedKeyframe | SlowDown
        ...
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["LossCounters", "LossTracker", "Nack", "NeedKeyframe", "SlowDown"]


@dataclass(frozen=True)
class Nack:
    """Send a generic NACK for these (16-bit) sequence numbers."""

    sequence_numbers: tuple[int, ...]


@dataclass(frozen=True)
class NeedKeyframe:
    """Repair failed (or is not possible): ask the source for a key frame (PLI/FIR)."""

    reason: str  # "nack-failed", "no-nack", "burst"


@dataclass(frozen=True)
class SlowDown:
    """The source's stream loses too much on the way: ask it for at most this rate (TMMBR)."""

    bitrate_bps: int


LossAction = Nack | NeedKeyframe | SlowDown


@dataclass
class LossCounters:
    received: int = 0
    holes: int = 0  # packets missing after the reorder wait
    repaired: int = 0  # holes closed by a late or resent packet after a NACK
    nacks_sent: int = 0  # sequence numbers NACKed (retries included)
    keyframes_asked: int = 0
    slowdowns: int = 0


@dataclass
class _Hole:
    seen_at: float
    nacks: int = 0
    last_nack_at: float = 0.0
    counted: bool = False


class LossTracker:
    """Holes in one incoming stream and what to do about them."""

    def __init__(self, nack: bool, reorder_wait_s: float = 0.015, rtt_s: float = 0.1, max_nacks: int = 2,
                 max_gap: int = 1000, max_missing: int = 128, window_s: float = 2.0, min_packets: int = 50,
                 sustained_loss: float = 0.03, backoff: float = 0.85, floor_bps: int = 64_000) -> None:
        if reorder_wait_s < 0 or rtt_s <= 0 or max_nacks < 1 or max_gap < 1 or max_missing < 1 or window_s <= 0:
            raise ValueError("loss tracker: waits, retries and sizes must be positive")
        self.nack = nack
        self.reorder_wait_s = reorder_wait_s
        self.rtt_s = rtt_s
        self.max_nacks = max_nacks
        self.max_gap = max_gap
        self.max_missing = max_missing
        self.window_s = window_s
        self.min_packets = min_packets
        self.sustained_loss = sustained_loss
        self.backoff = backoff
        self.floor_bps = floor_bps
        self.counters = LossCounters()
        self._highest: int | None = None  # extended sequence number
        self._holes: dict[int, _Hole] = {}
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, bytes)
        self._losses: deque[float] = deque()
        self._last_slowdown: float | None = None
        self._started: float | None = None

    @property
    def missing(self) -> int:
        return len(self._holes)

    def set_rtt(self, rtt_s: float) -> None:
        """Use a measured round-trip time (RTCP) for the NACK retry interval (kept within 20 ms-1 s)."""
        self.rtt_s = min(1.0, max(0.02, rtt_s))

    def packet(self, sequence: int, size: int, now: float) -> None:
        """An RTP packet of the stream arrived."""
        sequence &= 0xFFFF
        self.counters.received += 1
        self._arrivals.append((now, max(size, 0)))
        if self._started is None:
            self._started = now
        if self._highest is None:
            self._highest = sequence
            return
        delta = ((sequence - self._highest + 0x8000) & 0xFFFF) - 0x8000  # signed 16-bit distance
        if delta > self.max_gap or delta < -self.max_gap:  # the source restarted its numbering
            self._highest = sequence
            self._holes.clear()
            return
        extended = self._highest + delta
        if delta > 0:
            for missing in range(self._highest + 1, extended):
                self._holes[missing] = _Hole(now)
            self._highest = extended
        else:
            hole = self._holes.pop(extended, None)
            if hole is not None and hole.nacks:
                self.counters.repaired += 1

    def poll(self, now: float) -> list[LossAction]:
        """What to send now."""
        actions: list[LossAction] = []
        nack: list[int] = []
        keyframe_reason: str | None = None
        for extended, hole in self._holes.items():
            if now - hole.seen_at < self.reorder_wait_s:
                continue
            if not hole.counted:
                hole.counted = True
                self.counters.holes += 1
                self._losses.append(now)
            if not self.nack:
                keyframe_reason = "no-nack"
            elif hole.nacks == 0 or (hole.nacks < self.max_nacks and now - hole.last_nack_at >= self.rtt_s):
                hole.nacks += 1
                hole.last_nack_at = now
                nack.append(extended & 0xFFFF)
            elif hole.nacks >= self.max_nacks and now - hole.last_nack_at >= self.rtt_s:
                keyframe_reason = keyframe_reason or "nack-failed"
        if len(self._holes) > self.max_missing:
            keyframe_reason = "burst"
        if keyframe_reason is not None:
            self._holes.clear()
            self.counters.keyframes_asked += 1
            actions.append(NeedKeyframe(keyframe_reason))
        elif nack:
            self.counters.nacks_sent += len(nack)
            actions.append(Nack(tuple(nack)))
        slow = self._slowdown(now)
        if slow is not None:
            actions.append(slow)
        return actions

    def _slowdown(self, now: float) -> SlowDown | None:
        horizon = now - self.window_s
        while self._arrivals and self._arrivals[0][0] < horizon:
            self._arrivals.popleft()
        while self._losses and self._losses[0] < horizon:
            self._losses.popleft()
        received, lost = len(self._arrivals), len(self._losses)
        if self._started is None or now - self._started < self.window_s:  # judge full windows only
            return None
        if received < self.min_packets or lost / (received + lost) < self.sustained_loss:
            return None
        if self._last_slowdown is not None and now - self._last_slowdown < self.window_s:
            return None
        self._last_slowdown = now
        self.counters.slowdowns += 1
        arrived_bps = sum(size for _, size in self._arrivals) * 8 / self.window_s
        return SlowDown(max(self.floor_bps, int(arrived_bps * self.backoff)))

    def next_due(self) -> float | None:
        """When :meth:`poll` next has a hole to act on (``None``: no hole open)."""
        due: float | None = None
        for hole in self._holes.values():
            at = hole.seen_at + self.reorder_wait_s if hole.nacks == 0 else hole.last_nack_at + self.rtt_s
            due = at if due is None else min(due, at)
        return due
