"""Gatekeeper modes of an H.323 endpoint: registered client, or a built-in gatekeeper.

Two asyncio adapters on top of the sans-I/O RAS machines in :mod:`.ras`:

* :class:`RegistrationKeeper` (client mode) keeps an :class:`~.aio.H323Endpoint` registered to
  a gatekeeper: GRQ/RRQ, lightweight keep-alive RRQs by ``timeToLive`` (in :class:`.ras.RasClient`),
  a full re-registration when the gatekeeper forgets us (it restarted: RRJ
  ``fullRegistrationRequired`` or ARJ ``callerNotRegistered``) or stays silent, a fresh RRQ
  when our alias list changes, URQ on stop. While registered, the endpoint asks admission
  (ARQ) before every call and disengages (DRQ) after it; while not registered it calls
  directly (a gatekeeper outage does not stop the conferences).
* :class:`LocalGatekeeper` (server mode) answers RAS on a UDP port with the minimal
  :class:`.ras.Gatekeeper`, so local terminals register and the console can dial them by alias.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..h323.events import MediaAddress
from ..h323.ras import (
    Gatekeeper,
    RasClient,
    RasClientConfig,
    Registered,
    RegistrationLost,
)
from .h323_endpoint import H323Endpoint
from .ras import GatekeeperProtocol, RasClientProtocol

__all__ = ["LocalGatekeeper", "RegistrationKeeper", "resolve_host"]

log = logging.getLogger(__name__)
AliasSource = Callable[[], Awaitable[tuple[str, ...]]]


async def resolve_host(address: MediaAddress) -> MediaAddress:
    """The IPv4 address of ``address.host`` (UDP sends need a literal address)."""
    infos = await asyncio.get_running_loop().getaddrinfo(address.host, address.port,
                                                         family=2, type=2)  # AF_INET, SOCK_DGRAM
    if not infos:
        raise OSError(f"cannot resolve {address.host}")
    return MediaAddress(str(infos[0][4][0]), address.port)


class RegistrationKeeper:
    """Client mode: keep ``endpoint`` registered to the gatekeeper at ``gatekeeper``."""

    def __init__(self, endpoint: H323Endpoint, gatekeeper: MediaAddress, aliases: AliasSource,
                 ras_host: str = "127.0.0.1", ras_port: int = 0, time_to_live: int = 300,
                 retry_delay: float = 5.0, alias_check_interval: float = 30.0) -> None:
        self.endpoint = endpoint
        self.gatekeeper = gatekeeper
        self.aliases = aliases
        self.ras_host, self.ras_port = ras_host, ras_port
        self.time_to_live = time_to_live
        self.retry_delay = retry_delay
        self.alias_check_interval = alias_check_interval
        self.protocol: RasClientProtocol | None = None
        self.registration: Registered | None = None
        self.registrations = 0  # successful (re-)registrations since start
        self.last_error = ""
        self.registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.BaseTransport | None = None

    @property
    def ras_address(self) -> MediaAddress | None:
        """Our bound RAS address (after :meth:`start`)."""
        return self.protocol.client.config.ras_address if self.protocol is not None else None

    async def start(self) -> None:
        """Bind the RAS socket and start registering (in the background: never raises for a
        gatekeeper that is down, it is retried)."""
        loop = asyncio.get_running_loop()
        signal = MediaAddress(self.endpoint.config.signalling_host, self.endpoint.config.signalling_port)
        # Keep-alive RRQ a third of the time to live early (at least 1 s): one lost datagram
        # and its retries still fit before the gatekeeper expires us.
        config = RasClientConfig(await self.aliases(), MediaAddress(self.ras_host, self.ras_port), signal,
                                 is_mcu=self.endpoint.config.is_mcu, time_to_live=self.time_to_live,
                                 keepalive_margin=max(1.0, self.time_to_live / 3))
        protocol = RasClientProtocol(RasClient(config), self.gatekeeper)
        self._transport, _ = await loop.create_datagram_endpoint(lambda: protocol,
                                                                 local_addr=(self.ras_host, self.ras_port))
        bound = self._transport.get_extra_info("sockname")
        config.ras_address = MediaAddress(str(bound[0]), int(bound[1]))
        self.protocol = protocol
        self._task = loop.create_task(self._supervise())

    def forget(self, reason: str) -> None:
        """The gatekeeper does not know us any more (e.g. ARJ callerNotRegistered): register again."""
        if self.protocol is not None and self.registered.is_set():
            self.protocol.events.put_nowait(RegistrationLost(reason))

    async def _supervise(self) -> None:
        assert self.protocol is not None
        protocol = self.protocol
        config = protocol.client.config
        # GRQ and RRQ, each with its retries, plus a margin: then the attempt has failed.
        register_timeout = config.request_timeout * (config.retries + 1) * 2 + 1
        while True:
            protocol.client.config.aliases = await self.aliases()
            try:
                # Resolved on every attempt: a gatekeeper name may not resolve yet, or move.
                protocol.gatekeeper = await resolve_host(self.gatekeeper)
                self.registration = await asyncio.wait_for(protocol.register(), register_timeout)
            except (OSError, TimeoutError) as exc:  # ConnectionError (GRJ/RRJ/silence), name lookup
                self.last_error = str(exc) or "timeout"
                log.warning("H.323 gatekeeper %s: registration failed (%s); retrying in %.0f s",
                            self.gatekeeper, self.last_error, self.retry_delay)
                await asyncio.sleep(self.retry_delay)
                continue
            self.registrations += 1
            self.last_error = ""
            self.endpoint.gatekeeper = protocol
            self.registered.set()
            log.info("H.323 registered to gatekeeper %s as %s (%s)", self.gatekeeper,
                     self.registration.endpoint_id, ", ".join(protocol.client.config.aliases))
            lost = await self._watch(protocol)
            self.endpoint.gatekeeper = None  # direct calls until registered again
            self.registered.clear()
            self.last_error = lost.reason
            log.warning("H.323 gatekeeper registration lost (%s); registering again", lost.reason)

    async def _watch(self, protocol: RasClientProtocol) -> RegistrationLost:
        """Until the registration is lost; re-registers (full RRQ) when the aliases change."""
        while True:
            try:
                event = await asyncio.wait_for(protocol.events.get(), self.alias_check_interval)
            except TimeoutError:
                aliases = await self.aliases()
                if aliases != protocol.client.config.aliases:
                    protocol.client.config.aliases = aliases
                    protocol.client.register(asyncio.get_running_loop().time())
                    protocol.flush()
                continue
            if isinstance(event, RegistrationLost):
                return event

    async def stop(self) -> None:
        """URQ (when registered), then close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.endpoint.gatekeeper = None
        if self.protocol is not None:
            if self.registered.is_set():
                await self.protocol.unregister(1.0)
            self.protocol.close()
        self.registered.clear()


class LocalGatekeeper:
    """Server mode: the built-in gatekeeper on a UDP port."""

    def __init__(self, gatekeeper: Gatekeeper, host: str = "127.0.0.1", port: int = 1719) -> None:
        self.gatekeeper = gatekeeper
        self.host, self.port = host, port
        self._transport: asyncio.BaseTransport | None = None

    async def start(self) -> MediaAddress:
        """Listen for RAS; returns the bound address (``port=0`` picks a free one)."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: GatekeeperProtocol(self.gatekeeper),
                                                                 local_addr=(self.host, self.port))
        bound = self._transport.get_extra_info("sockname")
        self.gatekeeper.ras_address = MediaAddress(str(bound[0]), int(bound[1]))
        return self.gatekeeper.ras_address

    def lookup(self, alias: str) -> MediaAddress | None:
        """Call-signalling address of a registered terminal (None: not registered)."""
        return self.gatekeeper.lookup(alias, asyncio.get_running_loop().time())

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
