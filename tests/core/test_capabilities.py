"""Capability services start per role, in order, and stop in reverse, also when a start fails."""
from __future__ import annotations

from typing import Any

import pytest

from alerts import capability as alerts_capability
from commandcenter.node import start_node
from core.runtime import CoreServices
from dispatch import capability as dispatch_capability
from dispatch.calltaking import capability as desk_capability
from mcu import capability as mcu_capability
from monitoring import capability as monitoring_capability
from recorder import capability as recorder_capability

EVENTS: list[str] = []


class Running:
    def __init__(self, name: str) -> None:
        self.name = name
        self.conferences = f"{name}'s conferences"
        self.endpoint = f"{name}'s endpoint"
        self.service, self.log, self.webrtc = self, None, None  # what the root reads of an mcu / recorder
        self.content = None  # the mcu's content service (content sharing off in this stub)

    async def stop(self) -> None:
        EVENTS.append(f"stop {self.name}")


async def start_mcu(core: CoreServices) -> Running:
    EVENTS.append("start mcu")
    return Running("mcu")


async def start_sip(core: CoreServices, conferences: Any, content: Any = None) -> Running:
    assert conferences == "mcu's conferences"  # later capabilities get earlier ones
    EVENTS.append("start sip")
    return Running("sip")


async def start_switched_off(*args: Any, **kwargs: Any) -> None:
    EVENTS.append("start switched-off")
    return None


async def start_recorder(core: CoreServices) -> Running:
    EVENTS.append("start recorder")
    return Running("recorder")


async def start_dispatch(core: CoreServices, conference: Any, sms: Any = None) -> Running:
    assert sms is None  # SMS is off unless sms.enabled
    EVENTS.append("start dispatch")
    return Running("dispatch")


async def start_desk(core: CoreServices, dispatch: Running, **collaborators: Any) -> Running:
    assert dispatch.name == "dispatch" and collaborators["sip_endpoint"] == "sip's endpoint"
    EVENTS.append("start desk")
    return Running("desk")


async def start_alerts(core: CoreServices, rooms: Any, sms: Any = None) -> Running:
    assert rooms is not None and rooms.conferences == "mcu's conferences"  # the MCU as its WarningRooms
    EVENTS.append("start alerts")
    return Running("alerts")


async def start_broken(core: CoreServices, conferences: Any, content: Any = None) -> Running:
    raise RuntimeError("camera store unwritable")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    EVENTS.clear()
    monkeypatch.setattr(mcu_capability, "start_mcu", start_mcu)
    monkeypatch.setattr(mcu_capability, "start_sip", start_sip)
    for name in ("start_h323", "start_cascade", "start_cascade_control"):
        monkeypatch.setattr(mcu_capability, name, start_switched_off)
    monkeypatch.setattr(recorder_capability, "start", start_recorder)
    monkeypatch.setattr(recorder_capability, "start_conference_recording", start_switched_off)
    monkeypatch.setattr(dispatch_capability, "start", start_dispatch)
    monkeypatch.setattr(desk_capability, "start", start_desk)
    monkeypatch.setattr(alerts_capability, "start", start_alerts)
    monkeypatch.setattr(monitoring_capability, "start", start_switched_off)


async def test_roles_order_and_reverse_stop(services: CoreServices, fakes: None) -> None:
    node = await start_node(services, "mcu")
    assert EVENTS == ["start mcu", "start sip", "start switched-off", "start switched-off", "start switched-off",
                      "start switched-off"]
    assert node.running() == ["rpc", "mcu", "sip"]  # rpc: heartbeat and pins, always first
    await node.stop_capabilities()
    assert EVENTS[-2:] == ["stop sip", "stop mcu"] and node.running() == []

    EVENTS.clear()
    node = await start_node(services, "all")
    assert node.running() == ["rpc", "mcu", "sip", "recorder", "dispatch", "desk", "alerts"]
    await node.stop_capabilities()
    assert EVENTS[-6:] == ["stop alerts", "stop desk", "stop dispatch", "stop recorder", "stop sip", "stop mcu"]

    EVENTS.clear()
    node = await start_node(services, "recorder")
    assert node.running() == ["rpc", "recorder"] and EVENTS == ["start recorder", "start switched-off"]
    await node.stop_capabilities()


async def test_a_failing_start_stops_what_was_started(services: CoreServices, fakes: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcu_capability, "start_sip", start_broken)
    with pytest.raises(RuntimeError, match="unwritable"):
        await start_node(services, "mcu")
    assert EVENTS == ["start mcu", "stop mcu"]
