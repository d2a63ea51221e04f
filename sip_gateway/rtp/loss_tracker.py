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
* **Slow down only for congestion**: packets that were missing after the reorder wait count as
  lost on the line (even if a resend repaired them). Over the last ``window_s`` (judged once a
  full window was observed, and only when at least ``min_packets`` arrived), the line is
  *congested* when the lost share reaches ``congestion_loss`` (8 %: a line that drops that much is
  over-full whatever the pattern), or when it reaches ``sustained_loss`` (3 %) while the line
  lost them out of a grown queue. The queue is read from the RTP timestamps
  (``packet(..., rtp_seconds=...)``): the transit time (arrival − timestamp) has a floor, the
  smallest transit over ``baseline_s`` (30 s, kept as per-``bucket_s`` minima); the packet that
  ends a gap says how far above the floor the queue was when the line lost the packets before
  it, and the losses came out of a grown queue when at least ``queue_share`` (3/4) of the gaps
  of the last ``queue_window_s`` (6 s: enough losses to judge) saw it ``queue_grown`` (60 ms)
  or more above the floor (jitter stays below it; a
  router queue is full whenever it drops). Random loss strikes whatever the queue: our own
  pacer's backlog after a key frame covers some of its losses, not three quarters. :meth:`LossTracker.queue_delay` is the same reading over the
  last ``recent_s`` (0.5 s) for any packet. Steady random
  loss of a few percent with no queue growth is not congestion (libwebrtc's loss-based estimate
  tolerates it too): it never asks the source to slow down, and is repaired by NACK. Without
  timestamps only the congestion share counts. A congested window asks (:class:`SlowDown`) for
  ``backoff`` times the rate that arrived (not under ``floor_bps``), at most once per
  ``window_s``; the adapter sends it as a TMMBR (RFC 5104) to the source.
* **Speed up again**: a TMMBR limit stays until a newer one replaces it, so after a slow-down each
  full window that is not congested raises the limit by ``raise_factor`` (:class:`SpeedUp`, a
  TMMBR too, at most once per ``window_s``): the source probes back up as the line allows. Once
  the limit is ``lift_ratio`` (2) times what arrives (it no longer binds), it is lifted:
  ``lift_bps`` (100 Mbit/s, the rate budget's ceiling: no limit) is sent ``lift_repeats`` (2)
  times (one may be lost) and the tracker forgets the limit. (The session sends the smaller of
  this and what its owner asks of the source for its own reasons: the pane it is shown in.)
* Time is an argument (seconds, any monotonic origin); :meth:`LossTracker.next_due` says when
  :meth:`LossTracker.poll` next has something to do.

::

    tracker = LossTracker(nack=stream.nack)
    tracker.packet(seq, size, now)
    for action in tracker.poll(now):   # Nack | NeedKeyframe | SlowDown | SpeedUp
        ...
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["LIFTED_BPS", "LossCounters", "LossTracker", "Nack", "NeedKeyframe", "SlowDown", "SpeedUp"]


LIFTED_BPS = 100_000_000  # a TMMBR this high lifts the limit (the rate budget's ceiling)


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


@dataclass(frozen=True)
class SpeedUp:
    """The congestion is over: raise our limit on the source to this rate (TMMBR)."""

    bitrate_bps: int


LossAction = Nack | NeedKeyframe | SlowDown | SpeedUp


@dataclass
class LossCounters:
    received: int = 0
    holes: int = 0  # packets missing after the reorder wait
    repaired: int = 0  # holes closed by a late or resent packet after a NACK
    nacks_sent: int = 0  # sequence numbers NACKed (retries included)
    keyframes_asked: int = 0
    slowdowns: int = 0
    speedups: int = 0


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
                 sustained_loss: float = 0.03, backoff: float = 0.85, floor_bps: int = 64_000,
                 congestion_loss: float = 0.08, queue_grown: float = 0.06, queue_share: float = 0.75, queue_window_s: float = 6.0, recent_s: float = 0.5,
                 bucket_s: float = 0.5, baseline_s: float = 30.0, raise_factor: float = 1.25,
                 lift_ratio: float = 2.0, lift_bps: int = LIFTED_BPS, lift_repeats: int = 2) -> None:
        if reorder_wait_s < 0 or rtt_s <= 0 or max_nacks < 1 or max_gap < 1 or max_missing < 1 or window_s <= 0:
            raise ValueError("loss tracker: waits, retries and sizes must be positive")
        if min(recent_s, bucket_s, baseline_s) <= 0 or raise_factor <= 1 or lift_ratio <= 1 or lift_repeats < 1:
            raise ValueError("loss tracker: queue windows must be positive and raises must raise")
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
        self.congestion_loss = congestion_loss
        self.queue_grown = queue_grown
        self.queue_share = queue_share
        self.queue_window_s = queue_window_s
        self.recent_s = recent_s
        self.bucket_s = bucket_s
        self.baseline_s = baseline_s
        self.raise_factor = raise_factor
        self.lift_ratio = lift_ratio
        self.lift_bps = lift_bps
        self.lift_repeats = lift_repeats
        self.counters = LossCounters()
        self._buckets: deque[tuple[float, float]] = deque()  # (bucket start, smallest transit in it)
        self._recent: deque[tuple[float, float]] = deque()  # (arrival, transit) of the last recent_s
        self._at_losses: deque[tuple[float, float]] = deque(maxlen=512)  # (arrival, queue delay) after a gap
        self._limit_bps: int | None = None  # the TMMBR limit we asked for last (None: none in force)
        self._lifts_sent = 0
        self._last_judged: float | None = None
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

    @property
    def limit_bps(self) -> int | None:
        """The limit our last SlowDown/SpeedUp asked the source for (None: none in force)."""
        return self._limit_bps

    def queue_delay(self, now: float) -> float | None:
        """How far the recent transit time is above its floor (s); None without timestamps."""
        while self._recent and self._recent[0][0] < now - self.recent_s:
            self._recent.popleft()
        if not self._recent or not self._buckets:
            return None
        return max(0.0, min(t for _, t in self._recent) - min(t for _, t in self._buckets))

    def packet(self, sequence: int, size: int, now: float, rtp_seconds: float | None = None) -> None:
        """An RTP packet of the stream arrived; ``rtp_seconds``: its RTP timestamp in seconds (the
        stream's own clock; for the queue delay)."""
        sequence &= 0xFFFF
        self.counters.received += 1
        self._arrivals.append((now, max(size, 0)))
        transit = now - rtp_seconds if rtp_seconds is not None else None
        if transit is not None:
            self._transit(now, transit)
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
            if delta > 1 and transit is not None and self._buckets:  # the queue when the line lost them
                self._at_losses.append((now, max(0.0, transit - min(t for _, t in self._buckets))))
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

    def _transit(self, now: float, transit: float) -> None:
        if not (transit == transit) or abs(transit) > 1e12:  # NaN or absurd: says nothing
            return
        if self._buckets and abs(transit - self._buckets[-1][1]) > 10.0:  # the timestamps jumped: start over
            self._buckets.clear()
            self._recent.clear()
        self._recent.append((now, transit))
        while self._recent[0][0] < now - self.recent_s:
            self._recent.popleft()
        if self._buckets and now - self._buckets[-1][0] < self.bucket_s:
            start, low = self._buckets[-1]
            if transit < low:
                self._buckets[-1] = (start, transit)
        else:
            self._buckets.append((now, transit))
        while self._buckets and self._buckets[0][0] < now - self.baseline_s:
            self._buckets.popleft()

    def _slowdown(self, now: float) -> SlowDown | SpeedUp | None:
        horizon = now - self.window_s
        while self._arrivals and self._arrivals[0][0] < horizon:
            self._arrivals.popleft()
        while self._losses and self._losses[0] < horizon:
            self._losses.popleft()
        received, lost = len(self._arrivals), len(self._losses)
        if self._started is None or now - self._started < self.window_s:  # judge full windows only
            return None
        if received < self.min_packets:
            return None
        share = lost / (received + lost)
        congested = share >= self.congestion_loss
        if not congested and share >= self.sustained_loss:  # the queue at the losses decides
            while self._at_losses and self._at_losses[0][0] < now - self.queue_window_s:
                self._at_losses.popleft()
            if self._at_losses:
                grown = sum(1 for _, q in self._at_losses if q >= self.queue_grown)
                congested = grown >= self.queue_share * len(self._at_losses)
        if congested:
            if self._last_slowdown is not None and now - self._last_slowdown < self.window_s:
                return None
            arrived_bps = sum(size for _, size in self._arrivals) * 8 / self.window_s
            self._last_slowdown = self._last_judged = now
            self.counters.slowdowns += 1
            self._limit_bps = max(self.floor_bps, int(arrived_bps * self.backoff))
            self._lifts_sent = 0
            return SlowDown(self._limit_bps)
        if self._limit_bps is None or (self._last_judged is not None and now - self._last_judged < self.window_s):
            return None
        self._last_judged = now  # a full window since the last slow-down or raise, not congested: raise
        arrived_bps = sum(size for _, size in self._arrivals) * 8 / self.window_s
        if self._limit_bps >= self.lift_bps or self._limit_bps >= self.lift_ratio * arrived_bps:
            self._limit_bps = self.lift_bps  # the limit no longer binds: lift it
            self._lifts_sent += 1
            if self._lifts_sent >= self.lift_repeats:
                self._limit_bps = None  # sent often enough; nothing in force any more
        else:
            self._limit_bps = min(self.lift_bps, int(self._limit_bps * self.raise_factor))
        self.counters.speedups += 1
        return SpeedUp(self._limit_bps if self._limit_bps is not None else self.lift_bps)

    def next_due(self) -> float | None:
        """When :meth:`poll` next has a hole to act on (``None``: no hole open)."""
        due: float | None = None
        for hole in self._holes.values():
            at = hole.seen_at + self.reorder_wait_s if hole.nacks == 0 else hole.last_nack_at + self.rtt_s
            due = at if due is None else min(due, at)
        return due
