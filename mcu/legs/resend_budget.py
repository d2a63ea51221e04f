"""Which NACKed video packets a WebRTC sender may resend (pure: time is an argument).

aiortc's sender answers every NACK from its last 128 packets, with no limit; on a lossy leased
line a loss burst NACKed in full would come back as a burst on the line that just lost it, and
a peer repeating a NACK gets the same packet again each time. The rules are the SIP legs'
(:mod:`sip_gateway.rtp.retransmission`), minus the history, which aiortc keeps:

* **Byte budget**: resends draw from a token bucket that fills at ``share`` (20 %) of the leg's
  video rate (``video_kbps`` given on each call) and holds at most ``burst_s`` (0.5 s) of it, at
  least one full packet (1500 bytes). A resend that does not fit is refused: the browser then
  asks for a key frame.
* **Per packet**: one sequence number is resent at most ``max_resends`` (2) times; the counts of
  the last ``remember`` (256) sequence numbers are kept.
* ``size`` is the packet's bytes on the wire; sequence numbers are taken modulo 2^16.
"""
from __future__ import annotations

from collections import OrderedDict

MIN_BURST_BYTES = 1500


class ResendBudget:
    """``allow(sequence, size, now, video_kbps)``: may this NACKed packet be resent now?"""

    def __init__(self, *, share: float = 0.2, burst_s: float = 0.5, max_resends: int = 2,
                 remember: int = 256) -> None:
        if not 0 < share <= 1 or burst_s <= 0 or max_resends < 1 or remember < 1:
            raise ValueError("resend budget: share in (0, 1], burst, resends and memory positive")
        self.share = share
        self.burst_s = burst_s
        self.max_resends = max_resends
        self.remember = remember
        self._resends: OrderedDict[int, int] = OrderedDict()
        self._tokens: float | None = None
        self._tokens_at = 0.0

    def allow(self, sequence: int, size: int, now: float, video_kbps: float) -> bool:
        sequence &= 0xFFFF
        count = self._resends.get(sequence, 0)
        if count >= self.max_resends:
            return False
        rate = max(0.0, video_kbps) * 1000 / 8 * self.share  # bytes per second
        cap = max(rate * self.burst_s, MIN_BURST_BYTES)
        if self._tokens is None:
            self._tokens = cap
        else:
            self._tokens = min(cap, self._tokens + rate * max(0.0, now - self._tokens_at))
        self._tokens_at = now
        if self._tokens < max(0, size):
            return False
        self._tokens -= max(0, size)
        self._resends[sequence] = count + 1
        self._resends.move_to_end(sequence)
        while len(self._resends) > self.remember:
            self._resends.popitem(last=False)
        return True


__all__ = ["ResendBudget"]
