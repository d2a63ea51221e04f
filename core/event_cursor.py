"""Which bus events a process has delivered, so that replays deliver each event exactly once.

Pure (no I/O; the caller passes the time). Event ids come from a PostgreSQL sequence, so they
increase, but:
- commit order may differ from id order: the transaction that took id 10 can commit after the one
  that took 11, so "replay ids above the highest seen" would miss 10;
- some ids are never committed: a rolled-back insert, or a failover (a sequence is WAL-logged up to
  32 values ahead, so the promoted standby continues above every committed id, leaving a gap).

So the cursor keeps a `horizon` (every id at or below it was delivered or given up on), the ids
above it already delivered, and the gaps between them with the time each was first noticed. A
replay asks for ids above the horizon; `accept(id, now)` says whether to deliver (False: already
delivered or given up). `advance(now)` gives up on gaps older than `gap_grace` seconds (the
transaction is long over, or the id was skipped) and moves the horizon up. A jump larger than
`max_gap` ids is not tracked id by id (a `setval`, or a long outage whose replay is still to come):
the skipped ids are given up on at once.
"""
from __future__ import annotations


class EventCursor:
    """Delivered-event bookkeeping for one process (see the module docstring)."""

    def __init__(self, start: int, gap_grace: float = 10.0, max_gap: int = 10_000) -> None:
        if start < 0 or gap_grace < 0 or max_gap < 0:
            raise ValueError("start, gap_grace and max_gap must not be negative")
        self.horizon = start
        self.gap_grace = gap_grace
        self.max_gap = max_gap
        self._top = start  # the highest id delivered (or the start)
        self._seen: set[int] = set()
        self._gaps: dict[int, float] = {}  # id -> when first noticed missing

    def accept(self, event_id: int, now: float) -> bool:
        """True the first time `event_id` (above the horizon) is offered: deliver it. Else False."""
        if event_id <= self.horizon or event_id in self._seen:
            return False
        self._seen.add(event_id)
        self._gaps.pop(event_id, None)
        if event_id > self._top:
            missing = event_id - self._top - 1
            if 0 < missing <= self.max_gap:
                for gap in range(self._top + 1, event_id):
                    self._gaps[gap] = now
            elif missing > self.max_gap:
                # too many to track: give up on the older ones at once (and on any pending gap)
                self._gaps.clear()
                self._seen = {i for i in self._seen if i >= event_id}
                self.horizon = event_id - 1
            self._top = event_id
        self._compact()
        return True

    def advance(self, now: float) -> None:
        """Give up on gaps older than `gap_grace` seconds; move the horizon as far as it can go."""
        for gap, since in list(self._gaps.items()):
            if now - since >= self.gap_grace:
                del self._gaps[gap]
        self._compact()

    def _compact(self) -> None:
        horizon = min(self._gaps) - 1 if self._gaps else self._top
        if horizon > self.horizon:
            self.horizon = horizon
            self._seen = {i for i in self._seen if i > horizon}

    @property
    def pending_gaps(self) -> list[int]:
        """Ids above the horizon not delivered yet (waiting for a late commit)."""
        return sorted(self._gaps)

    @property
    def top(self) -> int:
        return self._top


__all__ = ["EventCursor"]
