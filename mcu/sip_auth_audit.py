"""Audit entries for the SIP registrar's digest-failure throttle.

The SIP core (``sip_gateway``, which imports nothing of ``core``) reports each block it starts as
an :class:`~sip_gateway.sip.events.AuthThrottled` event; this listener writes one
``sip.auth.throttled`` audit row per event through any :class:`AuditWriter` (``core.audit``).
One row per block, not per refused attempt, so a guesser cannot flood the audit log.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

from sip_gateway.sip import events as ev

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^0-9A-Za-z._+\-@]")


class AuditWriter(Protocol):
    """What this listener needs of the audit log (``core.audit.AuditLog`` fits)."""

    async def record(self, actor: str, action: str, target: str = "", *, outcome: str = "ok",
                     source: str = "", detail: dict[str, Any] | None = None) -> int: ...


class SipAuthAudit:
    """Endpoint listener: ``endpoint.listeners.append(SipAuthAudit(core.audit).on_event)``."""

    def __init__(self, audit: AuditWriter) -> None:
        self.audit = audit
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, event: ev.Event) -> None:
        if not isinstance(event, ev.AuthThrottled):
            return
        task = asyncio.get_running_loop().create_task(self._write(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, event: ev.AuthThrottled) -> None:
        # The username is the guesser's choice: keep it short and plain (NUL and the like never reach SQL).
        user = _UNSAFE.sub("_", event.username)[:64] or "-"
        try:
            await self.audit.record(
                f"sip:{user}", "sip.auth.throttled", user, outcome="denied", source=event.flow.host,
                detail={"scope": event.scope, "method": event.method, "failures": event.failures,
                        "blocked_seconds": round(event.blocked_for, 1), "transport": event.flow.transport})
        except Exception:  # noqa: BLE001 - an audit outage must not stop SIP; it is logged loudly
            log.exception("cannot audit a SIP authentication throttle for %s from %s", user, event.flow.host)

    async def drain(self) -> None:
        """Wait for the audit rows still being written (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
