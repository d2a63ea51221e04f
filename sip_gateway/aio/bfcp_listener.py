"""The asyncio side of BFCP: the node's BFCP listeners for every conference's floor control server:
TCP (RFC 8856 ``TCP/BFCP``), UDP on the same port number (``UDP/BFCP``, RFC 8855 §6.2, through
:class:`~sip_gateway.bfcp.datagram.DatagramEndpoint`: retransmissions run on a loop timer) and, when
given a TLS server context, TLS over TCP on a second port (``TCP/TLS/BFCP``).

Thin by design: each accepted connection feeds a :class:`~sip_gateway.bfcp.stream.StreamConnection`
(framing, binding to one client, Error answers) and writes what it returns; messages for another
client of the same conference (a FloorStatus to a subscriber) go to that client's connection. The
port comes from the node's one RTP/media port range (``[rtp] port_min/port_max``; TCP, so it never
collides with an RTP/RTCP pair),
so firewalls open one range. A connection that sends what cannot be framed is answered and closed;
at most ``max_connections`` are open at once (more are closed at accept). Time comes from ``clock``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

from ..bfcp.datagram import Datagram, DatagramEndpoint
from ..bfcp.server import Floor, FloorControlServer, Outgoing
from ..bfcp.stream import StreamConnection
from .ports import MAX_TRIES, RTP_PORT_RANGE

log = logging.getLogger(__name__)


class _Connection(asyncio.Protocol):
    def __init__(self, listener: BfcpListener) -> None:
        self.listener = listener
        self.stream = StreamConnection(listener.servers.get)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.stream.peer = str(peer[0]) if peer else None
        if len(self.listener.connections) >= self.listener.max_connections:
            transport.close()
            return
        self.listener.connections.add(self)

    def data_received(self, data: bytes) -> None:
        for conference_id, out in self.stream.data_received(data, self.listener.clock()):
            if conference_id is None or self.stream.user_id in (None, out.user_id):
                self.write(out)
            else:
                self.listener.send(conference_id, out)
        if self.stream.closed and self.transport is not None:
            self.transport.close()

    def write(self, out: Outgoing) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out.data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.transport = None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, listener: BfcpListener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        listener = self.listener
        received = listener.udp.datagram_received(data, (str(addr[0]), int(addr[1])), listener.clock())
        self.send(received.datagrams)
        for conference_id, out in received.elsewhere:
            listener.send_tcp(conference_id, out)
        listener.arm_timer()

    def send(self, datagrams: list[Datagram]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            for datagram in datagrams:
                self.transport.sendto(datagram.data, datagram.address)

    def error_received(self, exc: Exception) -> None:
        log.debug("BFCP UDP: %s", exc)


class BfcpListener:
    def __init__(self, host: str = "127.0.0.1", port_range: tuple[int, int] = RTP_PORT_RANGE, *,
                 clock: Callable[[], float] = time.monotonic, max_connections: int = 512,
                 tls: ssl.SSLContext | None = None, fingerprint: str = "") -> None:
        self.host = host
        self.port_range = port_range
        self.clock = clock
        self.max_connections = max_connections
        self.tls = tls
        self.fingerprint = fingerprint  # "SHA-256 AA:BB:.." of the TLS certificate (RFC 8122 a=fingerprint)
        self.servers: dict[int, FloorControlServer] = {}
        self.connections: set[_Connection] = set()
        self.udp = DatagramEndpoint(self.servers.get)
        self.port = 0  # TCP and UDP
        self.tls_port = 0  # 0: no TLS listener
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._datagrams: _Datagrams | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    async def start(self) -> int:
        """Listen on a free port of the range, TCP and UDP alike, and (with a TLS context) on a second
        TCP port for TLS; returns the first (OSError when none is free)."""
        loop = asyncio.get_running_loop()
        low, high = self.port_range
        for port in random.sample(range(low, high + 1), min(high - low + 1, MAX_TRIES)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
                udp.bind((self.host, port))
            except OSError:
                sock.close()
                udp.close()
                continue
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock)
            _, protocol = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=udp)
            self._datagrams = protocol
            self.port = port
            log.info("BFCP listening on %s:%d (TCP and UDP)", self.host, port)
            if self.tls is not None:
                await self._start_tls(low, high)
            return port
        raise OSError(f"no free TCP+UDP port for BFCP in {self.port_range}")

    async def connect(self, host: str, port: int) -> None:
        """Open the TCP connection to a client that answered ``a=setup:passive`` (it speaks first, as
        over an accepted connection)."""
        async with asyncio.timeout(5):
            await asyncio.get_running_loop().create_connection(lambda: _Connection(self), host, port)

    async def _start_tls(self, low: int, high: int) -> None:
        for port in random.sample(range(low, high + 1), min(high - low + 1, MAX_TRIES)):
            if port == self.port:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            self._tls_server = await asyncio.get_running_loop().create_server(
                lambda: _Connection(self), sock=sock, ssl=self.tls)
            self.tls_port = port
            log.info("BFCP over TLS listening on %s:%d", self.host, port)
            return
        log.error("BFCP over TLS disabled: no free TCP port in %s-%s", low, high)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        self._server = self._tls_server = None
        if self._datagrams is not None and self._datagrams.transport is not None:
            self._datagrams.transport.close()
        self._datagrams = None

    # ---- UDP retransmissions -----------------------------------------------------------------
    def arm_timer(self) -> None:
        """(Re)schedule the UDP side's next retransmission/cache expiry (a timer already due no later
        than that is kept: one timer, not one per datagram)."""
        deadline = self.udp.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._timer_at <= deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._datagrams is not None:
            delay = max(0.0, deadline - self.clock())
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._datagrams is not None:
            self._datagrams.send(self.udp.on_timer(self.clock()))
        self.arm_timer()

    # ---- conferences ----------------------------------------------------------------------------
    def server_for(self, conference_id: int, floor_id: int, floor: Floor) -> FloorControlServer:
        server = self.servers.get(conference_id)
        if server is None or server.floor is not floor:
            server = FloorControlServer(conference_id, floor_id, floor)
            self.servers[conference_id] = server
        return server

    def drop(self, conference_id: int) -> None:
        self.servers.pop(conference_id, None)

    def floor_changed(self, conference_id: int) -> None:
        """The conference's token changed (the chair, a timeout, another protocol): notify clients."""
        server = self.servers.get(conference_id)
        if server is not None:
            for out in server.floor_changed(self.clock()):
                self.send(conference_id, out)

    def remove_client(self, conference_id: int, user_id: int) -> None:
        server = self.servers.get(conference_id)
        self.udp.forget(conference_id, user_id)
        if server is not None:
            for out in server.remove_client(user_id, self.clock()):
                self.send(conference_id, out)
            for connection in list(self.connections):
                if (connection.stream.conference_id, connection.stream.user_id) == (conference_id, user_id) \
                        and connection.transport is not None:
                    connection.transport.close()

    def send(self, conference_id: int, out: Outgoing) -> None:
        """A message for a client: over UDP when the client speaks UDP, else on its TCP/TLS connection."""
        datagram = self.udp.notify(conference_id, out, self.clock())
        if datagram is not None:
            if self._datagrams is not None:
                self._datagrams.send([datagram])
            self.arm_timer()
            return
        self.send_tcp(conference_id, out)

    def send_tcp(self, conference_id: int, out: Outgoing) -> None:
        for connection in self.connections:
            if (connection.stream.conference_id, connection.stream.user_id) == (conference_id, out.user_id):
                connection.write(out)
