"""What an alarm does beyond the console: the `FloodResponse` Protocol monitoring declares.

A threshold's ``action`` (monitoring/gauges.py) says what its alarm does when raised:
``incident`` opens a 三防 (flood-control) incident at the gauge; ``propose_plan`` also proposes
activating a response plan (``plan``, ``level``) on that incident, for a person to confirm.
One flood episode at one gauge gets one incident: a second threshold of the same gauge raised
while the first is still open reuses its incident.

The composition root (commandcenter/node.py) fills this with the dispatch and plans services;
monitoring never imports dispatch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class AlarmNotice:
    """A raised threshold alarm, as the responder needs it."""

    alarm_id: int
    gauge_id: str
    gauge_name: str
    county: str
    lon: float
    lat: float
    threshold: str  # its name, e.g. 警戒水位
    threshold_value: float
    value: float
    unit: str
    severity: str  # warning | critical
    at: float  # epoch seconds

    def description(self) -> str:
        return (f"【监测告警】{self.gauge_name} 实测 {self.value:g} {self.unit}，"
                f"达到{self.threshold} {self.threshold_value:g} {self.unit}（告警 #{self.alarm_id}）")


class FloodResponse(Protocol):
    """Opens incidents and proposes plans for monitoring's alarms."""

    async def plan_keys(self) -> set[str]:
        """The response plans that may be proposed (the gauges' ``plan`` keys are checked against them)."""
        ...

    async def open_incident(self, notice: AlarmNotice) -> str:
        """Open a 三防 incident at the gauge; its id."""
        ...

    async def propose_plan(self, incident_id: str, plan_key: str, level: str, notice: AlarmNotice) -> dict[str, Any]:
        """Propose activating ``plan_key`` at ``level`` on the incident (not activate it); a
        description of the proposal for the console (at least ``plan``, ``plan_name``, ``level``)."""
        ...
