"""Overdue tasks in the situation report on a real PostgreSQL: the report judges every task at the
time it is asked for, by the same OverduePolicy as the leaders' command view (dispatch/command_view.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.runtime import CoreServices
from dispatch.command_view import OverduePolicy
from dispatch.plans.service import PlanService
from dispatch.plans.setup import start_plans
from dispatch.resources.model import load_catalogue
from dispatch.resources.service import ResourceService
from dispatch.service import DispatchService
from dispatch.situation import situation
from gis.routing import EtaEstimator
from tests.conftest import ROOT, make_settings

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def svc(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[DispatchService, PlanService, ResourceService]]:
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    d = DispatchService(core)
    await d.start()
    await d.set_training(False, "test")
    plans = await start_plans(core, d)
    resources = ResourceService(core, EtaEstimator(), load_catalogue(ROOT / "config/demo/resources.toml"))
    await resources.start()
    yield d, plans, resources
    await resources.stop()
    await d.stop()
    await core.stop()


async def test_tasks_not_signed_for_in_time_are_overdue(
        svc: tuple[DispatchService, PlanService, ResourceService]) -> None:
    d, plans, resources = svc
    inc = await d.create_incident(category="flood_control", subtype="flood", priority=1, lon=111.57, lat=22.769,
                                  actor="dispatcher")
    view = await plans.activate(inc.id, "flood", "II", "dispatcher")
    first = view["agencies"][0]["tasks"][0]
    await plans.update_task(first["id"], "acknowledged", "flood_desk")
    started = d.clock()

    async def report(after: timedelta) -> dict[str, Any]:
        return await situation(inc.id, 111.57, 22.769, plans=plans, resources=resources, conferences=d,
                               room_names={}, now=started + after, tz=TZ)

    policy = OverduePolicy()
    minute = timedelta(minutes=1)
    fresh = await report(policy.acknowledge_within - minute)
    assert fresh["tasks_overdue"] == 0
    late = await report(policy.acknowledge_within + minute)
    rows = [t for a in late["activations"] for g in a["agencies"] for t in g["tasks"]]
    assigned = [t for t in rows if t["status"] == "assigned"]
    assert assigned and all(t["overdue"] == "ack" for t in assigned)
    (acked,) = [t for t in rows if t["id"] == first["id"]]
    assert acked["overdue"] is None and acked["acknowledged_at"]
    assert late["tasks_overdue"] == len(assigned)
    much_later = await report(policy.complete_within + minute)
    (acked,) = [t for a in much_later["activations"] for g in a["agencies"] for t in g["tasks"]
                if t["id"] == first["id"]]
    assert acked["overdue"] == "done"
