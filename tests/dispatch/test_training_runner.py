"""Training mode (演练) end to end on a real database: the simulator invents an incident, the
recommended 演练 units are sent, drive there through the AVL path, arrive by geofence, clear and
go home, the incident closes — and no real unit or statistic is touched."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.runtime import CoreServices
from dispatch.service import DispatchService
from dispatch.training_runner import TrainingRunner
from tests.conftest import make_settings


@pytest.fixture
async def svc(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[DispatchService]:
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    clock = [datetime.now(UTC) - timedelta(hours=3)]
    s = DispatchService(core, clock=lambda: clock[0])
    s.test_clock = clock  # type: ignore[attr-defined]
    await s.start()
    yield s
    await s.stop()
    await core.stop()


async def test_drill_runs_an_incident_to_closure(svc: DispatchService) -> None:
    await svc.set_training(True, "trainer")
    runner = TrainingRunner(svc, auto_dispatch_after_s=0, on_scene_s=60, incident_every_s=1e9, max_open=1)
    real_before = await svc.db.fetch("SELECT id, status FROM units WHERE NOT training ORDER BY id")
    clock = svc.test_clock  # type: ignore[attr-defined]
    closed = None
    for _ in range(400):  # a boat may need two simulated hours to reach a far township
        await runner.step()
        clock[0] += timedelta(seconds=60)
        drills = await svc.incidents(training=True)
        if drills and drills[0].status.value == "closed":
            closed = drills[0]
            break
    drill_units = {u.id: (u.status.value, u.incident_id) for u in svc.units(training=True) if u.incident_id}
    assert closed is not None, f"never closed: {[(i.id, i.status, [e.action for e in i.timeline]) for i in drills]}" \
        f" {drill_units}"
    actions = [e.action for e in closed.timeline]
    assert actions[0] == "created" and "unit_assigned" in actions and "unit_arrived" in actions
    assert actions[-1] == "closed" and closed.training and closed.id.startswith("DRILL")
    track = await svc.db.fetchval("SELECT count(*) FROM unit_positions WHERE unit_id LIKE 'DRILL-%'")
    assert track > 5
    assert await svc.db.fetchval("SELECT count(*) FROM unit_positions WHERE unit_id NOT LIKE 'DRILL-%'") == 0
    assert await svc.db.fetch("SELECT id, status FROM units WHERE NOT training ORDER BY id") == real_before
    assert (await svc.statistics())["incidents"] == {}
