"""The pure IVR's asynchronous conference check and its rules (the H.323 leg's habits).

The default habits (a synchronous lookup, an inter-digit timer) are covered by
tests/sip_gateway/test_sip_gateway.py.
"""
from __future__ import annotations

from mcu.legs.ivr import (
    LOCKED_OUT,
    NO_ENTRY,
    REFUSED,
    TOO_MANY_ENTRIES,
    UNKNOWN_CONFERENCE,
    CheckConference,
    CheckPin,
    ConferenceVerdict,
    DigitTimer,
    Hangup,
    Ivr,
    IvrRules,
    Join,
    Prompt,
    Stage,
)

PATIENT = IvrRules(digit_timeout=20.0, timer="per_entry", shared_attempts=True, check_empty_pin=True,
                   say_why=False)


def keys(ivr: Ivr, text: str) -> list[object]:
    """The outputs of keying ``text`` (the last key's)."""
    out: list[object] = []
    for key in text:
        out = list(ivr.digit(key))
    return out


def test_conference_check_is_asked_and_answered() -> None:
    ivr = Ivr(None)
    assert ivr.start() == [Prompt("enter_conference_id"), DigitTimer(6.0)]
    assert keys(ivr, "42#") == [DigitTimer(0), CheckConference("42")]
    assert ivr.stage == Stage.LOOKING_UP and ivr.digit("1") == [] and ivr.timeout() == []
    assert ivr.pin_result("ok") == []  # no PIN check is out
    assert ivr.conference_result("unknown") == [Prompt("invalid"), Prompt("enter_conference_id"), DigitTimer(6.0)]
    assert keys(ivr, "7#") == [DigitTimer(0), CheckConference("7")]
    assert ivr.conference_result("open") == [DigitTimer(0), Prompt("joining"), Join("7")]
    assert ivr.conference_id == "7" and ivr.conference_result("open") == []


def test_dialled_conference_is_checked_first() -> None:
    ivr = Ivr(None, "80000002")
    assert ivr.start() == [DigitTimer(0), CheckConference("80000002")]
    assert ivr.conference_result("pin") == [Prompt("enter_pin"), DigitTimer(6.0)]
    assert keys(ivr, "1234#") == [DigitTimer(0), CheckPin("80000002", "1234")]
    unknown = Ivr(None, "99")
    unknown.start()
    assert unknown.conference_result("unknown") == [Prompt("invalid"), Hangup(UNKNOWN_CONFERENCE)]


def test_refusals_at_the_conference_check() -> None:
    cases: list[tuple[ConferenceVerdict, str, str]] = [("locked", "locked_out", LOCKED_OUT),
                                                        ("refused", "invalid", REFUSED)]
    for verdict, prompt, reason in cases:
        ivr = Ivr(None, "5")
        ivr.start()
        assert ivr.conference_result(verdict) == [Prompt(prompt), Hangup(reason)]
        assert ivr.stage == Stage.FAILED
        quiet = Ivr(None, "5", rules=PATIENT)
        quiet.start()
        assert quiet.conference_result(verdict) == [Prompt("goodbye"), Hangup(reason)]


def test_per_entry_timer_is_not_restarted_and_ends_the_call() -> None:
    ivr = Ivr(None, rules=PATIENT)
    assert ivr.start() == [Prompt("enter_conference_id"), DigitTimer(20.0)]
    assert ivr.digit("1") == [] and ivr.digit("*") == [] and ivr.digit("2") == []
    assert ivr.timeout() == [Hangup(NO_ENTRY)] and ivr.stage == Stage.FAILED
    assert ivr.digit("#") == []


def test_shared_attempts_and_checked_empty_pin() -> None:
    ivr = Ivr(None, max_attempts=3, rules=PATIENT)
    ivr.start()
    keys(ivr, "9#")
    assert ivr.conference_result("unknown")[0] == Prompt("invalid")  # attempt 1: a wrong id
    keys(ivr, "5#")
    assert ivr.conference_result("pin") == [Prompt("enter_pin"), DigitTimer(20.0)]
    assert ivr.digit("#") == [DigitTimer(0), CheckPin("5", "")]  # an empty PIN is checked
    assert ivr.pin_result("wrong") == [Prompt("invalid"), Prompt("enter_pin"), DigitTimer(20.0)]  # attempt 2
    keys(ivr, "1#")
    assert ivr.pin_result("wrong") == [DigitTimer(0), Prompt("goodbye"), Hangup(TOO_MANY_ENTRIES)]  # attempt 3


def test_separate_attempts_by_default() -> None:
    ivr = Ivr(None, max_attempts=2)
    ivr.start()
    keys(ivr, "9#")
    ivr.conference_result("unknown")  # attempt 1 of the id
    keys(ivr, "5#")
    ivr.conference_result("pin")
    keys(ivr, "1#")
    assert ivr.pin_result("wrong")[0] == Prompt("invalid")  # the PIN's own first attempt
    keys(ivr, "2#")
    assert ivr.pin_result("wrong")[-1] == Hangup(TOO_MANY_ENTRIES)
