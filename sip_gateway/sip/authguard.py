"""Throttling of digest-authentication failures (REGISTER and INVITE). Pure; time is passed in.

A password guesser is slowed on three keys at once, each with its own :class:`ThrottleTier`:

* **(source, account)**, strongly: the first ``allowed_failures`` wrong answers from one address
  for one username are answered normally (401); the next one blocks that pair for
  ``base_block`` seconds, and every further failure doubles the block up to ``max_block``.
* **account**, gently (more failures allowed, a short cap): this brakes a guesser who spreads
  over many addresses. A source that authenticated this account successfully in the last
  ``trusted_for`` seconds is exempt, so a device registering from its usual address is never
  locked out by an attacker elsewhere.
* **source** (any username), gently: this brakes a password spray over many accounts. The
  trusted (source, account) pairs are exempt here too, so one misconfigured phone behind a
  site's NAT cannot lock out the site's other phones.

While a key is blocked every attempt on it is refused **without checking the password**, even
the right one, so the guesser learns nothing until the block ends (the caller answers 403 with
``Retry-After``). Failures are counted per key "in a row": a success from a source clears its
(source, account) key, and a key without failures for ``forget_after`` seconds starts again at
zero. Refused attempts do not count. Unknown usernames are throttled exactly like known ones,
so the replies cannot tell them apart. Every table is bounded (least recently used keys are
forgotten), so a flood of invented usernames or spoofed addresses cannot grow memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["source+account", "account", "source"]


@dataclass(frozen=True)
class ThrottleTier:
    """How one key is throttled."""

    allowed_failures: int  # wrong answers in a row before the first block
    base_block: float  # seconds of the first block; each further failure doubles it
    max_block: float  # cap on one block
    forget_after: float = 3600.0  # no failure for this long: the count starts again

    def block_for(self, failures: int) -> float:
        """Seconds to block after the ``failures``-th failure in a row (0: not blocked)."""
        if failures < self.allowed_failures:
            return 0.0
        return float(min(self.max_block, self.base_block * 2.0 ** min(failures - self.allowed_failures, 40)))


@dataclass(frozen=True)
class AuthThrottlePolicy:
    """The three tiers and the trust window of a source that authenticated an account."""

    per_source_account: ThrottleTier = ThrottleTier(5, 2.0, 900.0)
    per_account: ThrottleTier = ThrottleTier(20, 1.0, 60.0)
    per_source: ThrottleTier = ThrottleTier(30, 1.0, 300.0)
    trusted_for: float = 7 * 86400.0
    max_keys: int = 50_000


@dataclass(frozen=True)
class Verdict:
    """Result of :meth:`AuthThrottle.check`: may this attempt be verified?"""

    allowed: bool
    retry_after: float = 0.0  # seconds until the block ends (when not allowed)
    scope: Scope | None = None  # the tier that blocks


@dataclass(frozen=True)
class Engaged:
    """A failure started a block (one per block, for the audit log)."""

    scope: Scope
    source: str
    account: str
    failures: int  # failures in a row on that key, this one included
    blocked_for: float


@dataclass
class _State:
    failures: int = 0
    last_failure: float = -1e18
    blocked_until: float = -1e18


@dataclass
class _Table:
    tier: ThrottleTier
    max_keys: int
    rows: OrderedDict[str, _State] = field(default_factory=OrderedDict)

    def get(self, key: str) -> _State | None:
        state = self.rows.get(key)
        if state is not None:
            self.rows.move_to_end(key)
        return state

    def blocked_for(self, key: str, now: float) -> float:
        state = self.rows.get(key)
        return max(0.0, state.blocked_until - now) if state is not None else 0.0

    def fail(self, key: str, now: float) -> tuple[int, float]:
        """Count one failure; (failures in a row, new block in seconds or 0)."""
        state = self.get(key)
        if state is None:
            state = self.rows[key] = _State()
            if len(self.rows) > self.max_keys:
                self.rows.popitem(last=False)
        if now - state.last_failure > self.tier.forget_after:
            state.failures = 0
        state.failures += 1
        state.last_failure = now
        block = self.tier.block_for(state.failures)
        if block > 0:
            state.blocked_until = max(state.blocked_until, now + block)
        return state.failures, block

    def clear(self, key: str) -> None:
        self.rows.pop(key, None)


class AuthThrottle:
    """Per (source, account), per account and per source throttling of digest failures.

    ``source`` is the sender's IP address, ``account`` the username of the Authorization
    header (known or not). Usage per attempt that carries credentials: :meth:`check` first
    (refuse when not allowed, without verifying), then :meth:`failure` or :meth:`success`.
    """

    def __init__(self, policy: AuthThrottlePolicy | None = None) -> None:
        self.policy = policy or AuthThrottlePolicy()
        limit = self.policy.max_keys
        self._pair = _Table(self.policy.per_source_account, limit)
        self._account = _Table(self.policy.per_account, limit)
        self._source = _Table(self.policy.per_source, limit)
        self._trusted: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def _key(source: str, account: str) -> str:
        return f"{source}\x00{account}"

    def trusted(self, source: str, account: str, now: float) -> bool:
        """True while ``source`` authenticated ``account`` successfully within ``trusted_for``."""
        since = self._trusted.get(self._key(source, account))
        return since is not None and now - since <= self.policy.trusted_for

    def check(self, source: str, account: str | None, now: float) -> Verdict:
        """May an attempt from ``source`` for ``account`` be verified now?"""
        blocks: list[tuple[float, Scope]] = [(0.0, "source")]
        if account is None or not self.trusted(source, account, now):
            blocks.append((self._source.blocked_for(source, now), "source"))
        if account is not None:
            blocks.append((self._pair.blocked_for(self._key(source, account), now), "source+account"))
            if not self.trusted(source, account, now):
                blocks.append((self._account.blocked_for(account, now), "account"))
        wait, scope = max(blocks, key=lambda b: b[0])
        if wait <= 0:
            return Verdict(True)
        return Verdict(False, wait, scope)

    def failure(self, source: str, account: str | None, now: float) -> list[Engaged]:
        """Count a wrong answer; returns the blocks this failure started."""
        started: list[Engaged] = []
        keys: list[tuple[_Table, str, Scope]] = [(self._source, source, "source")]
        if account is not None:
            keys += [(self._pair, self._key(source, account), "source+account"),
                     (self._account, account, "account")]
        for table, key, scope in keys:
            failures, block = table.fail(key, now)
            if block > 0:
                started.append(Engaged(scope, source, account or "", failures, block))
        return started

    def success(self, source: str, account: str, now: float) -> None:
        """A right answer: clear the (source, account) count and trust the source for the account."""
        self._pair.clear(self._key(source, account))
        key = self._key(source, account)
        self._trusted[key] = now
        self._trusted.move_to_end(key)
        if len(self._trusted) > self.policy.max_keys:
            self._trusted.popitem(last=False)
