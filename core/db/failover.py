"""What to do when a database command fails during a failover: retry it, or give up with a 503.

Pure rules (no I/O, no clock: the caller passes the attempt number and the time elapsed):

- `classify(exc, sent)` sorts a failure into
  - NOT_SENT: no server received the command (connecting failed, the pooled connection was
    already closed, no node takes writes yet). Always safe to retry.
  - REFUSED: a server received the command and refused it without doing anything (a standby
    answers 25006 read-only, a starting server 57P03). Always safe to retry on another connection.
  - LOST: the connection died while the command was in flight. It may or may not have committed:
    retried only when the command is idempotent (a read, or a write keyed by an id).
  - OTHER: an ordinary error (constraint, syntax, bad input): not a failover, raised unchanged.
- `RetryPolicy.next_delay(kind, idempotent, attempt, elapsed)` says how long to wait before the
  next attempt, or None to give up. It never waits past `deadline_s` from the first attempt, so a
  command during a failover ends (with a result or a clear error) within that bound, never hangs.
- `is_read_only(sql)` is the conservative test that lets plain reads be retried without the caller
  saying so: one SELECT/WITH/SHOW/VALUES/TABLE statement with no data-changing keyword and no call
  of a function known to change state (nextval, pg_notify, advisory locks...). A SELECT that calls
  a function of ours with side effects must be passed `idempotent=False` explicitly.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import asyncpg
import asyncpg.exceptions as pgexc


class FailureKind(enum.Enum):
    NOT_SENT = "not_sent"
    REFUSED = "refused"
    LOST = "lost"
    OTHER = "other"


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (or changed primary) within the failover bound.

    `outcome_unknown` is True when a non-idempotent command was in flight when its connection
    died: it may have been applied. Routes answer 503 with a message saying so."""

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


# The server took the command and refused it without doing anything.
_REFUSED = (
    pgexc.ReadOnlySQLTransactionError,      # 25006: a standby (or a demoted primary)
    pgexc.CannotConnectNowError,            # 57P03: starting up / shutting down / in recovery
)
# The connection ended under the command: it may have been applied.
_LOST = (
    pgexc.ConnectionDoesNotExistError,
    pgexc.TransactionResolutionUnknownError,
    pgexc.AdminShutdownError,               # 57P01: fast shutdown, pg_terminate_backend
    pgexc.CrashShutdownError,               # 57P02: another backend crashed
    ConnectionError,
    OSError,
    TimeoutError,                           # command_timeout: the server stopped answering
)
# Connecting failed: nothing was sent.
_CONNECT = (
    OSError,
    TimeoutError,
    asyncpg.TargetServerAttributeNotMatched,  # every node reachable is a standby (mid-failover)
    pgexc.PostgresConnectionError,
    pgexc.CannotConnectNowError,
    pgexc.TooManyConnectionsError,
    pgexc.AdminShutdownError,
)


def classify(exc: BaseException, *, sent: bool) -> FailureKind:
    """The kind of failure `exc` is; `sent` is False while a connection was still being acquired."""
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg checks the connection before it writes: "connection is closed" means not sent
        return FailureKind.NOT_SENT if "closed" in str(exc) else FailureKind.OTHER
    if not sent:
        return FailureKind.NOT_SENT if isinstance(exc, _CONNECT) else FailureKind.OTHER
    if isinstance(exc, _REFUSED):
        return FailureKind.REFUSED
    if isinstance(exc, _LOST):
        return FailureKind.LOST
    return FailureKind.OTHER


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off from `first_delay_s` up to `max_delay_s`, for at most `deadline_s`."""

    deadline_s: float = 30.0
    first_delay_s: float = 0.05
    max_delay_s: float = 1.0

    def next_delay(self, kind: FailureKind, idempotent: bool, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: give up (raise).

        `attempt` counts the attempts made so far (1 after the first), `elapsed` the seconds since
        the first began."""
        if kind is FailureKind.OTHER:
            return None
        if kind is FailureKind.LOST and not idempotent:
            return None
        remaining = self.deadline_s - elapsed
        if remaining <= 0:
            return None
        delay: float = min(self.max_delay_s, self.first_delay_s * 2.0 ** max(0, attempt - 1))
        return min(delay, remaining)


_STARTS_READ = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(select|with|show|values|table)\b",
                          re.IGNORECASE | re.DOTALL)
_WRITES = re.compile(
    r"\b(insert|update|delete|merge|truncate|create|drop|alter|grant|revoke|copy|call|do|lock|into|"
    r"nextval|setval|pg_notify|pg_advisory\w*|pg_try_advisory\w*|pg_terminate_backend|pg_cancel_backend|"
    r"set_config|txid_current|pg_current_xact_id|lo_\w+|dblink\w*|pg_sleep\w*)\b",
    re.IGNORECASE)


def is_read_only(sql: str) -> bool:
    """True for one statement that only reads (safe to run twice); False when unsure."""
    if not _STARTS_READ.match(sql):
        return False
    body = re.sub(r"'(?:[^']|'')*'", "''", sql)  # keywords inside string literals do not count
    if ";" in body.strip().rstrip(";"):
        return False  # several statements
    return _WRITES.search(body) is None


__all__ = ["DatabaseUnavailable", "FailureKind", "RetryPolicy", "classify", "is_read_only"]
