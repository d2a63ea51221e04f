"""What the sans-I/O SIP core asks its adapter to do.

The core never touches sockets or clocks. It returns :class:`Send` (bytes to a flow),
:class:`StartTimer` / :class:`CancelTimer` (the adapter calls back ``on_timer(key)`` when a
timer fires) and application events (see :mod:`sip_gateway.sip.events`).
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 3261 §17.1.1.1 default timer values, in seconds.
T1 = 0.5
T2 = 4.0
T4 = 5.0

TimerKey = tuple[str, str]
"""(owner id, timer name): unique per owner so restarting a timer replaces the old one."""


@dataclass(frozen=True)
class Flow:
    """A transport plus remote address: where a message came from or goes to.

    For TCP/TLS the adapter maps the flow to its connection (and opens one when sending
    a new request on a flow it does not have).
    """

    transport: str  # "udp", "tcp" or "tls"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """Stream transports need no retransmissions (RFC 3261 §17)."""
        return self.transport != "udp"

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) tuple."""
        return self.host, self.port


@dataclass(frozen=True)
class Send:
    """Send ``data`` on ``flow``."""

    flow: Flow
    data: bytes


@dataclass(frozen=True)
class StartTimer:
    """Call ``on_timer(key)`` after ``delay`` seconds (replaces a running timer with that key)."""

    key: TimerKey
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    """Forget the timer with this key (no-op if it is not running)."""

    key: TimerKey
