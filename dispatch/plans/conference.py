"""What plan activation needs from the rest of dispatch, as one small ``Protocol``: open the command
conference with the rooms of the affected area, and propose units. ``DispatchCommandDesk`` provides
it over ``DispatchService`` (whose ``request_conference`` is the one path to the command
conference: record, incident note, audit, event, ``ConferenceStarter``); the composition root
passes it to ``PlanService``.

``area_rooms`` picks the meeting rooms of the site plan for a plan level's conference scope.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from config.site_plan import SitePlan
from dispatch.plans.model import ConferenceScope
from dispatch.recommendation import recommended_unit_ids
from dispatch.service import DispatchService
from dispatch.site import leader_rooms


class CommandDesk(Protocol):
    async def open_command_conference(self, incident_id: str, rooms: Sequence[str], actor: str, source: str) -> str:
        """Open (or request) the command conference of the incident with these rooms; its id."""
        ...

    async def propose_units(self, incident_id: str) -> list[str]:
        """Units the run card recommends for the incident (ids), for the dispatcher to confirm."""
        ...


class DispatchCommandDesk:
    """``CommandDesk`` over the dispatch service."""

    def __init__(self, dispatch: DispatchService) -> None:
        self.dispatch = dispatch

    async def open_command_conference(self, incident_id: str, rooms: Sequence[str], actor: str, source: str) -> str:
        conf = await self.dispatch.request_conference(incident_id, actor, source, rooms=rooms)
        return conf.conference_id

    async def propose_units(self, incident_id: str) -> list[str]:
        _, results = await self.dispatch.recommend(incident_id)
        return recommended_unit_ids(results)


def area_rooms(plan: SitePlan, county_code: int | None, scope: ConferenceScope) -> list[str]:
    """Meeting rooms for a conference scope: the county leaders' rooms and the city emergency room
    (``county``), plus the county's township rooms (``county_townships``), or every leader room of
    the city (``city``). An incident outside every county gets the city's rooms."""
    if scope is ConferenceScope.NONE:
        return []
    if scope is ConferenceScope.CITY or county_code is None:
        rooms = [r.id for r in plan.meeting_rooms if r.role == "leader"]
    else:
        rooms = leader_rooms(plan, county_code)
    if scope is ConferenceScope.COUNTY_TOWNSHIPS and county_code is not None:
        rooms += [r.id for r in plan.meeting_rooms if r.area.startswith(f"{county_code}-") and r.id not in rooms]
    return rooms
