"""Training mode (演练) never swallows a real emergency call (issue 14 item 1), with SIPp calling 120
through our SIP endpoint while the dispatch side is in training mode (real PostgreSQL, real SIPp):

* a call from the network on an emergency number is real: its record, its incident (JQ…, not DRILL…),
  the units recommended for it and the dashboard's real figures; the training figures do not move;
* a real caller who hangs up in the queue counts offered + abandoned and one open callback, all real;
* a position in training mode is not offered real calls; with every signed-on position in training
  the real call waits and the alarm is raised (bus event + dashboard), and cleared when a real
  position takes it;
* the calls the training runner generates are drills, flagged when it makes them, offered only to
  training positions, and counted apart.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dispatch.recommendation import recommended_unit_ids
from dispatch.training_runner import TrainingRunner
from tests.dispatch.calltaking_samples import finish, sipp
from tests.dispatch.desk_kit import Desk as Centre
from tests.dispatch.desk_kit import running_desk, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def centre(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[Centre]:
    """A desk behind a SIP endpoint, with the dispatch side in training mode (as `make run` starts)."""
    async with running_desk(fresh_db_url, tmp_path, training=True) as running:
        yield running


def figures(dash: dict[str, object]) -> tuple[object, ...]:
    return dash["offered"], dash["answered"], dash["abandoned"], dash["callbacks_open"]


def training_figures(dash: dict[str, object]) -> tuple[object, ...]:
    t = dash["training"]
    assert isinstance(t, dict)
    return t["offered"], t["answered"], t["abandoned"], t["callbacks_open"]


async def test_network_call_to_120_in_training_mode_is_real(centre: Centre) -> None:
    assert centre.dispatch.training  # the centre forgot to leave training mode
    await centre.desk.login("calltaker1")
    proc = await sipp("emergency_pidf.xml", centre.endpoint.config.port)
    await wait_until(lambda: len(centre.desk.live) == 1)
    call_id = next(iter(centre.desk.live))
    await wait_until(lambda: (q := centre.desk.acd.calls.get(call_id)) is not None and q.position_id == "calltaker1")
    view = await centre.desk.answer("calltaker1", call_id)
    assert view["training"] is False and view["dialled"] == "120"
    incident = await centre.desk.create_incident(call_id, "calltaker1", priority=1, description="胸痛")
    assert incident["id"].startswith("JQ") and incident["training"] is False, incident
    inc = await centre.dispatch.incident(incident["id"])
    assert not inc.training and call_id in inc.calls
    _card, results = await centre.dispatch.recommend(inc.id)
    recommended = recommended_unit_ids(results)
    assert recommended, "no unit recommended for a real medical emergency"
    assert all(not centre.dispatch.unit(uid).training and not uid.startswith("DRILL") for uid in recommended)
    await centre.desk.end_call(call_id, "calltaker1", "incident")
    await finish(proc)
    row = await centre.core.db.fetchrow("SELECT training, state FROM emergency_calls WHERE id = $1", call_id)
    assert row is not None and row["training"] is False and row["state"] == "ended"
    dash = await centre.desk.dashboard()
    assert figures(dash) == (1, 1, 0, 0), dash
    assert training_figures(dash) == (0, 0, 0, 0), dash


async def test_abandoned_real_call_in_training_mode_counts_consistently(centre: Centre) -> None:
    proc = await sipp("emergency_abandon.xml", centre.endpoint.config.port, service="120")
    await wait_until(lambda: len(centre.desk.live) == 1)
    await finish(proc)  # the caller gives up after 1.5 s in the queue
    await wait_until(lambda: not centre.desk.live)
    dash = await centre.desk.dashboard()
    assert figures(dash) == (1, 0, 1, 1), dash
    assert training_figures(dash) == (0, 0, 0, 0), dash
    callbacks = await centre.desk.callbacks()
    assert [(c["number"], c["training"]) for c in callbacks] == [("13700000009", False)]


async def test_every_position_in_training_real_call_waits_and_alarm_is_raised(centre: Centre) -> None:
    await centre.desk.login("trainee", training=True)
    with centre.core.bus.subscribe("call.training_alarm") as alarms:
        proc = await sipp("emergency_wait.xml", centre.endpoint.config.port, service="120")
        await wait_until(lambda: len(centre.desk.live) == 1)
        call_id = next(iter(centre.desk.live))
        raised = await asyncio.wait_for(alarms.get(), 10)
        assert raised.payload["active"] is True and raised.payload["waiting"] == 1, raised.payload
        await asyncio.sleep(0.5)
        queued = centre.desk.acd.calls[call_id]
        assert queued.state == "queued" and queued.position_id is None  # never offered to the trainee
        dash = await centre.desk.dashboard()
        assert dash["training_alarm"]["active"] is True and dash["waiting"] == 1, dash
        # The trainee leaves training: the position is real now and takes the call; the alarm clears.
        await centre.desk.set_position_training("trainee", False)
        cleared = await asyncio.wait_for(alarms.get(), 5)
        assert cleared.payload["active"] is False
        assert centre.desk.acd.calls[call_id].position_id == "trainee"
        await centre.desk.answer("trainee", call_id)
        await centre.desk.end_call(call_id, "trainee", "advice")
        await finish(proc)
    dash = await centre.desk.dashboard()
    assert dash["training_alarm"]["active"] is False and figures(dash) == (1, 1, 0, 0), dash


async def test_training_runner_calls_are_drills_and_counted_apart(centre: Centre) -> None:
    runner = TrainingRunner(centre.dispatch, incident_every_s=1e9, call_every_s=0, call_patience_s=1e9)
    runner.desk = centre.desk
    await runner.step()
    assert not centre.desk.live  # no training position signed on: the runner makes no call
    await centre.desk.login("real1")
    await centre.desk.login("trainee", training=True)
    await runner.step()
    assert len(centre.desk.live) == 1
    call_id = next(iter(centre.desk.live))
    assert centre.desk.live[call_id].training
    assert centre.desk.acd.calls[call_id].position_id == "trainee"  # never to the real position
    await centre.desk.answer("trainee", call_id)
    incident = await centre.desk.create_incident(call_id, "trainee", priority=3)
    assert incident["id"].startswith("DRILL") and incident["training"] is True
    _card, results = await centre.dispatch.recommend(incident["id"])
    assert all(centre.dispatch.unit(uid).training for uid in recommended_unit_ids(results))
    await centre.desk.end_call(call_id, "trainee", "incident")
    dash = await centre.desk.dashboard()
    assert figures(dash) == (0, 0, 0, 0), dash
    assert training_figures(dash) == (1, 1, 0, 0), dash
    row = await centre.core.db.fetchrow("SELECT training FROM emergency_calls WHERE id = $1", call_id)
    assert row is not None and row["training"] is True
