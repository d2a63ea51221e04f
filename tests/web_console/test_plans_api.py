"""Response plans over HTTP against a running `commandcenter up` (real PostgreSQL): who may do what,
activation with the task list per agency, agency desks kept to their tasks (403), two plans of one
hazard (409), escalation, bad documents (422 naming the field) and the TOML/JSON round trip."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer

LUODING = {"lon": 111.5700, "lat": 22.7690}
ROLES = ("admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer")


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {r: server.login(r) for r in (*ROLES, "meteo_desk", "flood_desk")}
    yield out
    for c in out.values():
        c.close()


def flood(c: httpx.Client) -> str:
    r = c.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 1, **LUODING})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def all_tasks(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for g in view["agencies"] for t in g["tasks"]]


def test_roles_on_the_plan_routes(clients: dict[str, httpx.Client]) -> None:
    reads = {r: clients[r].get("/api/plans").status_code for r in ROLES}
    assert reads == {r: 200 if r in ("admin", "dispatcher", "chair") else 403 for r in ROLES}, reads
    inc = flood(clients["dispatcher"])
    acts = {}
    for role in ROLES:  # each activation that succeeds is stood down so the next role may try
        r = clients[role].post(f"/api/incidents/{inc}/plans", json={"plan_key": "flood", "level": "IV"})
        acts[role] = r.status_code
        if r.status_code == 201:
            assert clients[role].post(f"/api/plan-activations/{r.json()['id']}/end").status_code == 200
    assert acts == {r: 201 if r in ("admin", "dispatcher", "chair") else 403 for r in ROLES}, acts
    text = clients["admin"].get("/api/plans/traffic/export").text
    uploads = {r: clients[r].post("/api/plans", json={"format": "toml", "text": text}).status_code for r in ROLES}
    assert uploads == {r: 201 if r == "admin" else 403 for r in ROLES}, uploads
    desks = {r: clients[r].get("/api/agency-desks").status_code for r in ROLES}
    assert desks == {r: 200 if r == "admin" else 403 for r in ROLES}
    assert clients["admin"].get("/api/agency-desks").json()["meteo_desk"] == "meteorology"


def test_flood_activation_desks_and_escalation(clients: dict[str, httpx.Client]) -> None:
    d, chair = clients["dispatcher"], clients["chair"]
    inc = flood(d)
    r = d.post(f"/api/incidents/{inc}/plans", json={"plan_key": "flood", "level": "II", "reason": "雨量 280 毫米"})
    assert r.status_code == 201, r.text
    view = r.json()
    assert {g["agency"] for g in view["agencies"]} == {"flood_control", "meteorology", "emergency_mgmt", "fire"}
    assert view["conference_id"] and {"luoding-room", "445381-05-room"} <= set(view["proposals"]["rooms"])
    # another flood plan on the same incident: 409 and nothing changes
    again = chair.post(f"/api/incidents/{inc}/plans", json={"plan_key": "flood", "level": "I"})
    assert again.status_code == 409 and "同灾种" in again.json()["detail"]
    assert len(d.get(f"/api/incidents/{inc}/plans").json()["activations"]) == 1
    # the meteorology desk sees its tasks only and moves them forward
    mine = clients["meteo_desk"].get(f"/api/incidents/{inc}/plans").json()
    assert mine["desk_agency"] == "meteorology"
    assert {g["agency"] for g in mine["activations"][0]["agencies"]} == {"meteorology"}
    task = mine["activations"][0]["agencies"][0]["tasks"][0]
    for status in ("acknowledged", "in_progress", "done"):
        t = clients["meteo_desk"].post(f"/api/plan-tasks/{task['id']}", json={"status": status, "note": "ok"})
        assert t.status_code == 200 and t.json()["status"] == status, t.text
    back = clients["meteo_desk"].post(f"/api/plan-tasks/{task['id']}", json={"status": "acknowledged"})
    assert back.status_code == 409
    other = next(t for t in all_tasks(view) if t["agency"] == "flood_control")
    denied = clients["meteo_desk"].post(f"/api/plan-tasks/{other['id']}", json={"status": "acknowledged"})
    assert denied.status_code == 403 and "三防" in denied.json()["detail"]
    assert next(t for t in all_tasks(d.get(f"/api/incidents/{inc}/plans").json()["activations"][0])
                if t["id"] == other["id"])["status"] == "assigned"
    # desks cannot activate or change levels
    assert clients["meteo_desk"].post(f"/api/plan-activations/{view['id']}/level",
                                      json={"level": "I"}).status_code == 403
    desk = clients["flood_desk"].get("/api/plan-desk").json()
    assert desk["desk_agency"] == "flood_control" and view["id"] in [a["id"] for a in desk["activations"]]
    # the leader raises the level to I: more agencies, withdrawn tasks, history
    up = chair.post(f"/api/plan-activations/{view['id']}/level", json={"level": "I", "reason": "死亡 31 人"})
    assert up.status_code == 200, up.text
    now = up.json()
    assert now["level"] == "I" and len(now["agencies"]) == 7
    assert [(h["from"], h["level"]) for h in now["level_history"]] == [(None, "II"), ("II", "I")]
    statuses = {t["title"]: t["status"] for t in all_tasks(now)}
    assert statuses["加密巡查堤防水库"] == "cancelled" and statuses["每小时滚动发布雨情预报"] == "done"
    en = d.get(f"/api/incidents/{inc}/plans", params={"lang": "en"}).json()["activations"][0]
    assert en["level_name"] == "Level I (extremely serious)"


@pytest.mark.parametrize("body,field", [
    ({"plan_key": "flood", "level": "V"}, "level"),
    ({"plan_key": "flood"}, "level"),
    ({"plan_key": "flood", "level": "II", "extra": 1}, "extra"),
])
def test_activation_bad_input_is_422(clients: dict[str, httpx.Client], body: dict[str, Any], field: str) -> None:
    inc = flood(clients["dispatcher"])
    r = clients["dispatcher"].post(f"/api/incidents/{inc}/plans", json=body)
    assert r.status_code == 422 and field in r.text, r.text


def test_unknown_things_are_404(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    assert d.post("/api/incidents/NOPE/plans", json={"plan_key": "flood", "level": "II"}).status_code == 404
    assert d.post(f"/api/incidents/{flood(d)}/plans", json={"plan_key": "nope", "level": "II"}).status_code == 404
    assert d.post("/api/plan-tasks/999999", json={"status": "done"}).status_code == 404
    assert d.get("/api/plans/nope").status_code == 404


def test_upload_validation_names_the_field_and_round_trips(clients: dict[str, httpx.Client]) -> None:
    admin = clients["admin"]
    text = admin.get("/api/plans/earthquake/export").text
    assert text.startswith('key = "earthquake"')
    bad = admin.post("/api/plans", json={"format": "toml", "text": text.replace("magnitude = [5, 6]",
                                                                                 "magnitude = [5.5, 6.5]")})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("levels.II.criteria.magnitude: "), bad.text
    unknown = admin.post("/api/plans", json={"format": "toml", "text": text.replace('"agency:earthquake"',
                                                                                     '"agency:navy"', 1)})
    assert unknown.status_code == 422 and "levels.I.members[0]" in unknown.json()["detail"]
    as_json = admin.get("/api/plans/earthquake/export", params={"format": "json"})
    assert as_json.headers["content-type"].startswith("application/json")
    added = admin.post("/api/plans", json={"format": "json", "text": as_json.text})
    assert added.status_code == 201 and added.json()["status"] == "draft"
    v = added.json()["version"]
    assert admin.get("/api/plans/earthquake/export", params={"version": v}).text == text  # same plan, same text
    ok = admin.post(f"/api/plans/earthquake/versions/{v}/approve")
    assert ok.status_code == 200
    assert admin.post(f"/api/plans/earthquake/versions/{v}/approve").status_code == 409
    listed = next(p for p in admin.get("/api/plans").json()["plans"] if p["key"] == "earthquake")
    assert listed["approved_version"] == v


def test_duty_roster_over_http(clients: dict[str, httpx.Client]) -> None:
    now = clients["chair"].get("/api/duty/now")
    assert now.status_code == 200, now.text
    shift = now.json()["shift"]  # the demo pattern rosters today
    assert shift is not None and shift["posts"]["leader_on_duty"]["people"] == ["chair"]
    inc = flood(clients["dispatcher"])
    act = clients["dispatcher"].post(f"/api/incidents/{inc}/plans", json={"plan_key": "flood", "level": "II"}).json()
    notify = {n["ref"]: n["people"] for n in act["proposals"]["notify"]}
    assert notify["post:leader_on_duty"] == ["chair"] and act["proposals"]["shift_id"] == shift["id"]
    roles = {r: clients[r].get("/api/duty/now").status_code for r in ROLES}
    assert roles == {r: 200 if r in ("admin", "dispatcher", "chair") else 403 for r in ROLES}
    overlap = clients["admin"].post("/api/duty/shifts", json={
        "starts_at": shift["starts_at"], "ends_at": shift["ends_at"],
        "posts": {"leader_on_duty": ["chair"], "duty_officer": ["dispatcher"]}})
    assert overlap.status_code == 409 and "重叠" in overlap.json()["detail"]
    assert clients["dispatcher"].post("/api/duty/shifts", json={}).status_code == 403
    h1 = clients["dispatcher"].post("/api/duty/handovers", json={"notes": "交班", "items": [{"text": "跟进罗定水情"}]})
    assert h1.status_code == 201, h1.text
    h2 = clients["chair"].post("/api/duty/handovers", json={"items": [{"text": "核实转移人数"}]}).json()
    assert [i["text"] for i in h2["items"]] == ["跟进罗定水情", "核实转移人数"] and h2["carried_over"] == 1
