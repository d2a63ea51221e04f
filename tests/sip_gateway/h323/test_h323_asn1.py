"""ASN.1 layer: the ALIGNED-PER fix, random round trips, and Wireshark's opinion."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip_gateway.h323 import asn1
from sip_gateway.h323.asn1 import H225_PROTOCOL_ID, Asn1Error
from sip_gateway.h323.capabilities import (
    Codec,
    MediaFormat,
    build_terminal_capability_set,
    data_type_from_format,
)
from sip_gateway.h323.q931 import (
    MessageType,
    Q931Message,
    encode_bearer_capability,
    encode_cause,
    user_user_ie,
)
from sip_gateway.h323.tpkt import encode_tpkt
from tests.sip_gateway.h323.h323_testkit import TSHARK, PcapWriter, tshark_fields, wire_problems

GUID = st.binary(min_size=16, max_size=16)
DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=20)
# h323-ID is a BMPString: stay inside the BMP and away from surrogates.
BMP_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), min_size=1, max_size=30)
ALIAS = st.one_of(DIGITS.map(lambda d: ("dialledDigits", d)), BMP_TEXT.map(lambda t: ("h323-ID", t)))
IP = st.tuples(st.binary(min_size=4, max_size=4), st.integers(1, 65535)).map(
    lambda t: ("ipAddress", {"ip": t[0], "port": t[1]}))
RELEASE_REASONS = ["noBandwidth", "gatekeeperResources", "unreachableDestination", "destinationRejection",
                   "invalidRevision", "noPermission", "unreachableGatekeeper", "gatewayResources",
                   "badFormatAddress", "adaptiveBusy", "inConf", "undefinedReason", "facilityCallDeflection",
                   "securityDenied", "calledPartyNotRegistered", "callerNotRegistered", "newConnectionNeeded",
                   "invalidCID", "hopCountExceeded"]  # the NULL alternatives
ENDPOINT = st.sampled_from([
    {"mc": False, "undefinedNode": False, "terminal": {}},
    {"mc": True, "undefinedNode": False, "mcu": {},
     "vendor": {"vendor": {"t35CountryCode": 38, "t35Extension": 0, "manufacturerCode": 0},
                "productId": b"commandcenter", "versionId": b"0.1"}},
])


def _optional(draw: st.DrawFn, body: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        body[key] = draw(strategy)


@st.composite
def olcs(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from([MediaFormat(Codec.PCMU), MediaFormat(Codec.G722), MediaFormat(Codec.H264, 3840),
                                MediaFormat(Codec.H261, 3840, mpi=(("cifMPI", 1),))]))
    port = draw(st.integers(1024, 65000))
    olc = {"forwardLogicalChannelNumber": draw(st.integers(1, 65535)),
           "forwardLogicalChannelParameters": {
               "dataType": data_type_from_format(fmt),
               "multiplexParameters": ("h2250LogicalChannelParameters", {
                   "sessionID": fmt.session_id,
                   "mediaControlChannel": ("unicastAddress", ("iPAddress", {"network": b"\x7f\0\0\1",
                                                                              "tsapIdentifier": port}))})}}
    return asn1.encode_olc(olc)


@st.composite
def uuies(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid H323-UserInformation of one of the message kinds we send."""
    kind = draw(st.sampled_from(["setup", "callProceeding", "alerting", "connect", "releaseComplete",
                                 "facility", "progress", "status"]))
    body: dict[str, Any] = {"protocolIdentifier": H225_PROTOCOL_ID, "callIdentifier": {"guid": draw(GUID)}}
    if kind == "setup":
        body.update(sourceInfo=draw(ENDPOINT), activeMC=draw(st.booleans()), conferenceID=draw(GUID),
                    conferenceGoal=("create", 0), callType=("pointToPoint", 0),
                    mediaWaitForConnect=draw(st.booleans()), canOverlapSend=draw(st.booleans()),
                    multipleCalls=draw(st.booleans()), maintainConnection=draw(st.booleans()))
        _optional(draw, body, "sourceAddress", st.lists(ALIAS, min_size=1, max_size=3))
        _optional(draw, body, "destinationAddress", st.lists(ALIAS, min_size=1, max_size=2))
        _optional(draw, body, "destCallSignalAddress", IP)
        _optional(draw, body, "sourceCallSignalAddress", IP)
        _optional(draw, body, "fastStart", st.lists(olcs(), min_size=1, max_size=3))
    elif kind in ("callProceeding", "alerting", "connect", "progress"):
        body.update(destinationInfo=draw(ENDPOINT), multipleCalls=draw(st.booleans()),
                    maintainConnection=draw(st.booleans()))
        if kind == "connect":
            body["conferenceID"] = draw(GUID)
        _optional(draw, body, "h245Address", IP)
        _optional(draw, body, "fastStart", st.lists(olcs(), min_size=1, max_size=2))
    elif kind == "releaseComplete":
        _optional(draw, body, "reason", st.sampled_from(RELEASE_REASONS).map(lambda r: (r, 0)))
    elif kind == "facility":
        body.update(reason=draw(st.sampled_from(["transportedInformation", "undefinedReason", "startH245"])
                                .map(lambda r: (r, 0))),
                    multipleCalls=False, maintainConnection=False)
    pdu: dict[str, Any] = {"h323-message-body": (kind, body), "h245Tunnelling": draw(st.booleans())}
    return {"h323-uu-pdu": pdu}


FORMATS = st.lists(st.sampled_from([
    MediaFormat(Codec.PCMU), MediaFormat(Codec.PCMA, frames=30), MediaFormat(Codec.G722),
    MediaFormat(Codec.H264, 19200), MediaFormat(Codec.H264, 7680, h264_level=43),
    MediaFormat(Codec.H263, 3840, mpi=(("qcifMPI", 1), ("cifMPI", 2))),
    MediaFormat(Codec.H261, 3840, mpi=(("qcifMPI", 1),)),
]), max_size=6, unique=True)


@st.composite
def h245_messages(draw: st.DrawFn) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["tcs", "msd", "uii", "signal", "rtd", "fvu", "flow", "olc", "end"]))
    if kind == "tcs":
        return ("request", ("terminalCapabilitySet", build_terminal_capability_set(draw(st.integers(0, 255)),
                                                                                   draw(FORMATS))))
    if kind == "msd":
        return ("request", ("masterSlaveDetermination", {"terminalType": draw(st.integers(0, 255)),
                                                          "statusDeterminationNumber": draw(st.integers(0, 2**24 - 1))}))
    if kind == "uii":
        return ("indication", ("userInput", ("alphanumeric", draw(st.text(alphabet="0123456789#*ABCD", min_size=1)))))
    if kind == "signal":
        return ("indication", ("userInput", ("signal", {"signalType": draw(st.sampled_from("0123456789#*")),
                                                        "duration": draw(st.integers(1, 65535))})))
    if kind == "rtd":
        return ("request", ("roundTripDelayRequest", {"sequenceNumber": draw(st.integers(0, 255))}))
    if kind == "fvu":
        return ("command", ("miscellaneousCommand", {"logicalChannelNumber": draw(st.integers(1, 65535)),
                                                      "type": ("videoFastUpdatePicture", 0)}))
    if kind == "flow":
        return ("command", ("flowControlCommand", {"scope": ("wholeMultiplex", 0),
                                                    "restriction": ("maximumBitRate", draw(st.integers(0, 16777215)))}))
    if kind == "olc":
        return ("request", ("openLogicalChannel", asn1.decode_olc(draw(olcs()))))
    return ("command", ("endSessionCommand", ("disconnect", 0)))


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_release_complete_with_reason_and_call_identifier_regression() -> None:
    """The DESIGN.md bug: pycrate 0.8.1 emits a spurious octet here; ours decodes."""
    value = {"h323-uu-pdu": {"h323-message-body": ("releaseComplete", {
        "protocolIdentifier": H225_PROTOCOL_ID, "reason": ("undefinedReason", 0),
        "callIdentifier": {"guid": bytes(range(16))}}), "h245Tunnelling": False}}
    assert asn1.per_fix_installed()
    data = asn1.encode_uuie(value)
    assert asn1.decode_uuie(data) == value
    asn1.uninstall_per_fix()
    try:
        with pytest.raises(Asn1Error, match="undecodable"):
            asn1.encode_uuie(value)  # the verification step catches the original encoder's output
        broken = asn1.encode_uuie(value, verify=False)
    finally:
        asn1.install_per_fix()
    assert broken != data
    assert len(broken) == len(data) + 1  # exactly the spurious padding octet


@SETTINGS
@given(uuies())
def test_uuie_round_trip(value: dict[str, Any]) -> None:
    assert asn1.decode_uuie(asn1.encode_uuie(value)) == value


@SETTINGS
@given(h245_messages())
def test_h245_round_trip(value: tuple[str, Any]) -> None:
    assert asn1.decode_h245(asn1.encode_h245(value)) == value


def test_invalid_values_raise_asn1_error() -> None:
    with pytest.raises(Asn1Error):
        asn1.encode_uuie({"h323-uu-pdu": {"h323-message-body": ("setup", {})}})
    with pytest.raises(Asn1Error):
        asn1.decode_uuie(b"")
    with pytest.raises(Asn1Error):
        asn1.decode_h245(b"\xff\xff")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_fuzz(data: bytes) -> None:
    """Any bytes: a value or Asn1Error, nothing else, and the codec stays usable."""
    for decode in (asn1.decode_uuie, asn1.decode_h245, asn1.decode_ras, asn1.decode_olc):
        try:
            decode(data)
        except Asn1Error:
            pass
    ok = {"h323-uu-pdu": {"h323-message-body": ("releaseComplete", {
        "protocolIdentifier": H225_PROTOCOL_ID, "callIdentifier": {"guid": bytes(16)}}), "h245Tunnelling": True}}
    assert asn1.decode_uuie(asn1.encode_uuie(ok)) == ok


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_random_messages_decode_in_wireshark(tmp_path: Path) -> None:
    """A sample of random messages, framed as on TCP 1720, dissected by Wireshark."""
    samples: list[dict[str, Any]] = []
    h245: list[tuple[str, Any]] = []

    @settings(max_examples=40, deadline=None, database=None)
    @given(uuies(), st.lists(h245_messages(), max_size=2))
    def collect(value: dict[str, Any], tunnelled: list[tuple[str, Any]]) -> None:
        if tunnelled:
            value["h323-uu-pdu"]["h245Tunnelling"] = True
            value["h323-uu-pdu"]["h245Control"] = [asn1.encode_h245(m) for m in tunnelled]
            h245.extend(tunnelled)
        samples.append(value)

    collect()
    # The message that triggers pycrate's encoder bug must reach Wireshark intact.
    samples.append({"h323-uu-pdu": {"h323-message-body": ("releaseComplete", {
        "protocolIdentifier": H225_PROTOCOL_ID, "reason": ("undefinedReason", 0),
        "callIdentifier": {"guid": bytes(range(16))}}), "h245Tunnelling": False}})
    types = {"setup": MessageType.SETUP, "callProceeding": MessageType.CALL_PROCEEDING,
             "alerting": MessageType.ALERTING, "connect": MessageType.CONNECT,
             "releaseComplete": MessageType.RELEASE_COMPLETE, "facility": MessageType.FACILITY,
             "progress": MessageType.PROGRESS, "status": MessageType.STATUS}
    segments = []
    for i, value in enumerate(samples):
        kind = value["h323-uu-pdu"]["h323-message-body"][0]
        ies = [user_user_ie(asn1.encode_uuie(value))]
        if kind == "setup":
            ies.insert(0, encode_bearer_capability())
        if kind in ("releaseComplete", "status"):
            ies.insert(0, encode_cause(16))
        if kind == "status":
            ies.insert(1, (0x14, b"\x0a"))
        if kind == "progress":
            ies.insert(0, (0x1E, b"\x80\x88"))
        message = Q931Message(types[kind], 100 + i, from_destination=kind != "setup", ies=ies)
        segments.append((kind == "setup", encode_tpkt(message.encode())))
    pcap = tmp_path / "random_h225.pcap"
    writer = PcapWriter(pcap)
    writer.tcp_conversation(segments, ("10.0.0.1", 40000), ("10.0.0.2", 1720))
    writer.close()
    assert wire_problems(pcap) == []
    h225 = tshark_fields(pcap, "h225", "frame.number")
    assert len(h225) == len(samples)
    if h245:
        assert tshark_fields(pcap, "h245", "frame.number")


@SETTINGS
@given(uuies())
def test_fix_changes_only_the_broken_encodings(value: dict[str, Any]) -> None:
    """Where pycrate's own encoder is right, ours produces the very same octets."""
    ours = asn1.encode_uuie(value)
    asn1.uninstall_per_fix()
    try:
        original = asn1.encode_uuie(value, verify=False)
    finally:
        asn1.install_per_fix()
    try:
        decodable = asn1.decode_uuie(original) == value
    except Asn1Error:
        decodable = False
    if decodable:
        assert original == ours
    else:
        assert len(original) > len(ours)  # the spurious padding octet(s)
