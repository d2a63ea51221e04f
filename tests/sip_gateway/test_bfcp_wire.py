"""BFCP over TCP on the wire: our listener + floor control server over a content token, two clients,
and tshark's BFCP dissector as the independent judge of every message both ways."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from mcu.content.token import ContentToken
from sip_gateway.aio.bfcp_listener import BfcpListener
from sip_gateway.bfcp.message import AttributeType, ErrorCode, Primitive, RequestStatus, u16
from tests.conftest import free_port
from tests.sip_gateway.bfcp_client import BfcpClient, Capture, error_code_of, request_status_of

CONF, FLOOR = 80000001, 1


async def test_floor_on_the_wire_judged_by_tshark(tmp_path: Path, artifacts_dir: Path) -> None:
    token = ContentToken()
    port = free_port()
    listener = BfcpListener("127.0.0.1", (port, port))
    assert await listener.start() == port
    server = listener.server_for(CONF, FLOOR, token)
    server.add_client(1, "room-a")
    server.add_client(2, "room-b")
    garbage_ports: list[int] = []
    try:
        async with Capture(port, tmp_path / "bfcp.pcapng") as capture:
            a = await BfcpClient.connect("127.0.0.1", port, CONF, 1)
            b = await BfcpClient.connect("127.0.0.1", port, CONF, 2)
            hello = await a.request(Primitive.HELLO)
            assert hello.primitive == Primitive.HELLO_ACK
            status = await b.request(Primitive.FLOOR_QUERY, u16(AttributeType.FLOOR_ID, FLOOR))
            assert status.primitive == Primitive.FLOOR_STATUS
            rid, granted = await a.floor_request(FLOOR)
            assert granted == RequestStatus.GRANTED and token.holder == "room-a"
            note = await b.receive()  # b subscribed: the floor is now taken
            assert note.primitive == Primitive.FLOOR_STATUS and note.transaction_id == 0
            assert request_status_of(note)[1] == RequestStatus.GRANTED
            _, denied = await b.floor_request(FLOOR)
            assert denied == RequestStatus.DENIED and token.holder == "room-a"
            # garbage: a framed message with a broken attribute, then something that is not BFCP at all
            await b.send_raw(bytes.fromhex("2001000104c4b4010063" "0002" "04050004"))
            assert error_code_of(await b.receive()) == ErrorCode.UNABLE_TO_PARSE
            junk = await BfcpClient.connect("127.0.0.1", port, CONF, 2)
            garbage_ports.append(junk.local_port)
            await junk.send_raw(b"\xe0" + bytes(range(1, 40)))  # version 7: no framing can be trusted
            assert error_code_of(await junk.receive()) == ErrorCode.UNSUPPORTED_VERSION
            assert await asyncio.wait_for(junk.reader.read(), 5) == b""  # closed by the server
            assert token.holder == "room-a" and list(server.requests) == [rid]
            # b cannot release a's floor; a can
            answer = await b.request(Primitive.FLOOR_RELEASE, u16(AttributeType.FLOOR_REQUEST_ID, rid))
            assert error_code_of(answer) == ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST and token.holder == "room-a"
            released = await a.request(Primitive.FLOOR_RELEASE, u16(AttributeType.FLOOR_REQUEST_ID, rid))
            assert request_status_of(released) == (rid, RequestStatus.RELEASED) and token.holder is None
            note = await b.receive()
            assert note.primitive == Primitive.FLOOR_STATUS and note.first(AttributeType.FLOOR_REQUEST_INFORMATION) is None
            # b gets it now; the chair takes it: b is told Revoked
            rid_b, granted = await b.floor_request(FLOOR)
            assert granted == RequestStatus.GRANTED
            await b.receive()  # its own FloorStatus (subscribed)
            token.take("chair:lead", 10.0)
            listener.floor_changed(CONF)
            revoked = await b.receive()
            assert revoked.transaction_id == 0 and request_status_of(revoked) == (rid_b, RequestStatus.REVOKED)
            bye = await a.request(Primitive.GOODBYE)
            assert bye.primitive == Primitive.GOODBYE_ACK
            await a.close()
            await b.close()
    finally:
        await listener.close()
    shutil.copy(capture.path, artifacts_dir / "bfcp.pcapng")
    rows = await capture.fields("bfcp", "tcp.srcport", "tcp.dstport", "bfcp.primitive", "bfcp.request_status",
                                "bfcp.error_code")
    ours = [r for r in rows if r[0] == str(port)]
    theirs = [r for r in rows if r[1] == str(port) and int(r[0]) not in garbage_ports]
    sent = {int(p) for r in ours for p in r[2].split(",") if p}
    received = {int(p) for r in theirs for p in r[2].split(",") if p}
    statuses = {int(s) for r in ours for s in r[3].split(",") if s}
    errors = {int(e) for r in ours for e in r[4].split(",") if e}
    assert {Primitive.HELLO_ACK, Primitive.FLOOR_STATUS, Primitive.FLOOR_REQUEST_STATUS, Primitive.ERROR,
            Primitive.GOODBYE_ACK} <= sent, sent
    assert {Primitive.HELLO, Primitive.FLOOR_QUERY, Primitive.FLOOR_REQUEST, Primitive.FLOOR_RELEASE,
            Primitive.GOODBYE} <= received, received
    assert {RequestStatus.GRANTED, RequestStatus.DENIED, RequestStatus.RELEASED, RequestStatus.REVOKED} <= statuses
    assert {ErrorCode.UNABLE_TO_PARSE, ErrorCode.UNSUPPORTED_VERSION,
            ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST} <= errors, errors
    bad = await capture.fields(f"(_ws.malformed || _ws.expert.severity >= error) && tcp.srcport == {port}",
                               "frame.number")
    assert bad == [], bad
    # every client message but the deliberate garbage (the junk connection, transaction 99) is well formed
    junk = " ".join(map(str, garbage_ports))
    bad_clients = await capture.fields(
        f"(_ws.malformed || _ws.expert.severity >= error) && tcp.dstport == {port}"
        f" && !(tcp.srcport in {{{junk}}}) && !(bfcp.transaction_id == 99)", "frame.number")
    assert bad_clients == [], bad_clients
