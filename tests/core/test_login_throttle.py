"""Login throttling and password hashing against the real database (core.identity)."""
from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

from core.identity import Identity
from core.login_policy import LoginPolicy, ThrottleRule
from core.passwords import BoundedHasher, HashingBusy
from core.runtime import CoreServices

PASSWORD = "Calltaker-2026"


async def _make_user(services: CoreServices, name: str = "ct.wang") -> str:
    await services.identity.create_user(name, PASSWORD, "calltaker")
    return name


async def test_parallel_guesses_are_capped_by_the_atomic_count(services: CoreServices) -> None:
    """50 guesses at once from one address: only the free attempts get their password checked."""
    name = await _make_user(services)
    free = services.identity.login_policy.per_source_account.free_attempts
    t0 = datetime.now(UTC)  # all 50 arrive at the same instant
    results = await asyncio.gather(*(services.identity.authenticate(name, f"guess-{i}", "198.51.100.7", now=t0)
                                     for i in range(50)))
    reasons = [r.reason for r in results]
    assert reasons.count("bad_credentials") == free, reasons
    assert reasons.count("throttled") == 50 - free, reasons
    assert all(r.retry_after > 0 for r in results if r.reason == "throttled")
    counted = await services.db.fetchval(
        "SELECT attempts FROM login_throttle WHERE scope = 'source_account' AND source = $1 AND account = $2",
        "198.51.100.7", name)
    assert counted == free  # refused attempts are not counted
    # The right password from the same address now waits too ...
    soon = t0 + timedelta(seconds=0.5)
    assert (await services.identity.authenticate(name, PASSWORD, "198.51.100.7", now=soon)).reason == "throttled"
    # ... but not from another address: the account is not locked for everyone.
    ok = await services.identity.authenticate(name, PASSWORD, "198.51.100.8", now=soon)
    assert ok.ok and ok.user is not None and ok.user.username == name


async def test_waiting_out_the_delay_lets_the_next_attempt_in_and_success_clears_it(services: CoreServices) -> None:
    name = await _make_user(services)
    identity, src = services.identity, "198.51.100.9"
    t0 = datetime.now(UTC)
    free = identity.login_policy.per_source_account.free_attempts
    for _ in range(free):
        assert (await identity.authenticate(name, "wrong-password-1", src, now=t0)).reason == "bad_credentials"
    refused = await identity.authenticate(name, PASSWORD, src, now=t0 + timedelta(seconds=0.5))
    assert refused.reason == "throttled" and 0 < refused.retry_after <= 1.0
    later = t0 + timedelta(seconds=1)
    assert (await identity.authenticate(name, PASSWORD, src, now=later)).ok
    # Success cleared the (source, account) counter: the next typo is free again.
    assert (await identity.authenticate(name, "wrong-password-1", src, now=later)).reason == "bad_credentials"


async def test_one_source_spraying_many_accounts_is_slowed(services: CoreServices) -> None:
    free = 4  # a small per-source allowance, so the test does few (slow) password checks
    identity = Identity(services.db, login_policy=LoginPolicy(per_source=ThrottleRule(free, 1.0, 60.0)),
                        hashing=services.identity.hashing)
    src = "203.0.113.5"
    now = datetime.now(UTC)
    reasons = [(await identity.authenticate(f"nobody{i}", "Password-123", src, now=now)).reason
               for i in range(free + 3)]
    assert reasons == ["bad_credentials"] * free + ["throttled"] * 3
    # Another address is not affected.
    assert (await identity.authenticate("nobody0", "Password-123", "203.0.113.6", now=now)).reason == "bad_credentials"


async def test_a_hand_set_lock_holds_until_unlocked(services: CoreServices) -> None:
    name = await _make_user(services)
    await services.identity.lock(name)
    user = await services.identity.get_user(name)
    assert user is not None and user.is_locked()
    assert (await services.identity.authenticate(name, PASSWORD, "192.0.2.1")).reason == "locked"
    await services.identity.set_password(name, "Another-Pass-2026")  # a reset does not lift a hand-set lock
    assert (await services.identity.authenticate(name, "Another-Pass-2026", "192.0.2.1")).reason == "locked"
    await services.identity.unlock(name)
    assert (await services.identity.authenticate(name, "Another-Pass-2026", "192.0.2.1")).ok


async def test_the_hashing_pool_refuses_excess_work_at_once() -> None:
    hasher = BoundedHasher(workers=1, max_waiting=2)
    try:
        stored = await hasher.hash("Secret-Pass-1")
        started = time.monotonic()
        results = await asyncio.gather(*(hasher.verify(stored, "Secret-Pass-1") for _ in range(10)),
                                       return_exceptions=True)
        busy = [r for r in results if isinstance(r, HashingBusy)]
        assert len(busy) == 7 and results.count(True) == 3, results
        assert hasher.in_flight == 0 and not hasher.busy
        assert time.monotonic() - started < 30
    finally:
        hasher.close()


async def test_hashing_leaves_the_event_loop_free(services: CoreServices) -> None:
    """While 10 logins are checked, a 10 ms ticker on the same loop is never late by a hash's time."""
    name = await _make_user(services)
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lateness.append(time.perf_counter() - before - 0.01)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    results = await asyncio.gather(*(services.identity.authenticate(name, PASSWORD, f"192.0.2.{i}")
                                     for i in range(10)))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick
    assert all(r.ok for r in results)
    # One argon2 check takes ~0.2-0.5 s here: on the loop, the ticker would stall for all ten of
    # them (seconds in all). Off the loop, it stalls only for what the (shared, busy) machine adds.
    stalled = sum(max(0.0, late - 0.05) for late in lateness)
    assert stalled < 0.5 and max(lateness) < 1.0, (stalled, max(lateness), statistics.median(lateness), elapsed)


async def test_a_name_postgresql_cannot_store_is_a_wrong_login_not_a_crash(services: CoreServices) -> None:
    result = await services.identity.authenticate("call\x00taker", "whatever-123", "192.0.2.20")
    assert result.reason == "bad_credentials"


async def test_setting_a_password_waits_for_the_pool_instead_of_failing(services: CoreServices) -> None:
    hasher = BoundedHasher(workers=1, max_waiting=0)
    try:
        stored = await hasher.hash("Secret-Pass-1")
        check = asyncio.create_task(hasher.verify(stored, "Secret-Pass-1"))
        await asyncio.sleep(0)
        assert hasher.busy
        new_hash, checked = await asyncio.gather(hasher.hash("Another-Pass-2"), check)
        assert checked and new_hash.startswith("$argon2id$")
    finally:
        hasher.close()
