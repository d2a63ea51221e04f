"""Thin asyncio adapters around :class:`~sip_gateway.h323.call.Call`.

:class:`H323Endpoint` listens for calls (TCP, 1720 by default) and dials out. Each call is
a :class:`CallHandle` that owns the call-signalling connection, the optional separate
H.245 connection and one timer, and forwards the state machine's events to
``handle.events``. All protocol decisions stay in the sans-I/O state machine.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..h323.call import Call, CallIdentity, EndpointConfig
from ..h323.capabilities import MediaFormat
from ..h323.events import (
    CallIncoming,
    CallReleased,
    Event,
    H245ConnectRequested,
    MediaAddress,
    ProtocolErrorLogged,
)
from ..h323.h239 import H239Message
from ..h323.q931 import Cause
from ..h323.ras import AdmissionRejected
from .ports import RtpPortManager
from .ras import RasClientProtocol

__all__ = ["AdmissionRefused", "CallHandle", "H323Endpoint"]

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)
READ_SIZE = 65536


class AdmissionRefused(ConnectionRefusedError):
    """The gatekeeper answered our ARQ with ARJ (``reason``: the H.225.0 AdmissionRejectReason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"gatekeeper rejected the call: {reason}")
        self.reason = reason


class CallHandle:
    """One call on the wire. Read ``events``; command with :meth:`alert`, :meth:`answer`, ..."""

    def __init__(self, call: Call, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 endpoint: H323Endpoint) -> None:
        self.call = call
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._reader = reader
        self._writer = writer
        self._endpoint = endpoint
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._h245_writer: asyncio.StreamWriter | None = None
        self._h245_server: asyncio.Server | None = None
        self.closed = asyncio.Event()
        # With a gatekeeper, an incoming call must be admitted (ARQ) before it is answered.
        self._admitted: asyncio.Future[bool] = self._loop.create_future()
        if endpoint.gatekeeper is None:
            self._admitted.set_result(True)
        self._disengage_sent = False
        self._spawn(self._read_loop(reader, h245=False))

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _now(self) -> float:
        return self._loop.time()

    def _apply(self, events: list[Event]) -> None:
        """Send pending bytes, forward events, re-arm the timer, close when released."""
        data = self.call.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)
        h245_data = self.call.h245_data_to_send()
        if h245_data and self._h245_writer is not None and not self._h245_writer.is_closing():
            self._h245_writer.write(h245_data)
        for event in events:
            if isinstance(event, ProtocolErrorLogged):
                log.warning("H.323 call %s: %s", self.call.call_id.hex(), event.detail)
            if isinstance(event, H245ConnectRequested):
                self._spawn(self._connect_h245(event.address))
            if isinstance(event, CallIncoming) and self._endpoint.gatekeeper is not None:
                self._spawn(self._admit_incoming())
            if isinstance(event, CallReleased):
                self._disengage()
            self.events.put_nowait(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.call.next_deadline()
        if deadline is not None and not self.call.released:
            self._timer = self._loop.call_at(deadline, self._on_timer)
        if self.call.released:
            self._spawn(self._close())

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self.call.handle_timer(self._now()))

    async def _read_loop(self, reader: asyncio.StreamReader, h245: bool) -> None:
        while not self.call.released:
            try:
                data = await reader.read(READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            if h245:
                self._apply(self.call.receive_h245_data(data, self._now()))
            else:
                self._apply(self.call.receive_data(data, self._now()))
            if not data:
                break

    async def _connect_h245(self, address: MediaAddress) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address.host, address.port), self.call.config.t_h245_connect)
        except (TimeoutError, OSError) as exc:
            log.warning("H.245 connection to %s failed: %s", address, exc)
            self._apply(self.call.release(Cause.DESTINATION_OUT_OF_ORDER, self._now()))
            return
        self._h245_writer = writer
        self._apply(self.call.h245_connected(self._now()))
        self._spawn(self._read_loop(reader, h245=True))

    async def _accept_h245(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._h245_writer is not None or self.call.released:
            writer.close()
            return
        self._h245_writer = writer
        if self._h245_server is not None:
            self._h245_server.close()
        self._apply(self.call.h245_connected(self._now()))
        await self._read_loop(reader, h245=True)

    async def _admit_incoming(self) -> None:
        gatekeeper = self._endpoint.gatekeeper
        assert gatekeeper is not None
        call = self.call
        result = await gatekeeper.admission(call.call_id, call.conference_id, call.call_reference, None, answer=True)
        admitted = not isinstance(result, AdmissionRejected)
        if not self._admitted.done():
            self._admitted.set_result(admitted)
        if not admitted:
            log.warning("gatekeeper refused incoming call %s: %s", call.call_id.hex(), result)
            self._apply(self.call.release(Cause.CALL_REJECTED, self._now()))

    def _disengage(self) -> None:
        gatekeeper = self._endpoint.gatekeeper
        admitted = self._admitted.done() and self._admitted.result()
        if gatekeeper is not None and admitted and not self._disengage_sent:
            self._disengage_sent = True
            gatekeeper.disengage(self.call.call_id, self.call.conference_id, self.call.call_reference,
                                 answered=not self.call.outgoing)

    async def _close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._h245_server is not None:
            self._h245_server.close()
        for writer in (self._writer, self._h245_writer):
            if writer is None:
                continue
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        self._endpoint.calls.discard(self)

    # ------------------------------------------------------------------ commands

    def alert(self) -> None:
        self._apply(self.call.alert(self._now()))

    async def answer(self) -> None:
        """Accept the call (after the gatekeeper's admission, if there is one); without
        tunnelling, first open the H.245 listener."""
        if not await self._admitted or self.call.released:
            return
        address: MediaAddress | None = None
        if not self.call.tunnelling:
            host = self.call.config.signalling_host
            self._h245_server = await asyncio.start_server(self._accept_h245, host, self.call.config.h245_port)
            port = self._h245_server.sockets[0].getsockname()[1]
            address = MediaAddress(host, port)
        self._apply(self.call.answer(self._now(), address))

    def release(self, cause: int = Cause.NORMAL_CALL_CLEARING, h225_reason: str | None = None) -> None:
        self._apply(self.call.release(cause, self._now(), h225_reason))

    def send_user_input(self, text: str, signal: bool = True) -> None:
        self._apply(self.call.send_user_input(text, self._now(), signal=signal))

    def request_fast_update(self, channel: int) -> None:
        self._apply(self.call.request_fast_update(channel, self._now()))

    def flow_control(self, channel: int | None, bitrate_bps: int | None) -> None:
        self._apply(self.call.flow_control(channel, bitrate_bps, self._now()))

    def send_h239(self, message: H239Message) -> None:
        self._apply(self.call.send_h239(message, self._now()))

    def open_content_channel(self, fmt: MediaFormat) -> None:
        self._apply(self.call.open_content_channel(fmt, self._now()))

    def close_channel(self, number: int) -> None:
        self._apply(self.call.close_channel(number, self._now()))

    def pause_media(self) -> None:
        self._apply(self.call.pause_media(self._now()))

    def resume_media(self) -> None:
        self._apply(self.call.resume_media(self._now()))

    async def wait_for(self, kind: type[E], seconds: float = 10.0) -> E:
        """Next event of type ``kind`` (earlier events of other types are dropped)."""
        async with asyncio.timeout(seconds):
            while True:
                event = await self.events.get()
                if isinstance(event, kind):
                    return event
                if isinstance(event, CallReleased) and kind is not CallReleased:
                    raise ConnectionAbortedError(f"call released (cause {event.cause}) while waiting for {kind}")

    async def wait_closed(self, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            await self.closed.wait()


class H323Endpoint:
    """Our H.323 entity: a listener plus a dialler sharing one configuration."""

    def __init__(self, config: EndpointConfig, on_incoming: Callable[[CallHandle], None] | None = None,
                 ports: RtpPortManager | None = None, rng: random.Random | None = None,
                 gatekeeper: RasClientProtocol | None = None) -> None:
        self.config = config
        self.gatekeeper = gatekeeper  # registered RAS client, or None (no gatekeeper: the default)
        self.on_incoming = on_incoming
        self.ports = ports or RtpPortManager()  # numbers only: media is the caller's business
        self.rng = rng or random.SystemRandom()
        self.calls: set[CallHandle] = set()
        self._server: asyncio.Server | None = None

    async def listen(self, host: str = "127.0.0.1", port: int = 1720) -> MediaAddress:
        """Start accepting calls; returns the bound address (``port=0`` picks a free one)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        bound = self._server.sockets[0].getsockname()
        self.config.signalling_host, self.config.signalling_port = bound[0], bound[1]
        return MediaAddress(bound[0], bound[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        call = Call.incoming_call(self.config, self.ports.allocate(), random.Random(self.rng.getrandbits(64)))
        handle = CallHandle(call, reader, writer, self)
        self.calls.add(handle)
        if self.on_incoming is not None:
            self.on_incoming(handle)

    async def dial(self, address: MediaAddress | None, destination: str | None = None,
                   connect_seconds: float = 10.0, config: EndpointConfig | None = None) -> CallHandle:
        """Open the call-signalling connection and send Setup (``config``: this call's own, e.g. a
        capability set whose video ``maxBitRate`` fits the line of the site called; None: the endpoint's).

        With a gatekeeper the call is admitted first (ARQ) and ``address`` may be None: the
        gatekeeper resolves ``destination`` (an alias or E.164 number) to an address.
        Raises :class:`AdmissionRefused` (a ConnectionRefusedError) when the gatekeeper rejects
        the call.
        """
        loop = asyncio.get_running_loop()
        rng = random.Random(self.rng.getrandbits(64))
        identity = CallIdentity.random(rng)
        if self.gatekeeper is not None:
            result = await self.gatekeeper.admission(identity.call_id, identity.conference_id,
                                                     identity.call_reference, destination, answer=False,
                                                     destination_address=address)
            if isinstance(result, AdmissionRejected):
                raise AdmissionRefused(result.reason)
            address = result.destination
        if address is None:
            raise ValueError("no address to dial and no gatekeeper to ask")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address.host, address.port), connect_seconds)
        call = Call.outgoing_call(config or self.config, destination, address, self.ports.allocate(), loop.time(), rng,
                                  identity=identity)
        handle = CallHandle(call, reader, writer, self)
        if self.gatekeeper is not None and not handle._admitted.done():
            handle._admitted.set_result(True)
        self.calls.add(handle)
        handle._apply([])
        return handle

    async def close(self) -> None:
        """Release every call and stop listening."""
        for handle in list(self.calls):
            handle.release(Cause.NORMAL_CALL_CLEARING)
            with contextlib.suppress(TimeoutError):
                await handle.wait_closed(2.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
