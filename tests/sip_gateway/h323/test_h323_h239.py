"""H.239 values: capabilities, the role label on an OLC and the token messages, built and parsed
through the real H.245 codec, and judged by Wireshark."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.h323 import asn1, h239
from sip_gateway.h323.asn1 import H225_PROTOCOL_ID, Asn1Error
from sip_gateway.h323.capabilities import Codec, MediaFormat, data_type_from_format
from sip_gateway.h323.h239 import H239Error, H239Message, Role, SubMessage
from sip_gateway.h323.q931 import MessageType, Q931Message, user_user_ie
from sip_gateway.h323.tpkt import encode_tpkt
from tests.sip_gateway.h323.h323_testkit import TSHARK, PcapWriter, tshark_fields, wire_problems

H264 = MediaFormat(Codec.H264, max_bitrate=20000, h264_profile=64, h264_level=71)
H263 = MediaFormat(Codec.H263, max_bitrate=3840, mpi=(("cif", 1),))
UNSIGNED = st.none() | st.integers(0, 65535)


@st.composite
def messages(draw: st.DrawFn) -> H239Message:
    kind = draw(st.sampled_from(list(SubMessage)))
    response = kind in (SubMessage.PRESENTATION_TOKEN_RESPONSE, SubMessage.FLOW_CONTROL_RELEASE_RESPONSE)
    return H239Message(kind, channel_id=draw(UNSIGNED), terminal_label=draw(UNSIGNED),
                       symmetry_breaking=draw(UNSIGNED), bit_rate=draw(UNSIGNED),
                       acknowledge=draw(st.booleans()) if response else None)


@settings(max_examples=60, deadline=None)
@given(messages())
def test_message_round_trip_through_h245_codec(message: H239Message) -> None:
    data = h239.encode_message(message)
    assert h239.decode_message(data) == message
    family, (choice, generic) = asn1.decode_h245(data)
    assert (family, choice) == message.carrier
    assert generic["messageIdentifier"] == ("standard", (0, 0, 8, 239, 2))
    assert generic["subMessageIdentifier"] == int(message.kind)


def test_carriers_follow_h239() -> None:
    carriers = {kind: H239Message(kind, acknowledge=True if "RESPONSE" in kind.name else None).carrier
                for kind in SubMessage}
    assert carriers == {
        SubMessage.FLOW_CONTROL_RELEASE_REQUEST: ("request", "genericRequest"),
        SubMessage.FLOW_CONTROL_RELEASE_RESPONSE: ("response", "genericResponse"),
        SubMessage.PRESENTATION_TOKEN_REQUEST: ("request", "genericRequest"),
        SubMessage.PRESENTATION_TOKEN_RESPONSE: ("response", "genericResponse"),
        SubMessage.PRESENTATION_TOKEN_RELEASE: ("command", "genericCommand"),
        SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER: ("indication", "genericIndication"),
    }


def test_h323plus_token_request_wire_form_parses() -> None:
    """The parameters H323Plus puts in its request (h323caps.cxx BuildH239GenericMessageRequest):
    terminalLabel 0, channelId, symmetryBreaking 1..127, as unsignedMin in that order."""
    value = ("request", ("genericRequest", {
        "messageIdentifier": ("standard", (0, 0, 8, 239, 2)), "subMessageIdentifier": 3,
        "messageContent": [
            {"parameterIdentifier": ("standard", 44), "parameterValue": ("unsignedMin", 0)},
            {"parameterIdentifier": ("standard", 42), "parameterValue": ("unsignedMin", 7)},
            {"parameterIdentifier": ("standard", 43), "parameterValue": ("unsignedMin", 99)},
            {"parameterIdentifier": ("standard", 100), "parameterValue": ("octetString", b"x")},  # unknown: ignored
        ]}))
    parsed = h239.decode_message(asn1.encode_h245(value))
    assert parsed == H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=7, terminal_label=0,
                                 symmetry_breaking=99)


def test_reject_response_and_acknowledge_are_distinguished() -> None:
    for ack in (True, False):
        message = H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=3, terminal_label=0, acknowledge=ack)
        _, (_, generic) = h239.message_value(message)
        assert generic["messageContent"][0]["parameterIdentifier"] == ("standard", 126 if ack else 127)
        assert h239.decode_message(h239.encode_message(message)) == message


def _generic(family: str, choice: str, sub: int, content: list[dict[str, Any]]) -> tuple[str, Any]:
    body: dict[str, Any] = {"messageIdentifier": ("standard", (0, 0, 8, 239, 2)), "subMessageIdentifier": sub}
    if content:
        body["messageContent"] = content
    return (family, (choice, body))


ACK = {"parameterIdentifier": ("standard", 126), "parameterValue": ("logical", 0)}
REJ = {"parameterIdentifier": ("standard", 127), "parameterValue": ("logical", 0)}


@pytest.mark.parametrize("value, reason", [
    (_generic("request", "genericRequest", 9, []), "unknown"),
    (_generic("command", "genericCommand", 3, []), "carried in"),  # a token request sent as a command
    (_generic("response", "genericResponse", 4, []), "exactly one"),  # neither ack nor reject
    (_generic("response", "genericResponse", 4, [ACK, REJ]), "exactly one"),
    (_generic("response", "genericResponse", 4, [
        {"parameterIdentifier": ("standard", 126), "parameterValue": ("unsignedMin", 1)}]), "not logical"),
    (_generic("request", "genericRequest", 3, [
        {"parameterIdentifier": ("standard", 42), "parameterValue": ("logical", 0)}]), "not an integer"),
    (_generic("request", "genericRequest", 3, [
        {"parameterIdentifier": ("standard", 42), "parameterValue": ("unsigned32Min", 70000)}]), "out of range"),
])
def test_malformed_h239_is_refused_with_a_reason(value: tuple[str, Any], reason: str) -> None:
    data = asn1.encode_h245(value)  # valid H.245, wrong H.239
    with pytest.raises(H239Error, match=reason):
        h239.decode_message(data)


def test_other_h245_messages_are_not_h239() -> None:
    assert h239.decode_message(asn1.encode_h245(("request", ("roundTripDelayRequest", {"sequenceNumber": 1})))) is None
    other = ("request", ("genericRequest", {"messageIdentifier": ("standard", (0, 0, 8, 241, 0)),
                                            "subMessageIdentifier": 3}))
    assert h239.decode_message(asn1.encode_h245(other)) is None
    with pytest.raises(Asn1Error):
        h239.decode_message(b"\xff\xff\xff")


def test_message_fields_are_checked_when_built() -> None:
    with pytest.raises(H239Error):
        H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE)  # a response needs acknowledge/reject
    with pytest.raises(H239Error):
        H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, acknowledge=True)
    with pytest.raises(H239Error):
        H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=70000)


def test_control_capability_in_a_capability_table_round_trips() -> None:
    tcs = ("request", ("terminalCapabilitySet", {
        "sequenceNumber": 1, "protocolIdentifier": asn1.H245_PROTOCOL_ID,
        "capabilityTable": [
            {"capabilityTableEntryNumber": 1,
             "capability": ("receiveVideoCapability", data_type_from_format(H264)[1])},
            {"capabilityTableEntryNumber": 2,
             "capability": ("receiveVideoCapability", h239.extended_video_capability(
                 [data_type_from_format(H264)[1], data_type_from_format(H263)[1]]))},
            {"capabilityTableEntryNumber": 3, "capability": h239.control_capability()},
        ]}))
    decoded = asn1.decode_h245(asn1.encode_h245(tcs))
    table = decoded[1][1]["capabilityTable"]
    assert h239.has_control_capability(entry["capability"] for entry in table)
    assert not h239.has_control_capability(entry["capability"] for entry in table[:2])
    roles, codecs = h239.parse_extended_video(table[1]["capability"][1]) or (0, [])
    assert roles == Role.PRESENTATION
    assert codecs == [data_type_from_format(H264)[1], data_type_from_format(H263)[1]]
    assert h239.parse_extended_video(table[0]["capability"][1]) is None  # the camera's plain H.264


def test_content_olc_carries_the_presentation_role() -> None:
    olc = {"forwardLogicalChannelNumber": 5,
           "forwardLogicalChannelParameters": {
               "dataType": h239.content_data_type(data_type_from_format(H264)[1]),
               "multiplexParameters": ("h2250LogicalChannelParameters", {"sessionID": 3})}}
    decoded = asn1.decode_h245(asn1.encode_h245(("request", ("openLogicalChannel", olc))))
    data_type = decoded[1][1]["forwardLogicalChannelParameters"]["dataType"]
    assert h239.parse_extended_video(data_type) == (Role.PRESENTATION, [data_type_from_format(H264)[1]])
    live = h239.content_data_type(data_type_from_format(H264)[1], roles=Role.LIVE)
    assert h239.parse_extended_video(live) == (Role.LIVE, [data_type_from_format(H264)[1]])
    bad = ("videoData", ("extendedVideoCapability", {"videoCapability": [], "videoCapabilityExtension": [
        {"capabilityIdentifier": ("standard", (0, 0, 8, 239, 1, 2)),
         "collapsing": [{"parameterIdentifier": ("standard", 1), "parameterValue": ("unsignedMin", 1)}]}]}))
    with pytest.raises(H239Error, match="booleanArray"):
        h239.parse_extended_video(bad)
    with pytest.raises(H239Error):
        h239.extended_video_capability([])


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_wireshark_reads_h239_messages(tmp_path: Path) -> None:
    """Every H.239 message, tunnelled in an H.225.0 Facility as room systems send them,
    dissected by Wireshark with our values (no malformed frames)."""
    sent = [
        H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=7, terminal_label=0, symmetry_breaking=42),
        H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=7, terminal_label=0, acknowledge=True),
        H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=7, terminal_label=0, acknowledge=False),
        H239Message(SubMessage.PRESENTATION_TOKEN_RELEASE, channel_id=7, terminal_label=0),
        H239Message(SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER, channel_id=7, terminal_label=0),
        H239Message(SubMessage.FLOW_CONTROL_RELEASE_REQUEST, channel_id=7, bit_rate=5000),
        H239Message(SubMessage.FLOW_CONTROL_RELEASE_RESPONSE, channel_id=7, acknowledge=True),
    ]
    segments = []
    for i, message in enumerate(sent):
        uuie = {"h323-uu-pdu": {"h323-message-body": ("facility", {
            "protocolIdentifier": H225_PROTOCOL_ID, "reason": ("transportedInformation", 0),
            "callIdentifier": {"guid": bytes(range(16))}}), "h245Tunnelling": True,
            "h245Control": [h239.encode_message(message)]}}
        q931 = Q931Message(MessageType.FACILITY, 100, from_destination=i % 2 == 1,
                           ies=[user_user_ie(asn1.encode_uuie(uuie))])
        segments.append((i % 2 == 0, encode_tpkt(q931.encode())))
    pcap = tmp_path / "h239.pcap"
    writer = PcapWriter(pcap)
    writer.tcp_conversation(segments, ("10.0.0.1", 40000), ("10.0.0.2", 1720))
    writer.close()
    assert wire_problems(pcap) == []
    # Wireshark knows the H.239 message identifier and reads the submessages as H.239's.
    assert tshark_fields(pcap, "h245", "h245.subMessageIdentifier.standard") == [str(int(m.kind)) for m in sent]
    assert len(tshark_fields(pcap, "h245.genericRequest_element", "frame.number")) == 2
    assert len(tshark_fields(pcap, "h245.genericResponse_element", "frame.number")) == 3
    assert len(tshark_fields(pcap, "h245.genericCommand_element", "frame.number")) == 1
    assert len(tshark_fields(pcap, "h245.genericIndication_element", "frame.number")) == 1


# ---------------------------------------------------------------------------- in an H.245 session

CONTENT = (H264,)


def _h239_pair(a_content: tuple[MediaFormat, ...] = CONTENT, b_content: tuple[MediaFormat, ...] = CONTENT) -> Any:
    from tests.sip_gateway.h323.test_h323_h245 import Pair

    pair = Pair()
    pair.a.config.content_formats = a_content
    pair.b.config.content_formats = b_content
    pair.a.config.media_ports[h239.CONTENT_SESSION] = 20004
    pair.b.config.media_ports[h239.CONTENT_SESSION] = 30004
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    return pair


def test_sessions_announce_and_see_h239() -> None:
    pair = _h239_pair(b_content=())
    assert not pair.a.remote_h239 and pair.a.remote_content_formats == []  # b has no H.239
    assert pair.b.remote_h239
    assert [f.codec for f in pair.b.remote_content_formats] == [Codec.H264]
    # The camera channels are unchanged by the extra capabilities.
    from sip_gateway.h323.events import ChannelOpened
    opened = [e.channel for e in pair.of("a", ChannelOpened)]
    assert {c.session_id for c in opened} == {1, 2} and not any(c.content for c in opened)


def test_content_channel_opens_with_presentation_role_and_is_refused_without_h239() -> None:
    from sip_gateway.h323.events import ChannelOpened

    pair = _h239_pair()
    number = pair.b.open_channel(H264, pair.now, content=True)  # the room system presents
    pair.pump()
    incoming = [e.channel for e in pair.of("a", ChannelOpened) if e.channel.content]
    assert len(incoming) == 1 and incoming[0].number == number and not incoming[0].outgoing
    assert incoming[0].session_id == h239.CONTENT_SESSION and incoming[0].local_rtp is not None
    assert incoming[0].local_rtp.port == 20004 and incoming[0].format.codec is Codec.H264
    outgoing = [e.channel for e in pair.of("b", ChannelOpened) if e.channel.content]
    assert len(outgoing) == 1 and outgoing[0].outgoing and outgoing[0].remote_rtp is not None
    assert outgoing[0].remote_rtp.port == 20004

    refusing = _h239_pair(a_content=())  # a never announced H.239: the content OLC is refused
    refusing.b.open_channel(H264, refusing.now, content=True)
    refusing.pump()
    assert not [e for e in refusing.of("a", ChannelOpened) if e.channel.content]
    from sip_gateway.h323.events import ChannelRejected
    assert [e.cause for e in refusing.of("b", ChannelRejected)] == ["dataTypeNotSupported"]


def test_token_messages_travel_as_events_and_bad_ones_are_logged() -> None:
    from sip_gateway.h323.events import ProtocolErrorLogged

    pair = _h239_pair()
    request = H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=5, terminal_label=0, symmetry_breaking=9)
    pair.b.send_h239(request)
    pair.pump()
    assert [e.message for e in pair.of("a", h239.H239MessageReceived)] == [request]
    answer = H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=5, terminal_label=0, acknowledge=False)
    pair.a.send_h239(answer)
    pair.pump()
    assert [e.message for e in pair.of("b", h239.H239MessageReceived)] == [answer]
    # Malformed H.239 (a response with neither acknowledge nor reject) changes nothing: logged.
    pair.a.receive_pdu(asn1.encode_h245(_generic("response", "genericResponse", 4, [])), pair.now)
    assert any("H.239" in e.detail for e in pair.a.take_events() if isinstance(e, ProtocolErrorLogged))
    assert pair.a.take_outgoing() == [] and not pair.a.ended
    # A generic request of another standard gets functionNotUnderstood.
    pair.a.receive_pdu(asn1.encode_h245(("request", ("genericRequest", {
        "messageIdentifier": ("standard", (0, 0, 8, 241, 0)), "subMessageIdentifier": 1}))), pair.now)
    out = [asn1.decode_h245(p) for p in pair.a.take_outgoing()]
    assert [m[1][0] for m in out] == ["functionNotUnderstood"]
