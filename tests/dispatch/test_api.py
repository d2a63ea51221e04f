"""The dispatch REST API and websockets against a running `commandcenter up` (real DB, real HTTP)."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from dispatch.exchange.cap import validate_cap
from tests.conftest import RunningServer

LUODING = {"lon": 111.5700, "lat": 22.7690}
# An offline tile file that appears while the server runs (the console checks for it per request).
MBTILES = Path(tempfile.mkdtemp(prefix="cc-tiles-")) / "tiles.mbtiles"
SERVER_ENV = {"CC_DISPATCH__MBTILES": str(MBTILES)}
YUNCHENG = {"lon": 112.0400, "lat": 22.9300}


@pytest.fixture(scope="module", autouse=True)
def _remove_tiles() -> Iterator[None]:
    yield
    shutil.rmtree(MBTILES.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {r: server.login(r) for r in ("admin", "dispatcher", "calltaker", "chair", "viewer")}
    second = "dispatcher2"
    created = out["admin"].post("/api/users", json={"username": second, "password": "Second-Dispatcher-1",
                                                    "role": "dispatcher"})
    assert created.status_code == 201, created.text
    out[second] = server.login(second, "Second-Dispatcher-1")
    yield out
    for c in out.values():
        c.close()


def new_incident(c: httpx.Client, **kw: object) -> dict[str, Any]:
    body = {"category": "police", "subtype": "theft", "priority": 3, **LUODING, **kw}
    r = c.post("/api/incidents", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_lifecycle_over_http(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    inc = new_incident(d, category="fire", subtype="residential", priority=1, address="罗城街道")
    assert inc["county_code"] == 445381 and inc["county_name"] and inc["status"] == "new"
    rec = d.get(f"/api/incidents/{inc['id']}/recommendations").json()
    assert rec["plan"] == "住宅火灾 一二级" and len(rec["recommended"]) == 4
    assert all(c["explanation"] for r in rec["requirements"] for c in r["candidates"])
    sent = d.post(f"/api/incidents/{inc['id']}/dispatch", json={"recommended": True})
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert sorted(body["units"]) == sorted(rec["recommended"]) and body["joint"]  # fire + medical
    unit = body["units"][0]
    assert d.post(f"/api/units/{unit}/status", json={"status": "on_scene"}).status_code == 200
    assert d.post(f"/api/incidents/{inc['id']}/close", json={"text": "扑灭"}).status_code == 409  # units remain
    for u in body["units"]:
        r = d.post(f"/api/incidents/{inc['id']}/recall", json={"unit_id": u})
        assert r.status_code == 200, r.text
    closed = d.post(f"/api/incidents/{inc['id']}/close", json={"text": "明火扑灭"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    full = d.get(f"/api/incidents/{inc['id']}").json()
    actions = [e["action"] for e in full["timeline"]]
    assert actions[0] == "created" and "unit_recalled" in actions and actions[-1] == "closed"
    audit = clients["admin"].get("/api/audit", params={"action": "incident."}).json()
    assert {"incident.create", "incident.dispatch", "incident.recall", "incident.close"} <= {a["action"] for a in audit}
    report = d.get(f"/dispatch/incidents/{inc['id']}/report")
    assert report.status_code == 200 and "unit_recalled" in report.text and "report/map" in report.text
    folium_map = d.get(f"/dispatch/incidents/{inc['id']}/report/map").text
    assert "/static/vendor/leaflet/dist/leaflet.js" in folium_map
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", folium_map)


def test_concurrent_dispatch_from_two_sessions_one_wins(clients: dict[str, httpx.Client]) -> None:
    a, b = clients["dispatcher"], clients["dispatcher2"]
    i1, i2 = new_incident(a), new_incident(b)
    unit = "luoding-police-2"
    barrier = threading.Barrier(2)
    results: dict[str, httpx.Response] = {}

    def send(name: str, c: httpx.Client, inc: dict[str, Any]) -> None:
        barrier.wait()
        results[name] = c.post(f"/api/incidents/{inc['id']}/dispatch", json={"unit_ids": [unit]})

    threads = [threading.Thread(target=send, args=("a", a, i1)), threading.Thread(target=send, args=("b", b, i2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], {k: r.text for k, r in results.items()}
    loser = next(r for r in results.values() if r.status_code == 409)
    assert "不能调派" in loser.json()["detail"]
    on_unit = [i for i in (i1, i2) if unit in a.get(f"/api/incidents/{i['id']}").json()["units"]]
    assert len(on_unit) == 1


def test_avl_batch_and_websocket(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    now = datetime.now(UTC)
    batch = [
        {"unit_id": "yuncheng-police-1", **YUNCHENG, "ts": now.isoformat()},
        {"unit_id": "ghost", **YUNCHENG, "ts": now.isoformat()},
        {"unit_id": "yuncheng-police-1", "lon": 112.04, "lat": 95.0, "ts": now.isoformat()},
        {"unit_id": "yuncheng-police-1", **YUNCHENG, "ts": (now + timedelta(minutes=10)).isoformat()},
    ]
    r = d.post("/api/avl", json=batch)
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [
        (1, "unknown_unit"), (2, "bad_coordinates"), (3, "future_timestamp")]
    unit = next(u for u in d.get("/api/units").json() if u["id"] == "yuncheng-police-1")
    assert unit["position_source"] == "avl" and unit["lon"] == YUNCHENG["lon"] and not unit["stale"]
    old_fix = {"unit_id": "yunan-police-1", **YUNCHENG, "ts": (now - timedelta(minutes=10)).isoformat()}
    assert d.post("/api/avl", json=[old_fix]).json()["accepted"] == 1
    stale = next(u for u in d.get("/api/units").json() if u["id"] == "yunan-police-1")
    assert stale["stale"] and stale["position_source"] == "avl"  # shown greyed on the map
    assert d.post("/api/avl", json=[{"unit_id": "ghost"}]).status_code == 422
    assert d.post("/api/avl", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
    assert clients["viewer"].post("/api/avl", json=batch).status_code == 403

    async def over_ws() -> list[dict[str, Any]]:
        url = server.url.replace("http://", "ws://") + "/ws/avl"
        cookie = "cc_session=" + d.cookies["cc_session"]
        async with ws_connect(url, additional_headers={"Cookie": cookie}) as ws:
            await ws.send(json.dumps([{"unit_id": "yuncheng-police-2", **YUNCHENG, "ts": now.isoformat()}, 7]))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.send("nonsense")
            second = json.loads(await asyncio.wait_for(ws.recv(), 5))
        return [first, second]

    first, second = asyncio.run(over_ws())
    assert first["accepted"] == 1 and first["rejected"][0]["code"] == "malformed"
    assert second["accepted"] == 0 and second["rejected"][0]["code"] == "malformed"


def test_geofence_arrival_over_http(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    inc = new_incident(d, **YUNCHENG)
    assert d.post(f"/api/incidents/{inc['id']}/dispatch", json={"unit_ids": ["yuncheng-police-2"]}).status_code == 200
    t0 = datetime.now(UTC)
    for i in range(2):
        fix = {"unit_id": "yuncheng-police-2", "lon": YUNCHENG["lon"] + 0.0003, "lat": YUNCHENG["lat"],
               "ts": (t0 + timedelta(seconds=i)).isoformat()}
        assert d.post("/api/avl", json=[fix]).json()["accepted"] == 1
    full = d.get(f"/api/incidents/{inc['id']}").json()
    assert full["status"] == "on_scene"
    assert any(e["action"] == "unit_arrived" and e["actor"] == "geofence" for e in full["timeline"])


def test_eido_export_import_and_422(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    inc = new_incident(d, category="medical", subtype="stroke", priority=2, description="左侧肢体无力")
    doc = d.get(f"/api/incidents/{inc['id']}/eido").json()
    assert doc["incidentComponent"]["incidentTrackingIdentifier"] == inc["id"]
    assert d.post("/api/eido", json=doc).status_code == 409  # already here
    text = json.dumps(doc, ensure_ascii=False).replace(inc["id"], "EXT-" + inc["id"])
    imported = d.post("/api/eido", content=text.encode(), headers={"Content-Type": "application/json"})
    assert imported.status_code == 201, imported.text
    again = d.get(f"/api/incidents/EXT-{inc['id']}").json()
    for key in ("category", "subtype", "priority", "lon", "lat", "description", "county_code"):
        assert again[key] == inc[key], key
    bad = d.post("/api/eido", json={"eidoMessageIdentifier": 1, "incidentComponent": "x"})
    assert bad.status_code == 422 and len(bad.json()["detail"]["errors"]) >= 2
    assert d.post("/api/eido", content=b"{oops").status_code == 422


def test_cap_issue_and_422(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    good = d.post("/api/cap", json={"event": "暴雨", "level": "red", "headline": "暴雨红色预警", "description": "特大暴雨",
                                    "instruction": "停课停业", "polygon": [[111.5, 22.7], [111.6, 22.7], [111.6, 22.8]]})
    assert good.status_code == 201, good.text
    xml = d.get(f"/api/cap/{good.json()['identifier']}")
    assert xml.headers["content-type"].startswith("application/cap+xml") and validate_cap(xml.text) == []
    county = d.post("/api/cap", json={"event": "台风", "level": "blue", "headline": "台风蓝色预警", "description": "x",
                                      "county_code": 445302})
    assert county.status_code == 201 and "GB/T 2260" in county.json()["xml"]
    bad = d.post("/api/cap", json={"event": "暴雨", "level": "purple", "headline": "x", "description": "x",
                                   "polygon": [[111.5, 22.7], [111.6, 22.7]]})
    assert bad.status_code == 422
    rules = {i["rule"] for i in bad.json()["detail"]["issues"]}
    assert {"enum", "polygon"} <= rules
    assert d.post("/api/cap", json={"event": "暴雨", "level": "red", "headline": "x", "description": "x"}).status_code == 422


def test_command_conference_reaches_the_chair(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    inc = new_incident(d, category="fire", subtype="industrial", priority=1)

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        url = server.url.replace("http://", "ws://") + "/ws/events?topics=conference.*"
        cookie = "cc_session=" + clients["chair"].cookies["cc_session"]
        async with ws_connect(url, additional_headers={"Cookie": cookie}) as ws:
            assert json.loads(await ws.recv())["topic"] == "system.hello"
            r = await asyncio.to_thread(d.post, f"/api/incidents/{inc['id']}/conference")
            assert r.status_code == 201, r.text
            async with asyncio.timeout(5):  # the MCU's own conference.scheduled/started come too
                while True:
                    event = json.loads(await ws.recv())
                    if event["topic"] == "conference.command_requested":
                        return r.json(), event

    conf, event = asyncio.run(run())
    assert event["topic"] == "conference.command_requested"
    assert event["payload"]["conference_id"] == conf["conference_id"] and "luoding-room" in conf["rooms"]
    linked = d.get(f"/api/incidents/{inc['id']}").json()["conferences"]
    assert [c["conference_id"] for c in linked] == [conf["conference_id"]]
    # `commandcenter up` runs the MCU in the same process: the room was created and started
    assert conf["status"] == "running" and linked[0]["status"] == "running"

    async def mcu_row() -> Any:
        conn = await asyncpg.connect(server.db_url)
        try:
            return await conn.fetchrow("SELECT status, sites FROM conferences WHERE id = $1", conf["conference_id"])
        finally:
            await conn.close()

    row = asyncio.run(mcu_row())
    assert row is not None and row["status"] == "running" and list(row["sites"]) == conf["rooms"]
    assert d.post("/api/incidents/nope/conference").status_code == 404


def test_roles_bad_input_and_lookups(clients: dict[str, httpx.Client]) -> None:
    d, ct, viewer = clients["dispatcher"], clients["calltaker"], clients["viewer"]
    assert viewer.get("/api/incidents").status_code == 403
    assert viewer.get("/dispatch").status_code == 403
    inc = new_incident(ct)  # the desk may log incidents ...
    assert ct.post(f"/api/incidents/{inc['id']}/dispatch", json={"recommended": True}).status_code == 403  # ... not send
    assert d.post("/api/incidents", json={"category": "nope", "priority": 3, **LUODING}).status_code == 422
    assert d.post("/api/incidents", json={"category": "police", "priority": 7, **LUODING}).status_code == 422
    assert d.post("/api/incidents", json={"category": "police", "priority": 3, "lon": 300, "lat": 1}).status_code == 422
    assert d.post(f"/api/incidents/{inc['id']}/dispatch", json={"unit_ids": ["ghost"]}).status_code == 422
    assert d.post(f"/api/incidents/{inc['id']}/status", json={"status": "flying"}).status_code == 422
    assert d.post("/api/units/luoding-police-1/status", json={"status": "teleported"}).status_code == 422
    assert d.get("/api/incidents/none-such").status_code == 404
    # without the CSRF header a cookie session may not change anything
    no_csrf = d.post("/api/incidents", json={"category": "police", "priority": 3, **LUODING},
                     headers={"X-CSRF-Token": ""})
    assert no_csrf.status_code == 403
    near = d.get("/api/incidents/duplicates", params={**LUODING, "category": "traffic"}).json()
    assert inc["id"] in [x["incident"]["id"] for x in near] and near[0]["distance_m"] < 500
    assert d.get("/api/incidents/duplicates", params={**LUODING, "category": "nope"}).status_code == 422
    places = d.get("/api/gazetteer", params={"q": "luoding"}).json()
    assert places and places[0]["name"].startswith("罗定")
    assert d.get("/tiles/10/830/445").status_code == 404  # no MBTiles file yet
    db = sqlite3.connect(MBTILES)
    db.executescript("CREATE TABLE metadata (name text, value text);"
                     "CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob);")
    tile = b"\x89PNG\r\n\x1a\n" + b"0" * 32
    db.execute("INSERT INTO tiles VALUES (10, 830, 578, ?)", (tile,))  # XYZ y=445 is TMS row 1023-445
    db.commit()
    db.close()
    got = d.get("/tiles/10/830/445")
    assert got.status_code == 200 and got.content == tile and got.headers["content-type"] == "image/png"
    assert d.get("/tiles/10/830/578").status_code == 404  # the unflipped row is another tile
    assert viewer.get("/tiles/10/830/445").status_code == 403
    assert '"tiles": true' in d.get("/dispatch").text
    page = d.get("/dispatch")
    assert page.status_code == 200 and "dispatch.js" in page.text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page.text)


def test_training_toggle_separates_and_excludes(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    before = d.get("/api/dispatch/stats").json()
    assert d.post("/api/dispatch/training", json={"enabled": True}).json() == {"training": True}
    try:
        state = d.get("/api/dispatch/state").json()
        assert state["training"] and all(u["training"] for u in state["units"])
        real_open = {i["id"] for i in d.get("/api/incidents", params={"training": False}).json()}
        # drills, plus every open real incident: training mode never hides a real emergency (issue 14)
        assert {i["id"] for i in state["incidents"] if not i["training"]} == real_open
        drill = new_incident(d)
        assert drill["training"] and drill["id"].startswith("DRILL")
        assert "演练模式" in d.get("/dispatch").text
        assert d.get("/api/dispatch/stats").json()["incidents"] == before["incidents"]
    finally:
        assert d.post("/api/dispatch/training", json={"enabled": False}).json() == {"training": False}
    assert all(not i["training"] for i in d.get("/api/incidents").json())


def test_joint_components_link_merge_and_refusals(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    a = new_incident(d, category="traffic", subtype="collision", priority=2)
    joint = d.post(f"/api/incidents/{a['id']}/components", json={"status": "fire"})
    assert joint.status_code == 200 and joint.json()["joint"]
    assert d.post(f"/api/incidents/{a['id']}/components", json={"status": "fire"}).status_code == 422  # twice
    assert d.post(f"/api/incidents/{a['id']}/components", json={"status": "navy"}).status_code == 422
    # a joint incident needs the agency for a status change
    assert d.post(f"/api/incidents/{a['id']}/status", json={"status": "under_control"}).status_code == 409
    fire = d.post(f"/api/incidents/{a['id']}/status", json={"status": "under_control", "agency": "fire"})
    assert fire.status_code == 200
    comps = {c["agency"]: c["status"] for c in fire.json()["components"]}
    assert comps == {"police": "new", "fire": "under_control"} and fire.json()["status"] == "new"
    moved = d.post(f"/api/incidents/{a['id']}/location", json={**YUNCHENG, "uncertainty_m": 30, "address": "云城"})
    assert moved.status_code == 200 and moved.json()["county_code"] == 445302 and moved.json()["uncertainty_m"] == 30
    assert d.post(f"/api/incidents/{a['id']}/location", json={"lon": 999, "lat": 0}).status_code == 422
    assert d.get(f"/api/incidents/{a['id']}").json()["county_code"] == 445302
    assert d.post(f"/api/incidents/{a['id']}/priority", json={"status": "1"}).json()["priority"] == 1
    assert d.post(f"/api/incidents/{a['id']}/priority", json={"status": "x"}).status_code == 422
    assert d.post(f"/api/incidents/{a['id']}/notes", json={"text": "现场两车追尾"}).json()["notes"] == ["现场两车追尾"]
    assert d.post(f"/api/incidents/{a['id']}/notes", json={"text": ""}).status_code == 422
    assert d.post(f"/api/incidents/{a['id']}/calls", json={"text": "call-77"}).json()["calls"] == ["call-77"]
    assert d.post(f"/api/incidents/{a['id']}/calls", json={"text": "call-77"}).status_code == 422  # linked already
    b = new_incident(d, category="traffic", subtype="collision", priority=3, call_id="call-78")
    c = new_incident(d, category="police", subtype="disturbance", priority=4)
    assert d.post(f"/api/incidents/{a['id']}/link", json={"other": c["id"]}).status_code == 200
    assert d.post(f"/api/incidents/{a['id']}/link", json={"other": c["id"]}).status_code == 422  # already linked
    merged = d.post(f"/api/incidents/{a['id']}/merge", json={"other": b["id"]})
    assert merged.status_code == 200, merged.text
    assert b["id"] in merged.json()["merged_from"] and "call-78" in merged.json()["calls"]
    dup = d.get(f"/api/incidents/{b['id']}").json()
    assert dup["merged_into"] == a["id"] and dup["status"] == "closed"
    assert d.post(f"/api/incidents/{b['id']}/reopen", json={"text": "误合并"}).status_code == 409  # open the primary
    assert d.post(f"/api/incidents/{a['id']}/merge", json={"other": a["id"]}).status_code == 422
    assert d.post(f"/api/incidents/{a['id']}/reopen", json={"text": "x"}).status_code == 409  # not closed
    assert d.post(f"/api/incidents/{a['id']}/close", json={"text": "处置完毕"}).status_code == 200
    assert d.post(f"/api/incidents/{a['id']}/dispatch", json={"recommended": True}).status_code == 409  # closed
    assert d.post(f"/api/incidents/{a['id']}/reopen", json={"text": "再次报警"}).json()["status"] == "new"


def test_unit_status_changes_and_illegal_ones(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    unit = "xinxing-medical-1"
    assert d.post(f"/api/units/{unit}/status", json={"status": "on_scene"}).status_code == 409  # not dispatched
    assert d.post(f"/api/units/{unit}/status", json={"status": "dispatched"}).status_code == 422  # via an incident
    out = d.post(f"/api/units/{unit}/status", json={"status": "out_of_service"})
    assert out.status_code == 200 and out.json()["status"] == "out_of_service"
    inc = new_incident(d, category="medical", subtype="trauma", priority=4, lon=112.0, lat=22.72)
    rec = d.get(f"/api/incidents/{inc['id']}/recommendations").json()
    assert unit not in [c["unit_id"] for r in rec["requirements"] for c in r["candidates"]]  # out of service
    refused = d.post(f"/api/incidents/{inc['id']}/dispatch", json={"unit_ids": [unit]})
    assert refused.status_code == 409 and "停用" in refused.json()["detail"]
    assert d.post(f"/api/units/{unit}/status", json={"status": "available"}).json()["status"] == "available"
    assert d.post(f"/api/incidents/{inc['id']}/dispatch", json={"unit_ids": [unit]}).status_code == 200
    for status in ("en_route", "on_scene", "transporting", "at_hospital", "returning", "available"):
        r = d.post(f"/api/units/{unit}/status", json={"status": status})
        assert r.status_code == 200 and r.json()["status"] == status, r.text
    full = d.get(f"/api/incidents/{inc['id']}").json()
    assert full["units"] == [] and full["components"][0]["released_units"] == [unit]
    assert [e["action"] for e in full["timeline"]][-1] == "unit_cleared"
