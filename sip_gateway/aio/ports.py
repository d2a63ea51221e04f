"""The one RTP port manager: RTP/RTCP port pairs (even RTP port, RTCP on the next, odd one).

Every media leg gets its ports here, three ways:

* :meth:`RtpPortManager.open_pair` binds a pair as asyncio datagram endpoints (a SIP leg,
  :meth:`~sip_gateway.aio.rtp_leg.MediaLeg.allocate`, binds when it answers or offers);
* :meth:`RtpPortManager.allocate` with a ``host`` binds a pair per H.323 session synchronously
  when a call is created, so the ports in fast-start proposals and OpenLogicalChannel(Ack)s are
  ours; :meth:`~RtpPortManager.take` hands them to the call's media leg,
  :meth:`~RtpPortManager.release` closes those a call never used;
* :meth:`RtpPortManager.allocate` without a ``host`` only hands out numbers, round robin (an
  H.323 endpoint without media, as in the signalling tests).

Bound pairs are picked at random among the pairs inside the range (:func:`candidate_ports`):
a pair is taken only when both its ports bind.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..h323.capabilities import AUDIO_SESSION, VIDEO_SESSION

__all__ = ["RTP_PORT_RANGE", "RtpPortManager", "bind_pair", "candidate_ports"]

RTP_PORT_RANGE = (20000, 29999)
MAX_TRIES = 200

P = TypeVar("P", bound=asyncio.BaseProtocol)


def candidate_ports(port_range: tuple[int, int], limit: int = MAX_TRIES) -> list[int]:
    """Even RTP ports whose RTCP port (+1) is still inside ``port_range``, in random order.

    A narrow range is tried completely (so "exhausted" is certain); a wide one up to ``limit`` picks.
    """
    low, high = port_range
    first = low + (low & 1)
    count = max(0, (high - first + 1) // 2)
    if count <= limit:
        ports = list(range(first, first + 2 * count, 2))
        random.shuffle(ports)
        return ports
    return [first + 2 * i for i in random.sample(range(count), limit)]


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket] | None:
    """Non-blocking UDP sockets bound to ``port`` (RTP) and ``port + 1`` (RTCP), or None when either
    is taken (neither is kept then)."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rtp.bind((host, port))
        rtcp.bind((host, port + 1))
    except OSError:
        rtp.close()
        rtcp.close()
        return None
    rtp.setblocking(False)
    rtcp.setblocking(False)
    return rtp, rtcp


class RtpPortManager:
    """RTP/RTCP port pairs from ``first``-``last``; with a ``host``, really bound on it."""

    def __init__(self, host: str | None = None, first: int = RTP_PORT_RANGE[0], last: int = RTP_PORT_RANGE[1],
                 sessions: tuple[int, ...] = (AUDIO_SESSION, VIDEO_SESSION)) -> None:
        self.host = host
        self.range = (first, last)
        self.sessions = sessions  # H.323 sessions a call gets a pair for (3: the H.239 content channel)
        self.reserved: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._numbers: Iterator[int] = itertools.cycle(range(first - first % 2, last - 1, 2))

    def allocate(self) -> dict[int, int]:
        """One RTP port per H.323 session (audio, video and, when configured, content): bound pairs, or
        bare numbers without a host."""
        if self.host is None:
            return {session: next(self._numbers) for session in self.sessions}
        ports: dict[int, int] = {}
        try:
            for session in self.sessions:
                ports[session] = self._reserve_pair(self.host)
        except OSError:
            self.release(ports)
            raise
        return ports

    def _reserve_pair(self, host: str) -> int:
        for port in candidate_ports(self.range):
            pair = bind_pair(host, port)
            if pair is not None:
                self.reserved[port] = pair
                return port
        raise OSError("no free RTP port pair")

    def take(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        """Hand a reserved pair to its leg."""
        return self.reserved.pop(port, None)

    def release(self, ports: dict[int, int]) -> None:
        """Close pairs a call never used (released before media)."""
        for port in ports.values():
            pair = self.reserved.pop(port, None)
            if pair is not None:
                for sock in pair:
                    sock.close()

    async def open_pair(self, host: str, protocol: Callable[[bool], P]) -> tuple[int, P, P]:
        """Bind a pair as datagram endpoints; ``protocol(rtcp)`` builds each side's protocol.

        Returns the RTP port and the two protocols; raises OSError when no pair in the range is free.
        """
        loop = asyncio.get_running_loop()
        for port in candidate_ports(self.range):
            try:
                _, rtp = await loop.create_datagram_endpoint(lambda: protocol(False), local_addr=(host, port))
            except OSError:
                continue
            try:
                _, rtcp = await loop.create_datagram_endpoint(lambda: protocol(True), local_addr=(host, port + 1))
            except OSError:
                transport = getattr(rtp, "transport", None)  # the RTP side already bound: give it back
                if transport is not None:
                    transport.close()
                continue
            return port, rtp, rtcp
        raise OSError(f"no free RTP port pair in {self.range[0]}-{self.range[1]}")
