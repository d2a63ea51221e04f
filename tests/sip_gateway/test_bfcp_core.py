"""The pure BFCP core: codec round trips and refusals, the floor control server over the content token."""
from __future__ import annotations

import random
import struct

import pytest

from mcu.content.token import ContentToken
from sip_gateway.bfcp.message import (
    Attribute,
    AttributeType,
    BfcpError,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    decode,
    encode,
    error_code,
    grouped,
    request_status,
    split_request_status,
    text,
    u16,
)
from sip_gateway.bfcp.server import FloorControlServer, Outgoing
from sip_gateway.bfcp.stream import StreamConnection

CONF, FLOOR = 4711, 2


def _msg(primitive: Primitive, user: int, tid: int, *attributes: Attribute, conf: int = CONF) -> bytes:
    return encode(Message(primitive, conf, tid, user, attributes))


def _status(out: Outgoing) -> tuple[int, int]:
    info = out.message.first(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None
    overall = next(a for a in info.children if a.type == AttributeType.OVERALL_REQUEST_STATUS)
    return info.header, split_request_status(overall.children[0])[0]


def _error(out: Outgoing) -> int:
    assert out.message.primitive == Primitive.ERROR
    attribute = out.message.first(AttributeType.ERROR_CODE)
    assert attribute is not None
    return attribute.octets[0]


def _server(policy: str = "free") -> tuple[FloorControlServer, ContentToken]:
    token = ContentToken(policy=policy)  # type: ignore[arg-type]
    server = FloorControlServer(CONF, FLOOR, token)
    server.add_client(1, "room-a")
    server.add_client(2, "room-b")
    return server, token


def test_known_wire_bytes_of_a_floor_request() -> None:
    # FloorRequest, conference 1, transaction 2, user 3, FLOOR-ID 4 (M=0): RFC 8855 §5 layout.
    data = _msg(Primitive.FLOOR_REQUEST, 3, 2, u16(AttributeType.FLOOR_ID, 4), conf=1)
    assert data == bytes.fromhex("20010001" "00000001" "0002" "0003" "04040004")
    assert decode(data) == Message(Primitive.FLOOR_REQUEST, 1, 2, 3, (u16(AttributeType.FLOOR_ID, 4),))


def test_round_trip_of_every_shape() -> None:
    attributes = (
        grouped(AttributeType.FLOOR_REQUEST_INFORMATION, 9,
                grouped(AttributeType.OVERALL_REQUEST_STATUS, 9, request_status(RequestStatus.PENDING, 3),
                        text(AttributeType.STATUS_INFO, "排队中")),
                grouped(AttributeType.FLOOR_REQUEST_STATUS, 2),
                grouped(AttributeType.BENEFICIARY_INFORMATION, 7, text(AttributeType.USER_DISPLAY_NAME, "Room"))),
        error_code(ErrorCode.UNKNOWN_MANDATORY_ATTRIBUTE, b"\x80"),
        Attribute(AttributeType.SUPPORTED_PRIMITIVES, bytes(range(1, 19)), True),
        Attribute(99, b"xyz", False),
    )
    message = Message(Primitive.FLOOR_STATUS, 0xFFFFFFFF, 0xFFFF, 1, attributes)
    data = encode(message)
    assert len(data) % 4 == 0
    assert decode(data) == message


@pytest.mark.parametrize("data, code", [
    (b"\x20\x01", ErrorCode.INCORRECT_LENGTH),
    (bytes.fromhex("60010000000000010001000100"), ErrorCode.UNSUPPORTED_VERSION),
    (bytes.fromhex("2001000200000001000100010404"), ErrorCode.INCORRECT_LENGTH),
    (bytes.fromhex("200100010000000100010001" "04050004"), ErrorCode.UNABLE_TO_PARSE),  # Unsigned16 of length 5
    (bytes.fromhex("200100010000000100010001" "04010000"), ErrorCode.UNABLE_TO_PARSE),  # length 1
    (bytes.fromhex("200100010000000100010001" "1e030000"), ErrorCode.UNABLE_TO_PARSE),  # grouped too short
    (bytes.fromhex("280100000000000100010001"), ErrorCode.UNABLE_TO_PARSE),  # F bit
])
def test_refusals_carry_the_error_code(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(BfcpError) as info:
        decode(data)
    assert info.value.code == code


def test_random_bytes_only_ever_raise_bfcp_error() -> None:
    rng = random.Random(8855)
    seed = _msg(Primitive.FLOOR_STATUS, 1, 1, grouped(AttributeType.FLOOR_REQUEST_INFORMATION, 1,
                                                          grouped(AttributeType.FLOOR_REQUEST_STATUS, 2)))
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decode(bytes(data))
        except BfcpError:
            pass


def test_request_granted_second_denied_release_frees() -> None:
    server, token = _server()
    out = server.receive(_msg(Primitive.FLOOR_REQUEST, 1, 10, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    assert out[0].message.transaction_id == 10 and out[0].message.primitive == Primitive.FLOOR_REQUEST_STATUS
    rid, status = _status(out[0])
    assert status == RequestStatus.GRANTED and token.holder == "room-a"
    out = server.receive(_msg(Primitive.FLOOR_REQUEST, 2, 11, u16(AttributeType.FLOOR_ID, FLOOR)), 1.0)
    assert _status(out[0])[1] == RequestStatus.DENIED and token.holder == "room-a"
    # room-b cannot release room-a's request
    out = server.receive(_msg(Primitive.FLOOR_RELEASE, 2, 12, u16(AttributeType.FLOOR_REQUEST_ID, rid)), 2.0)
    assert _error(out[0]) == ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST and token.holder == "room-a"
    out = server.receive(_msg(Primitive.FLOOR_RELEASE, 1, 13, u16(AttributeType.FLOOR_REQUEST_ID, rid)), 3.0)
    assert _status(out[0]) == (rid, RequestStatus.RELEASED) and token.holder is None
    out = server.receive(_msg(Primitive.FLOOR_REQUEST, 2, 14, u16(AttributeType.FLOOR_ID, FLOOR)), 4.0)
    assert _status(out[0])[1] == RequestStatus.GRANTED and token.holder == "room-b"


def test_chair_policy_pending_then_granted_and_revoked_with_floor_status() -> None:
    server, token = _server("chair")
    sub = server.receive(_msg(Primitive.FLOOR_QUERY, 2, 1, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    assert sub[0].message.primitive == Primitive.FLOOR_STATUS
    out = server.receive(_msg(Primitive.FLOOR_REQUEST, 1, 2, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    rid, status = _status(out[0])
    assert status == RequestStatus.PENDING and token.holder is None
    assert [o.message.primitive for o in out[1:]] == [Primitive.FLOOR_STATUS] and out[1].user_id == 2
    token.grant("room-a", 1.0)  # the chair, through the content service
    out = server.floor_changed(1.0)
    assert out[0].user_id == 1 and out[0].message.transaction_id == 0 and _status(out[0]) == (rid, RequestStatus.GRANTED)
    assert out[1].user_id == 2 and out[1].message.primitive == Primitive.FLOOR_STATUS
    assert server.floor_changed(1.5) == []  # nothing changed, nothing sent
    token.take("chair:lead", 2.0)
    out = server.floor_changed(2.0)
    assert _status(out[0]) == (rid, RequestStatus.REVOKED) and rid not in server.requests
    status_attrs = out[1].message.attributes
    assert any(a.type == AttributeType.FLOOR_REQUEST_INFORMATION for a in status_attrs)  # the chair holds it


def test_refusals_change_nothing() -> None:
    server, token = _server()
    granted = server.receive(_msg(Primitive.FLOOR_REQUEST, 1, 1, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    rid = _status(granted[0])[0]
    cases = [
        (_msg(Primitive.FLOOR_REQUEST, 1, 2, u16(AttributeType.FLOOR_ID, FLOOR), conf=9), ErrorCode.CONFERENCE_DOES_NOT_EXIST),
        (_msg(Primitive.FLOOR_REQUEST, 9, 2, u16(AttributeType.FLOOR_ID, FLOOR)), ErrorCode.USER_DOES_NOT_EXIST),
        (_msg(Primitive.FLOOR_REQUEST, 2, 2, u16(AttributeType.FLOOR_ID, 77)), ErrorCode.INVALID_FLOOR_ID),
        (_msg(Primitive.FLOOR_REQUEST, 2, 2), ErrorCode.UNABLE_TO_PARSE),
        (_msg(Primitive.FLOOR_REQUEST, 2, 2, u16(AttributeType.FLOOR_ID, FLOOR), u16(AttributeType.BENEFICIARY_ID, 1)),
         ErrorCode.UNAUTHORIZED_OPERATION),
        (_msg(Primitive.FLOOR_REQUEST, 1, 2, u16(AttributeType.FLOOR_ID, FLOOR)), ErrorCode.MAX_FLOOR_REQUESTS_REACHED),
        (_msg(Primitive.FLOOR_REQUEST, 2, 2, u16(AttributeType.FLOOR_ID, FLOOR), Attribute(100, b"x", True)),
         ErrorCode.UNKNOWN_MANDATORY_ATTRIBUTE),
        (_msg(Primitive.CHAIR_ACTION, 2, 2), ErrorCode.UNAUTHORIZED_OPERATION),
        (_msg(Primitive.USER_QUERY, 2, 2), ErrorCode.UNKNOWN_PRIMITIVE),
        (_msg(200, 2, 2), ErrorCode.UNKNOWN_PRIMITIVE),  # type: ignore[arg-type]
        (_msg(Primitive.FLOOR_RELEASE, 2, 2), ErrorCode.UNABLE_TO_PARSE),
        (b"\x20\x01\x00\x01" + struct.pack("!IHH", CONF, 3, 2) + b"\xff\xff\xff\xff", ErrorCode.UNABLE_TO_PARSE),
    ]
    for data, code in cases:
        out = server.receive(data, 1.0)
        assert len(out) == 1 and _error(out[0]) == code, (data.hex(), out)
        assert out[0].message.transaction_id == int.from_bytes(data[8:10], "big")
        assert token.holder == "room-a" and list(server.requests) == [rid]


def test_hello_goodbye_and_departure() -> None:
    server, token = _server()
    out = server.receive(_msg(Primitive.HELLO, 2, 5), 0.0)
    ack = out[0].message
    assert ack.primitive == Primitive.HELLO_ACK and ack.transaction_id == 5
    primitives = ack.first(AttributeType.SUPPORTED_PRIMITIVES)
    assert primitives is not None and Primitive.FLOOR_REQUEST in primitives.octets
    server.receive(_msg(Primitive.FLOOR_REQUEST, 2, 6, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    out = server.receive(_msg(Primitive.GOODBYE, 2, 7), 1.0)
    assert out[0].message.primitive == Primitive.GOODBYE_ACK and token.holder is None
    server.receive(_msg(Primitive.FLOOR_REQUEST, 1, 8, u16(AttributeType.FLOOR_ID, FLOOR)), 2.0)
    server.remove_client(1, 3.0)
    assert token.holder is None and not server.requests


def test_stream_framing_binding_and_fatal_errors() -> None:
    server, token = _server()
    servers = {CONF: server}
    conn = StreamConnection(servers.get)
    request = _msg(Primitive.FLOOR_REQUEST, 1, 1, u16(AttributeType.FLOOR_ID, FLOOR))
    hello = _msg(Primitive.HELLO, 1, 2)
    stream = request + hello
    out = [o for i in range(len(stream)) for o in conn.data_received(stream[i:i + 1], 0.0)]  # byte by byte
    assert [o.message.primitive for _, o in out] == [Primitive.FLOOR_REQUEST_STATUS, Primitive.HELLO_ACK]
    assert conn.user_id == 1 and token.holder == "room-a"
    out = conn.data_received(_msg(Primitive.FLOOR_QUERY, 2, 3), 0.0)  # speaking for room-b on room-a's connection
    assert _error(out[0][1]) == ErrorCode.UNAUTHORIZED_OPERATION
    out = conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)  # version 2 on TCP
    assert _error(out[0][1]) == ErrorCode.UNSUPPORTED_VERSION and conn.closed
    assert conn.data_received(request, 0.0) == [] and token.holder == "room-a"
    conn2 = StreamConnection(servers.get)
    out = conn2.data_received(b"\x20\x01\xff\xff" + bytes(8), 0.0)
    assert _error(out[0][1]) == ErrorCode.INCORRECT_LENGTH and conn2.closed


def test_a_floor_that_reports_its_changes_synchronously() -> None:
    """ConferenceContent tells its listeners inside request/release; the server must not act twice."""
    token = ContentToken()

    class Reporting:
        holder = property(lambda self: token.holder)
        requests = property(lambda self: token.requests)

        def request(self, who: str, now: float) -> object:
            result = token.request(who, now)
            assert server.floor_changed(now) == []
            return result

        def release(self, who: str, now: float) -> object:
            result = token.release(who, now)
            assert server.floor_changed(now) == []
            return result

    server = FloorControlServer(CONF, FLOOR, Reporting())  # type: ignore[arg-type]
    server.add_client(1, "room-a")
    out = server.receive(_msg(Primitive.FLOOR_REQUEST, 1, 1, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    rid, status = _status(out[0])
    assert status == RequestStatus.GRANTED and len(out) == 1
    out = server.receive(_msg(Primitive.FLOOR_RELEASE, 1, 2, u16(AttributeType.FLOOR_REQUEST_ID, rid)), 1.0)
    assert [_status(o) for o in out] == [(rid, RequestStatus.RELEASED)]
    server.receive(_msg(Primitive.FLOOR_REQUEST, 1, 3, u16(AttributeType.FLOOR_ID, FLOOR)), 2.0)
    server.remove_client(1, 3.0)
    assert token.holder is None and not server.requests


def test_a_guessed_user_id_from_another_address_is_refused() -> None:
    token = ContentToken()
    server = FloorControlServer(CONF, FLOOR, token)
    server.add_client(7, "room-a", frozenset({"10.0.0.5"}))
    conn = StreamConnection({CONF: server}.get, peer="10.9.9.9")
    out = conn.data_received(_msg(Primitive.FLOOR_REQUEST, 7, 1, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    assert _error(out[0][1]) == ErrorCode.UNAUTHORIZED_OPERATION and token.holder is None and conn.user_id is None
    conn = StreamConnection({CONF: server}.get, peer="10.0.0.5")
    out = conn.data_received(_msg(Primitive.FLOOR_REQUEST, 7, 1, u16(AttributeType.FLOOR_ID, FLOOR)), 0.0)
    assert _status(out[0][1])[1] == RequestStatus.GRANTED and token.holder == "room-a" and conn.user_id == 7
