"""The one admission policy (mcu.admission), as a pure function: the rules table of its docstring."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcu.admission import AdmissionPolicy, Admit, Caller, ConferenceFacts, PinGuard, Refuse

OPEN = ConferenceFacts("80000001", guests=True)
CLOSED = ConferenceFacts("80000002", guests=False)
CLOSED_PIN = ConferenceFacts("80000003", guests=False, pin="2468")
GUEST_PIN = ConferenceFacts("80000004", guests=True, pin="2468")
EMERGENCY = ConferenceFacts("80000005", guests=True, kind="emergency_call")

ANON_SIP = Caller("sip", "10.0.0.1")
DIGEST = Caller("sip", "10.0.0.1", identity="sip:alice")
ANON_H323 = Caller("h323", "10.0.0.1")
PLAN_H323 = Caller("h323", "10.0.0.1", site="luoding-room")
GK_H323 = Caller("h323", "10.0.0.1", identity="h235:room-7")
ANON_WEB = Caller("webrtc", "10.0.0.1")
LOGGED_IN = Caller("webrtc", "10.0.0.1", identity="console:viewer1")
CHAIR = Caller("webrtc", "10.0.0.1", identity="console:chair1", host=True)
LINK = Caller("cascade", "10.0.0.1", identity="cascade:yunan", host=True)


def code(facts: ConferenceFacts, caller: Caller) -> str:
    verdict = AdmissionPolicy().decide(facts, caller, 0.0)
    return f"admit:{verdict.by}" if isinstance(verdict, Admit) else verdict.code


@pytest.mark.parametrize(("facts", "caller", "expected"), [
    (OPEN, ANON_SIP, "admit:guests"), (OPEN, ANON_H323, "admit:guests"), (OPEN, ANON_WEB, "admit:guests"),
    (CLOSED, ANON_SIP, "auth_required"), (CLOSED, DIGEST, "admit:identity"),
    (CLOSED, ANON_H323, "auth_required"), (CLOSED, PLAN_H323, "admit:site"), (CLOSED, GK_H323, "admit:identity"),
    (CLOSED, ANON_WEB, "auth_required"), (CLOSED, LOGGED_IN, "admit:identity"), (CLOSED, LINK, "admit:host"),
    (CLOSED_PIN, ANON_H323, "pin_required"), (CLOSED_PIN, ANON_SIP, "auth_required"),
    (CLOSED_PIN, DIGEST, "pin_required"), (CLOSED_PIN, PLAN_H323, "pin_required"), (CLOSED_PIN, CHAIR, "admit:host"),
    (CLOSED_PIN, Caller("h323", "10.0.0.1", pin="2468"), "admit:pin"),
    (CLOSED_PIN, Caller("sip", "10.0.0.1", identity="sip:alice", pin="2468"), "admit:identity"),
    (GUEST_PIN, ANON_WEB, "pin_required"), (GUEST_PIN, Caller("webrtc", "10.0.0.1", pin="2468"), "admit:pin"),
    (GUEST_PIN, Caller("webrtc", "10.0.0.1", pin="1111"), "wrong_pin"),
    (EMERGENCY, CHAIR, "protected"), (EMERGENCY, LINK, "protected"), (EMERGENCY, PLAN_H323, "protected"),
    (ConferenceFacts("1", exists=False), DIGEST, "unknown"),
    (ConferenceFacts("1", status="ended", running=False, guests=True), DIGEST, "ended"),
    (ConferenceFacts("1", status="scheduled", running=False, guests=True), DIGEST, "not_started"),
    (ConferenceFacts("1", locked=True, guests=True), CHAIR, "locked"),
])
def test_rules(facts: ConferenceFacts, caller: Caller, expected: str) -> None:
    assert code(facts, caller) == expected


def test_back_off_per_source_and_conference() -> None:
    policy = AdmissionPolicy(PinGuard(max_failures=2, base_delay=30.0, max_delay=100.0))
    wrong = Caller("h323", "10.0.0.7", pin="0000")
    right = Caller("h323", "10.0.0.7", pin="2468")
    assert policy.decide(CLOSED_PIN, wrong, 0.0) == Refuse("wrong_pin", "会议密码错误")
    assert policy.decide(CLOSED_PIN, wrong, 1.0).code == "wrong_pin"  # type: ignore[union-attr]
    blocked = policy.decide(CLOSED_PIN, right, 2.0)
    assert isinstance(blocked, Refuse) and blocked.code == "too_many_attempts" and blocked.retry_after == 29.0
    assert isinstance(policy.decide(CLOSED_PIN, Caller("h323", "10.0.0.8", pin="2468"), 2.0), Admit)  # other source
    assert isinstance(policy.decide(GUEST_PIN, right, 2.0), Admit)  # other conference
    assert isinstance(policy.decide(CLOSED_PIN, right, 31.0), Admit)  # waited it out; the count is cleared
    assert policy.decide(CLOSED_PIN, wrong, 32.0).code == "wrong_pin"  # type: ignore[union-attr]


callers = st.builds(Caller, protocol=st.sampled_from(["sip", "h323", "webrtc", "cascade"]),
                    source=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
                    identity=st.one_of(st.none(), st.just("sip:alice")), site=st.one_of(st.none(), st.just("r1")),
                    pin=st.one_of(st.none(), st.sampled_from(["", "2468", "1111"])), host=st.booleans())
facts = st.builds(ConferenceFacts, id=st.just("80000009"), guests=st.booleans(),
                  pin=st.sampled_from(["", "2468"]), kind=st.sampled_from(["meeting", "emergency_call"]),
                  locked=st.booleans())


@given(facts, callers)
def test_invariants(conference: ConferenceFacts, caller: Caller) -> None:
    verdict = AdmissionPolicy().decide(conference, caller, 0.0)
    if conference.kind == "emergency_call":
        assert verdict == Refuse("protected", "该会议不接受呼入")  # never, whoever asks
    if isinstance(verdict, Admit):
        assert not conference.locked
        if not conference.guests:  # a closed conference: an identity, a plan site (H.323) or the PIN (H.323)
            assert caller.identity or (caller.protocol == "h323" and (caller.site or caller.pin == conference.pin))
        if conference.pin and not caller.host:
            assert caller.pin == conference.pin
