"""asyncio UDP adapters for the sans-I/O H.225.0 RAS machines in :mod:`sip_gateway.h323.ras`.

:class:`GatekeeperProtocol` serves a :class:`~sip_gateway.h323.ras.Gatekeeper`;
:class:`RasClientProtocol` drives a :class:`~sip_gateway.h323.ras.RasClient` (timers, admission
futures, an event queue). Both feed the machines the loop's clock and set the wall-clock offset
the H.235.1 timestamps need.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

from ..h323.events import MediaAddress
from ..h323.ras import AdmissionConfirmed, AdmissionRejected, Gatekeeper, RasClient, RasEvent, Registered

__all__ = ["GatekeeperProtocol", "RasClientProtocol"]



class GatekeeperProtocol(asyncio.DatagramProtocol):
    """UDP adapter for :class:`Gatekeeper`."""

    def __init__(self, gatekeeper: Gatekeeper) -> None:
        self.gatekeeper = gatekeeper
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport is not a DatagramTransport subclass, but has its API.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = asyncio.get_running_loop().time()
        self.gatekeeper.clock_offset = time.time() - now
        for reply, destination in self.gatekeeper.receive_datagram(data, MediaAddress(str(addr[0]), addr[1]), now):
            if self.transport is not None:
                self.transport.sendto(reply, (destination.host, destination.port))


class RasClientProtocol(asyncio.DatagramProtocol):
    """UDP adapter for :class:`RasClient`; events go to ``events``."""

    def __init__(self, client: RasClient, gatekeeper: MediaAddress) -> None:
        self.client = client
        self.gatekeeper = gatekeeper
        self.events: asyncio.Queue[RasEvent] = asyncio.Queue()
        self._admissions: dict[bytes, asyncio.Future[AdmissionConfirmed | AdmissionRejected]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._unregistered: asyncio.Event | None = None  # set by the UCF while unregistering

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport is not a DatagramTransport subclass, but has its API.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.client.config.clock_offset = time.time() - asyncio.get_running_loop().time()  # H.235.1 timestamps

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.client.receive_datagram(data, asyncio.get_running_loop().time())
        if self._unregistered is not None and self.client.endpoint_id is None:
            self._unregistered.set()  # UCF
        self.flush()

    def flush(self) -> None:
        """Send queued datagrams, forward events and re-arm the timer."""
        loop = asyncio.get_running_loop()
        if self.transport is not None and not self.transport.is_closing():
            for datagram in self.client.datagrams_to_send():
                self.transport.sendto(datagram, (self.gatekeeper.host, self.gatekeeper.port))
        for event in self.client.take_events():
            if isinstance(event, AdmissionConfirmed | AdmissionRejected):
                future = self._admissions.pop(event.call_id, None)
                if future is not None and not future.done():
                    future.set_result(event)
                    continue
            self.events.put_nowait(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.client.next_deadline()
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.client.handle_timer(asyncio.get_running_loop().time())
        self.flush()

    async def register(self) -> Registered:
        """GRQ + RRQ; raises ConnectionError when the gatekeeper refuses or stays silent."""
        self.client.discover(asyncio.get_running_loop().time())
        self.flush()
        event = await self.events.get()
        if not isinstance(event, Registered):
            raise ConnectionError(f"registration failed: {event}")
        return event

    async def admission(self, call_id: bytes, conference_id: bytes, call_reference: int,
                        destination: str | None, answer: bool,
                        destination_address: MediaAddress | None = None) -> AdmissionConfirmed | AdmissionRejected:
        """ARQ for one call; resolves with the gatekeeper's ACF or ARJ (or a timeout ARJ).

        ``destination`` is the alias to call, ``destination_address`` the address when the
        caller knows it (the gatekeeper resolves the alias first, then uses the address)."""
        future: asyncio.Future[AdmissionConfirmed | AdmissionRejected] = (
            asyncio.get_running_loop().create_future())
        self._admissions[call_id] = future
        try:
            self.client.admit(call_id, conference_id, call_reference, destination, destination_address, answer,
                              asyncio.get_running_loop().time())
        except RuntimeError:  # registration lost meanwhile
            self._admissions.pop(call_id, None)
            return AdmissionRejected(call_id, "callerNotRegistered")
        self.flush()
        return await future

    async def unregister(self, seconds: float = 1.0) -> bool:
        """URQ; True when the gatekeeper confirmed within ``seconds``."""
        if self.client.endpoint_id is None or self.transport is None:
            return False
        self._unregistered = asyncio.Event()
        self.client.unregister(asyncio.get_running_loop().time())
        self.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._unregistered.wait(), seconds)
        return self.client.endpoint_id is None

    def disengage(self, call_id: bytes, conference_id: bytes, call_reference: int, answered: bool) -> None:
        """DRQ (fire and forget: the client retries on its own)."""
        if self.client.endpoint_id is not None:
            self.client.disengage(call_id, conference_id, call_reference, answered,
                                  asyncio.get_running_loop().time())
            self.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()
            self.transport = None
