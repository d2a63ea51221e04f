"""Asyncio adapter: run a sans-I/O `ControlConnection` over one websocket (`websockets` library).

Either end (the parent's server handler or the child's client) wraps its websocket in a
`ControlSession` and awaits `run()`: it sends our hello, feeds every text frame to the
connection, sends what the connection queues, hands the events to `on_event`, closes the
socket when authentication fails or does not finish within `auth_timeout`, and on any end of
the socket reports `connection_lost()` (remote sites become "unknown"), and turns commands left
unanswered for `command_timeout` into failed `CommandResult`s. The application calls the
connection's methods (`announce_sites`, `send_command(..., at=session.now())`, `reply`...) and
then `flush()`.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from mcu.cascade.control import Authenticated, AuthFailed, ControlConnection, Event, State

log = logging.getLogger(__name__)

EventHandler = Callable[[Event], Awaitable[None] | None]
CLOSE_AUTH_FAILED = 4401


class _Socket(Protocol):
    async def send(self, message: str) -> None: ...
    async def recv(self) -> Any: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class ControlSession:
    def __init__(self, ws: _Socket, conn: ControlConnection, on_event: EventHandler,
                 auth_timeout: float = 5.0) -> None:
        self.ws = ws
        self.conn = conn
        self.on_event = on_event
        self.auth_timeout = auth_timeout
        self.authenticated = asyncio.Event()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    @staticmethod
    def now() -> float:
        """The clock for `send_command(..., at=session.now())` (the loop's monotonic time)."""
        return asyncio.get_running_loop().time()

    async def flush(self) -> None:
        """Send whatever the connection has queued (call after using its methods)."""
        async with self._lock:  # keep frames in order when several tasks send
            for message in self.conn.data_to_send():
                await self.ws.send(message)
        self._wake.set()  # a command may have been sent: re-arm its timeout

    async def run(self) -> None:
        """Serve the channel until either side closes it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.auth_timeout
        expiry = asyncio.create_task(self._expire_commands())
        try:
            self.conn.initiate()
            await self.flush()
            while self._state() is not State.CLOSED:
                if self._state() is State.HANDSHAKE:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        await self._deliver(AuthFailed("认证超时"))
                        await self.ws.close(CLOSE_AUTH_FAILED, "authentication timeout")
                        return
                    try:
                        message = await asyncio.wait_for(self.ws.recv(), remaining)
                    except TimeoutError:
                        continue
                else:
                    message = await self.ws.recv()
                events = self.conn.receive(message)
                await self.flush()
                for event in events:
                    await self._deliver(event)
                if self._state() is State.CLOSED:  # authentication failed
                    await self.ws.close(CLOSE_AUTH_FAILED, "authentication failed")
        except Exception as exc:  # the socket closed or broke: the channel is lost either way
            log.info("cascade control channel to %s ended: %s", self.conn.peer, exc)
        finally:
            expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiry
            was_open = self._state() is State.OPEN
            lost = self.conn.connection_lost()
            if was_open:
                for event in lost:
                    with contextlib.suppress(Exception):
                        await self._deliver(event)

    async def _expire_commands(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = self.conn.next_expiry()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if due is None else max(0.0, due - loop.time()))
            for event in self.conn.expire(loop.time()):
                await self._deliver(event)

    def _state(self) -> State:
        return self.conn.state  # read through a call: receive() changes it behind mypy's back

    async def _deliver(self, event: Event) -> None:
        if isinstance(event, Authenticated):
            self.authenticated.set()
        result = self.on_event(event)
        if inspect.isawaitable(result):
            await result
