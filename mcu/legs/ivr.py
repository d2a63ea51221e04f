"""Sans-I/O dial-in IVR: a caller keys a conference id, then a PIN, as DTMF digits.

Every way into a room that has a keypad drives this one machine. It is told the caller's keys
(characters, whatever carried them), the expiry of the timer it asked for, and the answers to
its questions; it answers each with the outputs to carry out, in order: play a :class:`Prompt`,
(re)start or stop the :class:`DigitTimer`, ask :class:`CheckConference` or :class:`CheckPin`,
:class:`Join`, or :class:`Hangup`. It reads no clock and does no I/O, so a test drives a whole
dialogue in a few lines.

* ``#`` ends an entry, ``*`` clears it, other keys than digits are ignored and at most
  :data:`MAX_DIGITS` digits count.
* **Which conference**: a synchronous ``lookup`` (id → exists, needs a PIN) answers at once;
  without one the IVR asks :class:`CheckConference` and waits for :meth:`Ivr.conference_result`
  (an application whose answer needs a database round trip).
* **The PIN**: the IVR never judges a PIN. A complete entry becomes :class:`CheckPin`; the
  application checks it (with its per-source back-off and audit) and reports the
  :data:`PinVerdict` through :meth:`Ivr.pin_result`. Keys are ignored while a check is out.
* **Prompts are names** (``enter_conference_id``, ``enter_pin``, ``invalid``, ``joining``,
  ``goodbye``, ``locked_out``); :mod:`mcu.legs.prompts` renders them as beeps and speech.

How patient the IVR is and how it gives up are :class:`IvrRules`. The ways in grew two IVRs
with different habits before they shared this one; each keeps its habits (the defaults are the
first IVR's, the H.323 leg passes its own), because unifying them would change what callers
hear and when they are hung up on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

DIGIT_TIMEOUT = 6.0
MAX_DIGITS = 16

# Why the IVR hangs up (Hangup.reason).
UNKNOWN_CONFERENCE = "unknown conference"
TOO_MANY_ENTRIES = "too many wrong entries"
LOCKED_OUT = "too many wrong PINs from this source"
REFUSED = "refused by the conference"
NO_ENTRY = "no entry in time"


class Stage(Enum):
    """Where the caller is."""

    CONFERENCE_ID = "conference_id"
    LOOKING_UP = "looking_up"  # a CheckConference is out
    PIN = "pin"
    CHECKING = "checking"  # a CheckPin is out
    JOINED = "joined"
    FAILED = "failed"


@dataclass(frozen=True)
class Prompt:
    """Play a prompt: ``enter_conference_id``, ``enter_pin``, ``invalid``, ``joining``, ``goodbye``,
    ``locked_out``."""

    name: str


@dataclass(frozen=True)
class DigitTimer:
    """(Re)start the IVR's timer; ``seconds=0`` stops it. When it expires, call :meth:`Ivr.timeout`."""

    seconds: float


@dataclass(frozen=True)
class CheckConference:
    """May the caller go on to ``conference_id``? Answer with :meth:`Ivr.conference_result`."""

    conference_id: str


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
    """Give up on the caller (``reason`` is one of this module's reason constants)."""

    reason: str


IvrOutput = Prompt | DigitTimer | CheckConference | CheckPin | Join | Hangup

PinLookup = Callable[[str], tuple[bool, bool]]
"""conference id → (exists, needs a PIN)."""

ConferenceVerdict = Literal["unknown", "open", "pin", "locked", "refused"]
"""Answer to :class:`CheckConference`: no such conference (as far as this caller may know); it
takes the caller without a PIN; it wants a PIN; too many wrong PINs from this source (locked out
for a while); or it refuses the caller for another reason."""

PinVerdict = Literal["ok", "wrong", "locked", "refused"]
"""Outcome of a PIN check: right; wrong (try again); too many wrong PINs from this source
(locked out for a while); or the conference refuses the caller for another reason."""


@dataclass(frozen=True)
class IvrRules:
    """How patient the IVR is and how it gives up (the defaults are the first IVR's habits)."""

    digit_timeout: float = DIGIT_TIMEOUT
    """Seconds of every :class:`DigitTimer` the IVR starts."""
    timer: Literal["between_digits", "per_entry"] = "between_digits"
    """``between_digits``: every key restarts the timer, and its expiry ends the entry as ``#``
    would. ``per_entry``: each entry must be complete within the timer, else the call ends."""
    shared_attempts: bool = False
    """False: the PIN gets ``max_attempts`` tries of its own after the conference id; True: wrong
    ids and wrong PINs use up one budget."""
    check_empty_pin: bool = False
    """True: an empty PIN entry is checked like any other (and so counts as a wrong PIN); False:
    it is asked for again without a check."""
    say_why: bool = True
    """True: a refused caller hears ``locked_out`` or ``invalid`` before the hang-up; False:
    ``goodbye``."""


class Ivr:
    """One caller's IVR dialogue: call :meth:`start`, then feed it keys, timer expiries and answers."""

    def __init__(self, lookup: PinLookup | None, conference_id: str | None = None, max_attempts: int = 3,
                 rules: IvrRules = IvrRules()) -> None:
        self.lookup = lookup
        self.conference_id = conference_id  # the caller's conference, once it is known to exist
        self.max_attempts = max_attempts
        self.rules = rules
        self.attempts = 0
        self.buffer = ""
        self.stage = Stage.CONFERENCE_ID
        self._candidate = ""  # the conference id being looked up
        self._dialled = False  # the candidate was dialled, not keyed: unknown is final

    def start(self) -> list[IvrOutput]:
        """Begin: skip the id question when the caller dialled a conference."""
        if self.conference_id is not None:
            self._dialled = True
            return self._look_up(self.conference_id)
        return [Prompt("enter_conference_id"), self._timer()]

    def digit(self, digit: str) -> list[IvrOutput]:
        """The caller pressed a key."""
        if self.stage not in (Stage.CONFERENCE_ID, Stage.PIN):
            return []
        if digit == "#":
            return self._complete()
        if digit == "*":
            self.buffer = ""
        elif digit.isdigit() and len(self.buffer) < MAX_DIGITS:
            self.buffer += digit
        return [self._timer()] if self.rules.timer == "between_digits" else []

    def timeout(self) -> list[IvrOutput]:
        """The :class:`DigitTimer` expired."""
        if self.stage not in (Stage.CONFERENCE_ID, Stage.PIN):
            return []
        if self.rules.timer == "between_digits":
            return self._complete()  # what the caller keyed is the entry (or it is asked again)
        self.stage = Stage.FAILED
        return [Hangup(NO_ENTRY)]

    def conference_result(self, verdict: ConferenceVerdict) -> list[IvrOutput]:
        """The application's answer to the last :class:`CheckConference`."""
        if self.stage != Stage.LOOKING_UP:
            return []
        if verdict == "unknown":
            if not self._dialled:
                self.stage = Stage.CONFERENCE_ID
                return self._retry("enter_conference_id")
            self.stage = Stage.FAILED
            return [Prompt("invalid"), Hangup(UNKNOWN_CONFERENCE)]
        if verdict in ("locked", "refused"):
            return self._refused(verdict)
        self.conference_id = self._candidate
        if verdict == "pin":
            self.stage = Stage.PIN
            if not self.rules.shared_attempts:
                self.attempts = 0
            return [Prompt("enter_pin"), self._timer()]
        self.stage = Stage.JOINED
        return [DigitTimer(0), Prompt("joining"), Join(self.conference_id)]

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
        return self._refused(verdict)

    def _timer(self) -> DigitTimer:
        return DigitTimer(self.rules.digit_timeout)

    def _look_up(self, conference_id: str) -> list[IvrOutput]:
        self._candidate = conference_id
        self.stage = Stage.LOOKING_UP
        if self.lookup is None:
            return [DigitTimer(0), CheckConference(conference_id)]
        exists, needs_pin = self.lookup(conference_id)
        return self.conference_result(("pin" if needs_pin else "open") if exists else "unknown")

    def _complete(self) -> list[IvrOutput]:
        entry, self.buffer = self.buffer, ""
        if self.stage == Stage.CONFERENCE_ID:
            if not entry:
                return self._retry("enter_conference_id")
            return self._look_up(entry)
        if not entry and not self.rules.check_empty_pin:
            return self._retry("enter_pin")
        assert self.conference_id is not None
        self.stage = Stage.CHECKING
        return [DigitTimer(0), CheckPin(self.conference_id, entry)]

    def _retry(self, prompt: str) -> list[IvrOutput]:
        self.attempts += 1
        if self.attempts >= self.max_attempts:
            self.stage = Stage.FAILED
            return [DigitTimer(0), Prompt("goodbye"), Hangup(TOO_MANY_ENTRIES)]
        return [Prompt("invalid"), Prompt(prompt), self._timer()]

    def _refused(self, verdict: Literal["locked", "refused"]) -> list[IvrOutput]:
        self.stage = Stage.FAILED
        if not self.rules.say_why:
            farewell = "goodbye"
        else:
            farewell = "locked_out" if verdict == "locked" else "invalid"
        return [Prompt(farewell), Hangup(LOCKED_OUT if verdict == "locked" else REFUSED)]
