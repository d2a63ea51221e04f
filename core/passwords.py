"""argon2id hashing off the event loop, in a small bounded thread pool.

One argon2 verification costs tens to hundreds of milliseconds of CPU (64 MiB, 3 passes). On the
event loop it would stall SIP, RTP control and websockets for that long, per login. Here it runs
in `workers` threads (argon2-cffi releases the GIL while it hashes); at most `workers +
max_waiting` hashes are in flight, and a further request is refused at once with `HashingBusy`
(the web layer answers 503 with Retry-After) instead of piling up unbounded work. The hashing
threads run at a lower scheduling priority (nice +10, Linux), so on a busy machine the event loop
and the media threads come first and a burst of logins waits instead.
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")


def _lower_priority() -> None:
    """Thread initializer: nice this thread (Linux schedules threads one by one). Best effort."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class HashingBusy(RuntimeError):
    """Too many password hashes in flight; try again in a moment."""


class PasswordHashing(Protocol):
    """What `core.identity.Identity` needs from a password hasher."""

    @property
    def busy(self) -> bool: ...

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    def close(self) -> None: ...


class BoundedHasher:
    """argon2id in a bounded thread pool. Use from one event loop (the counter is not locked)."""

    def __init__(self, workers: int = 2, max_waiting: int = 8, hasher: PasswordHasher | None = None) -> None:
        if workers < 1 or max_waiting < 0:
            raise ValueError("workers must be >= 1 and max_waiting >= 0")
        self._hasher = hasher or PasswordHasher()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="argon2", initializer=_lower_priority)
        self._limit = workers + max_waiting
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        """True when a new hash would be refused."""
        return self._in_flight >= self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def _run(self, work: Callable[[], T], *, refuse_when_busy: bool = True) -> T:
        if refuse_when_busy and self.busy:
            raise HashingBusy("too many password checks in progress")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self._in_flight -= 1

    async def hash(self, password: str) -> str:
        """Hash a new password. Never refused: only administrators and the CLI set passwords, so
        this work is bounded by them; it still queues behind (and counts against) the logins."""
        return await self._run(lambda: self._hasher.hash(password), refuse_when_busy=False)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Check a password; HashingBusy at once when the pool is full."""

        def check() -> bool:
            try:
                return bool(self._hasher.verify(password_hash, password))
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
