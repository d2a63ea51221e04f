"""BFCP over UDP, the pure part (RFC 8855 §6.2/§8): version 2 and the R flag, server-initiated
transactions retransmitted on T1 doubling until acknowledged or given up, retransmitted requests
answered from the cache and not done twice, address binding, refusals."""
from __future__ import annotations

from mcu.content.token import ContentToken
from sip_gateway.bfcp.datagram import MAX_RETRANSMITS, T1, T2, DatagramEndpoint
from sip_gateway.bfcp.message import (
    AttributeType,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    decode,
    encode,
    split_request_status,
    u16,
)
from sip_gateway.bfcp.server import FloorControlServer

CONF, FLOOR = 4711, 1
A, B = ("127.0.0.1", 40001), ("127.0.0.1", 40002)


def _msg(primitive: Primitive, user: int, tid: int, *attrs: object, version: int = 2, responder: bool = False) -> bytes:
    return encode(Message(primitive, CONF, tid, user, tuple(attrs), version, responder))  # type: ignore[arg-type]


def _setup() -> tuple[DatagramEndpoint, ContentToken, FloorControlServer]:
    token = ContentToken()
    server = FloorControlServer(CONF, FLOOR, token)
    server.add_client(1, "room-a", frozenset({"127.0.0.1"}))
    server.add_client(2, "room-b")
    return DatagramEndpoint({CONF: server}.get), token, server


def _status(message: Message) -> int:
    info = message.first(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None
    overall = next(a for a in info.children if a.type == AttributeType.OVERALL_REQUEST_STATUS)
    return split_request_status(overall.children[0])[0]


def test_notifications_are_retransmitted_until_acknowledged() -> None:
    udp, token, _ = _setup()
    hello = udp.datagram_received(_msg(Primitive.HELLO, 1, 5), A, 0.0).datagrams
    answer = decode(hello[0].data)
    assert answer.primitive == Primitive.HELLO_ACK and answer.version == 2 and answer.responder
    assert answer.transaction_id == 5 and hello[0].address == A
    query = udp.datagram_received(_msg(Primitive.FLOOR_QUERY, 2, 1, u16(AttributeType.FLOOR_ID, FLOOR)), B, 0.0)
    assert decode(query.datagrams[0].data).primitive == Primitive.FLOOR_STATUS
    # A takes the floor: A's answer (R set) first, then B's FloorStatus (own transaction, R clear)
    out = udp.datagram_received(_msg(Primitive.FLOOR_REQUEST, 1, 6, u16(AttributeType.FLOOR_ID, FLOOR)), A, 1.0)
    first, note = (decode(d.data) for d in out.datagrams)
    assert out.datagrams[0].address == A and first.responder and _status(first) == RequestStatus.GRANTED
    assert out.datagrams[1].address == B and not note.responder and note.transaction_id != 0
    assert token.holder == "room-a"
    # no ack from B: retransmitted after T1, 2 T1, 4 T1, 8 T1, then given up
    assert udp.next_deadline() == 1.0 + T1
    sent, times = [], []
    for _ in range(20):
        deadline = udp.next_deadline()
        if not udp.pending or deadline is None:
            break
        out_now = [d for d in udp.on_timer(deadline) if d.address == B]
        sent += out_now
        times += [deadline] * len(out_now)
    assert times == [1.0 + T1, 1.0 + 3 * T1, 1.0 + 7 * T1, 1.0 + 15 * T1]
    assert len(sent) == MAX_RETRANSMITS and all(d.data == out.datagrams[1].data for d in sent)
    assert udp.failed == 1 and not udp.pending
    # the next one is acknowledged at once: nothing more is sent
    token.release("room-a", 20.0)
    server = udp._lookup(CONF)
    assert server is not None
    notes = [udp.notify(CONF, o, 20.0) for o in server.floor_changed(20.0)]
    to_b = next(d for d in notes if d is not None and d.address == B)
    tid = decode(to_b.data).transaction_id
    udp.datagram_received(_msg(Primitive.FLOOR_STATUS_ACK, 2, tid, responder=True), B, 20.1)
    assert all(k[0] != (CONF, 2) for k in udp.pending)
    assert [d for d in udp.on_timer(20.0 + T1) if d.address == B] == []


def test_retransmitted_request_is_answered_from_the_cache() -> None:
    udp, token, server = _setup()
    request = _msg(Primitive.FLOOR_REQUEST, 1, 9, u16(AttributeType.FLOOR_ID, FLOOR))
    first = udp.datagram_received(request, A, 0.0).datagrams
    again = udp.datagram_received(request, A, 0.8).datagrams
    assert [d.data for d in again] == [first[0].data] and len(server.requests) == 1
    udp.on_timer(T2 + 1.0)  # the cache is gone: the same transaction id is a new request (refused: one ongoing)
    late = decode(udp.datagram_received(request, A, T2 + 1.0).datagrams[0].data)
    assert late.primitive == Primitive.ERROR and token.holder == "room-a"


def test_refusals_over_udp() -> None:
    udp, token, _ = _setup()
    assert udp.datagram_received(b"\x40\x0b\x00", A, 0.0).datagrams == []  # junk: dropped, never reflected
    v1 = decode(udp.datagram_received(_msg(Primitive.HELLO, 1, 1, version=1), A, 0.0).datagrams[0].data)
    assert v1.primitive == Primitive.ERROR and v1.first(AttributeType.ERROR_CODE).octets[0] == ErrorCode.UNSUPPORTED_VERSION  # type: ignore[union-attr]
    assert v1.version == 2 and v1.responder
    udp.datagram_received(_msg(Primitive.HELLO, 1, 2), A, 0.0)
    other = decode(udp.datagram_received(_msg(Primitive.FLOOR_REQUEST, 2, 3, u16(AttributeType.FLOOR_ID, FLOOR)),
                                         A, 0.0).datagrams[0].data)
    assert other.first(AttributeType.ERROR_CODE).octets[0] == ErrorCode.UNAUTHORIZED_OPERATION  # type: ignore[union-attr]
    foreign = decode(udp.datagram_received(_msg(Primitive.HELLO, 1, 4), ("10.9.9.9", 5), 0.0).datagrams[0].data)
    assert foreign.first(AttributeType.ERROR_CODE).octets[0] == ErrorCode.UNAUTHORIZED_OPERATION  # type: ignore[union-attr]
    fragmented = bytearray(_msg(Primitive.HELLO, 2, 5))
    fragmented[0] |= 0x08
    frag = decode(udp.datagram_received(bytes(fragmented), B, 0.0).datagrams[0].data)
    assert frag.first(AttributeType.ERROR_CODE).octets[0] == ErrorCode.UNABLE_TO_PARSE  # type: ignore[union-attr]
    stray = udp.datagram_received(_msg(Primitive.FLOOR_STATUS_ACK, 1, 77, responder=True), A, 0.0)
    assert stray.datagrams == [] and token.holder is None
    assert udp.addresses == {(CONF, 1): A}
