"""The H.225.0 call state machine, two of our endpoints back to back in memory."""
from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip_gateway.h323 import asn1
from sip_gateway.h323.asn1 import H225_PROTOCOL_ID
from sip_gateway.h323.call import Call, CallState, EndpointConfig
from sip_gateway.h323.capabilities import Codec, MediaFormat
from sip_gateway.h323.events import (
    CallAlerting,
    CallConnected,
    CallIncoming,
    CallReleased,
    ChannelOpened,
    Event,
    H245ConnectRequested,
    MasterSlaveDetermined,
    MediaAddress,
    ProtocolErrorLogged,
    UserInputReceived,
)
from sip_gateway.h323.q931 import IE, Cause, MessageType, Q931Message, decode_cause, user_user_ie
from sip_gateway.h323.tpkt import TpktFramer, encode_tpkt
from tests.sip_gateway.h323.h323_testkit import pump

CALLEE_H245 = ("127.0.0.1", 40000)


class Scenario:
    def __init__(self, fast_start: bool = True, tunnelling: bool = True,
                 caller_formats: Any = None, callee_formats: Any = None, early_h245: bool = False) -> None:
        caller_cfg = EndpointConfig(h323_id="room-101", e164="8001", is_mcu=False, fast_start=fast_start,
                                    tunnelling=tunnelling, early_h245=early_h245)
        callee_cfg = EndpointConfig(h323_id="mcu", fast_start=fast_start, tunnelling=tunnelling)
        if caller_formats is not None:
            caller_cfg.formats = caller_formats
        if callee_formats is not None:
            callee_cfg.formats = callee_formats
        self.address = MediaAddress
        self.a = Call.outgoing_call(caller_cfg, "80000001", MediaAddress("127.0.0.1", 1720),
                                    {1: 20000, 2: 20002}, 0.0, random.Random(1))
        self.b = Call.incoming_call(callee_cfg, {1: 30000, 2: 30002}, random.Random(2))
        self.events: dict[str, list[Event]] = {"a": [], "b": []}
        self.now = 0.0

    def pump(self) -> None:
        pump(self.a, self.b, self.now, self.events)

    def of(self, key: str, kind: type[Any]) -> list[Any]:
        return [e for e in self.events[key] if isinstance(e, kind)]

    def connect(self) -> None:
        self.pump()
        self.events["b"] += self.b.alert(self.now)
        self.pump()
        self.events["b"] += self.b.answer(self.now, self.address(*CALLEE_H245))
        self.pump()
        if not self.b.tunnelling:
            self.events["a"] += self.a.h245_connected(self.now)
            self.events["b"] += self.b.h245_connected(self.now)
            self.pump()


@pytest.mark.parametrize("fast_start", [True, False])
@pytest.mark.parametrize("tunnelling", [True, False])
def test_call_modes(fast_start: bool, tunnelling: bool) -> None:
    s = Scenario(fast_start, tunnelling)
    s.connect()
    incoming = s.of("b", CallIncoming)[0]
    assert incoming.calling_number == "8001" and incoming.called_number == "80000001"
    assert incoming.source_aliases == ("8001", "room-101") and incoming.destination_aliases == ("80000001",)
    assert incoming.fast_start_offered is fast_start and incoming.tunnelling is tunnelling
    assert s.of("a", CallAlerting) and s.of("a", CallConnected)[0].fast_start is fast_start
    assert s.a.state is CallState.ACTIVE and s.b.state is CallState.ACTIVE
    assert (s.of("a", H245ConnectRequested) != []) is (not tunnelling)
    assert s.of("a", MasterSlaveDetermined) == [MasterSlaveDetermined(False)]
    for key, peer_port in (("a", 30000), ("b", 20000)):
        channels = [e.channel for e in s.of(key, ChannelOpened)]
        assert len(channels) == 4, channels
        assert all(c.fast_start is fast_start for c in channels)
        sending = {c.session_id: c for c in channels if c.outgoing}
        assert sending[1].format.codec is Codec.G722 and sending[2].format.codec is Codec.H264
        assert sending[1].remote_rtp is not None and sending[1].remote_rtp.port == peer_port
        assert sending[2].remote_rtp is not None and sending[2].remote_rtp.port == peer_port + 2
    s.events["a"] += s.a.send_user_input("123#", s.now)
    s.pump()
    assert "".join(e.text for e in s.of("b", UserInputReceived)) == "123#"
    s.events["b"] += s.b.release(Cause.NORMAL_CALL_CLEARING, s.now)
    s.pump()
    released = s.of("a", CallReleased)
    assert len(released) == 1 and released[0].cause == 16 and released[0].by_remote
    assert s.of("b", CallReleased)[0].by_remote is False
    assert s.a.released and s.b.released
    assert s.a.next_deadline() is None and s.b.next_deadline() is None


def test_fast_start_picks_h261_for_old_room_system() -> None:
    old = (MediaFormat(Codec.PCMU), MediaFormat(Codec.H261, 3840, mpi=(("qcifMPI", 1), ("cifMPI", 1))))
    s = Scenario(caller_formats=old)
    s.connect()
    video = [e.channel for e in s.of("b", ChannelOpened) if e.channel.session_id == 2]
    assert {c.format.codec for c in video} == {Codec.H261} and len(video) == 2
    audio = [e.channel for e in s.of("b", ChannelOpened) if e.channel.session_id == 1]
    assert {c.format.codec for c in audio} == {Codec.PCMU}


def test_capability_mismatch_releases_with_incompatible_destination() -> None:
    s = Scenario(fast_start=False, caller_formats=(MediaFormat(Codec.PCMA),),
                 callee_formats=(MediaFormat(Codec.G722),))
    s.connect()
    assert s.a.released and s.b.released
    causes = {s.of(k, CallReleased)[0].cause for k in "ab"}
    assert causes == {Cause.INCOMPATIBLE_DESTINATION}


def test_fast_start_refused_falls_back_to_h245() -> None:
    s = Scenario(caller_formats=(MediaFormat(Codec.PCMU),), callee_formats=(MediaFormat(Codec.PCMU),))
    s.b.config.fast_start = False
    s.connect()
    channels = [e.channel for e in s.of("a", ChannelOpened)]
    assert len(channels) == 2 and not any(c.fast_start for c in channels)


def _release_at(state_steps: int, releaser: str) -> Scenario:
    """Bring a call to a state (0 Setup sent, 1 proceeding, 2 alerting, 3 active), then release."""
    s = Scenario(fast_start=True)
    if state_steps >= 1 or releaser == "b":
        s.pump()
    if state_steps >= 2:
        s.events["b"] += s.b.alert(s.now)
        s.pump()
    if state_steps >= 3:
        s.events["b"] += s.b.answer(s.now)
        s.pump()
    call = s.a if releaser == "a" else s.b
    s.events[releaser] += call.release(Cause.CALL_REJECTED, s.now)
    s.pump()
    return s


@pytest.mark.parametrize("step", [0, 1, 2, 3])
@pytest.mark.parametrize("releaser", ["a", "b"])
def test_release_in_every_state(step: int, releaser: str) -> None:
    s = _release_at(step, releaser)
    other = "b" if releaser == "a" else "a"
    assert s.of(releaser, CallReleased)[0].cause == Cause.CALL_REJECTED
    released = s.of(other, CallReleased)
    assert released and released[0].cause == Cause.CALL_REJECTED and released[0].by_remote
    assert s.a.released and s.b.released


@pytest.mark.parametrize("name, expected_cause, steps", [
    ("t303", Cause.RECOVERY_ON_TIMER_EXPIRY, 0),
    ("t310", Cause.NO_USER_RESPONDING, 1),
    ("t301", Cause.NO_ANSWER, 2),
])
def test_silent_peer_timers_release(name: str, expected_cause: int, steps: int) -> None:
    s = Scenario()
    if steps >= 1:
        s.pump()
    if steps >= 2:
        s.events["b"] += s.b.alert(s.now)
        s.pump()
    assert s.a.timers.running(name)
    deadline = s.a.next_deadline()
    assert deadline is not None
    events = s.a.handle_timer(deadline)
    released = [e for e in events if isinstance(e, CallReleased)]
    assert released and released[0].cause == expected_cause
    sent = Q931Message.decode(TpktFramer().feed(s.a.data_to_send())[-1])
    assert sent.message_type == MessageType.RELEASE_COMPLETE
    assert decode_cause(sent.get(IE.CAUSE) or b"") == expected_cause


def test_silent_h245_peer_releases() -> None:
    s = Scenario(fast_start=False)
    s.connect()
    assert s.a.state is CallState.ACTIVE
    # Start a fresh call where the callee never answers H.245.
    t = Scenario(fast_start=False)
    t.pump()
    t.events["b"] += t.b.answer(t.now)
    connect_bytes = t.b.data_to_send()
    t.events["a"] += t.a.receive_data(connect_bytes, 0.0)
    t.a.data_to_send()  # H.245 sent, never delivered
    events = t.a.handle_timer(10.0)
    released = [e for e in events if isinstance(e, CallReleased)]
    assert released and released[0].cause == Cause.RECOVERY_ON_TIMER_EXPIRY


def test_separate_h245_connect_timeout() -> None:
    s = Scenario(fast_start=False, tunnelling=False)
    s.pump()
    s.events["b"] += s.b.answer(s.now, s.address(*CALLEE_H245))
    s.pump()
    assert s.of("a", H245ConnectRequested)
    events = s.b.handle_timer(10.0)
    assert [e.cause for e in events if isinstance(e, CallReleased)] == [Cause.RECOVERY_ON_TIMER_EXPIRY]


def _setup_frame() -> bytes:
    s = Scenario()
    return s.a.data_to_send()


@pytest.mark.parametrize("bad, cause", [
    (b"\x04\x00\x00\x08abcd", Cause.PROTOCOL_ERROR),  # TPKT version
    (encode_tpkt(b"\x09\x02\x00\x01\x05"), Cause.INVALID_MESSAGE),  # Q.931 discriminator
    (encode_tpkt(b"\x08\x02\x00\x01\x05\x04\x09\x88"), Cause.INVALID_MESSAGE),  # IE overrun
    (encode_tpkt(Q931Message(MessageType.SETUP, 1, False, [(IE.BEARER_CAPABILITY, b"\x88\x90\xa5")]).encode()),
     Cause.MANDATORY_IE_MISSING),  # no user-user
    (encode_tpkt(Q931Message(MessageType.SETUP, 1, False, [user_user_ie(b"\xff\xff\xff")]).encode()),
     Cause.INVALID_MESSAGE),  # ASN.1 garbage
])
def test_malformed_input_releases_with_cause(bad: bytes, cause: int) -> None:
    call = Call.incoming_call(EndpointConfig(), {1: 30000, 2: 30002}, random.Random(3))
    events = call.receive_data(bad, 0.0)
    assert any(isinstance(e, ProtocolErrorLogged) for e in events)
    assert [e.cause for e in events if isinstance(e, CallReleased)] == [cause]
    assert call.released
    assert call.receive_data(_setup_frame(), 0.0) == []  # a released call ignores the rest


def test_malformed_h245_in_active_call_releases() -> None:
    s = Scenario()
    s.connect()
    body = {"protocolIdentifier": H225_PROTOCOL_ID, "callIdentifier": {"guid": s.a.call_id},
            "reason": ("transportedInformation", 0), "multipleCalls": False, "maintainConnection": False}
    uuie = {"h323-uu-pdu": {"h323-message-body": ("facility", body), "h245Tunnelling": True,
                            "h245Control": [b"\xff\x00\xff"]}}
    facility = Q931Message(MessageType.FACILITY, s.a.call_reference, True, [user_user_ie(asn1.encode_uuie(uuie))])
    events = s.a.receive_data(encode_tpkt(facility.encode()), 1.0)
    assert [e.cause for e in events if isinstance(e, CallReleased)] == [Cause.PROTOCOL_ERROR]


def test_unexpected_message_gets_status_not_release() -> None:
    s = Scenario()
    s.connect()
    setup_again = TpktFramer().feed(_setup_frame())[0]
    message = Q931Message.decode(setup_again)
    message.call_reference = s.b.call_reference
    events = s.b.receive_data(encode_tpkt(message.encode()), 1.0)
    assert not any(isinstance(e, CallReleased) for e in events)
    status = Q931Message.decode(TpktFramer().feed(s.b.data_to_send())[0])
    assert status.message_type == MessageType.STATUS
    assert decode_cause(status.get(IE.CAUSE) or b"") == Cause.MESSAGE_NOT_COMPATIBLE_WITH_STATE


def test_built_messages_have_all_mandatory_fields() -> None:
    """Every UUIE we send carries the mandatory extension additions pycrate does not enforce."""
    t = Scenario(fast_start=True)
    frames: list[bytes] = []

    def move() -> None:
        for src, dst in ((t.a, t.b), (t.b, t.a)):
            data = src.data_to_send()
            if data:
                frames.extend(TpktFramer().feed(data))
                dst.receive_data(data, 0.0)

    for action in (lambda: None, lambda: t.b.alert(0.0), lambda: t.b.answer(0.0),
                   lambda: t.a.send_user_input("1", 0.0), lambda: t.a.release(16, 0.0)):
        action()
        for _ in range(5):
            move()
    kinds = set()
    for frame in frames:
        uuie = asn1.decode_uuie(Q931Message.decode(frame).user_user or b"")
        pdu = uuie["h323-uu-pdu"]
        assert asn1.missing_mandatory(asn1.h225_object("H323-UU-PDU"), pdu) == []
        name, body = pdu["h323-message-body"]
        type_name = name[0].upper() + name[1:] + "-UUIE"
        assert asn1.missing_mandatory(asn1.h225_object(type_name), body) == [], name
        kinds.add(name)
    assert {"setup", "callProceeding", "alerting", "connect", "facility", "releaseComplete"} <= kinds


@st.composite
def mutated_streams(draw: st.DrawFn) -> list[bytes]:
    """Valid call traffic with random damage: flipped bytes, truncation, insertions."""
    s = Scenario(fast_start=draw(st.booleans()))
    data = bytearray(s.a.data_to_send())
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    cut = draw(st.integers(0, len(data)))
    return [bytes(data[:cut]), bytes(data[cut:]), draw(st.binary(max_size=30))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_streams(), st.booleans())
def test_state_machine_fuzz(chunks: list[bytes], answer: bool) -> None:
    """Damaged input never raises; the call ends up released or in a valid state."""
    call = Call.incoming_call(EndpointConfig(), {1: 30000, 2: 30002}, random.Random(0))
    now = 0.0
    for chunk in chunks:
        call.receive_data(chunk, now)
        if answer and call.state is CallState.INCOMING_CALL_PROCEEDING:
            call.answer(now, None if call.tunnelling else MediaAddress(*CALLEE_H245))
        now += 1.0
        call.handle_timer(now)
        call.data_to_send()
    assert call.state in set(CallState)
    call.handle_timer(now + 1000.0)
    if call.state is not CallState.ACTIVE:
        assert call.released or call.state is CallState.IDLE


def test_status_with_null_state_clears_call() -> None:
    s = Scenario()
    s.connect()
    body = {"protocolIdentifier": H225_PROTOCOL_ID, "callIdentifier": {"guid": s.a.call_id}}
    uuie = {"h323-uu-pdu": {"h323-message-body": ("status", body), "h245Tunnelling": True}}
    status = Q931Message(MessageType.STATUS, s.a.call_reference, True,
                         [(IE.CAUSE, b"\x80\xe5"), (IE.CALL_STATE, b"\x00"), user_user_ie(asn1.encode_uuie(uuie))])
    events = s.a.receive_data(encode_tpkt(status.encode()), 1.0)
    assert [e.cause for e in events if isinstance(e, CallReleased)] == [Cause.MESSAGE_NOT_COMPATIBLE_WITH_STATE]


def _callee_transcript(fast_start: bool) -> list[bytes]:
    """Everything a callee sends in a normal call (to be damaged and fed to a caller)."""
    s = Scenario(fast_start=fast_start)
    frames: list[bytes] = []
    setup = s.a.data_to_send()
    s.b.receive_data(setup, 0.0)
    frames.append(s.b.data_to_send())
    s.b.alert(0.0)
    frames.append(s.b.data_to_send())
    s.b.answer(0.0)
    frames.append(s.b.data_to_send())
    return frames


TRANSCRIPTS = {True: _callee_transcript(True), False: _callee_transcript(False)}


@st.composite
def damaged_answers(draw: st.DrawFn) -> tuple[bool, list[bytes]]:
    fast_start = draw(st.booleans())
    out = []
    for chunk in TRANSCRIPTS[fast_start]:
        data = bytearray(chunk)
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        if draw(st.integers(0, 4)) == 0:
            data = data[:draw(st.integers(0, len(data)))]
        out.append(bytes(data))
    return fast_start, out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_answers())
def test_caller_fuzz(case: tuple[bool, list[bytes]]) -> None:
    """A caller fed damaged answers never raises and never stays half-open after its timers."""
    fast_start, chunks = case
    s = Scenario(fast_start=fast_start)
    s.a.data_to_send()
    now = 0.0
    for chunk in chunks:
        s.a.receive_data(chunk, now)
        s.a.data_to_send()
        now += 0.5
    s.a.handle_timer(now + 1000.0)
    s.a.data_to_send()
    assert s.a.released or s.a.state is CallState.ACTIVE


@pytest.mark.parametrize("fast_start", [True, False])
def test_early_h245_in_setup(fast_start: bool) -> None:
    """Room systems often tunnel TCS and MSD in the Setup: H.245 completes before Connect."""
    s = Scenario(fast_start=fast_start, early_h245=True)
    setup_bytes = s.a.data_to_send()
    setup = Q931Message.decode(TpktFramer().feed(setup_bytes)[0])
    pdu = asn1.decode_uuie(setup.user_user or b"")["h323-uu-pdu"]
    names = [asn1.decode_h245(bytes(p))[1][0] for p in pdu["h245Control"]]
    assert names == ["terminalCapabilitySet", "masterSlaveDetermination"]
    s.events["b"] += s.b.receive_data(setup_bytes, 0.0)
    s.pump()
    # Nobody answered yet, but capabilities and master/slave are settled (Facility messages).
    assert s.b.state is CallState.INCOMING_CALL_PROCEEDING
    assert s.of("a", MasterSlaveDetermined) == [MasterSlaveDetermined(False)]
    assert s.of("b", MasterSlaveDetermined) == [MasterSlaveDetermined(True)]
    s.events["b"] += s.b.answer(s.now)
    s.pump()
    for key in "ab":
        channels = [e.channel for e in s.of(key, ChannelOpened)]
        assert {(c.session_id, c.outgoing) for c in channels} == {(1, True), (1, False), (2, True), (2, False)}
    assert s.a.state is CallState.ACTIVE and not s.of("a", CallReleased) and not s.of("b", CallReleased)


def test_progress_carries_fast_start_for_early_media() -> None:
    s = Scenario()
    s.pump()
    s.events["b"] += s.b.progress(s.now)
    s.pump()
    assert s.a.state is CallState.OUTGOING_CALL_PROCEEDING
    assert len(s.of("a", ChannelOpened)) == 4  # media can flow before Alerting/Connect
    s.events["b"] += s.b.answer(s.now)
    s.pump()
    assert s.a.state.name == "ACTIVE" and len(s.of("a", ChannelOpened)) == 4


def _h323plus_style_setup(data: bytes) -> tuple[bytes, set[int]]:
    """Our caller's Setup with its fast-start proposals numbered as H323Plus numbers them: every
    reverse proposal (the caller receives) carries the placeholder number 1, the transmit
    proposals 101, 102, ... Returns the TPKT-framed Setup and the numbers used."""
    frames = TpktFramer().feed(data)
    message = Q931Message.decode(frames[0])
    uuie = asn1.decode_uuie(message.user_user or b"")
    name, body = uuie["h323-uu-pdu"]["h323-message-body"]
    proposals, numbers, next_forward = [], set(), 101
    for raw in body["fastStart"]:
        olc = asn1.decode_olc(bytes(raw))
        if olc["forwardLogicalChannelParameters"]["dataType"][0] == "nullData":
            olc["forwardLogicalChannelNumber"] = 1
        else:
            olc["forwardLogicalChannelNumber"], next_forward = next_forward, next_forward + 1
        numbers.add(olc["forwardLogicalChannelNumber"])
        proposals.append(asn1.encode_olc(olc))
    body["fastStart"] = proposals
    ies = [ie for ie in message.ies if ie[0] != IE.USER_USER] + [user_user_ie(asn1.encode_uuie(uuie))]
    setup = Q931Message(message.message_type, message.call_reference, message.from_destination, ies)
    return encode_tpkt(setup.encode()) + b"".join(encode_tpkt(f) for f in frames[1:]), numbers


def _fast_start_answer(data: bytes) -> list[dict[str, Any]]:
    for frame in TpktFramer().feed(data):
        uuie = asn1.decode_uuie(Q931Message.decode(frame).user_user or b"")
        _, body = uuie["h323-uu-pdu"]["h323-message-body"]
        if body.get("fastStart"):
            return [asn1.decode_olc(bytes(raw)) for raw in body["fastStart"]]
    raise AssertionError("no fastStart answer")


def test_fast_start_answer_numbers_reverse_channels_and_gives_our_rtcp() -> None:
    """H.323 8.1.7.1 with a caller that numbers every reverse proposal 1 (H323Plus): the callee
    numbers the reverse channels it accepts itself (unique, none of the proposal numbers), puts
    its own RTCP address in their mediaControlChannel and no mediaChannel; the forward channels
    keep the caller's numbers and carry our RTP and RTCP addresses. The caller's incoming
    channels take the callee's numbers and the callee's RTCP address."""
    s = Scenario()
    setup, proposal_numbers = _h323plus_style_setup(s.a.data_to_send())
    s.events["b"] += s.b.receive_data(setup, s.now)
    s.events["a"] += s.a.receive_data(s.b.data_to_send(), s.now)  # CallProceeding
    s.events["b"] += s.b.alert(s.now)
    alerting = s.b.data_to_send()
    answer = _fast_start_answer(alerting)
    reverse = [o for o in answer if o["forwardLogicalChannelParameters"]["dataType"][0] == "nullData"]
    forward = [o for o in answer if o not in reverse]
    assert len(reverse) == 2 and len(forward) == 2
    reverse_numbers = [o["forwardLogicalChannelNumber"] for o in reverse]
    assert len(set(reverse_numbers)) == 2 and not set(reverse_numbers) & proposal_numbers, reverse_numbers
    our_rtcp = {1: 30001, 2: 30003}
    for olc in reverse:
        params = olc["reverseLogicalChannelParameters"]["multiplexParameters"][1]
        assert "mediaChannel" not in params
        assert params["mediaControlChannel"][1][1]["tsapIdentifier"] == our_rtcp[params["sessionID"]]
    for olc in forward:
        params = olc["forwardLogicalChannelParameters"]["multiplexParameters"][1]
        assert olc["forwardLogicalChannelNumber"] in proposal_numbers - {1}
        assert params["mediaChannel"][1][1]["tsapIdentifier"] == our_rtcp[params["sessionID"]] - 1
        assert params["mediaControlChannel"][1][1]["tsapIdentifier"] == our_rtcp[params["sessionID"]]
    callee_sending = [e.channel for e in s.of("b", ChannelOpened) if e.channel.outgoing]
    assert sorted(c.number for c in callee_sending) == sorted(reverse_numbers)
    assert s.b.h245 is not None and len([k for k in s.b.h245.channels if k[1]]) == 2
    # The caller: its incoming channels are the callee's numbers; RTCP goes to the callee.
    s.events["a"] += s.a.receive_data(alerting, s.now)
    incoming = [e.channel for e in s.of("a", ChannelOpened) if not e.channel.outgoing]
    assert sorted(c.number for c in incoming) == sorted(reverse_numbers)
    assert {c.session_id: c.remote_rtcp for c in incoming} == {
        1: MediaAddress("127.0.0.1", 30001), 2: MediaAddress("127.0.0.1", 30003)}
    s.connect()
    assert s.a.state is CallState.ACTIVE and s.b.state is CallState.ACTIVE
    assert not s.of("a", ProtocolErrorLogged) and not s.of("b", ProtocolErrorLogged)


def test_caller_takes_callee_rtcp_from_the_reverse_answer() -> None:
    """A callee whose RTCP for its sending channel differs from the one of its receiving channel
    (allowed: each answer carries its own): the caller sends receiver reports to the one given
    in the reverse answer; an answer echoing the caller's own address falls back to the forward one."""
    s = Scenario()
    s.pump()
    s.events["b"] += s.b.alert(s.now)
    frames = TpktFramer().feed(s.b.data_to_send())
    rewritten = b""
    for frame in frames:
        message = Q931Message.decode(frame)
        uuie = asn1.decode_uuie(message.user_user or b"")
        _, body = uuie["h323-uu-pdu"]["h323-message-body"]
        if body.get("fastStart"):
            olcs = [asn1.decode_olc(bytes(raw)) for raw in body["fastStart"]]
            for olc in olcs:
                if "reverseLogicalChannelParameters" in olc:
                    params = olc["reverseLogicalChannelParameters"]["multiplexParameters"][1]
                    session = params["sessionID"]
                    # audio: another RTCP port of the callee; video: the caller's own (an echo)
                    port = 30501 if session == 1 else 20003
                    params["mediaControlChannel"] = ("unicastAddress", ("iPAddress", {
                        "network": bytes([127, 0, 0, 1]), "tsapIdentifier": port}))
            body["fastStart"] = [asn1.encode_olc(o) for o in olcs]
            ies = [ie for ie in message.ies if ie[0] != IE.USER_USER] + [user_user_ie(asn1.encode_uuie(uuie))]
            message = Q931Message(message.message_type, message.call_reference, message.from_destination, ies)
        rewritten += encode_tpkt(message.encode())
    s.events["a"] += s.a.receive_data(rewritten, s.now)
    incoming = {e.channel.session_id: e.channel for e in s.of("a", ChannelOpened) if not e.channel.outgoing}
    assert incoming[1].remote_rtcp == MediaAddress("127.0.0.1", 30501)
    assert incoming[2].remote_rtcp == MediaAddress("127.0.0.1", 30003)  # the forward answer's


def test_mcu_proposes_to_send_h263_at_cif_and_to_receive_4cif() -> None:
    """The MCU's transmit proposals describe what its shared encoders send (H.263 up to CIF);
    its receive proposals keep what it decodes (4CIF too)."""
    from sip_gateway.aio.h323_media import sent_formats
    from sip_gateway.h323.capabilities import DEFAULT_FORMATS

    cfg = EndpointConfig(h323_id="mcu", transmit_formats=sent_formats(DEFAULT_FORMATS))
    call = Call.outgoing_call(cfg, "8001", MediaAddress("127.0.0.1", 1720), {1: 20000, 2: 20002}, 0.0,
                              random.Random(1))
    frame = TpktFramer().feed(call.data_to_send())[0]
    body = asn1.decode_uuie(Q931Message.decode(frame).user_user or b"")["h323-uu-pdu"]["h323-message-body"][1]
    sizes: dict[str, set[str]] = {"send": set(), "receive": set()}
    for raw in body["fastStart"]:
        olc = asn1.decode_olc(bytes(raw))
        forward = olc["forwardLogicalChannelParameters"]["dataType"]
        direction, data_type = (("receive", olc["reverseLogicalChannelParameters"]["dataType"])
                                if forward[0] == "nullData" else ("send", forward))
        if data_type[0] == "videoData" and data_type[1][0] == "h263VideoCapability":
            sizes[direction] |= {k for k in data_type[1][1] if k.endswith("MPI")}
    assert sizes == {"send": {"qcifMPI", "cifMPI"}, "receive": {"qcifMPI", "cifMPI", "cif4MPI"}}
