"""Sans-I/O IVR for dial-in: collect the conference id and the PIN by DTMF.

Digits come from RFC 4733 or SIP INFO; ``#`` ends an entry, ``*`` clears it, and a digit
timeout ends it too. The IVR asks the application whether a conference exists and whether it
needs a PIN (``lookup``) and answers with outputs: play a prompt, start/stop the digit timer,
check a PIN, join, or hang up. The IVR never sees the PIN itself: a complete entry becomes
:class:`CheckPin`, the application checks it (with its per-source back-off) and reports the
:data:`PinVerdict` through :meth:`Ivr.pin_result`. Prompts are names;
:mod:`mcu.legs.sip` renders them as tones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

DIGIT_TIMEOUT = 6.0
MAX_DIGITS = 16


class Stage(Enum):
    """Where the caller is."""

    CONFERENCE_ID = "conference_id"
    PIN = "pin"
    CHECKING = "checking"
    JOINED = "joined"
    FAILED = "failed"


@dataclass(frozen=True)
class Prompt:
    """Play a prompt: ``enter_conference_id``, ``enter_pin``, ``invalid``, ``joining``, ``goodbye``,
    ``locked_out``."""

    name: str


@dataclass(frozen=True)
class DigitTimer:
    """(Re)start the inter-digit timer; ``seconds=0`` stops it."""

    seconds: float


@dataclass(frozen=True)
class CheckPin:
    """Check ``pin`` for ``conference_id``; answer with :meth:`Ivr.pin_result`."""

    conference_id: str
    pin: str


@dataclass(frozen=True)
class Join:
    """Entry complete: put the caller into this conference."""

    conference_id: str


@dataclass(frozen=True)
class Hangup:
    """Give up on the caller."""

    reason: str


IvrOutput = Prompt | DigitTimer | CheckPin | Join | Hangup

PinLookup = Callable[[str], tuple[bool, bool]]
"""conference id → (exists, needs a PIN)."""

PinVerdict = Literal["ok", "wrong", "locked", "refused"]
"""Outcome of a PIN check: right; wrong (try again); too many wrong PINs from this source
(locked out for a while); or the conference refuses the caller for another reason."""


class Ivr:
    """One caller's IVR dialogue."""

    def __init__(self, lookup: PinLookup, conference_id: str | None = None, max_attempts: int = 3) -> None:
        self.lookup = lookup
        self.conference_id = conference_id
        self.max_attempts = max_attempts
        self.attempts = 0
        self.buffer = ""
        self.stage = Stage.CONFERENCE_ID

    def start(self) -> list[IvrOutput]:
        """Begin: skip the id question when the dialled URI already named a conference."""
        if self.conference_id is not None:
            exists, needs_pin = self.lookup(self.conference_id)
            if not exists:
                self.stage = Stage.FAILED
                return [Prompt("invalid"), Hangup("unknown conference")]
            return self._after_id(needs_pin)
        return [Prompt("enter_conference_id"), DigitTimer(DIGIT_TIMEOUT)]

    def _after_id(self, needs_pin: bool) -> list[IvrOutput]:
        assert self.conference_id is not None
        if needs_pin:
            self.stage = Stage.PIN
            self.attempts = 0
            return [Prompt("enter_pin"), DigitTimer(DIGIT_TIMEOUT)]
        self.stage = Stage.JOINED
        return [DigitTimer(0), Prompt("joining"), Join(self.conference_id)]

    def digit(self, digit: str) -> list[IvrOutput]:
        """A DTMF digit arrived."""
        if self.stage not in (Stage.CONFERENCE_ID, Stage.PIN):
            return []
        if digit == "#":
            return self._complete()
        if digit == "*":
            self.buffer = ""
            return [DigitTimer(DIGIT_TIMEOUT)]
        if digit.isdigit() and len(self.buffer) < MAX_DIGITS:
            self.buffer += digit
        return [DigitTimer(DIGIT_TIMEOUT)]

    def timeout(self) -> list[IvrOutput]:
        """The inter-digit timer fired: treat what we have as the entry (or re-prompt)."""
        if self.stage not in (Stage.CONFERENCE_ID, Stage.PIN):
            return []
        return self._complete()

    def _complete(self) -> list[IvrOutput]:
        entry, self.buffer = self.buffer, ""
        if self.stage == Stage.CONFERENCE_ID:
            exists, needs_pin = self.lookup(entry) if entry else (False, False)
            if exists:
                self.conference_id = entry
                return self._after_id(needs_pin)
            return self._retry("enter_conference_id")
        if not entry:
            return self._retry("enter_pin")
        assert self.conference_id is not None
        self.stage = Stage.CHECKING  # digits are ignored until the verdict
        return [DigitTimer(0), CheckPin(self.conference_id, entry)]

    def pin_result(self, verdict: PinVerdict) -> list[IvrOutput]:
        """The application's verdict on the last :class:`CheckPin`."""
        if self.stage != Stage.CHECKING:
            return []
        assert self.conference_id is not None
        if verdict == "ok":
            self.stage = Stage.JOINED
            return [Prompt("joining"), Join(self.conference_id)]
        if verdict == "wrong":
            self.stage = Stage.PIN
            return self._retry("enter_pin")
        self.stage = Stage.FAILED
        if verdict == "locked":
            return [Prompt("locked_out"), Hangup("too many wrong PINs from this source")]
        return [Prompt("invalid"), Hangup("refused by the conference")]

    def _retry(self, prompt: str) -> list[IvrOutput]:
        self.attempts += 1
        if self.attempts >= self.max_attempts:
            self.stage = Stage.FAILED
            return [DigitTimer(0), Prompt("goodbye"), Hangup("too many wrong entries")]
        return [Prompt("invalid"), Prompt(prompt), DigitTimer(DIGIT_TIMEOUT)]
