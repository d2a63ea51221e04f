"""RAS: client and minimal gatekeeper, in memory, over UDP loopback, and in Wireshark."""
from __future__ import annotations

import asyncio
import functools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.aio.h323_endpoint import CallHandle, H323Endpoint
from sip_gateway.aio.ras import GatekeeperProtocol, RasClientProtocol
from sip_gateway.h323 import asn1
from sip_gateway.h323.call import EndpointConfig
from sip_gateway.h323.events import CallConnected, CallIncoming, CallReleased, MediaAddress
from sip_gateway.h323.ras import (
    AdmissionConfirmed,
    AdmissionRejected,
    ClientState,
    Gatekeeper,
    RasClient,
    RasClientConfig,
    Registered,
    RegistrationLost,
)
from tests.sip_gateway.h323.h323_testkit import TSHARK, PcapWriter, tshark_fields, wire_problems

GK = MediaAddress("127.0.0.1", 1719)


def client(aliases: tuple[str, ...], port: int, keepalive_margin: float = 30.0) -> RasClient:
    config = RasClientConfig(aliases, MediaAddress("127.0.0.1", port), MediaAddress("127.0.0.1", port + 1),
                             keepalive_margin=keepalive_margin)
    return RasClient(config, random.Random(port))


def exchange(c: RasClient, gk: Gatekeeper, now: float, log: list[bytes] | None = None) -> None:
    for _ in range(10):
        out = c.datagrams_to_send()
        if not out:
            return
        for datagram in out:
            if log is not None:
                log.append(datagram)
            for reply, _dest in gk.receive_datagram(datagram, c.config.ras_address, now):
                if log is not None:
                    log.append(reply)
                c.receive_datagram(reply, now)


def test_register_admit_disengage() -> None:
    gk = Gatekeeper(time_to_live=60)
    mcu = client(("80000001", "mcu"), 5000)
    room = client(("8001", "room-101"), 6000)
    for c in (mcu, room):
        c.discover(0.0)
        exchange(c, gk, 0.0)
        assert c.state is ClientState.REGISTERED
        [registered] = c.take_events()
        assert isinstance(registered, Registered) and registered.gatekeeper_id == "commandcenter-gk"
    assert gk.lookup("room-101", 1.0) == MediaAddress("127.0.0.1", 6001)
    mcu.admit(b"\x01" * 16, b"\x02" * 16, 77, "8001", None, answer=False, now=1.0)
    exchange(mcu, gk, 1.0)
    assert mcu.take_events() == [AdmissionConfirmed(b"\x01" * 16, MediaAddress("127.0.0.1", 6001), 7680)]
    mcu.admit(b"\x03" * 16, b"\x02" * 16, 78, "9999", None, answer=False, now=1.0)
    exchange(mcu, gk, 1.0)
    assert mcu.take_events() == [AdmissionRejected(b"\x03" * 16, "calledPartyNotRegistered")]
    mcu.disengage(b"\x01" * 16, b"\x02" * 16, 77, answered=False, now=2.0)
    exchange(mcu, gk, 2.0)
    assert not mcu.timers.running("req:0") and not mcu._pending


def test_location_bandwidth_and_info_requests() -> None:
    """LRQ (answered at its replyAddress), BRQ and IRR from registered terminals; conference
    ids the gatekeeper's own host answers (``local_aliases``) are located too."""
    mcu_signal = MediaAddress("127.0.0.1", 1720)
    gk = Gatekeeper(time_to_live=60, local_aliases=lambda a: mcu_signal if a == "80000001" else None)
    room = client(("8001", "room-101"), 6000)
    room.discover(0.0)
    exchange(room, gk, 0.0)
    endpoint_id = room.endpoint_id
    assert endpoint_id is not None
    reply_to = MediaAddress("10.0.0.9", 1719)

    def ask(kind: str, body: dict[str, object]) -> list[tuple[str, dict[str, object], MediaAddress]]:
        out = []
        for reply, destination in gk.receive_datagram(asn1.encode_ras((kind, body)), GK, 1.0):
            answer_kind, answer = asn1.decode_ras(reply)
            assert asn1.missing_mandatory(asn1.h225_object(answer_kind[0].upper() + answer_kind[1:]), answer) == []
            out.append((answer_kind, answer, destination))
        return out

    def lrq(alias: str) -> list[tuple[str, dict[str, object], MediaAddress]]:
        return ask("locationRequest", {"requestSeqNum": 5, "destinationInfo": [("h323-ID", alias)],
                                       "replyAddress": ("ipAddress", {"ip": bytes([10, 0, 0, 9]), "port": 1719})})

    [(kind, body, where)] = lrq("room-101")
    assert (kind, where) == ("locationConfirm", reply_to)
    assert body["callSignalAddress"] == ("ipAddress", {"ip": bytes([127, 0, 0, 1]), "port": 6001})
    [(kind, body, _)] = lrq("80000001")
    assert kind == "locationConfirm" and body["callSignalAddress"][1]["port"] == 1720  # type: ignore[index]
    [(kind, body, _)] = lrq("nobody")
    assert kind == "locationReject" and body["rejectReason"] == ("requestDenied", 0)
    brq = {"requestSeqNum": 6, "endpointIdentifier": endpoint_id, "conferenceID": bytes(16),
           "callReferenceValue": 1, "bandWidth": 3840}
    [(kind, body, where)] = ask("bandwidthRequest", brq)
    assert (kind, body["bandWidth"], where) == ("bandwidthConfirm", 3840, GK)
    [(kind, _, _)] = ask("bandwidthRequest", {**brq, "endpointIdentifier": "EP999999"})
    assert kind == "bandwidthReject"
    irr = {"requestSeqNum": 7, "endpointType": {"terminal": {}, "mc": False, "undefinedNode": False},
           "endpointIdentifier": endpoint_id,
           "rasAddress": ("ipAddress", {"ip": bytes([127, 0, 0, 1]), "port": 6000}),
           "callSignalAddress": [("ipAddress", {"ip": bytes([127, 0, 0, 1]), "port": 6001})]}
    assert ask("infoRequestResponse", irr) == []  # unsolicited, no answer asked for
    [(kind, body, _)] = ask("infoRequestResponse", {**irr, "needResponse": True})
    assert (kind, body["requestSeqNum"]) == ("infoRequestAck", 7)


def test_keepalive_and_expiry() -> None:
    gk = Gatekeeper(time_to_live=60)
    c = client(("8001",), 6000, keepalive_margin=10.0)
    c.discover(0.0)
    exchange(c, gk, 0.0)
    assert c.next_deadline() == 50.0
    c.handle_timer(50.0)  # lightweight RRQ
    [rrq] = c.datagrams_to_send()
    kind, body = asn1.decode_ras(rrq)
    assert kind == "registrationRequest" and body["keepAlive"] and "terminalAlias" not in body
    for reply, _ in gk.receive_datagram(rrq, c.config.ras_address, 50.0):
        c.receive_datagram(reply, 50.0)
    assert gk.lookup("8001", 105.0) is not None  # refreshed until 110
    assert gk.lookup("8001", 111.0) is None  # expired without keep-alive


def test_silent_gatekeeper_retries_then_gives_up() -> None:
    c = client(("8001",), 6000)
    c.discover(0.0)
    sent = len(c.datagrams_to_send())
    now = 0.0
    while c.state is ClientState.DISCOVERING:
        deadline = c.next_deadline()
        assert deadline is not None
        now = deadline
        c.handle_timer(now)
        sent += len(c.datagrams_to_send())
    assert sent == 3 and now == pytest.approx(9.0)  # first try + 2 retries, 3 s apart
    assert c.take_events() == [RegistrationLost("gatekeeper did not answer")]


def test_duplicate_alias_rejected_and_garbage_ignored() -> None:
    gk = Gatekeeper()
    first, second = client(("8001",), 6000), client(("8001",), 7000)
    for c in (first, second):
        c.discover(0.0)
        exchange(c, gk, 0.0)
    assert first.state is ClientState.REGISTERED
    assert second.state is ClientState.FAILED
    assert second.take_events() == [RegistrationLost("RRJ duplicateAlias")]
    assert gk.receive_datagram(b"\xff\x00garbage", GK, 0.0) == []
    first.receive_datagram(b"\x00\x01", 0.0)  # ignored, no exception


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80))
def test_gatekeeper_fuzz(data: bytes) -> None:
    gk = Gatekeeper()
    for reply, _ in gk.receive_datagram(data, GK, 0.0):
        asn1.decode_ras(reply)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 119), st.integers(0, 255))
def test_client_fuzz(data: bytes, position: int, value: int) -> None:
    """Garbage and damaged gatekeeper answers never raise in the client and leave it usable."""
    gk = Gatekeeper()
    c = client(("8001",), 6000)
    c.discover(0.0)
    [grq] = c.datagrams_to_send()
    [(gcf, _)] = gk.receive_datagram(grq, c.config.ras_address, 0.0)
    damaged = bytearray(gcf)
    damaged[position % len(damaged)] = value
    for datagram in (data, bytes(damaged), gcf):
        c.receive_datagram(datagram, 0.0)
    c.handle_timer(100.0)
    assert c.state in (ClientState.DISCOVERING, ClientState.REGISTERING, ClientState.FAILED)


async def test_udp_loopback_registration() -> None:
    loop = asyncio.get_running_loop()
    gk = Gatekeeper()
    gk_transport, _ = await loop.create_datagram_endpoint(lambda: GatekeeperProtocol(gk),
                                                          local_addr=("127.0.0.1", 0))
    gk_port = gk_transport.get_extra_info("sockname")[1]
    gk.ras_address = MediaAddress("127.0.0.1", gk_port)
    c = client(("room-101",), 0)
    protocol = RasClientProtocol(c, gk.ras_address)
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=("127.0.0.1", 0))
    try:
        c.discover(loop.time())
        protocol.flush()
        event = await asyncio.wait_for(protocol.events.get(), 5)
        assert isinstance(event, Registered)
        assert gk.lookup("room-101", loop.time()) is not None
    finally:
        protocol.close()
        transport.close()
        gk_transport.close()


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_ras_messages_decode_in_wireshark(tmp_path: Path) -> None:
    gk = Gatekeeper()
    log: list[bytes] = []
    c = client(("80000001", "会议室"), 5000)
    c.discover(0.0)
    exchange(c, gk, 0.0, log)
    c.handle_timer(1000.0)
    exchange(c, gk, 1000.0, log)
    c.admit(b"\x01" * 16, b"\x02" * 16, 77, "80000001", MediaAddress("127.0.0.1", 1720), False, 1000.0)
    exchange(c, gk, 1000.0, log)
    c.disengage(b"\x01" * 16, b"\x02" * 16, 77, False, 1001.0)
    exchange(c, gk, 1001.0, log)
    c.unregister(1002.0)
    exchange(c, gk, 1002.0, log)
    pcap = tmp_path / "ras.pcap"
    writer = PcapWriter(pcap)
    for i, datagram in enumerate(log):
        ends = (("10.0.0.1", 5000), ("10.0.0.2", 1719))
        writer.udp(*(ends if i % 2 == 0 else ends[::-1]), datagram)
    writer.close()
    assert wire_problems(pcap) == []
    kinds = tshark_fields(pcap, "h225.RasMessage", "h225.RasMessage")
    assert len(kinds) == len(log) >= 12


ALIASES = st.lists(st.one_of(st.text(alphabet="0123456789", min_size=1, max_size=12),
                             st.text(alphabet=st.characters(min_codepoint=0x41, max_codepoint=0x9FFF), min_size=1,
                                     max_size=12)), min_size=1, max_size=3, unique=True)


@settings(max_examples=40, deadline=None)
@given(ALIASES, st.integers(1024, 65000), st.booleans())
def test_ras_round_trip(aliases: list[str], port: int, answer: bool) -> None:
    c = client(tuple(aliases), port)
    c.discover(0.0)
    c.register(0.0)
    c.endpoint_id = "EP000001"
    c.admit(bytes(range(16)), bytes(16), port % 32768, aliases[0], MediaAddress("10.1.2.3", port), answer, 0.0)
    for datagram in c.datagrams_to_send():
        value = asn1.decode_ras(datagram)
        assert asn1.encode_ras(value) == datagram
        assert asn1.missing_mandatory(asn1.h225_object(value[0][0].upper() + value[0][1:]), value[1]) == []


async def test_calls_through_gatekeeper_by_alias() -> None:
    """MCU and room register; the room dials the conference alias; ARQ/ACF, call, DRQ."""
    loop = asyncio.get_running_loop()
    gk = Gatekeeper()
    gk_transport, _ = await loop.create_datagram_endpoint(lambda: GatekeeperProtocol(gk),
                                                          local_addr=("127.0.0.1", 0))
    gk.ras_address = MediaAddress("127.0.0.1", gk_transport.get_extra_info("sockname")[1])
    closers = [gk_transport.close]
    incoming: asyncio.Queue[CallHandle] = asyncio.Queue()
    endpoints: list[H323Endpoint] = []
    ras: list[RasClientProtocol] = []
    try:
        for alias, is_mcu in (("80000001", True), ("8001", False)):
            endpoint = H323Endpoint(EndpointConfig(h323_id=alias, is_mcu=is_mcu),
                                    on_incoming=incoming.put_nowait if is_mcu else None)
            signal = await endpoint.listen("127.0.0.1", 0)
            protocol = RasClientProtocol(RasClient(RasClientConfig((alias,), MediaAddress("127.0.0.1", 0), signal,
                                                                   is_mcu=is_mcu)), gk.ras_address)
            transport, _ = await loop.create_datagram_endpoint(functools.partial(lambda p: p, protocol),
                                                               local_addr=("127.0.0.1", 0))
            protocol.client.config.ras_address = MediaAddress("127.0.0.1", transport.get_extra_info("sockname")[1])
            closers.append(protocol.close)
            await asyncio.wait_for(protocol.register(), 5)
            endpoint.gatekeeper = protocol
            endpoints.append(endpoint)
            ras.append(protocol)
        mcu, room = endpoints
        with pytest.raises(ConnectionRefusedError, match="calledPartyNotRegistered"):
            await room.dial(None, "99999999")
        caller = await room.dial(None, "80000001")
        callee = await asyncio.wait_for(incoming.get(), 5)
        await callee.wait_for(CallIncoming)
        await callee.answer()  # waits for the MCU's own ARQ (answerCall) to be confirmed
        await caller.wait_for(CallConnected)
        assert len(gk.admitted) == 2
        caller.release()
        await callee.wait_for(CallReleased)
        await caller.wait_closed()
        await callee.wait_closed()
        for _ in range(50):
            if not gk.admitted:
                break
            await asyncio.sleep(0.02)
        assert gk.admitted == {}  # both sides sent DRQ
    finally:
        for endpoint in endpoints:
            await endpoint.close()
        for close in closers:
            close()


# ---------------------------------------------------------------------------------------------- H.235.1

WALL = 1_780_000_000.0  # these sans-I/O machines are driven with wall-clock seconds (clock_offset 0)


def signed_client(alias: str, port: int, password: str | None) -> RasClient:
    c = client((alias,), port)
    c.config.password = password
    return c


def test_h235_registration_admission_and_attacks() -> None:
    """RRQ/ARQ signed with HMAC-SHA1-96: the right password registers and admits; a wrong one,
    none, a replay, a tampered datagram, an old timestamp or another gatekeeper's token do not."""
    gk = Gatekeeper(time_to_live=60, accounts={"room-7": "seven-secret"})
    good = signed_client("room-7", 7000, "seven-secret")
    good.discover(WALL)
    sent: list[bytes] = []
    exchange(good, gk, WALL, sent)
    assert good.state is ClientState.REGISTERED, gk.security_log
    registration = next(iter(gk.registrations.values()))
    assert registration.account == "room-7"
    rrq = next(d for d in sent if asn1.decode_ras(d)[0] == "registrationRequest")
    rcf = next(d for d in sent if asn1.decode_ras(d)[0] == "registrationConfirm")
    assert asn1.decode_ras(rcf)[1]["cryptoTokens"]  # answered in kind

    def answer(datagram: bytes, now: float = WALL) -> tuple[str, object]:
        [(reply, _)] = gk.receive_datagram(datagram, good.config.ras_address, now)
        kind, body = asn1.decode_ras(reply)
        return kind, body.get("rejectReason")

    good.admit(b"\x05" * 16, b"\x06" * 16, 9, "80000001", MediaAddress("127.0.0.1", 1720), False, WALL + 1)
    [arq] = good.datagrams_to_send()
    assert answer(arq, WALL + 1)[0] == "admissionConfirm"
    assert answer(arq, WALL + 1)[0] == "admissionConfirm"  # a retransmission (the same datagram) is fine
    # An older message replayed after newer ones: refused.
    assert gk.authenticated_call(b"\x05" * 16, "127.0.0.1", WALL + 2) == "room-7"
    assert gk.authenticated_call(b"\x05" * 16, "127.0.0.1", WALL + 2) is None  # once only
    assert answer(rrq, WALL + 2) == ("registrationReject", ("securityDenial", 0))
    # A flipped bit anywhere (here: the bandwidth) breaks the MAC.
    good.admit(b"\x07" * 16, b"\x06" * 16, 10, "80000001", MediaAddress("127.0.0.1", 1720), False, WALL + 3)
    [arq2] = good.datagrams_to_send()
    kind, body = asn1.decode_ras(arq2)
    body["bandWidth"] = 1
    assert answer(asn1.encode_ras((kind, body)), WALL + 3) == ("admissionReject", ("securityDenial", 0))
    assert gk.authenticated_call(b"\x07" * 16, "127.0.0.1", WALL + 3) is None
    # Wrong password, no password, a clock far off, a token for another gatekeeper.
    for password, now, gk_id in (("wrong-secret", WALL, None), (None, WALL, None),
                                 ("seven-secret", WALL + 3600, None), ("seven-secret", WALL + 10, "other-gk")):
        bad = signed_client("room-7", 7100, password)
        bad.gatekeeper_id = gk_id
        bad.register(now if gk_id is None else now)
        [datagram] = bad.datagrams_to_send()
        assert answer(datagram, WALL + 5) == ("registrationReject", ("securityDenial", 0)), (password, now, gk_id)
    assert [line.split(": ")[-1] for line in gk.security_log[-4:]] == [
        "wrong password or altered message", "no H.235.1 token", "timestamp outside the window",
        "token for gatekeeper 'other-gk'"]
    # An alias without an account registers unauthenticated and is never an authenticated caller.
    plain = client(("visitor",), 7200)
    plain.discover(WALL)
    exchange(plain, gk, WALL + 6)
    assert plain.state is ClientState.REGISTERED
    plain.admit(b"\x09" * 16, b"\x06" * 16, 11, "80000001", MediaAddress("127.0.0.1", 1720), False, WALL + 6)
    exchange(plain, gk, WALL + 6)
    assert gk.authenticated_call(b"\x09" * 16, "127.0.0.1", WALL + 7) is None
