"""The H.224 data channel (far-end camera control, H.323 Annex Q) in our H.245 session, sans-I/O.

Two :class:`H245Session` s talk PDU by PDU (encoded and decoded by our PER codec): when both
announce H.224 each opens its H.224 channel (dataType data/h224, session 4, its own RTP port, a
dynamic payload type) and the other accepts it; when one side did not announce it nobody opens
one; a peer's H.224 OLC to a session without FECC (or bidirectional) is rejected, never a crash.
"""
from __future__ import annotations

from typing import Any

from sip_gateway.h323.capabilities import AUDIO_SESSION, DEFAULT_FORMATS, H224_SESSION, VIDEO_SESSION, Codec
from sip_gateway.h323.events import ChannelOpened, Event
from sip_gateway.h323.h224_data import H224_PAYLOAD_TYPE, h224_data_type, is_h224
from sip_gateway.h323.h245 import TERMINAL_TYPE_TERMINAL, H245Config, H245Session

MCU_PORTS = {AUDIO_SESSION: 31000, VIDEO_SESSION: 31002, H224_SESSION: 31004}
ROOM_PORTS = {AUDIO_SESSION: 32000, VIDEO_SESSION: 32002, H224_SESSION: 32004}


def _sessions(mcu_h224: bool, room_h224: bool) -> tuple[H245Session, H245Session]:
    mcu = H245Session(H245Config(DEFAULT_FORMATS, media_ports=dict(MCU_PORTS), h224=mcu_h224))
    room = H245Session(H245Config(DEFAULT_FORMATS, media_ports=dict(ROOM_PORTS), h224=room_h224,
                                  terminal_type=TERMINAL_TYPE_TERMINAL))
    return mcu, room


def _exchange(a: H245Session, b: H245Session) -> tuple[list[Event], list[Event], list[Any]]:
    """Start both and move PDUs until quiet; the events of each side and every PDU (decoded)."""
    from sip_gateway.h323.asn1 import decode_h245

    a.start(0.0)
    b.start(0.0)
    seen: list[Any] = []
    for _ in range(50):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for pdu in src.take_outgoing():
                seen.append(decode_h245(pdu))
                dst.receive_pdu(pdu, 0.1)
                moved = True
        if not moved:
            return a.take_events(), b.take_events(), seen
    raise AssertionError("sessions kept talking")


def _h224_opened(events: list[Event]) -> list[Any]:
    return [e.channel for e in events if isinstance(e, ChannelOpened) and e.channel.format.codec is Codec.H224]


def test_both_announce_h224_each_opens_and_accepts_its_channel() -> None:
    mcu, room = _sessions(True, True)
    mcu_events, room_events, pdus = _exchange(mcu, room)
    assert mcu.remote_h224 and room.remote_h224
    tcs = [p[1][1] for p in pdus if p[0] == "request" and p[1][0] == "terminalCapabilitySet"]
    assert len(tcs) == 2 and all(any(is_h224(e["capability"]) for e in t["capabilityTable"]) for t in tcs)
    olcs = [p[1][1] for p in pdus if p[0] == "request" and p[1][0] == "openLogicalChannel"
            and is_h224(p[1][1]["forwardLogicalChannelParameters"]["dataType"])]
    assert len(olcs) == 2
    for olc in olcs:
        params = olc["forwardLogicalChannelParameters"]["multiplexParameters"][1]
        assert params["sessionID"] == H224_SESSION and params["dynamicRTPPayloadType"] == H224_PAYLOAD_TYPE
    for events, own, theirs in ((mcu_events, MCU_PORTS, ROOM_PORTS), (room_events, ROOM_PORTS, MCU_PORTS)):
        channels = {c.outgoing: c for c in _h224_opened(events)}
        assert set(channels) == {True, False}, events
        # ours goes to the other side's H.224 port; theirs arrives on ours
        assert channels[True].remote_rtp is not None and channels[True].remote_rtp.port == theirs[H224_SESSION]
        assert channels[False].local_rtp is not None and channels[False].local_rtp.port == own[H224_SESSION]
        assert all(c.payload_type == H224_PAYLOAD_TYPE for c in channels.values())
    # audio and video are as before
    assert {(c.format.codec.is_video, c.outgoing) for c in
            (e.channel for e in mcu_events if isinstance(e, ChannelOpened)) if c.format.codec is not Codec.H224} \
        == {(True, True), (True, False), (False, True), (False, False)}


def test_no_h224_channel_unless_both_announce_it() -> None:
    for mcu_h224, room_h224 in ((True, False), (False, True)):
        mcu, room = _sessions(mcu_h224, room_h224)
        mcu_events, room_events, _ = _exchange(mcu, room)
        assert _h224_opened(mcu_events) == [] and _h224_opened(room_events) == []
        assert mcu.remote_h224 is room_h224 and room.remote_h224 is mcu_h224


def _olc(number: int, **extra: Any) -> tuple[str, Any]:
    return ("request", ("openLogicalChannel", {"forwardLogicalChannelNumber": number, **extra,
                                               "forwardLogicalChannelParameters": {
        "dataType": h224_data_type(),
        "multiplexParameters": ("h2250LogicalChannelParameters", {"sessionID": 4, "dynamicRTPPayloadType": 101})}}))


def test_a_peer_h224_olc_is_refused_without_fecc_or_bidirectional() -> None:
    from sip_gateway.h323.asn1 import decode_h245

    without, _ = _sessions(False, False)
    without.receive_message(_olc(9), 0.0)
    [reply] = [decode_h245(p) for p in without.take_outgoing()]
    assert reply[1][0] == "openLogicalChannelReject" and reply[1][1]["cause"][0] == "dataTypeNotSupported"
    with_fecc, _ = _sessions(True, False)
    with_fecc.receive_message(_olc(9, reverseLogicalChannelParameters={"dataType": h224_data_type()}), 0.0)
    [reply] = [decode_h245(p) for p in with_fecc.take_outgoing()]
    assert reply[1][1]["cause"][0] == "unsuitableReverseParameters"
    with_fecc.receive_message(_olc(10), 0.0)
    [reply] = [decode_h245(p) for p in with_fecc.take_outgoing()]
    assert reply[1][0] == "openLogicalChannelAck"
    [channel] = _h224_opened(with_fecc.take_events())
    assert channel.payload_type == 101 and channel.local_rtp.port == MCU_PORTS[H224_SESSION]
    # a garbage multiplex: refused
    with_fecc.receive_message(("request", ("openLogicalChannel", {"forwardLogicalChannelNumber": 11,
                                           "forwardLogicalChannelParameters": {"dataType": h224_data_type(),
                                                                               "multiplexParameters": ("none", 0)}})), 0.0)
    [reply] = [decode_h245(p) for p in with_fecc.take_outgoing()]
    assert reply[1][0] == "openLogicalChannelReject"
