"""RFC 4733 telephone-event payloads: build the packets of one digit, detect digits received."""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

EVENTS = "0123456789*#ABCD"


@dataclass(frozen=True)
class EventPacket:
    """One telephone-event packet to send ``offset`` seconds after the first."""

    offset: float
    payload: bytes
    marker: bool


def event_payload(event: int, end: bool, volume: int, duration: int) -> bytes:
    """The 4-byte payload (event, E|R|volume, duration in timestamp units)."""
    return struct.pack("!BBH", event, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


def digit_packets(digit: str, duration_ms: int = 160, volume: int = 10, clock_rate: int = 8000,
                  interval_ms: int = 20) -> list[EventPacket]:
    """Packets for one digit: updates every ``interval_ms`` and three end packets (RFC 4733 §2.5)."""
    event = EVENTS.index(digit.upper())
    packets: list[EventPacket] = []
    step = clock_rate * interval_ms // 1000
    total = clock_rate * duration_ms // 1000
    elapsed = step
    first = True
    while elapsed < total:
        packets.append(EventPacket((elapsed - step) / clock_rate, event_payload(event, False, volume, elapsed), first))
        first = False
        elapsed += step
    for _ in range(3):
        packets.append(EventPacket((total - step) / clock_rate, event_payload(event, True, volume, total), first))
        first = False
    return packets


class EventDetector:
    """Report each received digit once (by RTP timestamp, which is constant within an event)."""

    def __init__(self) -> None:
        self._seen: deque[int] = deque(maxlen=8)

    def feed(self, payload: bytes, timestamp: int) -> str | None:
        """Return the digit when a new event starts, else ``None``. Malformed payloads are ignored."""
        if len(payload) < 4:
            return None
        event = payload[0]
        if event >= len(EVENTS) or timestamp in self._seen:
            return None
        self._seen.append(timestamp)
        return EVENTS[event]
