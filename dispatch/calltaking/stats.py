"""Desk dashboard figures from call records (pure functions).

NFPA 1225 asks 90 % of calls answered within 10 s, NENA 90 % within 15 s; both thresholds are
configurable. Answer time counts from when the call reached the centre (offered) to answer.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CallTiming:
    offered_at: datetime
    answered_at: datetime | None
    abandoned: bool


@dataclass(frozen=True)
class AnswerStats:
    offered: int
    answered: int
    abandoned: int
    within: dict[int, float | None]  # threshold seconds → % of answered+abandoned calls answered within it
    per_hour: list[dict[str, float | int | str]]  # hour "YYYY-MM-DD HH", count, mean and max answer seconds


def answer_stats(calls: Iterable[CallTiming], thresholds: Sequence[int] = (10, 15)) -> AnswerStats:
    """Counts, % answered within each threshold, and answer times per hour.

    The denominator is every call that finished waiting (answered or abandoned): an abandoned call
    was not answered in time, so it counts against the target.
    """
    rows = list(calls)
    answered = [c for c in rows if c.answered_at is not None]
    abandoned = [c for c in rows if c.abandoned and c.answered_at is None]
    waits = [(c.answered_at - c.offered_at).total_seconds() for c in answered if c.answered_at]
    denominator = len(answered) + len(abandoned)
    within: dict[int, float | None] = {}
    for t in thresholds:
        within[t] = round(100.0 * sum(1 for w in waits if w <= t) / denominator, 1) if denominator else None
    hours: dict[str, list[float]] = {}
    for c in answered:
        assert c.answered_at is not None
        hours.setdefault(c.offered_at.strftime("%Y-%m-%d %H"), []).append(
            (c.answered_at - c.offered_at).total_seconds())
    per_hour: list[dict[str, float | int | str]] = [
        {"hour": h, "count": len(v), "mean_s": round(sum(v) / len(v), 1), "max_s": round(max(v), 1)}
        for h, v in sorted(hours.items())
    ]
    return AnswerStats(len(rows), len(answered), len(abandoned), within, per_hour)
