"""Digest authentication of the requests we receive (REGISTER, INVITE), with the throttle.

:class:`Authenticator` checks a request's Authorization against the registrar accounts
(:class:`~.digest.DigestServer`) after asking the failure throttle (:mod:`.authguard`) whether
its source or username is blocked, and counts the outcome.
"""

from __future__ import annotations

import logging

from . import events as ev
from .authguard import AuthThrottle
from .digest import AuthResult, DigestServer, claimed_username
from .transaction import ServerTransaction
from .ua_core import Output, UserAgentCore

log = logging.getLogger(__name__)


class Authenticator:
    """Digest checks and challenges for the UAS and the registrar."""

    def __init__(self, core: UserAgentCore, digest: DigestServer, throttle: AuthThrottle) -> None:
        self.core = core
        self.digest = digest
        self.throttle = throttle

    def challenges(self, now: float, stale: bool = False) -> list[tuple[str, str]]:
        """WWW-Authenticate headers for a 401."""
        return [("WWW-Authenticate", c) for c in self.digest.challenges(now, stale)]

    def throttled(self, tx: ServerTransaction, header: str | None, now: float) -> list[Output] | None:
        """403 with Retry-After when this attempt's source/username is blocked (see :mod:`.authguard`).

        Checked before the password, so a blocked guesser is refused even with the right one.
        """
        if not header:
            return None
        verdict = self.throttle.check(tx.flow.host, claimed_username(header), now)
        if verdict.allowed:
            return None
        retry = max(1, int(verdict.retry_after + 0.999))
        return self.core.reject(tx, 403, "Too many failed authentications", [("Retry-After", str(retry))])

    def outcome(self, tx: ServerTransaction, result: AuthResult, now: float) -> list[Output]:
        """Count a verified answer in the throttle; AuthThrottled events for blocks it starts."""
        source = tx.flow.host
        if result.ok and result.username is not None:
            self.throttle.success(source, result.username, now)
            return []
        if not result.guessed:
            return []
        log.info("digest authentication failed for %r from %s: %s",
                 result.username, tx.flow.address, result.reason)
        out: list[Output] = []
        for engaged in self.throttle.failure(source, result.username, now):
            log.warning("SIP digest failures: %s %r from %s blocked for %.0f s after %d failures",
                        engaged.scope, engaged.account, source, engaged.blocked_for, engaged.failures)
            out.append(ev.AuthThrottled(tx.flow, tx.request.method, engaged.account, engaged.scope,
                                        engaged.failures, engaged.blocked_for))
        return out

    def verify(self, tx: ServerTransaction, header: str, now: float) -> tuple[AuthResult, list[Output]]:
        """Check ``header`` for ``tx``'s method and count the outcome."""
        result = self.digest.verify(header, tx.request.method, now)
        return result, self.outcome(tx, result, now)

    def authenticate(self, tx: ServerTransaction, now: float) -> tuple[str | None, list[Output]]:
        """Check Authorization; on failure return the 401 (or the throttle's 403) to send."""
        header = tx.request.headers.get("Authorization")
        refused = self.throttled(tx, header, now)
        if refused is not None:
            return None, refused
        result = self.digest.verify(header, tx.request.method, now)
        notes = self.outcome(tx, result, now)
        if result.ok:
            return result.username, notes
        if header and not result.guessed:
            log.info("digest authentication failed for %r from %s: %s",
                     result.username, tx.flow.address, result.reason)
        return None, notes + self.core.reject(tx, 401, extra=self.challenges(now, result.stale))
