"""asyncio adapter for the sans-I/O :class:`~.useragent.UserAgent`: UDP, TCP and TLS sockets,
timers (``loop.call_later``) and event dispatch. No SIP logic lives here.

The application decides on incoming calls with coroutines that return an :class:`Answer`,
:class:`Reject` or :class:`Challenge`; ``router`` (:mod:`.invite_router`) picks the one for each
INVITE (``on_invite`` given to the constructor is its default); every event is also given to the
listeners and kept in a queue that tests (and the MCU glue) can await.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from ..rtp.media_description import LocalMedia
from ..sip import events as ev
from ..sip.actions import CancelTimer, Flow, Send, StartTimer, TimerKey
from ..sip.dialog import Call, ClientRegistration
from ..sip.digest import Credentials
from ..sip.errors import SipParseError
from ..sip.invite_router import InviteRouter
from ..sip.message import StreamFramer
from ..sip.useragent import Output, UserAgent, UserAgentConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """Accept the call with these local media ports (ring first if ``ring``)."""

    local: LocalMedia


@dataclass(frozen=True)
class Reject:
    """Refuse the call."""

    status: int = 486
    reason: str | None = None


@dataclass(frozen=True)
class Challenge:
    """Ask the caller for digest credentials (401)."""


Decision = Answer | Reject | Challenge | None
InviteHandler = Callable[[Call], Awaitable[Decision]]


async def _default_invite(call: Call) -> Decision:
    return Reject(480, "No application")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        self.endpoint.feed(data, Flow("udp", host, port))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class SipEndpoint:
    """Runs a :class:`UserAgent` on real sockets."""

    def __init__(self, config: UserAgentConfig | None = None, on_invite: InviteHandler | None = None,
                 tls_context: ssl.SSLContext | None = None, client_tls_context: ssl.SSLContext | None = None,
                 tls_port: int | None = None) -> None:
        self.ua = UserAgent(config)
        self.router: InviteRouter[InviteHandler] = InviteRouter((), on_invite or _default_invite)
        self.listeners: list[Callable[[ev.Event], None]] = []
        self.events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self.sent: list[tuple[Flow, bytes]] = []  # kept short; handy for debugging tests
        self._udp: _Udp | None = None
        self._servers: list[asyncio.Server] = []
        self._streams: dict[Flow, asyncio.StreamWriter] = {}
        self._timers: dict[TimerKey, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.tls_context = tls_context
        self.client_tls_context = client_tls_context
        self.tls_port = tls_port

    @property
    def config(self) -> UserAgentConfig:
        """The user agent's configuration."""
        return self.ua.config

    @staticmethod
    def now() -> float:
        """The monotonic clock given to the core."""
        return time.monotonic()

    async def start(self, udp: bool = True, tcp: bool = True) -> None:
        """Bind the listeners (port 0 picks a free port and updates the config).

        UDP and TCP share one port number. With port 0 the UDP port the kernel picks may
        already be taken for TCP (by any connection's local end), so a few fresh picks are tried.
        """
        wanted = self.config.port
        for attempt in range(20):
            try:
                await self._bind(wanted, udp, tcp)
                break
            except OSError as exc:
                if wanted != 0 or exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise
        if self.tls_context is not None:
            await self.start_tls(self.tls_context, self.tls_port or 0)

    async def start_tls(self, context: ssl.SSLContext, port: int) -> int:
        """Listen for SIP over TLS on ``port`` (0: any free port); returns the bound port.

        Separate from :meth:`start` so a node whose TLS port is taken still serves UDP/TCP.
        """
        server = await asyncio.start_server(
            lambda r, w: self._serve_stream(r, w, "tls"), self.config.host, port, ssl=context,
        )
        self._servers.append(server)
        self.tls_context = context
        self.tls_port = server.sockets[0].getsockname()[1]
        self.config.tls_port = self.tls_port
        return self.tls_port

    async def _bind(self, port: int, udp: bool, tcp: bool) -> None:
        """Bind UDP then TCP on `port` (0: the UDP pick); undo the UDP bind if TCP fails."""
        loop = asyncio.get_running_loop()
        host = self.config.host
        transport: asyncio.DatagramTransport | None = None
        if udp:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(host, port)
            )
            port = transport.get_extra_info("sockname")[1]
        if tcp:
            try:
                server = await asyncio.start_server(
                    lambda r, w: self._serve_stream(r, w, "tcp"), host, port
                )
            except OSError:
                if transport is not None:
                    transport.close()
                raise
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        if transport is not None:
            self._udp = protocol
        self.config.port = port

    async def close(self) -> None:
        """Stop listeners, timers and connections."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            server.close()
        for writer in list(self._streams.values()):
            writer.close()
        self._streams.clear()
        if self._udp and self._udp.transport:
            self._udp.transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    # ------------------------------------------------------------------ I/O

    def feed(self, data: bytes, flow: Flow) -> None:
        """Hand received bytes to the core and execute what it returns."""
        try:
            outputs = self.ua.receive(data, flow, self.now())
        except SipParseError as exc:  # defensive: the core should not raise on bad input
            log.warning("unhandled parse error from %s: %s", flow.address, exc.reason)
            return
        except Exception:  # noqa: BLE001 - one bad message must never stop the endpoint
            log.exception("SIP core failed on a message from %s", flow.address)
            return
        self.process(outputs)

    async def _serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            transport: str) -> None:
        peer = writer.get_extra_info("peername")
        flow = Flow(transport, str(peer[0]), int(peer[1]))
        self._streams[flow] = writer
        await self._read_stream(reader, flow)

    async def _read_stream(self, reader: asyncio.StreamReader, flow: Flow) -> None:
        framer = StreamFramer(self.config.max_message_size)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    frames = framer.feed(data)
                except SipParseError as exc:
                    log.warning("closing %s stream from %s: %s", flow.transport, flow.address, exc.reason)
                    break
                for frame in frames:
                    self.feed(frame, flow)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer = self._streams.pop(flow, None)
            if writer is not None:
                writer.close()

    def _send(self, flow: Flow, data: bytes) -> None:
        self.sent.append((flow, data))
        del self.sent[:-50]
        if flow.transport == "udp":
            if self._udp and self._udp.transport:
                self._udp.transport.sendto(data, flow.address)
            return
        writer = self._streams.get(flow)
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        self._spawn(self._connect_and_send(flow, data))

    async def _connect_and_send(self, flow: Flow, data: bytes) -> None:
        try:
            context = self.client_tls_context if flow.transport == "tls" else None
            if flow.transport == "tls" and context is None:
                context = ssl.create_default_context()
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(flow.host, flow.port, ssl=context), 5.0
            )
        except (OSError, TimeoutError) as exc:
            log.info("cannot connect to %s %s: %s", flow.transport, flow.address, exc)
            return
        self._streams[flow] = writer
        writer.write(data)
        await self._read_stream(reader, flow)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ actions and events

    def process(self, outputs: list[Output]) -> None:
        """Execute actions and dispatch events returned by the core."""
        loop = asyncio.get_running_loop()
        for item in outputs:
            if isinstance(item, Send):
                self._send(item.flow, item.data)
            elif isinstance(item, StartTimer):
                old = self._timers.pop(item.key, None)
                if old:
                    old.cancel()
                self._timers[item.key] = loop.call_later(item.delay, self._fire, item.key)
            elif isinstance(item, CancelTimer):
                handle = self._timers.pop(item.key, None)
                if handle:
                    handle.cancel()
            else:
                self._dispatch(item)

    def _fire(self, key: TimerKey) -> None:
        self._timers.pop(key, None)
        try:
            self.process(self.ua.on_timer(key, self.now()))
        except Exception:  # noqa: BLE001
            log.exception("SIP timer %s failed", key)

    def _dispatch(self, event: ev.Event) -> None:
        if isinstance(event, ev.IncomingCall):
            self._spawn(self._decide(event.call))
        self.events.put_nowait(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001
                log.exception("SIP event listener failed")

    async def _decide(self, call: Call) -> None:
        try:
            decision = await self.router.handler_for(call)(call)
        except Exception:  # noqa: BLE001
            log.exception("INVITE handler failed")
            decision = Reject(500, "Application error")
        if isinstance(decision, Answer):
            self.process(self.ua.answer(call, decision.local, self.now()))
        elif isinstance(decision, Reject):
            self.process(self.ua.reject(call, decision.status, decision.reason))
        elif isinstance(decision, Challenge):
            self.process(self.ua.challenge(call, self.now()))

    async def wait_for(self, kind: type[ev.Event], within: float = 5.0,
                       predicate: Callable[[ev.Event], bool] | None = None) -> ev.Event:
        """Wait for the next event of ``kind`` (others are discarded)."""
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                if isinstance(event, kind) and (predicate is None or predicate(event)):
                    return event

    def peer_certificate(self, flow: Flow) -> bytes | None:
        """DER of the certificate the TLS peer on ``flow`` presented (None: not TLS, none sent, gone)."""
        if flow.transport != "tls":
            return None
        writer = self._streams.get(flow)
        ssl_object = writer.get_extra_info("ssl_object") if writer is not None else None
        if ssl_object is None:
            return None
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der or None

    # ------------------------------------------------------------------ application API

    def invite(self, target: str, local: LocalMedia | None, credentials: Credentials | None = None,
               flow: Flow | None = None, from_user: str | None = None) -> Call:
        """Place a call."""
        call, outputs = self.ua.invite(target, local, flow, credentials, from_user)
        self.process(outputs)
        return call

    def invite_registered(self, user: str, local: LocalMedia | None,
                          credentials: Credentials | None = None) -> Call | None:
        """Call the most recently registered contact of ``user`` (None if not registered)."""
        bindings = self.ua.bindings.lookup_user(user, self.now())
        if not bindings:
            return None
        binding = max(bindings, key=lambda b: b.expires_at)
        flow = binding.flow if binding.flow.reliable else None
        return self.invite(binding.contact, local, credentials, flow)

    def hangup(self, call: Call) -> None:
        """End a call (CANCEL or BYE)."""
        self.process(self.ua.hangup(call))

    def hold(self, call: Call, on_hold: bool = True) -> None:
        """Put the peer on hold (re-INVITE sendonly) or take it off hold."""
        self.process(self.ua.reinvite(call, "sendonly" if on_hold else "sendrecv"))

    def ask_video_size(self, call: Call, size: tuple[int, int]) -> bool:
        """Re-INVITE asking the peer to send ``size`` (imageattr); False if one is already pending."""
        if call.reinvite_pending:
            return False
        self.process(self.ua.reinvite(call, "sendrecv", size))
        return call.reinvite_pending

    def request_fast_update(self, call: Call) -> None:
        """Ask the peer for a key frame by SIP INFO."""
        self.process(self.ua.request_fast_update(call))

    def send_dtmf_info(self, call: Call, digit: str) -> None:
        """Send a DTMF digit by SIP INFO."""
        self.process(self.ua.send_dtmf_info(call, digit))

    def register(self, registrar: str, aor: str, credentials: Credentials | None = None,
                 expires: int = 600) -> ClientRegistration:
        """Register with an upstream registrar and keep the registration fresh."""
        reg, outputs = self.ua.register(registrar, aor, credentials, expires)
        self.process(outputs)
        return reg

    def unregister(self, reg: ClientRegistration) -> None:
        """Remove our registration."""
        self.process(self.ua.unregister(reg))

    def qualify(self, target: str, interval: float | None = None) -> None:
        """Send OPTIONS (periodically when ``interval`` is given)."""
        self.process(self.ua.options(target, interval=interval))
