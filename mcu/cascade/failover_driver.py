"""Asyncio adapter for `FailoverLink`: the event-loop clock, the timers and the call actions.

The owner reports what it sees with `observe(kind, route, detail)` (stamped with the loop's
monotonic clock); the driver feeds the link, runs `tick` at `next_deadline()`, performs the
resulting `Dial`/`Hangup` actions one at a time, in order, through a `PathDialer` (the SIP
cascade leg, once it exists), and hands every new `PathEvent` to `on_event` (bus + audit).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from core.tasks import cancel_and_wait
from mcu.cascade.failover import (
    Action,
    Dial,
    FailoverLink,
    Hangup,
    Observation,
    ObservationKind,
    PathEvent,
    Route,
)

log = logging.getLogger(__name__)


class PathDialer(Protocol):
    async def dial(self, route: Route, target: str) -> None:
        """Start a call on `route`; its outcome comes back as CALL_UP / CALL_FAILED."""

    async def hangup(self, route: Route, reason: str) -> None: ...


class FailoverDriver:
    def __init__(self, link: FailoverLink, dialer: PathDialer,
                 on_event: Callable[[PathEvent], None] = lambda e: None) -> None:
        self.link = link
        self.dialer = dialer
        self.on_event = on_event
        self._wake = asyncio.Event()
        self._actions: asyncio.Queue[Action] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._published = 0

    def start(self) -> None:
        """Start the timer and action tasks and dial the primary."""
        loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._timers()), asyncio.create_task(self._perform())]
        self._apply(self.link.start(loop.time()))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    def observe(self, kind: ObservationKind, route: Route, detail: str = "") -> None:
        """Report one observation now (synchronous: safe from any callback on the loop)."""
        now = asyncio.get_running_loop().time()
        self._apply(self.link.observe(Observation(kind, route, now, detail)))

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            self._actions.put_nowait(action)
        # The history is bounded, so new events are counted, not compared.
        fresh = self.link.events_total - self._published
        self._published = self.link.events_total
        for event in list(self.link.history)[-fresh:] if fresh > 0 else []:
            try:
                self.on_event(event)
            except Exception:
                log.exception("cascade path event handler failed")
        self._wake.set()

    async def _timers(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self.link.next_deadline()
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            now = loop.time()
            due = self.link.next_deadline()
            if due is not None and now >= due:
                try:
                    self._apply(self.link.tick(now))
                except Exception:  # the timers must outlive one bad tick, or failures go unnoticed
                    log.exception("cascade link tick failed")
                    await asyncio.sleep(0.1)

    async def _perform(self) -> None:
        while True:
            action = await self._actions.get()
            try:
                if isinstance(action, Dial):
                    await self.dialer.dial(action.route, action.target)
                elif isinstance(action, Hangup):
                    await self.dialer.hangup(action.route, action.reason)
            except Exception as exc:  # a dial that cannot even start is a failed call
                log.warning("cascade %s on %s failed: %s", type(action).__name__, action.route.value, exc)
                if isinstance(action, Dial):
                    self.observe(ObservationKind.CALL_FAILED, action.route, str(exc)[:200])
