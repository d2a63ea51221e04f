"""Gatekeeper modes of the MCU (settings ``h323.gatekeeper``), with real calls and media.

* server: our room system registers to the MCU's built-in gatekeeper and the chair console's
  invite button dials it by the alias in the site plan; a second terminal dials a conference
  by its number through the same gatekeeper; unregistered aliases fail with a clear status.
* client: the MCU registers to a gatekeeper run here by our own RAS server; ARQ/ACF before
  calls both ways, DRQ after, re-registration after the gatekeeper restarts, URQ on stop;
  the RAS traffic is captured on loopback and decoded by tshark with nothing malformed.
* settings: bad gatekeeper settings are configuration errors naming the field.
"""
from __future__ import annotations

import asyncio
import functools
import socket
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import ConfigError
from config.settings import load_settings
from config.site_plan import Endpoint
from core.runtime import CoreServices
from mcu.conferences import ConferenceError
from mcu.legs.h323_bridge import H323SiteDialer
from mcu.legs.h323_settings import parse_target
from sip_gateway.aio.ras import GatekeeperProtocol, RasClientProtocol
from sip_gateway.h323.events import CallConnected, CallReleased, MediaAddress
from sip_gateway.h323.ras import Gatekeeper, RasClient, RasClientConfig
from tests.sip_gateway.h323.h323_conference_kit import (
    RED,
    Mcu,
    OtherSite,
    Terminal,
    amplitude_at,
    free_port,
    start_mcu,
    stop_mcu,
)
from tests.sip_gateway.h323.h323_testkit import TSHARK, LoopbackCapture, tshark_fields, wire_problems
from tests.sip_gateway.h323.test_h323_conference_dialing import clean, eventually, status

CONFERENCE = "80000001"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def detail(mcu: Mcu, site_id: str) -> str:
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    return str(next(s["detail"] for s in conf.site_list() if s["site_id"] == site_id))


def plan_with_h323_room(services: CoreServices, room_id: str, address: str) -> None:
    """The site plan's meeting room ``room_id`` reached by H.323 at ``address``."""
    rooms = [r.model_copy(update={"endpoints": [Endpoint(protocol="h323", address=address, name=r.name)]})
             if r.id == room_id else r for r in services.plan.meeting_rooms]
    services.plan = services.plan.model_copy(update={"meeting_rooms": rooms})


async def register(terminal: Terminal, gatekeeper: MediaAddress, aliases: tuple[str, ...]) -> RasClientProtocol:
    """Register a terminal's endpoint (listening or not) to ``gatekeeper``; ARQs from now on."""
    loop = asyncio.get_running_loop()
    signal = MediaAddress("127.0.0.1", terminal.config.signalling_port)
    protocol = RasClientProtocol(RasClient(RasClientConfig(aliases, MediaAddress("127.0.0.1", 0), signal,
                                                           is_mcu=False)), gatekeeper)
    transport, _ = await loop.create_datagram_endpoint(functools.partial(lambda p: p, protocol),
                                                       local_addr=("127.0.0.1", 0))
    protocol.client.config.ras_address = MediaAddress("127.0.0.1", transport.get_extra_info("sockname")[1])
    await asyncio.wait_for(protocol.register(), 10)
    terminal.endpoint.gatekeeper = protocol
    return protocol


async def start_gatekeeper(port: int) -> tuple[Gatekeeper, asyncio.DatagramTransport]:
    gk = Gatekeeper(identifier="test-gk", ras_address=MediaAddress("127.0.0.1", port), time_to_live=3)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: GatekeeperProtocol(gk), local_addr=("127.0.0.1", port))
    return gk, transport


async def sees_room(terminal: Terminal) -> None:
    """The terminal decodes the composite (the other site's red pane) and hears its 440 Hz tone."""
    await terminal.until(lambda: len(terminal.frames) > 2 and len(terminal.audio) > 60, 20)
    rgb = terminal.frames[-1].to_ndarray(format="rgb24")
    assert ((abs(rgb.astype(int) - RED).sum(axis=2) < 90).mean()) > 0.05
    samples = np.concatenate(terminal.audio[-40:])
    a440, a1000 = amplitude_at(samples, 440), amplitude_at(samples, 1000)
    assert a440 > 20 and a440 > 5 * a1000, (a440, a1000)  # N-1: the room, not its own tone


def test_parse_target() -> None:
    assert parse_target("alias:luoding-h323") == ("luoding-h323", None)
    assert parse_target("8001") == ("8001", None)
    assert parse_target("room@10.1.2.3:1721") == ("room", MediaAddress("10.1.2.3", 1721))
    assert parse_target("10.1.2.3") == (None, MediaAddress("10.1.2.3", 1720))
    for bad in ("alias:", "alias:\x01x", "@10.1.2.3", "bad host!"):
        with pytest.raises(ValueError, match="无效的 H.323"):
            parse_target(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_target_raises_only_value_error(text: str) -> None:
    try:
        alias, address = parse_target(text)
    except ValueError:
        return
    assert alias is not None or address is not None


async def test_server_mode_terminal_registers_and_is_dialled_by_alias(services: CoreServices) -> None:
    plan_with_h323_room(services, "luoding-room", "alias:luoding-h323")
    ras_port = free_udp_port()
    mcu = await start_mcu(services, free_port(), gatekeeper="server", ras_port=ras_port)
    mcu.conferences.register_dialer("h323", H323SiteDialer(mcu.bridge))
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None and mcu.bridge.local_gatekeeper is not None
    gk = mcu.bridge.local_gatekeeper.gatekeeper
    other = await OtherSite.join(conf)
    terminal = Terminal(alias="luoding-h323", name="罗定市会议室")
    caller = Terminal(alias="yunan-h323", name="郁南县会议室", tone_hz=1500)
    ras: list[RasClientProtocol] = []
    try:
        await terminal.listen(free_port())
        ras.append(await register(terminal, MediaAddress("127.0.0.1", ras_port), ("luoding-h323", "7001")))
        assert mcu.bridge.local_gatekeeper.lookup("luoding-h323") == MediaAddress(
            "127.0.0.1", terminal.config.signalling_port)
        [registered] = mcu.bridge.gatekeeper_status()["terminals"]
        assert registered["aliases"] == ["luoding-h323", "7001"]
        # The chair console's invite button: the plan says alias:luoding-h323.
        await mcu.conferences.dial(CONFERENCE, "luoding-room", "invite", "chair")
        await eventually(lambda: status(mcu, "luoding-room") == "joined", 15)
        await sees_room(terminal)
        assert len(gk.admitted) == 1  # the terminal asked admission to answer (ARQ answerCall)
        # A second terminal dials the conference by its number through the gatekeeper.
        ras.append(await register(caller, MediaAddress("127.0.0.1", ras_port), ("yunan-h323",)))
        await caller.dial(None, CONFERENCE)  # no address: the gatekeeper resolves the number
        await eventually(lambda: status(mcu, "h323-yunan-h323") == "joined", 15)
        await caller.until(lambda: len(caller.frames) > 2, 15)
        # Unknown aliases and numbers: a clear failed status, no call.
        for site_id, target in (("yunan-room", "alias:nobody"), ("xinxing-room", "7999")):
            with pytest.raises(ConnectionError, match="未在本机网守注册"):
                await mcu.bridge.invite(CONFERENCE, site_id, target)
            assert status(mcu, site_id) == "failed" and "未在本机网守注册" in detail(mcu, site_id)
        # The E.164 number of the registered terminal works as well (redial goes there again).
        await mcu.conferences.dial(CONFERENCE, "luoding-room", "hangup", "chair")
        await eventually(lambda: status(mcu, "luoding-room") == "left")
        await mcu.bridge.invite(CONFERENCE, "luoding-room", "7001")
        await eventually(lambda: status(mcu, "luoding-room") == "joined", 15)
        # The terminal's registration expires (keep-alives stop): the alias no longer resolves.
        await mcu.conferences.dial(CONFERENCE, "luoding-room", "hangup", "chair")
        await eventually(lambda: status(mcu, "luoding-room") == "left")  # hung up right after joining
        ras[0].close()
        gk.expire(float("inf"))
        with pytest.raises(ConferenceError, match="未在本机网守注册"):
            await mcu.conferences.dial(CONFERENCE, "luoding-room", "redial", "chair")
        assert status(mcu, "luoding-room") == "failed"
    finally:
        other.stop()
        for protocol in ras:
            protocol.close()
        await terminal.close()
        await caller.close()
        await stop_mcu(mcu)


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
async def test_client_mode_registers_admits_and_survives_gatekeeper_restart(services: CoreServices,
                                                                           tmp_path: Path) -> None:
    gk_port = free_udp_port()
    pcap = tmp_path / "ras.pcap"
    gk, gk_transport = await start_gatekeeper(gk_port)
    transports = [gk_transport]
    terminal = Terminal(alias="room-101", name="连滩镇会议室")
    ras: list[RasClientProtocol] = []
    mcu: Mcu | None = None
    with LoopbackCapture(pcap, f"udp port {gk_port}"):
        try:
            mcu = await start_mcu(services, free_port(), gatekeeper="client",
                                  gatekeeper_address=f"127.0.0.1:{gk_port}", ras_port=0, aliases=("cc-mcu",))
            keeper = mcu.bridge.registration
            assert keeper is not None
            await asyncio.wait_for(keeper.registered.wait(), 10)
            state = mcu.bridge.gatekeeper_status()
            assert state["registered"] and state["gatekeeper_id"] == "test-gk" and CONFERENCE in state["aliases"]
            mine = next(r for r in gk.registrations.values() if "cc-mcu" in r.aliases)
            assert CONFERENCE in mine.aliases  # the conference ids are E.164 numbers of the MCU
            assert mine.call_signal == mcu.address
            conf = mcu.conferences.running(CONFERENCE)
            assert conf is not None
            other = await OtherSite.join(conf)
            # Dial-out by alias: ARQ → ACF with the terminal's address → Setup.
            await terminal.listen(free_port())
            ras.append(await register(terminal, MediaAddress("127.0.0.1", gk_port), ("room-101",)))
            await mcu.bridge.invite(CONFERENCE, "lianta-room", "alias:room-101")
            await eventually(lambda: status(mcu, "lianta-room") == "joined", 15)
            await sees_room(terminal)
            assert len(gk.admitted) == 2  # the MCU's ARQ and the terminal's (answerCall)
            with pytest.raises(ConnectionError, match="别名 nobody 未在网守注册"):
                await mcu.bridge.invite(CONFERENCE, "yunan-room", "alias:nobody")
            assert "未在网守注册" in detail(mcu, "yunan-room")
            assert await mcu.bridge.hangup(CONFERENCE, "lianta-room")
            await eventually(lambda: not gk.admitted, 5)  # DRQ from both sides
            await clean(mcu.bridge)
            # Dial-in by conference number through the gatekeeper: the MCU asks to answer (ARQ).
            handle = await terminal.dial(None, CONFERENCE)
            await handle.wait_for(CallConnected, 15)
            await eventually(lambda: status(mcu, "h323-room-101") == "joined", 15)
            assert len(gk.admitted) == 2
            handle.release()
            await eventually(lambda: not gk.admitted, 5)
            await terminal.until(lambda: bool(terminal.of(CallReleased)))
            other.stop()
            # The gatekeeper restarts (registrations lost): the keep-alive RRQ is refused, the
            # MCU registers again in full.
            gk_transport.close()
            await asyncio.sleep(0.2)  # the socket closes on the next loop iteration
            gk, gk_transport = await start_gatekeeper(gk_port)
            transports.append(gk_transport)
            await eventually(lambda: keeper.registrations >= 2 and keeper.registered.is_set(), 15)
            assert any(CONFERENCE in r.aliases for r in gk.registrations.values())
            await stop_mcu(mcu)  # URQ
            mcu = None
            await eventually(lambda: not gk.registrations, 5)
        finally:
            for protocol in ras:
                protocol.close()
            await terminal.close()
            if mcu is not None:
                await stop_mcu(mcu)
            for transport in transports:
                transport.close()
    options = ("-d", f"udp.port=={gk_port},h225")
    kinds = set(tshark_fields(pcap, "h225.RasMessage", "h225.RasMessage", options=options))
    # 0 GRQ, 3 RRQ, 4 RCF, 5 RRJ, 6 URQ, 7 UCF, 9 ARQ, 10 ACF, 11 ARJ, 15 DRQ, 16 DCF
    assert {"0", "3", "4", "5", "6", "7", "9", "10", "11", "15", "16"} <= kinds, kinds
    assert wire_problems(pcap, options=options) == []


@pytest.mark.parametrize("content,field,words", [
    ('[h323]\ngatekeeper = "client"\n', "h323.gatekeeper_address", "required when gatekeeper"),
    ('[h323]\ngatekeeper = "client"\ngatekeeper_address = "gk host"\n', "h323.gatekeeper_address",
     "host or host:port"),
    ('[h323]\ngatekeeper = "client"\ngatekeeper_address = "10.0.0.1:70000"\n', "h323.gatekeeper_address",
     "port must be"),
    ('[h323]\ngatekeeper = "proxy"\n', "h323.gatekeeper", "'none', 'client' or 'server'"),
    ('[h323]\naliases = ["mcu", "mcu"]\n', "h323.aliases", "distinct"),
    ('[h323]\naliases = [""]\n', "h323.aliases", "printable"),
    ('[h323]\ntime_to_live_seconds = 1\n', "h323.time_to_live_seconds", "greater than or equal to 10"),
    ('[h323]\ngatekeeper_accounts = { room-7 = "short" }\n', "h323.gatekeeper_accounts", "at least 8 characters"),
    ('[h323]\ngatekeeper_accounts = { " room" = "long enough" }\n', "h323.gatekeeper_accounts", "printable"),
])
def test_bad_gatekeeper_settings_name_the_field(tmp_path: Path, content: str, field: str, words: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings(f)
    assert f"field '{field}'" in str(err.value) and words in str(err.value), str(err.value)


def test_good_gatekeeper_settings(tmp_path: Path) -> None:
    f = tmp_path / "good.toml"
    f.write_text('[h323]\ngatekeeper = "client"\ngatekeeper_address = "gk.example:1719"\n'
                 'aliases = ["云浮MCU", "0766"]\ntime_to_live_seconds = 60\n')
    h323 = load_settings(f).h323
    assert (h323.gatekeeper, h323.gatekeeper_address, h323.aliases) == ("client", "gk.example:1719",
                                                                        ["云浮MCU", "0766"])
    assert load_settings(None).h323.gatekeeper == "none"
    f.write_text('[h323]\ngatekeeper = "server"\ngatekeeper_accounts = { "罗定-h323" = "云浮-2024-secret" }\n')
    accounts = load_settings(f).h323.gatekeeper_accounts
    assert {k: v.get_secret_value() for k, v in accounts.items()} == {"罗定-h323": "云浮-2024-secret"}
    assert "云浮-2024-secret" not in repr(load_settings(f))  # never printed


async def test_client_mode_with_gatekeeper_unreachable_still_calls_directly(services: CoreServices) -> None:
    """A gatekeeper name that does not resolve does not stop the MCU: it keeps trying to
    register, and meanwhile calls go directly (no ARQ)."""
    mcu = await start_mcu(services, free_port(), gatekeeper="client", gatekeeper_address="no-such-gk.invalid",
                          ras_port=0, gatekeeper_retry=0.2)
    terminal = Terminal(alias="yunan-h323")
    try:
        keeper = mcu.bridge.registration
        assert keeper is not None
        await eventually(lambda: bool(keeper.last_error), 15)
        state = mcu.bridge.gatekeeper_status()
        assert state["registered"] is False and state["gatekeeper"] == "no-such-gk.invalid:1719"
        await terminal.dial(mcu.address, CONFERENCE)
        await eventually(lambda: status(mcu, "h323-yunan-h323") == "joined", 15)
    finally:
        await terminal.close()
        await stop_mcu(mcu)
