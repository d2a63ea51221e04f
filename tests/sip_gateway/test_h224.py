"""The pure H.224/H.281 core (sip_gateway.h224) and the RFC 4573 SDP line: bytes checked against
H.224/H.281 by hand, the session's rules, garbage dropped and counted. tshark judges the same
frames in test_h224_tshark.py."""
from __future__ import annotations

import random

import pytest

from sip_gateway.h224 import (
    Action,
    CameraSource,
    FarEndRequest,
    FeccCapabilities,
    FeccRules,
    FeccSession,
    Learned,
)
from sip_gateway.h224.cme import (
    ClientList,
    ClientListCommand,
    ExtraCapabilities,
    ExtraCapabilitiesCommand,
    encode_cme,
    encode_fecc_capabilities,
    parse_cme,
    parse_fecc_capabilities,
)
from sip_gateway.h224.frame import (
    CLIENT_CME,
    CLIENT_H281,
    ClientId,
    H224Error,
    H224Frame,
    Reassembler,
    encode_frame,
    parse_frame,
    segment,
)
from sip_gateway.h224.h281 import (
    ActionMessage,
    H281Code,
    PresetMessage,
    encode_h281,
    parse_h281,
    timeout_field,
)
from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
from sip_gateway.sip.sdp import SessionDescription, answer, create_offer, offers_h224, streams_from_answer

H281 = ClientId(CLIENT_H281)
CME = ClientId(CLIENT_CME)


def test_pan_left_frame_octets() -> None:
    """Start Action "pan left", 800 ms, point to point: written out from H.224 Figure 2 and H.281 §6."""
    frames = FeccSession().start_action(Action.PAN_LEFT, 0.0)
    assert frames == [bytes.fromhex("0061" "03" "0000" "0000" "01" "c0" "01" "80" "00")]
    frame = parse_frame(frames[0])
    assert (frame.dlci, frame.client, frame.beginning, frame.ending) == (6, H281, True, True)
    assert parse_h281(frame.data) == ActionMessage(H281Code.START_ACTION, frozenset({Action.PAN_LEFT}), 800)


@pytest.mark.parametrize("action,bits", [
    (Action.PAN_LEFT, 0x80), (Action.PAN_RIGHT, 0xC0), (Action.TILT_UP, 0x30), (Action.TILT_DOWN, 0x20),
    (Action.ZOOM_IN, 0x0C), (Action.ZOOM_OUT, 0x08), (Action.FOCUS_IN, 0x03), (Action.FOCUS_OUT, 0x02)])
def test_action_bits_round_trip(action: Action, bits: int) -> None:
    for code in (H281Code.START_ACTION, H281Code.CONTINUE_ACTION, H281Code.STOP_ACTION):
        data = encode_h281(ActionMessage(code, frozenset({action}), 300))
        assert data[:2] == bytes((code, bits))
        parsed = parse_h281(data)
        assert isinstance(parsed, ActionMessage) and parsed.actions == {action}
    assert encode_h281(ActionMessage(H281Code.START_ACTION, frozenset({action}), 300))[2] == 6


def test_timeout_and_presets() -> None:
    assert [timeout_field(ms) for ms in (0, 49, 50, 400, 750, 800, 5000)] == [0, 0, 1, 8, 15, 0, 0]
    assert encode_h281(PresetMessage(H281Code.ACTIVATE_PRESET, 2)) == b"\x07\x20"
    assert encode_h281(PresetMessage(H281Code.STORE_PRESET, 15)) == b"\x06\xf0"
    with pytest.raises(H224Error):
        encode_h281(PresetMessage(H281Code.STORE_PRESET, 16))
    for bad in (b"", b"\x01", b"\x01\x80", b"\x09\x00", b"\x00\x00"):
        with pytest.raises(H224Error):
            parse_h281(bad)


def test_cme_messages_and_capabilities() -> None:
    caps = FeccCapabilities(presets=6, sources=(CameraSource(1, pan=True, tilt=True, zoom=True),
                                                CameraSource(6, name="doc-cam")))
    data = encode_fecc_capabilities(caps)
    assert data[0] == 6 and data[1:3] == b"\x14\xe0"  # source 1 motion video; P T Z, no F
    assert parse_fecc_capabilities(data) == caps
    assert caps.can("pan") and not caps.can("focus")
    for message in (ClientList(((CME, False), (H281, True))), ClientListCommand(),
                    ExtraCapabilities(H281, data), ExtraCapabilitiesCommand(H281)):
        assert parse_cme(encode_cme(message)) == message
    assert encode_cme(ClientList(((CME, False), (H281, True)))) == bytes.fromhex("0100020081")
    assert encode_cme(ExtraCapabilitiesCommand(H281)) == bytes.fromhex("02ff81")
    # cut short after a complete source: what is complete is kept; a name without its end: refused
    assert parse_fecc_capabilities(data[:3]).sources == (CameraSource(1, pan=True, tilt=True, zoom=True),)
    with pytest.raises(H224Error):
        parse_fecc_capabilities(b"\x02\x60" + b"x" * 40)
    with pytest.raises(H224Error):
        parse_fecc_capabilities(b"")


def test_segmentation_and_reassembly() -> None:
    message = bytes(range(200)) * 3
    frames = segment(H281, message, max_data=50)
    parsed = [parse_frame(f) for f in frames]
    assert len(parsed) == 12 and parsed[0].beginning and not parsed[0].ending and parsed[-1].ending
    assert [p.segment_number for p in parsed] == [i & 15 for i in range(12)]
    joiner = Reassembler()
    assert [joiner.push(p) for p in parsed][-1] == message and joiner.dropped == 0
    # out of order, a continuation without a beginning, an over-long message: dropped and counted
    assert joiner.push(parsed[1]) is None and joiner.dropped == 1
    joiner.push(parsed[0])
    assert joiner.push(parsed[2]) is None and joiner.dropped == 2
    endless = [H224Frame(H281, b"x" * 200, beginning=i == 0, ending=False, segment_number=i & 15) for i in range(6)]
    assert all(joiner.push(f) is None for f in endless) and joiner.dropped == 3


def test_frame_refusals() -> None:
    good = encode_frame(H224Frame(H281, b"\x03\x80"))
    for bad in (b"", good[:8], b"\x00\x60" + good[2:], b"\x00\x71\x13" + good[3:], b"\x01\x61" + good[2:],
                bytes.fromhex("0041") + good[2:], good[:7] + b"\x7f\x01"):
        with pytest.raises(H224Error):
            parse_frame(bad)
    assert parse_frame(bytes.fromhex("0071") + good[2:]).dlci == 7  # high priority is H.224 too
    ext = ClientId(0x7F, extended=3, country=0x26, extension=0, manufacturer=0x1234)
    assert parse_frame(encode_frame(H224Frame(ext, b"abc"))).client == ext


def _peer(camera: FeccCapabilities | None = None) -> FeccSession:
    return FeccSession(FeccRules(camera=camera))


def _exchange(a: FeccSession, b: FeccSession, frames: list[bytes], now: float) -> list[object]:
    """Deliver ``frames`` from a to b, and b's answers back to a, until quiet; what a learnt."""
    seen: list[object] = []
    while frames:
        answers: list[bytes] = []
        for frame in frames:
            for out in b.receive(frame, now):
                if hasattr(out, "payload"):
                    answers.append(out.payload)
        frames = []
        for frame in answers:
            for out in a.receive(frame, now):
                if hasattr(out, "payload"):
                    frames.append(out.payload)
                else:
                    seen.append(out)
    return seen


def test_session_learns_the_far_camera_and_steers_it() -> None:
    mcu = FeccSession()
    camera = _peer(FeccCapabilities(presets=4, sources=(CameraSource(1, pan=True, tilt=True, zoom=True),)))
    assert mcu.next_poll() is None
    hello = mcu.start(10.0)
    assert [parse_cme(parse_frame(f).data) for f in hello] == [
        ClientList(((CME, False), (H281, False))), ClientListCommand(), ExtraCapabilitiesCommand(H281)]
    assert mcu.next_poll() == 12.0 and mcu.poll(11.0) == [] and len(mcu.poll(12.0)) == 2
    learned = _exchange(mcu, camera, hello, 12.5)
    peer_hello = camera.start(12.5)
    for frame in peer_hello:
        learned += mcu.receive(frame, 12.6)
    assert any(isinstance(x, Learned) for x in learned)
    assert mcu.far_has_h281 and mcu.capabilities is not None and mcu.capabilities.presets == 4
    assert mcu.next_poll() is None  # answered: no more asking
    assert mcu.supports(Action.PAN_LEFT) and not mcu.supports(Action.FOCUS_IN)
    # press, hold (continue within the timeout), hold too long (a new start), release
    got = []
    for frames in (mcu.start_action(Action.PAN_LEFT, 20.0), mcu.continue_action(Action.PAN_LEFT, 20.4),
                   mcu.continue_action(Action.PAN_LEFT, 21.3), mcu.continue_action(Action.TILT_UP, 21.5),
                   mcu.stop_action(Action.TILT_UP, 21.6), mcu.activate_preset(3, 22.0)):
        for frame in frames:
            got += [out.message for out in camera.receive(frame, 0) if isinstance(out, FarEndRequest)]
    assert [(m.code, getattr(m, "actions", None)) for m in got] == [
        (H281Code.START_ACTION, {Action.PAN_LEFT}), (H281Code.CONTINUE_ACTION, {Action.PAN_LEFT}),
        (H281Code.START_ACTION, {Action.PAN_LEFT}), (H281Code.START_ACTION, {Action.TILT_UP}),
        (H281Code.STOP_ACTION, {Action.TILT_UP}), (H281Code.ACTIVATE_PRESET, None)]


def test_unknown_capabilities_allow_everything_and_no_h281_nothing() -> None:
    mcu = FeccSession()
    assert all(mcu.supports(a) for a in Action) and mcu.preset_count() is None
    frame = segment(CME, encode_cme(ClientList(((CME, False),))))[0]
    assert mcu.receive(frame, 0.0) == [] and mcu.far_has_h281 is False
    assert not any(mcu.supports(a) for a in Action)


def test_garbage_is_dropped_and_counted_never_raised() -> None:
    mcu = FeccSession()
    rng = random.Random(18)
    junk = [rng.randbytes(rng.randrange(0, 40)) for _ in range(2000)]
    junk += [encode_frame(H224Frame(CME, b"\x09\x00")), encode_frame(H224Frame(H281, b"\x01")),
             encode_frame(H224Frame(CME, b"\x02\x00\x81"))]
    for data in junk:
        mcu.receive(data, 0.0)
    assert mcu.dropped >= 2000
    # still works afterwards
    assert mcu.start_action(Action.ZOOM_IN, 1.0)


def test_sdp_offer_and_answer_carry_h224() -> None:
    policy = MediaPolicy(srtp="off")
    offer = create_offer(policy, LocalMedia("127.0.0.1", 20000, 20002, h224_port=20004))
    text = offer.serialize().decode()
    assert "m=application 20004 RTP/AVP " in text and " H224/4800" in text
    assert offers_h224(SessionDescription.parse(text))
    # a room system answering with H.224
    sdp, streams = answer(SessionDescription.parse(text), policy, LocalMedia("127.0.0.1", 30000, 30002, h224_port=30004))
    h224 = next(s for s in streams if s.kind == "application")
    assert (h224.codec.name, h224.codec.clock_rate, h224.local_port, h224.remote_port) == ("H224", 4800, 30004, 20004)
    back = streams_from_answer(offer, SessionDescription.parse(sdp.serialize()))
    assert any(s.kind == "application" and s.codec.name == "H224" and s.remote_port == 30004 for s in back)
    # without an H.224 port (no FECC here), or under SRTP: the line is refused with port 0
    sdp2, streams2 = answer(SessionDescription.parse(text), policy, LocalMedia("127.0.0.1", 30000, 30002))
    assert "m=application 0 " in sdp2.serialize().decode() and all(s.kind != "application" for s in streams2)
    secure = create_offer(MediaPolicy(srtp="required"), LocalMedia("127.0.0.1", 20000, 20002, h224_port=20004))
    assert "m=application" not in secure.serialize().decode()
    # an H.224 line alone is not a call
    only = SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
                                    "m=application 9000 RTP/AVP 100\r\na=rtpmap:100 H224/4800\r\n")
    with pytest.raises(Exception, match="No acceptable media"):
        answer(only, policy, LocalMedia("127.0.0.1", 30000, None, h224_port=30004))
