"""The small interface between dispatch and the MCU for emergency command conferences.

Dispatch does not import the MCU (DESIGN: dispatch talks to mcu through a small interface). It
records the conference (table ``command_conferences``) and hands a ``CommandConference`` to a
``ConferenceStarter``, which returns the status to record: ``running`` or ``requested``.

* ``BusConferenceStarter`` publishes ``conference.command_requested``. An MCU in another process
  can subscribe to it.
* ``McuConferenceStarter`` also creates and starts the room on this node's MCU when one runs here
  (``commandcenter up``, role ``all``): the composition root passes the MCU's conference service
  as the ``CommandRooms`` this module declares (``create`` with the conference id and the meeting
  rooms, then ``start_conference``). It is dispatch's only way into the MCU's conferences.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from core.bus import Bus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandConference:
    conference_id: str  # 8 digits, dialable like every conference address
    incident_id: str
    name: str
    county_code: int | None
    rooms: tuple[str, ...]  # site-plan meeting room ids: the county leaders' rooms (+ city command room)
    dispatcher: str  # username of the dispatcher who asked, joins from the browser
    training: bool = False
    status: str = "requested"  # running once an MCU started it

    def as_json(self) -> dict[str, Any]:
        return {"conference_id": self.conference_id, "incident_id": self.incident_id, "name": self.name,
                "county_code": self.county_code, "rooms": list(self.rooms), "dispatcher": self.dispatcher,
                "training": self.training, "status": self.status, "join_url": f"/join/{self.conference_id}"}


class ConferenceStarter(Protocol):
    async def start(self, conference: CommandConference) -> str:
        """Start or request the conference; returns ``running`` or ``requested``."""
        ...


class BusConferenceStarter:
    """Asks for the conference with a ``conference.command_requested`` event (chair/operator see it)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def start(self, conference: CommandConference, status: str = "requested") -> str:
        await self.bus.publish("conference.command_requested", {**conference.as_json(), "status": status})
        return status


class CommandRooms(Protocol):
    """What dispatch needs of an MCU to open a command conference (``mcu.conferences.ConferenceService``)."""

    async def create(self, *, name: str, actor: str, sites: list[str] | None = ...,
                     conference_id: str | None = ...) -> object: ...

    async def start_conference(self, conference_id: str, actor: str) -> object: ...


class McuConferenceStarter(BusConferenceStarter):
    """Starts the room on this node's MCU; announces it on the bus either way."""

    def __init__(self, bus: Bus, rooms: CommandRooms) -> None:
        super().__init__(bus)
        self.rooms = rooms

    async def start(self, conference: CommandConference, status: str = "requested") -> str:
        try:
            await self.rooms.create(name=conference.name[:100], actor=conference.dispatcher,
                                    sites=list(conference.rooms), conference_id=conference.conference_id)
            await self.rooms.start_conference(conference.conference_id, conference.dispatcher)
            status = "running"
        except Exception:  # noqa: BLE001 - the request stands; an operator can start it by hand
            log.exception("starting command conference %s on the MCU failed", conference.conference_id)
        return await super().start(conference, status)
