"""Fixtures for the MCU tests: a room on a fake clock that records its events; a started conference."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The tests import `mcu_helpers` from this folder; make that work in every pytest import mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from mcu.clock import FakeClock  # noqa: E402
from mcu.conferences import ConferenceService, RunningConference
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


@pytest.fixture
async def conference(request: pytest.FixtureRequest, conferences: ConferenceService) -> RunningConference:
    """A new conference with no sites, started in the shared ``conferences`` fixture (tests/conftest.py;
    override ``room_settings`` for its canvas). A module may set ``CONFERENCE_NAME`` (default 测试会议)."""
    record = await conferences.create(name=getattr(request.module, "CONFERENCE_NAME", "测试会议"), actor="test")
    return await conferences.start_conference(record.id, actor="test")
