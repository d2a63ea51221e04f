"""RFC 3550 receive statistics (appendix A.3 loss, A.8 jitter). Arrival time is passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReceiveStats:
    """Per-source counters for RTCP reception reports and the console's call statistics."""

    clock_rate: int
    base_seq: int | None = None
    max_seq: int = 0
    cycles: int = 0
    received: int = 0
    octets: int = 0
    jitter: float = 0.0  # in timestamp units
    _transit: float | None = None
    _expected_prior: int = 0
    _received_prior: int = 0
    last_sr_ntp_middle: int = 0
    last_sr_arrival: float | None = None

    def add(self, sequence: int, timestamp: int, payload_size: int, arrival: float) -> None:
        """Account for one RTP packet that arrived at ``arrival`` (seconds)."""
        self.received += 1
        self.octets += payload_size
        if self.base_seq is None:
            self.base_seq = sequence
            self.max_seq = sequence
        else:
            delta = (sequence - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if sequence < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = sequence
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    @property
    def extended_max(self) -> int:
        """Extended highest sequence number received."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected from the sequence number range."""
        if self.base_seq is None:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (may be negative with duplicates, clamped at 0)."""
        return max(0, self.expected - self.received)

    def fraction_lost(self) -> int:
        """Loss fraction since the previous call, in 1/256 units (RFC 3550 A.3)."""
        expected_interval = self.expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = self.expected
        self._received_prior = self.received
        lost = expected_interval - received_interval
        if expected_interval <= 0 or lost <= 0:
            return 0
        return min(255, (lost << 8) // expected_interval)

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds."""
        return self.jitter * 1000.0 / self.clock_rate
