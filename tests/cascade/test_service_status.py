"""`CascadeService.status` and `control_state`: the contract the control-channel helper relies on."""
from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from config.settings import CascadeSettings
from config.site_plan import load_site_plan
from mcu.cascade.backup_watch import BackupWatcher
from mcu.cascade.failover import Observation, ObservationKind, PathEvent, PathState, Route
from mcu.cascade.service import CascadeService, failover_config, wall_clock
from mcu.cascade.uplink import RouteCall, SipPathDialer, Uplink
from tests.cascade.cluster import CONFERENCE, one_county


class _Driverless(Uplink):
    """An Uplink whose driver is never started (no SIP): we feed its link by hand."""


async def test_status_lists_both_roles_with_wall_clock_history(tmp_path: Path) -> None:
    plan = load_site_plan(one_county(tmp_path, lambda n: "postgresql:///unused").write_plan())
    county = plan.node("county-a")
    assert county is not None
    settings = CascadeSettings(token="t", hold_seconds=4)
    service = CascadeService(None, None, county, plan, settings)  # type: ignore[arg-type]
    config = failover_config(settings, "sip:81000001@10.0.0.1:5060", "sip:981000001@10.0.0.9:5060")
    routes = {Route.PRIMARY: RouteCall("cascade-city", "云浮市级联"), Route.BACKUP: RouteCall("cascade-city-backup", "b")}
    uplink = _Driverless(None, CONFERENCE, config, SipPathDialer(None, CONFERENCE, "county-a", routes))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    now = loop.time()
    uplink.link.start(now - 10)
    uplink.link.observe(Observation(ObservationKind.CALL_UP, Route.PRIMARY, now - 9))
    service.uplinks[CONFERENCE] = uplink
    watcher = BackupWatcher(None, CONFERENCE, "cascade-x", "cascade-x-backup", "sip:9@b", "x", "county-a")  # type: ignore[arg-type]
    watcher._set(now - 5, PathState.PRIMARY, "专线媒体恢复")
    service.watchers[(CONFERENCE, "township")] = watcher

    items: list[dict[str, Any]] = service.status(CONFERENCE)
    assert [(i["node"], i["role"], i["state"]) for i in items] == [("city", "up", "primary"),
                                                                   ("township", "down", "primary")]
    up = items[0]
    assert up["history"][-1]["state"] == "primary" and up["history"][-1]["previous"] == "down"
    assert up["since"] == up["history"][-1]["at"]
    age = datetime.now().astimezone() - datetime.fromisoformat(up["since"])
    assert 8 < age.total_seconds() < 10, "wall-clock time of the loop-clock event"
    assert service.status("99999999") == []

    # The control channel reports itself: CONTROL_LOST on the parent feeds the up-link (primary).
    seen: list[ObservationKind] = []
    uplink.observe = lambda kind, route=Route.PRIMARY, detail="": seen.append(kind)  # type: ignore[method-assign]
    service.control_state("city", False)
    service.control_state("someone-else", False)
    service.control_state("city", True)
    assert seen == [ObservationKind.CONTROL_LOST, ObservationKind.CONTROL_UP]


def test_wall_clock() -> None:
    """A loop-clock instant 10 s before the loop's now is 10 s before the wall-clock now (UTC, ISO)."""
    assert wall_clock(90.0, 100.0, now=1_000_000.0) == "1970-01-12T13:46:30+00:00"
    assert PathEvent(1.0, PathState.BACKUP, PathState.DOWN, "r").to_json()["state"] == "backup"
