"""One receiver's outgoing video stream across shared-encoder switches (pure: time is an argument).

A receiver is fed by one shared encoder at a time (its view at its tier) and moves between them
(:mod:`mcu.tiers`, chair operations). Each encoder has its own timeline (its first frame is
timestamp 0) and, for RTP it forwards, its own sequence numbers; the receiver's SSRC must show one
continuous stream. Without a rewrite its timestamps jump (back by as much as the encoders' age
difference, 2-30 s measured): Chromium's jitter buffer then grows to seconds and freezes.

:class:`StreamRewriter` rules:

* **Offsets.** Units (access units, or RTP packets) of the current source go out with
  ``timestamp + ts_offset`` (mod 2^32) and, when sequence numbers are given, ``seq + seq_offset``
  (mod 2^16). The first source starts the stream unshifted.
* **Switch decided** (:meth:`StreamRewriter.switch_to`, at the moment the caller also asks the new
  source for an IDR): the current source keeps flowing (make before break); the new source's
  units are withheld.
* **Switch lands on a key frame.** The new source's first *switch point* (an IDR with SPS/PPS for
  H.264, see :func:`is_switch_point`; a key frame otherwise) becomes the first unit of the new
  source. Its timestamp continues from the last one sent plus the wall-clock time since it was
  sent, at the clock rate (90 kHz), at least +1: the clock stays true and never runs backwards.
  Its sequence number is the last one sent + 1: no gap. From then on the old source is dropped.
* **The old source is retired.** Its late units (still in flight when the switch landed) are
  dropped for ``retire_for`` seconds (2 s) after the switch.
* **A source nobody announced** (the room moved the subscription on a view change) is treated as
  a switch decided on its first unit.
* **Nothing before a key frame.** Until the first switch point, nothing goes out.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

TS_MOD = 1 << 32
SEQ_MOD = 1 << 16

H264_IDR, H264_SPS, H264_PPS = 5, 7, 8


def h264_nal_types(access_unit: bytes) -> set[int]:
    """NAL unit types in an Annex B access unit (start codes 00 00 01 / 00 00 00 01)."""
    types: set[int] = set()
    i = access_unit.find(b"\x00\x00\x01")
    while i >= 0:
        if i + 3 < len(access_unit):
            types.add(access_unit[i + 3] & 0x1F)
        i = access_unit.find(b"\x00\x00\x01", i + 3)
    return types


def is_switch_point(codec: str, data: bytes, keyframe: bool) -> bool:
    """True when a receiver can start decoding at this access unit.

    H.264: an IDR carrying its SPS and PPS (our encoders repeat them on every IDR); other codecs:
    the encoder's key-frame flag."""
    if not keyframe:
        return False
    if codec == "h264":
        return {H264_IDR, H264_SPS, H264_PPS} <= h264_nal_types(data)
    return True


@dataclass(frozen=True)
class Rewritten:
    timestamp: int  # the receiver's 32-bit timestamp
    seq: int | None  # the receiver's 16-bit sequence number (None when none was given)
    switched: bool  # this unit is the first of a new source


class StreamRewriter:
    """One receiver's timestamps/sequence numbers across sources (see the module docstring)."""

    def __init__(self, clock_rate: int = 90_000, retire_for: float = 2.0) -> None:
        if clock_rate <= 0 or retire_for < 0:
            raise ValueError("clock_rate must be positive and retire_for >= 0")
        self.clock_rate = clock_rate
        self.retire_for = retire_for
        self._retired: Hashable | None = None
        self._retired_at = 0.0
        self.current: Hashable | None = None
        self.pending: Hashable | None = None
        self._ts_offset = 0
        self._seq_offset = 0
        self._last_ts: int | None = None
        self._last_seq: int | None = None
        self._last_wall = 0.0
        self.switches = 0
        self.withheld = 0

    def switch_to(self, source: Hashable, now: float) -> None:
        """The decision to move to ``source`` (the caller asks it for an IDR now)."""
        self.pending = None if source == self.current else source

    @property
    def switching(self) -> bool:
        """A switch is decided and waits for the new source's key frame."""
        return self.pending is not None

    def rewrite(self, source: Hashable, timestamp: int, switch_point: bool, now: float,
                seq: int | None = None) -> Rewritten | None:
        """The unit as the receiver gets it, or None when it is withheld."""
        if (source == self._retired and source != self.pending and source != self.current
                and now - self._retired_at < self.retire_for):
            self.withheld += 1
            return None
        if source != self.current and source != self.pending:
            self.pending = source  # an unannounced switch (the room moved the subscription)
        if source == self.pending:
            if not switch_point:
                self.withheld += 1
                return None
            self._start(timestamp, seq, now)
            if self.current is not None:
                self._retired, self._retired_at = self.current, now
            self.current, self.pending = source, None
            return self._out(timestamp, seq, now, switched=True)
        return self._out(timestamp, seq, now, switched=False)

    def _start(self, timestamp: int, seq: int | None, now: float) -> None:
        if self._last_ts is None:
            self._ts_offset = 0
        else:
            step = max(1, round((now - self._last_wall) * self.clock_rate))
            self._ts_offset = (self._last_ts + step - timestamp) % TS_MOD
        if seq is not None:
            self._seq_offset = 0 if self._last_seq is None else (self._last_seq + 1 - seq) % SEQ_MOD
        if self.current is not None:
            self.switches += 1

    def _out(self, timestamp: int, seq: int | None, now: float, *, switched: bool) -> Rewritten:
        ts = (timestamp + self._ts_offset) % TS_MOD
        out_seq = (seq + self._seq_offset) % SEQ_MOD if seq is not None else None
        if self._last_ts is None or ts != self._last_ts:
            self._last_wall = now  # when the frame at ts went out
        self._last_ts = ts
        if out_seq is not None:
            self._last_seq = out_seq
        return Rewritten(ts, out_seq, switched)


__all__ = ["Rewritten", "StreamRewriter", "h264_nal_types", "is_switch_point"]
