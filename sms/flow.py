"""Flow control of submissions to the SMSC: a throughput limit with a bounded queue, retries of
temporary failures with backoff, and what a Kannel delivery report means for a recipient.

Pure: times (seconds, monotonic or not, as long as they do not go back) are arguments. Rules:
- ``Throughput``: a token bucket of ``rate`` SMS parts per second with a burst of ``burst`` parts.
  ``admit(now, parts)`` says when a message of ``parts`` parts may be submitted; a message is never
  split across waits (Kannel submits its parts back to back). Each message costs its parts.
- The queue (rows in PostgreSQL, sms/service.py) holds at most ``sms.queue_limit`` recipients; a
  send beyond that raises ``QueueFull`` (answered 429, nothing stored): back-pressure, never a drop.
- ``backoff(attempt)``: base × 2^(attempt-1), capped at ``cap``; after ``retry_max`` retries a
  temporary failure becomes final (failed).
- Kannel's dlr-mask bits: 1 delivered, 2 failed (undeliverable), 4 buffered (queued at the SMSC),
  8 submitted (accepted by the SMSC: ACK), 16 rejected by the SMSC (NACK). A recipient's status
  only moves forward: queued → submitted → buffered → delivered | failed; a late ``submitted``
  after ``delivered`` changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DLR_MASK = 31  # ask Kannel for every kind of report

QUEUED = "queued"  # waiting for our limiter (or a retry)
SUBMITTED = "submitted"  # accepted by Kannel / acknowledged by the SMSC
BUFFERED = "buffered"  # the SMSC holds it (the phone is off)
DELIVERED = "delivered"
FAILED = "failed"
STATUSES = (QUEUED, SUBMITTED, BUFFERED, DELIVERED, FAILED)
FINAL = frozenset({DELIVERED, FAILED})
_RANK = {QUEUED: 0, SUBMITTED: 1, BUFFERED: 2, DELIVERED: 3, FAILED: 3}

DLR_STATUS = {1: DELIVERED, 2: FAILED, 4: BUFFERED, 8: SUBMITTED, 16: FAILED}


class QueueFull(Exception):
    """The send queue is full: refuse the request (429) rather than drop anything."""


def status_of_dlr(kind: int) -> str | None:
    """The recipient status a Kannel DLR type means; None for an unknown type (ignored, logged)."""
    return DLR_STATUS.get(kind)


def advance(current: str, new: str) -> str:
    """The status after a report: forward only; a final status stays."""
    if current in FINAL:
        return current
    return new if _RANK[new] >= _RANK[current] else current


@dataclass
class Throughput:
    rate: float  # parts per second
    burst: float = 1.0
    _tokens: float = field(default=-1.0, init=False)
    _at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst ≥ 1")

    def _refill(self, now: float) -> None:
        if self._at is None:
            self._tokens, self._at = self.burst, now
        elapsed = max(0.0, now - self._at)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._at = max(self._at, now)

    def wait(self, now: float, parts: int = 1) -> float:
        """Seconds until a message of ``parts`` parts may go (0: now). Does not take the tokens."""
        self._refill(now)
        need = min(float(parts), self.burst)
        return 0.0 if self._tokens >= need else (need - self._tokens) / self.rate

    def take(self, now: float, parts: int = 1) -> None:
        """Account a message of ``parts`` parts sent at ``now`` (tokens may go negative: a long
        message borrows from the next seconds, so the average rate holds)."""
        self._refill(now)
        self._tokens -= parts


def backoff(attempt: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds before retry ``attempt`` (1-based)."""
    return float(min(cap, base * (2 ** max(0, attempt - 1))))
