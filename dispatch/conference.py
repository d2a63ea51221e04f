"""The small interface between dispatch and the MCU for emergency command conferences.

Dispatch does not import the MCU (DESIGN: dispatch talks to mcu through a small interface). It
records the conference (table ``command_conferences``) and hands a ``CommandConference`` to a
``ConferenceStarter``. The default starter publishes ``conference.command_requested`` on the bus;
the MCU (or whoever wires it) subscribes, creates the room with these meeting rooms and the
dispatcher, and starts it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core.bus import Bus


@dataclass(frozen=True)
class CommandConference:
    conference_id: str  # 8 digits, dialable like every conference address
    incident_id: str
    name: str
    county_code: int | None
    rooms: tuple[str, ...]  # site-plan meeting room ids: the county leaders' rooms (+ city command room)
    dispatcher: str  # username of the dispatcher who asked, joins from the browser
    training: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"conference_id": self.conference_id, "incident_id": self.incident_id, "name": self.name,
                "county_code": self.county_code, "rooms": list(self.rooms), "dispatcher": self.dispatcher,
                "training": self.training, "join_url": f"/join/{self.conference_id}"}


class ConferenceStarter(Protocol):
    async def start(self, conference: CommandConference) -> None: ...


class BusConferenceStarter:
    """Asks for the conference with a ``conference.command_requested`` event (chair/operator see it)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def start(self, conference: CommandConference) -> None:
        await self.bus.publish("conference.command_requested", conference.as_json())
