"""Request to speak (举手发言) as sans-I/O state machines: the hand queue and the DTMF key sequences.

:class:`HandQueue` is one conference's queue of raised hands. Inputs carry ``now``; nothing reads
a clock. Rules:

* a site raises its hand once: raising again keeps its place and its first time (idempotent);
* the queue is ordered by the time the hand went up (oldest first), bounded by ``max_entries``
  (a full queue refuses with :class:`HandError` and changes nothing);
* a site lowers its own hand; the chair approves (the site leaves the queue and is returned so
  the adapter can unmute/show it) or dismisses; a site that leaves is forgotten;
* approving or dismissing a site that is not in the queue is refused (:class:`HandError`).

:class:`DtmfSequences` turns the digits a SIP/H.323 room presses (RFC 4733 events, SIP INFO,
H.245 userInput) into actions. Rules:

* sequences are configured per conference (default ``*1`` raise, ``*2`` lower); each is 1-8 of
  ``0-9 * # A-D`` and no sequence is a prefix of another (so matching is unambiguous);
* digits of one site accumulate; a gap longer than ``inter_digit`` seconds starts over;
* when the digits end with a whole sequence the action is returned and the buffer cleared;
  a digit that fits no sequence prefix restarts matching from that digit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

HandAction = Literal["raise", "lower"]
DTMF_DIGITS = frozenset("0123456789*#ABCD")
DEFAULT_SEQUENCES: dict[str, HandAction] = {"*1": "raise", "*2": "lower"}


class HandError(ValueError):
    """A queue operation that does not fit (unknown site, full queue); nothing changed."""


@dataclass(frozen=True)
class RaisedHand:
    participant_id: str
    raised_at: float
    via: str = "web"  # "web" (the join page's button) | "dtmf" | "cascade"


@dataclass
class HandQueue:
    max_entries: int = 200
    _hands: dict[str, RaisedHand] = field(default_factory=dict)

    @property
    def entries(self) -> list[RaisedHand]:
        """Raised hands, oldest first."""
        return sorted(self._hands.values(), key=lambda h: (h.raised_at, h.participant_id))

    def __contains__(self, participant_id: object) -> bool:
        return participant_id in self._hands

    def raise_hand(self, participant_id: str, now: float, via: str = "web") -> bool:
        """True when the hand went up now (False: it was already up)."""
        if not participant_id:
            raise HandError("会场编号不能为空")
        if participant_id in self._hands:
            return False
        if len(self._hands) >= self.max_entries:
            raise HandError("举手队列已满")
        self._hands[participant_id] = RaisedHand(participant_id, now, via)
        return True

    def lower(self, participant_id: str) -> bool:
        """The site lowers its hand (True if it was up)."""
        return self._hands.pop(participant_id, None) is not None

    def approve(self, participant_id: str) -> RaisedHand:
        hand = self._hands.pop(participant_id, None)
        if hand is None:
            raise HandError(f"该会场未举手：{participant_id}")
        return hand

    def dismiss(self, participant_id: str) -> RaisedHand:
        return self.approve(participant_id)

    def forget(self, participant_id: str) -> bool:
        return self.lower(participant_id)


def check_sequences(sequences: dict[str, HandAction]) -> dict[str, HandAction]:
    """Validate a sequence table (ValueError naming the bad entry)."""
    if not sequences:
        raise ValueError("at least one DTMF sequence is needed")
    for seq, action in sequences.items():
        if not 1 <= len(seq) <= 8 or any(c not in DTMF_DIGITS for c in seq):
            raise ValueError(f"DTMF sequence {seq!r}: 1 to 8 of 0-9 * # A-D")
        if action not in ("raise", "lower"):
            raise ValueError(f"DTMF sequence {seq!r}: unknown action {action!r}")
        for other in sequences:
            if other != seq and other.startswith(seq):
                raise ValueError(f"DTMF sequence {seq!r} is a prefix of {other!r}")
    return dict(sequences)


@dataclass
class DtmfSequences:
    sequences: dict[str, HandAction] = field(default_factory=lambda: dict(DEFAULT_SEQUENCES))
    inter_digit: float = 3.0
    _buffers: dict[str, tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sequences = check_sequences(self.sequences)

    def feed(self, participant_id: str, digit: str, now: float) -> HandAction | None:
        """One digit from a site; the action when it completes a sequence."""
        if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            return None
        digit = digit.upper()
        buffer, last = self._buffers.get(participant_id, ("", now))
        if now - last > self.inter_digit:
            buffer = ""
        buffer += digit
        while buffer and not any(seq.startswith(buffer) for seq in self.sequences):
            buffer = buffer[1:]  # restart matching from a later digit
        action = self.sequences.get(buffer)
        if action is not None:
            self._buffers.pop(participant_id, None)
            return action
        if buffer:
            self._buffers[participant_id] = (buffer, now)
        else:
            self._buffers.pop(participant_id, None)
        return None

    def forget(self, participant_id: str) -> None:
        self._buffers.pop(participant_id, None)
