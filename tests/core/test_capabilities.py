"""Capability services start per role, in order, and stop in reverse, also when a start fails."""
from __future__ import annotations

import pytest

from commandcenter import capabilities as caps
from core.runtime import CoreServices

EVENTS: list[str] = []


class Running:
    def __init__(self, name: str) -> None:
        self.name = name

    async def stop(self) -> None:
        EVENTS.append(f"stop {self.name}")


async def start_media(core: CoreServices) -> Running:
    EVENTS.append("start media")
    return Running("media")


async def start_gateway(core: CoreServices) -> Running:
    assert "media" in core.capabilities  # later capabilities see earlier ones
    EVENTS.append("start gateway")
    return Running("gateway")


async def start_recorder(core: CoreServices) -> Running:
    EVENTS.append("start recorder")
    return Running("recorder")


async def start_switched_off(core: CoreServices) -> None:
    EVENTS.append("start switched-off")
    return None


async def start_broken(core: CoreServices) -> Running:
    raise RuntimeError("camera store unwritable")


SPECS = [
    caps.CapabilitySpec("media", frozenset({"mcu"}), f"{__name__}:start_media"),
    caps.CapabilitySpec("gateway", frozenset({"mcu"}), f"{__name__}:start_gateway"),
    caps.CapabilitySpec("off", frozenset({"mcu"}), f"{__name__}:start_switched_off"),
    caps.CapabilitySpec("recorder", frozenset({"recorder"}), f"{__name__}:start_recorder"),
]


async def test_roles_order_and_reverse_stop(services: CoreServices, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "CAPABILITIES", SPECS)
    EVENTS.clear()
    await caps.start_capabilities(services, "mcu")
    assert EVENTS == ["start media", "start gateway", "start switched-off"]
    assert list(services.capabilities) == ["media", "gateway"]
    await caps.stop_capabilities(services)
    assert EVENTS[-2:] == ["stop gateway", "stop media"] and services.capabilities == {}

    EVENTS.clear()
    await caps.start_capabilities(services, "all")
    assert list(services.capabilities) == ["media", "gateway", "recorder"]
    await caps.stop_capabilities(services)


async def test_a_failing_start_stops_what_was_started(services: CoreServices,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "CAPABILITIES", [
        SPECS[0], caps.CapabilitySpec("broken", frozenset({"mcu"}), f"{__name__}:start_broken")])
    EVENTS.clear()
    with pytest.raises(RuntimeError, match="unwritable"):
        await caps.start_capabilities(services, "mcu")
    assert EVENTS == ["start media", "stop media"] and services.capabilities == {}
