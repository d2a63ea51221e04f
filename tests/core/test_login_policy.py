"""The pure login throttling policy: free attempts, then an exponentially growing, capped wait."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.login_policy import CounterState, LoginPolicy, ThrottleRule, charge, decide, source_key

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_delays_double_after_the_free_attempts_and_stop_at_the_cap() -> None:
    rule = ThrottleRule(free_attempts=3, base_delay_seconds=1.0, max_delay_seconds=10.0)
    assert [rule.delay_after(n) for n in range(0, 9)] == [0, 0, 0, 1, 2, 4, 8, 10, 10]
    assert rule.delay_after(10_000) == 10.0


def test_an_early_attempt_is_refused_and_not_counted() -> None:
    rule = ThrottleRule(free_attempts=2, base_delay_seconds=4.0, max_delay_seconds=60.0)
    state = CounterState()
    for _ in range(2):
        result = charge(rule, state, T0)
        assert result.allowed
        state = result.state
    assert state.attempts == 2 and state.not_before == T0 + timedelta(seconds=4)
    early = charge(rule, state, T0 + timedelta(seconds=1))
    assert not early.allowed and early.retry_after == pytest.approx(3.0) and early.state == state
    on_time = charge(rule, state, T0 + timedelta(seconds=4))
    assert on_time.allowed and on_time.state.attempts == 3
    assert on_time.state.not_before == T0 + timedelta(seconds=4 + 8)


def test_a_quiet_counter_starts_over() -> None:
    rule = ThrottleRule(free_attempts=1, base_delay_seconds=30.0, max_delay_seconds=60.0, forget_seconds=600.0)
    state = CounterState(attempts=9, last_at=T0, not_before=T0 + timedelta(seconds=60))
    later = charge(rule, state, T0 + timedelta(seconds=600))
    assert later.allowed and later.state.attempts == 1


def test_both_counters_must_agree_and_the_longer_wait_is_reported() -> None:
    policy = LoginPolicy(ThrottleRule(5, 1.0, 300.0), ThrottleRule(2, 10.0, 60.0))
    pair, source = CounterState(), CounterState(attempts=2, last_at=T0, not_before=T0 + timedelta(seconds=10))
    refused = decide(policy, pair, source, T0 + timedelta(seconds=2))
    assert not refused.allowed and refused.retry_after == pytest.approx(8.0)
    assert refused.pair == pair and refused.source == source  # nothing counted
    allowed = decide(policy, pair, source, T0 + timedelta(seconds=10))
    assert allowed.allowed and allowed.pair.attempts == 1 and allowed.source.attempts == 3


def test_bad_rules_are_refused() -> None:
    for kwargs in ({"free_attempts": 0}, {"base_delay_seconds": 0}, {"base_delay_seconds": 5, "max_delay_seconds": 1},
                   {"forget_seconds": 0}):
        with pytest.raises(ValueError):
            ThrottleRule(**kwargs)


def test_sources_are_ipv4_addresses_or_ipv6_slash_64s() -> None:
    assert source_key("127.0.0.2") == "127.0.0.2"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("testclient") == "testclient"
