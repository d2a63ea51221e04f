"""Who may enter a conference by H.323 (issue 13, the one admission policy), proven with real calls.

An attacker is our own H.323 terminal, used the way an attacker would: it reaches TCP 1720 and
dials a conference id (or dials the IP and keys the id at the IVR). A conference that admits no
guests and has no PIN, and the room of an emergency call, refuse it with Release Complete
reason ``securityDenied`` (read back from the wire by tshark). A site-plan endpoint (alias AND
address) and a terminal registered with our gatekeeper by H.235.1 password get in; a wrong
H.235.1 password gets RRJ ``securityDenial``.
"""
from __future__ import annotations

import asyncio
import functools
import types
from pathlib import Path

import pytest

from core.runtime import CoreServices
from mcu.call_rooms import CallRoom, CallRooms
from mcu.capability import McuCapability
from sip_gateway.aio.ras import RasClientProtocol
from sip_gateway.h323.events import CallConnected, CallReleased, MediaAddress
from sip_gateway.h323.ras import RasClient, RasClientConfig
from tests.sip_gateway.h323.h323_conference_kit import Mcu, Terminal, free_port, start_mcu, stop_mcu
from tests.sip_gateway.h323.h323_testkit import TSHARK, LoopbackCapture, tshark_fields, wire_problems
from tests.sip_gateway.h323.test_h323_conference_dialing import eventually
from tests.sip_gateway.h323.test_h323_gatekeeper import free_udp_port, plan_with_h323_room

PASSWORD = "柳叶-correct-horse-7"


def _need_tshark() -> str:
    if TSHARK is None:
        pytest.fail("tshark is required (Debian package tshark): it reads the refusal back from the wire")
    return TSHARK


async def closed_conference(mcu: Mcu, name: str = "闭门会商") -> str:
    """A running conference with the defaults a chair gets: no guests, no PIN."""
    record = await mcu.conferences.create(name=name, actor="chair")
    assert not record.guests and not record.pin
    await mcu.conferences.start_conference(record.id, "chair")
    return record.id


async def emergency_room(mcu: Mcu) -> str:
    """The room of an emergency call, opened the way the desk opens it (mcu.call_rooms)."""
    caller = CallRoom(types.SimpleNamespace(send_audio=lambda pcm: None))
    room = await CallRooms(McuCapability(mcu.conferences)).open("call-4711@trunk", caller, "报警人")
    return str(room.conference.id)


async def released(terminal: Terminal, seconds: float = 20.0) -> CallReleased:
    await terminal.until(lambda: bool(terminal.of(CallReleased)), seconds)
    event = terminal.of(CallReleased)[0]
    assert isinstance(event, CallReleased)
    return event


async def dial(mcu: Mcu, number: str | None, alias: str = "attacker", digits: str = "") -> Terminal:
    """A terminal calls the MCU (``number`` None: by IP, then keys ``digits`` at the IVR)."""
    terminal = Terminal(alias=alias, name=alias)
    await terminal.dial(mcu.address, number)
    if digits:
        await terminal.until(lambda: bool(terminal.of(CallConnected)), 15)
        await asyncio.sleep(1.5)  # the IVR's first prompt
        assert terminal.handle is not None
        terminal.handle.send_user_input(digits)
    return terminal


def participants(mcu: Mcu, conference_id: str) -> list[str]:
    conf = mcu.conferences.running(conference_id)
    assert conf is not None
    return sorted(conf.room.participants)


async def test_hostile_caller_is_refused_with_security_denied(services: CoreServices, tmp_path: Path) -> None:
    _need_tshark()
    port = free_port()
    mcu = await start_mcu(services, port)
    terminals: list[Terminal] = []
    try:
        closed = await closed_conference(mcu)
        emergency = await emergency_room(mcu)
        pcap = tmp_path / "refused.pcap"
        with LoopbackCapture(pcap, f"tcp port {port}"):
            for number, digits in ((closed, ""), (emergency, ""), (None, emergency + "#"), (None, closed + "#")):
                terminal = await dial(mcu, number, digits=digits)
                terminals.append(terminal)
                event = await released(terminal)
                assert event.by_remote and event.h225_reason == "securityDenied", (number, digits, event)
            assert participants(mcu, closed) == []
            assert participants(mcu, emergency) == ["caller"]  # only the emergency caller, nobody listening
        assert wire_problems(pcap, tolerate_tcp_sequence=True) == []
        # Wireshark reads Release Complete with reason securityDenied, once per call.
        assert len(tshark_fields(pcap, "q931.message_type == 0x5a && h225.securityDenied_element",
                                 "frame.number")) == 4
        rows = await services.db.fetch("SELECT target, outcome, detail FROM audit_log WHERE action = "
                                       "'conference.join' ORDER BY id")
        refusals = [(r["target"], r["outcome"]) for r in rows]
        assert refusals.count((closed, "denied")) == 2 and refusals.count((emergency, "denied")) == 2
        assert (await mcu.conferences.get(emergency)).kind == "emergency_call"  # type: ignore[union-attr]
    finally:
        for terminal in terminals:
            await terminal.close()
        await stop_mcu(mcu)


async def test_site_plan_endpoint_by_alias_and_address_gets_in(services: CoreServices) -> None:
    plan_with_h323_room(services, "luoding-room", "luoding-h323@127.0.0.1:1720")
    plan_with_h323_room(services, "yunan-room", "yunan-h323@127.0.0.9")
    mcu = await start_mcu(services, free_port())
    terminals: list[Terminal] = []
    try:
        closed = await closed_conference(mcu)
        # The right alias from the plan's address: in.
        terminals.append(await dial(mcu, closed, alias="luoding-h323"))
        await eventually(lambda: participants(mcu, closed) == ["h323-luoding-h323"], 15)
        # The plan's alias from another address (the plan says 127.0.0.9): refused.
        terminals.append(await dial(mcu, closed, alias="yunan-h323"))
        assert (await released(terminals[-1])).h225_reason == "securityDenied"
        assert participants(mcu, closed) == ["h323-luoding-h323"]
        # An emergency-call room stays closed even to a site of the plan.
        emergency = await emergency_room(mcu)
        terminals.append(await dial(mcu, emergency, alias="luoding-h323"))
        assert (await released(terminals[-1])).h225_reason == "securityDenied"
    finally:
        for terminal in terminals:
            await terminal.close()
        await stop_mcu(mcu)


async def register(terminal: Terminal, gatekeeper: MediaAddress, alias: str,
                   password: str | None) -> RasClientProtocol:
    """Register the terminal to ``gatekeeper`` (H.235.1-signed when ``password``); ARQs from now on."""
    loop = asyncio.get_running_loop()
    signal = MediaAddress("127.0.0.1", terminal.config.signalling_port)
    config = RasClientConfig((alias,), MediaAddress("127.0.0.1", 0), signal, is_mcu=False, password=password,
                             request_timeout=1.0, retries=1)
    protocol = RasClientProtocol(RasClient(config), gatekeeper)
    transport, _ = await loop.create_datagram_endpoint(functools.partial(lambda p: p, protocol),
                                                       local_addr=("127.0.0.1", 0))
    config.ras_address = MediaAddress("127.0.0.1", transport.get_extra_info("sockname")[1])
    try:
        await asyncio.wait_for(protocol.register(), 10)
    except BaseException:
        protocol.close()
        raise
    terminal.endpoint.gatekeeper = protocol
    return protocol


async def test_gatekeeper_authenticated_endpoint_gets_in_wrong_password_is_denied(services: CoreServices,
                                                                                  tmp_path: Path) -> None:
    _need_tshark()
    ras_port = free_udp_port()
    mcu = await start_mcu(services, free_port(), gatekeeper="server", ras_port=ras_port,
                          gatekeeper_accounts=(("room-7", PASSWORD),))
    gatekeeper = MediaAddress("127.0.0.1", ras_port)
    protocols: list[RasClientProtocol] = []
    terminals: list[Terminal] = []
    try:
        closed = await closed_conference(mcu)
        pcap = tmp_path / "ras.pcap"
        with LoopbackCapture(pcap, f"udp port {ras_port}"):
            # A wrong password, and no password at all, for the protected alias: RRJ securityDenial.
            for password in ("not-the-password", None):
                impostor = Terminal(alias="room-7")
                terminals.append(impostor)
                with pytest.raises(ConnectionError, match="RRJ securityDenial"):
                    await register(impostor, gatekeeper, "room-7", password)
            # The right password: registered, and its call (ARQ, then Setup) enters the closed conference.
            member = Terminal(alias="room-7", name="七号会议室")
            terminals.append(member)
            await member.listen(free_port())
            protocols.append(await register(member, gatekeeper, "room-7", PASSWORD))
            await member.dial(None, closed)  # the gatekeeper resolves the conference number
            await eventually(lambda: participants(mcu, closed) == ["h323-room-7"], 15)
            # Registered without a password (an alias with no account): it may register, not enter.
            anonymous = Terminal(alias="visitor", name="visitor", tone_hz=1500)
            terminals.append(anonymous)
            await anonymous.listen(free_port())
            protocols.append(await register(anonymous, gatekeeper, "visitor", None))
            await anonymous.dial(None, closed)
            assert (await released(anonymous)).h225_reason == "securityDenied"
            # Direct (no ARQ) from the authenticated terminal's host does not count as authenticated.
            direct = await dial(mcu, closed, alias="room-7")
            terminals.append(direct)
            assert (await released(direct)).h225_reason == "securityDenied"
            assert participants(mcu, closed) == ["h323-room-7"]
            # The gatekeeper does not even resolve the number of an emergency-call room.
            emergency = await emergency_room(mcu)
            assert mcu.bridge.local_gatekeeper is not None
            assert mcu.bridge.local_gatekeeper.lookup(emergency) is None
            assert mcu.bridge.local_gatekeeper.lookup(closed) is not None
            assert emergency not in await mcu.bridge._registered_aliases()
        ras = ("-d", f"udp.port=={ras_port},h225")  # RAS off port 1719: tell Wireshark
        assert wire_problems(pcap, options=ras) == []
        # Wireshark decodes the H.235.1 tokens (HMAC-SHA1-96) and the two RRJ securityDenial.
        assert len(tshark_fields(pcap, "h225.securityDenial_element && h225.registrationReject_element",
                                 "frame.number", options=ras)) == 2
        algorithms = tshark_fields(pcap, "h225.registrationRequest_element && h235.hash", "h235.algorithmOID",
                                   "h235.sendersID", options=ras)
        assert len(algorithms) >= 2 and all(line.startswith("0.0.8.235.0.2.6\troom-7") for line in algorithms), \
            algorithms
        assert tshark_fields(pcap, "h225.admissionRequest_element && h235.hash", "frame.number", options=ras)
        assert tshark_fields(pcap, "h225.registrationConfirm_element && h235.hash", "frame.number",
                             options=ras)  # the gatekeeper answers a protected request in kind
        gk = mcu.bridge.local_gatekeeper
        assert gk is not None and any("wrong password" in line for line in gk.gatekeeper.security_log)
    finally:
        for protocol in protocols:
            protocol.close()
        for terminal in terminals:
            await terminal.close()
        await stop_mcu(mcu)
