"""The asyncio side of far-end camera control: one H.224 RTP channel (RFC 4573 / H.323 Annex Q).

:class:`H224Channel` binds an RTP/RTCP port pair from the one port manager
(:class:`~sip_gateway.aio.ports.RtpPortManager`), carries each H.224 frame in one RTP packet of
the negotiated payload type (clock 4800 Hz) and drives a :class:`~sip_gateway.h224.FeccSession`
with the loop's clock. RTP packets of another payload type, RTCP and datagrams that are not RTP
are dropped and counted (:attr:`H224Channel.dropped`, with what the session dropped), never raised.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from typing import Any, cast

from aiortc.rtp import RtpPacket

from ..h224 import Action, FarEndRequest, FeccCapabilities, FeccSession, Learned, Send
from ..h224.session import Output
from .ports import RTP_PORT_RANGE, RtpPortManager

__all__ = ["H224_CLOCK", "H224Channel"]

log = logging.getLogger(__name__)

H224_CLOCK = 4800


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, channel: H224Channel, rtcp: bool) -> None:
        self.channel = channel
        self.rtcp = rtcp
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.rtcp:
            self.channel.on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("H.224 socket error: %s", exc)


class H224Channel:
    """One call's H.224 channel: our RTP port, the far end's address, the FECC session."""

    def __init__(self, session: FeccSession | None = None) -> None:
        self.session = session or FeccSession()
        self.port = 0
        self.payload_type: int | None = None  # what we send (and accept)
        self.receive_payload_type: int | None = None  # also accepted: the far end's own (H.323: its OLC's)
        self.remote: tuple[str, int] | None = None
        self.on_capabilities: Callable[[FeccCapabilities], None] | None = None
        self.far_end_requests: list[FarEndRequest] = []  # the far end steering us (kept: last 16)
        self.dropped_rtp = 0
        self.packets_sent = 0
        self._rtp: _Socket | None = None
        self._rtcp: _Socket | None = None
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._poll: asyncio.TimerHandle | None = None
        self._closed = False

    @classmethod
    async def allocate(cls, host: str, port_range: tuple[int, int] = RTP_PORT_RANGE,
                       session: FeccSession | None = None) -> H224Channel:
        """Bind a port pair in ``port_range`` (OSError when none is free)."""
        channel = cls(session)
        channel.port, channel._rtp, channel._rtcp = await RtpPortManager(None, *port_range).open_pair(
            host, lambda rtcp: _Socket(channel, rtcp))
        return channel

    @classmethod
    async def adopt(cls, pair: tuple[socket.socket, socket.socket], port: int,
                    session: FeccSession | None = None) -> H224Channel:
        """Wrap a pair the port manager already bound (:meth:`RtpPortManager.allocate`, an H.323 call's
        H.224 session) into a channel."""
        channel = cls(session)
        loop = asyncio.get_running_loop()
        _, channel._rtp = await loop.create_datagram_endpoint(lambda: _Socket(channel, False), sock=pair[0])
        _, channel._rtcp = await loop.create_datagram_endpoint(lambda: _Socket(channel, True), sock=pair[1])
        channel.port = port
        return channel

    @property
    def dropped(self) -> int:
        """Datagrams and H.224 frames dropped as garbage."""
        return self.dropped_rtp + self.session.dropped

    @property
    def started(self) -> bool:
        """The far end's address and payload type are known."""
        return self.remote is not None and self.payload_type is not None

    def start(self, remote_host: str, remote_port: int, payload_type: int) -> None:
        """Negotiated: send to ``remote_host:remote_port`` with ``payload_type``; say hello (CME)."""
        first = not self.started
        self.remote, self.payload_type = (remote_host, remote_port), payload_type
        if first and not self._closed:
            self._send(self.session.start(self._now()))
            self._schedule_poll()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _schedule_poll(self) -> None:
        due = self.session.next_poll()
        if due is None or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._poll = loop.call_at(due, self._on_poll)

    def _on_poll(self) -> None:
        self._poll = None
        self._send(self.session.poll(self._now()))
        self._schedule_poll()

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """An RTP datagram on our port."""
        if len(data) > 1 and 192 <= data[1] <= 223:
            return  # RTCP on a muxed port: nothing to learn
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.dropped_rtp += 1
            return
        if packet.payload_type not in {self.payload_type, self.receive_payload_type} - {None}:
            self.dropped_rtp += 1
            return
        self._apply(self.session.receive(packet.payload, self._now()))

    def _apply(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._send([out.payload])
            elif isinstance(out, Learned):
                log.info("far end camera: %s", out.capabilities)
                if self.on_capabilities is not None:
                    self.on_capabilities(out.capabilities)
            else:
                self.far_end_requests = [*self.far_end_requests[-15:], out]

    def _send(self, payloads: list[bytes]) -> None:
        if self._rtp is None or self._rtp.transport is None or not self.started or self._closed:
            return
        assert self.remote is not None and self.payload_type is not None
        timestamp = int(self._now() * H224_CLOCK) & 0xFFFFFFFF
        for payload in payloads:
            packet = RtpPacket(payload_type=self.payload_type, marker=1, sequence_number=self._sequence,
                               timestamp=timestamp, ssrc=self._ssrc, payload=payload)
            self._sequence = (self._sequence + 1) & 0xFFFF
            self._rtp.transport.sendto(packet.serialize(), self.remote)
            self.packets_sent += 1

    # ------------------------------------------------------------------ steering (the chair)

    def start_action(self, action: Action) -> None:
        """Start Action."""
        self._send(self.session.start_action(action, self._now()))

    def continue_action(self, action: Action) -> None:
        """Continue Action (or Start again after the far end's timeout)."""
        self._send(self.session.continue_action(action, self._now()))

    def stop_action(self, action: Action) -> None:
        """Stop Action."""
        self._send(self.session.stop_action(action, self._now()))

    def activate_preset(self, preset: int) -> None:
        """Activate Preset."""
        self._send(self.session.activate_preset(preset, self._now()))

    def store_preset(self, preset: int) -> None:
        """Store as Preset."""
        self._send(self.session.store_preset(preset, self._now()))

    def select_video_source(self, source: int) -> None:
        """Select Video Source (motion video)."""
        self._send(self.session.select_video_source(source, self._now()))

    def close(self) -> None:
        """Release the ports."""
        self._closed = True
        if self._poll is not None:
            self._poll.cancel()
        for sock in (self._rtp, self._rtcp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()
