"""The command view's summary API against a running `commandcenter up` (real PostgreSQL, the MCU in
the same process): seeded incidents, a flood plan activation, a desk's task update, an allocation,
emergency calls with known answer times — and the figures the leader gets back. Expected values
are worked out here from what the test did, not read from the code under test."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningServer, run_async

LUODING = {"lon": 111.5700, "lat": 22.7690}
DEPLOYED = {"dispatched", "en_route", "on_scene", "transporting", "at_hospital"}


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {r: server.login(r) for r in ("admin", "leader", "chair", "dispatcher", "calltaker", "operator",
                                        "viewer", "inspector", "meteo_desk")}
    yield out
    for c in out.values():
        c.close()


async def _sql(url: str, query: str, *args: Any) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


def _seed_calls(url: str) -> None:
    """Four real calls offered a few seconds ago: answered in 5 s and in 12 s, one abandoned, one
    still queued; and one training call (never counted)."""
    now = datetime.now(UTC) - timedelta(seconds=30)

    async def seed() -> None:
        conn = await asyncpg.connect(url)
        try:
            for answered, abandoned, state, training in ((5, None, "ended", False), (12, None, "ended", False),
                                                         (None, 20, "abandoned", False),
                                                         (None, None, "queued", False), (1, None, "ended", True)):
                await conn.execute(
                    "INSERT INTO emergency_calls (id, sip_key, number, dialled, category, priority, state, "
                    "offered_at, answered_at, abandoned_at, training) VALUES ($1, $1, '13800000000', '110', "
                    "'police', 2, $2, $3, $4, $5, $6)", "test-" + uuid.uuid4().hex[:10], state, now,
                    now + timedelta(seconds=answered) if answered is not None else None,
                    now + timedelta(seconds=abandoned) if abandoned is not None else None, training)
        finally:
            await conn.close()

    run_async(seed())


def summary(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/api/command/summary")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_only_the_leader_the_chair_and_admins_get_the_summary(clients: dict[str, httpx.Client]) -> None:
    got = {r: c.get("/api/command/summary").status_code for r, c in clients.items()}
    assert got == {r: 200 if r in ("admin", "leader", "chair") else 403 for r in clients}, got
    page = {r: c.get("/command").status_code for r, c in clients.items()}
    assert page == {r: 200 if r in ("admin", "leader", "chair") else 403 for r in clients}, page


def test_summary_counts_what_happened(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    d, leader = clients["dispatcher"], clients["leader"]
    before = summary(leader)
    f0 = before["figures"]
    flood = d.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1, **LUODING})
    fire = d.post("/api/incidents", json={"category": "fire", "priority": 3, "lon": 112.04, "lat": 22.93})
    assert flood.status_code == 201 and fire.status_code == 201, (flood.text, fire.text)
    flood_id, fire_id = flood.json()["id"], fire.json()["id"]
    sent = d.post(f"/api/incidents/{fire_id}/dispatch", json={"recommended": True})
    assert sent.status_code == 200, sent.text
    act = d.post(f"/api/incidents/{flood_id}/plans", json={"plan_key": "flood", "level": "II"})
    assert act.status_code == 201, act.text
    view = act.json()
    # the meteorology desk completes one task; one flood-control task has waited 11 minutes unacknowledged
    meteo = next(g for g in view["agencies"] if g["agency"] == "meteorology")["tasks"][0]
    for status in ("acknowledged", "in_progress", "done"):
        assert clients["meteo_desk"].post(f"/api/plan-tasks/{meteo['id']}", json={"status": status}).status_code == 200
    late = next(g for g in view["agencies"] if g["agency"] == "flood_control")["tasks"][0]
    run_async(_sql(server.db_url, "UPDATE plan_tasks SET created_at = now() - interval '11 minutes' WHERE id = $1",
                   late["id"]))
    alloc = d.post(f"/api/incidents/{flood_id}/resources", json={
        "resource_id": "depot-luocheng", "item": "sandbag", "quantity": 300, "request_id": uuid.uuid4().hex})
    assert alloc.status_code == 201, alloc.text
    _seed_calls(server.db_url)

    s = summary(leader)
    f = s["figures"]
    assert f["open_incidents"]["total"] == f0["open_incidents"]["total"] + 2
    assert f["open_incidents"]["by_priority"]["1"] == f0["open_incidents"]["by_priority"]["1"] + 1
    assert f["open_incidents"]["by_priority"]["3"] == f0["open_incidents"]["by_priority"]["3"] + 1
    assert f["open_incidents"]["by_level"]["II"] == f0["open_incidents"]["by_level"]["II"] + 1
    units = d.get("/api/units", params={"training": False}).json()
    assert f["units_deployed"] == sum(1 for u in units if u["status"] in DEPLOYED) > f0["units_deployed"]
    assert f["calls_waiting"] == f0["calls_waiting"] + 1
    answer = f["answer"]
    assert (answer["offered"], answer["answered"], answer["abandoned"]) == (4, 2, 1)  # the training call: not counted
    assert answer["within_10"] == 33.3 and answer["within_15"] == 66.7  # 1 of 3, 2 of 3 (abandoned counts against)
    assert f["tasks_overdue"] == f0["tasks_overdue"] + 1

    mine = next(a for a in s["activations"] if a["incident_id"] == flood_id)
    assert mine["level"] == "II" and mine["plan_key"] == "flood" and mine["conference_id"] == view["conference_id"]
    expected = {g["agency"]: len(g["tasks"]) for g in view["agencies"]}
    assert {g["agency"]: g["total"] for g in mine["agencies"]} == expected
    assert {g["agency"]: g["done"] for g in mine["agencies"]} == {a: int(a == "meteorology") for a in expected}
    assert {g["agency"]: g["acknowledged"] for g in mine["agencies"]} == {a: int(a == "meteorology") for a in expected}
    assert {g["agency"]: g["overdue"] for g in mine["agencies"]} == {a: int(a == "flood_control") for a in expected}
    assert (mine["lon"], mine["lat"]) == (LUODING["lon"], LUODING["lat"])

    sandbags = next(r for r in s["resources_consumed"] if r["item"] == "sandbag")
    before_bags = next((r["quantity"] for r in before["resources_consumed"] if r["item"] == "sandbag"), 0)
    assert sandbags["quantity"] == before_bags + 300 and sandbags["unit"] == "袋"

    series = s["series"]
    assert len(series["hours"]) == 24 and len(series["incidents"]) == 24
    assert sum(series["incidents"][-2:]) >= 2 and sum(series["calls"][-2:]) == sum(before["series"]["calls"][-2:]) + 4
    assert any(m == 8.5 for m in series["answer_mean_s"][-2:] if m is not None)  # (5 + 12) / 2

    # the MCU runs in this process: the plan's command conference is running and can be previewed
    assert s["conference"] is not None and s["conference"]["conference_id"] == view["conference_id"], s["conference"]
    assert s["conference"]["status"] == "running" and s["conference"]["previewable"]
    assert s["conference"]["join_url"] == f"/join/{view['conference_id']}"
    assert s["warnings"] == []

    # raised to level I: the incident now counts at level I
    up = d.post(f"/api/plan-activations/{view['id']}/level", json={"level": "I"})
    assert up.status_code == 200, up.text
    f2 = summary(leader)["figures"]["open_incidents"]["by_level"]
    assert f2["I"] == f0["open_incidents"]["by_level"]["I"] + 1 and f2["II"] == f0["open_incidents"]["by_level"]["II"]
    # English names on request
    en = leader.get("/api/command/summary", params={"lang": "en"}).json()
    assert "Meteorology" in {g["agency_name"] for a in en["activations"] for g in a["agencies"]}
