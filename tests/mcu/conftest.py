"""Fixtures for the MCU tests: a room on a fake clock that records its events."""
from __future__ import annotations

import pytest

from mcu.clock import FakeClock
from mcu.events import RoomEvent
from mcu.room import Room, RoomSettings
from mcu.text import TextRenderer


@pytest.fixture(scope="session")
def text() -> TextRenderer:
    return TextRenderer()  # Debian fonts-wqy-microhei


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[RoomEvent]:
    return []


@pytest.fixture
def room(clock: FakeClock, events: list[RoomEvent], text: TextRenderer) -> Room:
    return Room("80000001", "测试会议", clock=clock, on_event=events.append, settings=RoomSettings(), text=text)
