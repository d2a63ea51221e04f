"""Login throttling: a pure policy that decides whether a login attempt may be checked now.

A password guesser is slowed down, not the account locked for everyone:

- two counters slow every attempt: one per (source address, account) and one per source address;
- each counter lets `free_attempts` attempts through at once; after that every further attempt
  must wait ``base_delay_seconds * 2 ** (n - free_attempts)`` (n = attempts counted so far),
  capped at `max_delay_seconds`. An attempt that arrives too early is refused ("throttled",
  with the seconds to wait) and does not count;
- an attempt is counted *before* its password is checked, so parallel guesses are counted as they
  arrive (the store serializes the counting, see `core.identity.Identity`); a successful login
  clears its (source, account) counter and gives back its count on the source counter;
- a counter with no attempt for `forget_seconds` starts over;
- a source is an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64).

So a call-taker whose password is being guessed from one address still logs in from another,
and an administrator who wants an account shut locks it by hand (`commandcenter user lock`).

Everything here is pure: the current time is an argument, nothing is stored or read.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta


def source_key(address: str) -> str:
    """The counter key of a client address: the IPv4 address, or the IPv6 /64 it is in."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]  # not an address (a test client, a unix socket): counted as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class ThrottleRule:
    """How fast one counter lets attempts through."""

    free_attempts: int = 5
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 300.0
    forget_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.free_attempts < 1:
            raise ValueError("free_attempts must be at least 1")
        if not 0 < self.base_delay_seconds <= self.max_delay_seconds:
            raise ValueError("need 0 < base_delay_seconds <= max_delay_seconds")
        if self.forget_seconds <= 0:
            raise ValueError("forget_seconds must be positive")

    def delay_after(self, attempts: int) -> float:
        """Seconds the next attempt must wait once `attempts` unsuccessful attempts are counted."""
        if attempts < self.free_attempts:
            return 0.0
        exponent = attempts - self.free_attempts
        if exponent >= 64:  # 2**64 s is beyond any cap; avoid huge floats
            return self.max_delay_seconds
        return float(min(self.max_delay_seconds, self.base_delay_seconds * 2 ** exponent))


@dataclass(frozen=True)
class LoginPolicy:
    """The two counters of a login attempt."""

    per_source_account: ThrottleRule = ThrottleRule(5, 1.0, 300.0, 3600.0)
    per_source: ThrottleRule = ThrottleRule(30, 1.0, 60.0, 900.0)


@dataclass(frozen=True)
class CounterState:
    """One counter as stored: attempts counted, when the last one came, when the next may come."""

    attempts: int = 0
    last_at: datetime | None = None
    not_before: datetime | None = None


@dataclass(frozen=True)
class Charge:
    """The outcome of counting one attempt on one counter.

    allowed: the attempt may be checked; `state` is then the counter to store.
    Refused: `retry_after` seconds to wait; nothing is to be stored.
    """

    allowed: bool
    state: CounterState
    retry_after: float = 0.0


def charge(rule: ThrottleRule, state: CounterState, now: datetime) -> Charge:
    """Count one attempt arriving at `now` on a counter in `state` (pure)."""
    attempts, not_before = state.attempts, state.not_before
    if state.last_at is not None and now - state.last_at >= timedelta(seconds=rule.forget_seconds):
        attempts, not_before = 0, None  # quiet long enough: start over
    if not_before is not None and now < not_before:
        return Charge(False, state, (not_before - now).total_seconds())
    attempts += 1
    delay = rule.delay_after(attempts)
    return Charge(True, CounterState(attempts, now, now + timedelta(seconds=delay) if delay else None))


@dataclass(frozen=True)
class Decision:
    """Whether a login attempt may have its password checked now."""

    allowed: bool
    pair: CounterState
    source: CounterState
    retry_after: float = 0.0


def decide(policy: LoginPolicy, pair: CounterState, source: CounterState, now: datetime) -> Decision:
    """Count an attempt on both counters; allowed only when both let it through (pure).

    When refused, neither counter changes and `retry_after` is the longer of the waits.
    """
    by_pair = charge(policy.per_source_account, pair, now)
    by_source = charge(policy.per_source, source, now)
    if by_pair.allowed and by_source.allowed:
        return Decision(True, by_pair.state, by_source.state)
    wait = max(0.0 if by_pair.allowed else by_pair.retry_after,
               0.0 if by_source.allowed else by_source.retry_after)
    return Decision(False, pair, source, wait)
