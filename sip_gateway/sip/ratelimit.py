"""Per-source token buckets for INVITE/REGISTER floods. Time is passed in."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float
    last_reply: float = -1e18


class RateLimiter:
    """Allow ``rate`` requests per second per key with bursts of ``burst``.

    The table is bounded (least recently used keys are forgotten) so a spoofed-source
    flood cannot grow memory without limit.
    """

    def __init__(self, rate: float = 10.0, burst: float = 30.0, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Take one token for ``key``; ``False`` when the bucket is empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def should_reply(self, key: str, now: float, interval: float = 1.0) -> bool:
        """When limited, answer 503 at most once per ``interval`` per key (then drop silently)."""
        bucket = self._buckets.get(key)
        if bucket is None or now - bucket.last_reply < interval:
            return False
        bucket.last_reply = now
        return True
