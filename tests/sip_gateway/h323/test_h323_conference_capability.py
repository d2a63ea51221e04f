"""The `h323` capability: started in the MCU role after `mcu`, it answers calls on the configured
port and joins them to conferences; switched off in the settings it starts nothing."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from commandcenter.node import Node, start_node
from config.settings import Settings
from core.runtime import CoreServices
from dispatch import capability as dispatch_capability
from dispatch.calltaking import capability as desk_capability
from mcu import capability as mcu_capability
from mcu.conferences import ConferenceError
from mcu.legs.h323_bridge import H323Capability
from mcu.legs.h323_settings import bridge_settings
from monitoring import capability as monitoring_capability
from recorder import capability as recorder_capability
from sip_gateway.h323.events import CallReleased, MediaAddress
from tests.sip_gateway.h323.h323_conference_kit import Terminal, free_port
from tests.sip_gateway.h323.test_h323_gatekeeper import free_udp_port, register


async def test_h323_starts_after_the_mcu_in_the_mcu_role(services: CoreServices,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []

    def recording(name: str) -> Any:
        async def start(*args: Any, **kwargs: Any) -> None:
            started.append(name)
        return start

    async def start_mcu(core: CoreServices) -> Any:
        started.append("mcu")
        return SimpleNamespace(conferences=None, webrtc=None, content=None)

    monkeypatch.setattr(mcu_capability, "start_mcu", start_mcu)
    for name in ("start_sip", "start_h323", "start_cascade", "start_cascade_control"):
        monkeypatch.setattr(mcu_capability, name, recording(name.removeprefix("start_")))
    for name in ("start", "start_conference_recording"):
        monkeypatch.setattr(recorder_capability, name, recording("recorder." + name))

    async def no_plans() -> list[Any]:
        return []

    async def stopped() -> None:
        return None

    async def start_dispatch(*args: Any, **kwargs: Any) -> Any:  # the desk starts on what dispatch returns
        started.append("dispatch")
        return SimpleNamespace(service=None, plans=SimpleNamespace(plans=no_plans), stop=stopped)

    monkeypatch.setattr(dispatch_capability, "start", start_dispatch)
    monkeypatch.setattr(monitoring_capability, "start", recording("monitoring"))
    monkeypatch.setattr(desk_capability, "start", recording("desk"))
    for role in ("web", "recorder"):
        await start_node(services, role)
    assert "h323" not in started
    await start_node(services, "mcu")
    assert started.index("mcu") < started.index("h323")


async def test_capability_answers_calls_into_the_demo_conference(seeded_db_url: str, tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(var_dir=tmp_path, database={"url": seeded_db_url},
                        h323={"signalling_port": port}, rtp={"port_min": 31000, "port_max": 31999})
    core = await CoreServices.start(settings)
    node = Node(core)
    terminal = Terminal(alias="luoding")
    try:
        node = await start_node(core, "mcu")
        capability = node.h323
        assert isinstance(capability, H323Capability)
        assert capability.bridge.address == MediaAddress("127.0.0.1", port)
        await terminal.dial(MediaAddress("127.0.0.1", port), "80000001")
        assert node.mcu is not None
        conf = node.mcu.conferences.running("80000001")
        assert conf is not None
        await terminal.until(lambda: any(s["site_id"] == "h323-luoding" and s["status"] == "joined"
                                         for s in conf.site_list()), 15)
        # The chair console's buttons reach H.323 sites through the registered dialer.
        site = next(s for s in conf.site_list() if s["site_id"] == "h323-luoding")
        assert site["protocol"] == "h323" and site["dial"] is True
        conferences = node.mcu.conferences
        await conferences.dial("80000001", "h323-luoding", "hangup", "chair")
        await terminal.until(lambda: bool(terminal.of(CallReleased)), 10)
        with pytest.raises(ConferenceError, match="不在通话中"):
            await conferences.dial("80000001", "h323-luoding", "hangup", "chair")
    finally:
        await terminal.close()
        await node.stop()


async def test_capability_switched_off(seeded_db_url: str, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, database={"url": seeded_db_url},
                        h323={"enabled": False, "signalling_port": free_port()})
    core = await CoreServices.start(settings)
    node = Node(core)
    try:
        node = await start_node(core, "mcu")
        assert node.h323 is None and node.mcu is not None
    finally:
        await node.stop()


def test_gatekeeper_settings_reach_the_bridge() -> None:
    settings = Settings(h323={"gatekeeper": "client", "gatekeeper_address": "10.20.0.5", "aliases": ["yunfu-mcu"],
                              "time_to_live_seconds": 120, "ras_port": 0})
    bridge = bridge_settings(settings)
    assert (bridge.gatekeeper, bridge.gatekeeper_address, bridge.aliases, bridge.time_to_live, bridge.ras_port) == (
        "client", "10.20.0.5", ("yunfu-mcu",), 120, 0)


async def test_capability_runs_the_gatekeeper_in_server_mode(seeded_db_url: str, tmp_path: Path) -> None:
    """``[h323] gatekeeper = "server"``: the capability answers RAS on ``ras_port``; a terminal
    registers there and is listed in the bridge's gatekeeper status."""
    ras_port = free_udp_port()
    settings = Settings(var_dir=tmp_path, database={"url": seeded_db_url},
                        h323={"signalling_port": free_port(), "gatekeeper": "server", "ras_port": ras_port},
                        rtp={"port_min": 31000, "port_max": 31999})
    core = await CoreServices.start(settings)
    node = Node(core)
    terminal = Terminal(alias="xinxing-h323")
    protocol = None
    try:
        node = await start_node(core, "mcu")
        assert node.h323 is not None
        bridge = node.h323.bridge
        await terminal.listen(free_port())
        protocol = await register(terminal, MediaAddress("127.0.0.1", ras_port), ("xinxing-h323",))
        status = bridge.gatekeeper_status()
        assert status["mode"] == "server" and status["ras_address"] == f"127.0.0.1:{ras_port}"
        assert [t["aliases"] for t in status["terminals"]] == [["xinxing-h323"]]
    finally:
        if protocol is not None:
            protocol.close()
        await terminal.close()
        await node.stop()
