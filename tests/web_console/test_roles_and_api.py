"""Role matrix, audit of logins and changes, identity rules and API bad input, against a running server."""
from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import websockets
import websockets.exceptions
from websockets.asyncio.client import connect as ws_connect

from tests.conftest import RunningServer

ROLES = ["admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer", "leader"]
ROLES.append("responder")  # the field responders' phone page (issue 20)
ALL = set(ROLES)
ADMIN = {"admin"}

# Expected access, written out by hand (not derived from the code under test).
MATRIX: list[tuple[str, str, set[str]]] = [
    ("GET", "/", ALL),
    ("GET", "/api/me", ALL),
    ("GET", "/conference", {"admin", "chair", "operator"}),
    ("GET", "/watch", {"admin", "chair", "operator", "viewer"}),
    ("GET", "/desk", {"admin", "calltaker"}),
    ("GET", "/dispatch", {"admin", "dispatcher", "chair", "leader"}),  # chair, leader: read-only (issue 19)
    ("GET", "/inspect", {"admin", "inspector"}),
    ("GET", "/admin/users", ADMIN),
    ("GET", "/admin/audit", ADMIN),
    ("GET", "/admin/crews", ADMIN),  # crew bindings (issue 20)
    ("GET", "/docs", ADMIN),
    ("GET", "/openapi.json", ADMIN),
    ("GET", "/api/users", ADMIN),
    ("GET", "/api/audit", ADMIN),
    ("POST", "/api/users", ADMIN),
    ("PATCH", "/api/users/viewer", ADMIN),
    ("POST", "/api/users/viewer/tokens", ADMIN),
    # emergency resources (issue 19): read by dispatchers, call-takers and the chair (read-only)
    ("GET", "/api/resources", {"admin", "dispatcher", "calltaker", "chair", "leader"}),
    ("GET", "/api/resources/nearest?kind=depot&item=sandbag&min_quantity=500&lon=111.57&lat=22.77",
     {"admin", "dispatcher", "calltaker", "chair", "leader"}),
    # response plans (issue 19): dispatchers and the chair (the leader on duty); the leader reads; the library, admins
    ("GET", "/api/plans", {"admin", "dispatcher", "chair", "leader"}),
    ("GET", "/api/plans/flood", {"admin", "dispatcher", "chair", "leader"}),
    ("GET", "/api/plan-desk", {"admin", "dispatcher", "chair", "leader"}),
    ("GET", "/api/agency-desks", ADMIN),
    ("GET", "/plans", ADMIN),
    ("GET", "/api/duty/now", {"admin", "dispatcher", "chair", "leader"}),
    # the dispatch map read-only for the chair and the leader (issue 19)
    ("GET", "/api/dispatch/state", {"admin", "dispatcher", "calltaker", "chair", "leader"}),
    ("GET", "/api/incidents", {"admin", "dispatcher", "calltaker", "chair", "leader"}),
    ("GET", "/api/units", {"admin", "dispatcher", "calltaker", "chair", "leader"}),
    # the leaders' command view (issue 19)
    ("GET", "/command", {"admin", "leader", "chair"}),
    ("GET", "/api/command/summary", {"admin", "leader", "chair"}),
    # monitoring (issue 20): dispatchers (the flood desk), the chair and the leader watch; admins (or a system token) push
    ("GET", "/api/monitoring/gauges", {"admin", "dispatcher", "chair", "leader"}),
    ("GET", "/api/monitoring/alarms", {"admin", "dispatcher", "chair", "leader"}),
    ("GET", "/api/monitoring/gauges/gauge-luoding-river/series?span=7d", {"admin", "dispatcher", "chair", "leader"}),
    ("POST", "/api/monitoring/readings", ADMIN),
    # content token and raise-hand queue of the running demo conference (issue 18): the chair console's
    # (and the leader chairing a meeting; the chair's slide deck too: POST in tests/web_console/test_content_deck.py)
    ("GET", "/api/conferences/80000001/content", {"admin", "chair", "operator", "leader"}),
    ("GET", "/api/decks/80000001", {"admin", "chair", "operator", "leader"}),
    # the conference's state: the leader's command view reads it for its camera control (issue 18)
    ("GET", "/api/conferences/80000001", {"admin", "chair", "operator", "leader"}),
    # public warnings (issue 20): dispatchers draft, the leader on duty (or the chair) approves
    ("GET", "/warnings", {"admin", "dispatcher", "chair", "leader"}),
    ("GET", "/api/warnings", {"admin", "dispatcher", "chair", "leader"}),
    ("GET", "/api/warnings/active", {"admin", "dispatcher", "chair", "leader"}),
    # the CAP Atom feed: the same readers (other departments' systems use a feed token: tests/alerts/test_api.py)
    ("GET", "/api/warnings/feed.atom", {"admin", "dispatcher", "chair", "leader"}),
    # the SMS console page (issue 20): dispatchers and leaders (read); its API (503 here, SMS off) is in
    # tests/sms/test_api.py test_role_matrix_sms
    ("GET", "/sms", {"admin", "dispatcher", "leader"}),
    # live streaming (issue 18): watchers list streams and open /watch/<id>; chairs and operators start them
    ("GET", "/api/streams", {"admin", "chair", "operator", "viewer"}),
    ("GET", "/watch/80000001", {"admin", "chair", "operator", "viewer"}),
    ("POST", "/api/conferences/80000001/stream/link", {"admin", "chair", "operator"}),
    # replaying recorded conferences (issue 18): chairs and operators every one, viewers those granted
    # (grants, 403 and audit rows in tests/web_console/test_conference_replay.py)
    ("GET", "/replay", {"admin", "chair", "operator", "viewer"}),
    ("GET", "/api/replay", {"admin", "chair", "operator", "viewer"}),
    # far-end camera control (issue 18): the chair, the operator (who runs every other site operation)
    # and the leader steer a room system's camera; the demo's synthetic site has none (available: false)
    ("GET", "/api/conferences/80000001/cameras/yuncheng-room", {"admin", "chair", "operator", "leader"}),
    # the field responders' phone page (issue 20): the crew of a unit (the demo responder, 罗定消01); admins bind logins
    ("GET", "/field", {"admin", "responder"}),
    ("GET", "/api/field/state", {"admin", "responder"}),
    ("GET", "/api/field/units/luoding-fire-1", {"admin", "responder"}),
    ("GET", "/api/field/crews", ADMIN),
]
PUBLIC = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/login"), ("GET", "/join/80000001")]


def _body(method: str, path: str) -> dict[str, object] | None:
    if path == "/api/users" and method == "POST":
        return {"username": "u" + uuid.uuid4().hex[:8], "password": "Str0ngPassw0rd", "role": "viewer"}
    if path.startswith("/api/users/viewer/tokens"):
        return {"name": "integration"}
    if method == "PATCH":
        return {"disabled": False}
    if path == "/api/monitoring/readings":
        return {"readings": [{"gauge": "gauge-luoding-river", "value": 5.0}]}
    return None


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> dict[str, httpx.Client]:
    return {role: server.login(role) for role in ROLES}


@pytest.mark.parametrize("method,path,allowed", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_role_matrix(clients: dict[str, httpx.Client], method: str, path: str, allowed: set[str]) -> None:
    outcomes = {}
    for role in ROLES:
        response = clients[role].request(method, path, json=_body(method, path))
        outcomes[role] = response.status_code
    expected_ok = {200, 201}
    for role in ROLES:
        if role in allowed:
            assert outcomes[role] in expected_ok, (role, outcomes)
        else:
            assert outcomes[role] == 403, (role, outcomes)


def test_resource_allocation_roles(clients: dict[str, httpx.Client]) -> None:
    """Allocating and releasing: dispatchers and admins; an incident's allocations: every reader."""
    inc = clients["dispatcher"].post("/api/incidents", json={"category": "flood_control", "priority": 2,
                                                             "lon": 111.57, "lat": 22.77})
    assert inc.status_code == 201, inc.text
    path = f"/api/incidents/{inc.json()['id']}/resources"
    outcomes = {}
    for role in ROLES:
        r = clients[role].post(path, json={"resource_id": "depot-luocheng", "item": "sandbag", "quantity": 1,
                                           "request_id": uuid.uuid4().hex})
        outcomes[role] = r.status_code
        if r.status_code == 201:
            released = clients[role].post(f"/api/resource-allocations/{r.json()['allocation']['id']}/release")
            assert released.status_code == 200, (role, released.text)
    assert outcomes == {r: 201 if r in ("admin", "dispatcher") else 403 for r in ROLES}, outcomes
    reads = {role: clients[role].get(path).status_code for role in ROLES}
    assert reads == {r: 200 if r in ("admin", "dispatcher", "calltaker", "chair", "leader") else 403
                     for r in ROLES}, reads
    allocation = clients["dispatcher"].get(path).json()[0]["id"]
    for role in ("calltaker", "chair", "viewer", "operator", "inspector", "leader"):
        assert clients[role].post(f"/api/resource-allocations/{allocation}/release").status_code == 403, role


def test_situation_report_roles(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    """The situation report, its map and its PDF (issue 19): dispatchers, call-takers, the chair,
    the leader and admins; anonymous callers are sent to the login page."""
    inc = clients["dispatcher"].post("/api/incidents", json={"category": "flood_control", "priority": 2,
                                                             "lon": 111.57, "lat": 22.77})
    assert inc.status_code == 201, inc.text
    base = f"/dispatch/incidents/{inc.json()['id']}/report"
    readers = {"admin", "dispatcher", "calltaker", "chair", "leader"}
    for path in (base, base + "/map", base + ".pdf"):
        codes = {role: clients[role].get(path, timeout=90).status_code for role in ROLES}
        assert codes == {r: 200 if r in readers else 403 for r in ROLES}, (path, codes)
        with server.client() as anon:
            r = anon.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path


def test_plan_and_duty_write_routes_roles(clients: dict[str, httpx.Client]) -> None:
    """Response plans and the duty roster (issue 19), the routes that change things: a level change,
    a task update and standing down — dispatchers and the chair (and admins); approving a version,
    assigning agency desks and rostering shifts — admins; a handover — dispatchers and the chair.
    A refused role changes nothing."""
    actors = {"admin", "dispatcher", "chair"}
    d = clients["dispatcher"]

    def activation() -> dict[str, Any]:
        inc = d.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 2,
                                             "lon": 111.57, "lat": 22.77})
        assert inc.status_code == 201, inc.text
        act = d.post(f"/api/incidents/{inc.json()['id']}/plans", json={"plan_key": "flood", "level": "IV"})
        assert act.status_code == 201, act.text
        out: dict[str, Any] = act.json()
        return out

    a = activation()
    reads = {role: clients[role].get(f"/api/incidents/{a['incident_id']}/plans").status_code for role in ROLES}
    assert reads == {r: 200 if r in actors | {"leader"} else 403 for r in ROLES}, reads  # the leader reads
    level, codes = "IV", {}
    for role in ROLES:  # allowed roles toggle IV ⇄ III; refused ones leave it where it is
        to = "III" if level == "IV" else "IV"
        codes[role] = clients[role].post(f"/api/plan-activations/{a['id']}/level", json={"level": to}).status_code
        level = to if codes[role] == 200 else level
        assert d.get(f"/api/incidents/{a['incident_id']}/plans").json()["activations"][0]["level"] == level
    assert codes == {r: 200 if r in actors else 403 for r in ROLES}, codes
    tasks = [t for g in d.get(f"/api/incidents/{a['incident_id']}/plans").json()["activations"][0]["agencies"]
             for t in g["tasks"] if t["status"] == "assigned"]
    assert len(tasks) >= len(actors)
    refused = {role: clients[role].post(f"/api/plan-tasks/{tasks[0]['id']}", json={"status": "done"}).status_code
               for role in ROLES if role not in actors}
    assert set(refused.values()) == {403}, refused
    codes = {role: clients[role].post(f"/api/plan-tasks/{t['id']}", json={"status": "acknowledged"}).status_code
             for role, t in zip(sorted(actors), tasks, strict=False)}
    assert set(codes.values()) == {200}, codes  # and tasks[0] went from assigned, not from done
    ends = {role: clients[role].post(f"/api/plan-activations/{a['id']}/end").status_code
            for role in ROLES if role not in actors}
    assert set(ends.values()) == {403}, ends
    for role in sorted(actors):  # each allowed role stands down an activation of its own
        assert clients[role].post(f"/api/plan-activations/{activation()['id']}/end").status_code == 200, role

    admin = clients["admin"]
    text = admin.get("/api/plans/traffic/export").text
    version = admin.post("/api/plans", json={"format": "toml", "text": text}).json()["version"]
    approve = f"/api/plans/traffic/versions/{version}/approve"
    assert {r: clients[r].post(approve).status_code for r in ROLES if r != "admin"} == \
        {r: 403 for r in ROLES if r != "admin"}
    assert admin.post(approve).status_code == 200
    desk = {r: clients[r].put("/api/agency-desks/viewer", json={"agency": None}).status_code for r in ROLES}
    assert desk == {r: 200 if r == "admin" else 403 for r in ROLES}, desk
    shifts = {}
    for i, role in enumerate(ROLES):  # far-future shifts that overlap nothing
        start = f"2090-01-{i + 1:02d}T08:00:00+08:00"
        shifts[role] = clients[role].post("/api/duty/shifts", json={
            "starts_at": start, "ends_at": start.replace("T08", "T20"),
            "posts": {"leader_on_duty": ["chair"], "duty_officer": ["dispatcher"]}}).status_code
    assert shifts == {r: 201 if r == "admin" else 403 for r in ROLES}, shifts
    listed = {r: clients[r].get("/api/duty/shifts", params={"start": "2090-01-01T00:00:00+08:00",
                                                            "end": "2090-01-09T00:00:00+08:00"}).status_code
              for r in ROLES}
    assert listed == {r: 200 if r in actors | {"leader"} else 403 for r in ROLES}, listed
    handovers = {r: clients[r].post("/api/duty/handovers", json={"notes": f"{r} 交班"}).status_code for r in ROLES}
    assert handovers == {r: 201 if r in actors else 403 for r in ROLES}, handovers


def test_leader_and_chair_read_the_map_but_change_nothing(clients: dict[str, httpx.Client]) -> None:
    """Issue 19: the leader (and the chair) open the dispatch map, incidents, plans and resources
    read-only; every change there is 403 for the leader (and, outside plans, for the chair)."""
    d = clients["dispatcher"]
    inc = d.post("/api/incidents", json={"category": "flood_control", "priority": 2, "lon": 111.57, "lat": 22.77})
    assert inc.status_code == 201, inc.text
    iid = inc.json()["id"]
    act = d.post(f"/api/incidents/{iid}/plans", json={"plan_key": "flood", "level": "IV"})
    assert act.status_code == 201, act.text
    task = act.json()["agencies"][0]["tasks"][0]["id"]
    reads = [f"/api/incidents/{iid}", f"/api/incidents/{iid}/plans", f"/api/incidents/{iid}/resources",
             f"/api/incidents/{iid}/recommendations", "/api/dispatch/stats", "/api/plans-ui", "/dispatch"]
    for role in ("leader", "chair"):
        got = {p: clients[role].get(p).status_code for p in reads}
        assert set(got.values()) == {200}, (role, got)
    unit = d.get("/api/units").json()[0]["id"]
    dispatch_writes: list[tuple[str, dict[str, object]]] = [
        ("/api/incidents", {"category": "fire", "priority": 3, "lon": 111.57, "lat": 22.77}),
        (f"/api/incidents/{iid}/notes", {"text": "x"}),
        (f"/api/incidents/{iid}/location", {"lon": 111.58, "lat": 22.78}),
        (f"/api/incidents/{iid}/status", {"status": "dispatched"}),
        (f"/api/incidents/{iid}/dispatch", {"recommended": True}),
        (f"/api/incidents/{iid}/conference", {}),
        (f"/api/units/{unit}/status", {"status": "out_of_service"}),
        (f"/api/incidents/{iid}/resources", {"resource_id": "depot-luocheng", "item": "sandbag", "quantity": 1,
                                             "request_id": uuid.uuid4().hex}),
        ("/api/dispatch/training", {"enabled": True}),
    ]
    plan_writes: list[tuple[str, dict[str, object]]] = [
        (f"/api/incidents/{iid}/plans", {"plan_key": "fire", "level": "IV"}),
        (f"/api/plan-activations/{act.json()['id']}/level", {"level": "III"}),
        (f"/api/plan-tasks/{task}", {"status": "acknowledged"}),
        (f"/api/plan-activations/{act.json()['id']}/end", {}),
        ("/api/duty/handovers", {"notes": "x"}),
    ]
    for path, body in dispatch_writes:
        for role in ("leader", "chair"):
            assert clients[role].post(path, json=body).status_code == 403, (role, path)
    for path, body in plan_writes:
        assert clients["leader"].post(path, json=body).status_code == 403, path
    # nothing changed: the task is still assigned, the activation active at level IV
    after = d.get(f"/api/incidents/{iid}/plans").json()["activations"][0]
    assert after["level"] == "IV" and after["status"] == "active"
    assert next(t for g in after["agencies"] for t in g["tasks"] if t["id"] == task)["status"] == "assigned"
    assert d.post(f"/api/plan-activations/{act.json()['id']}/end").status_code == 200


@pytest.mark.parametrize("method,path,_", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_anonymous_requests_are_refused(server: RunningServer, method: str, path: str, _: set[str]) -> None:
    with server.client() as anon:
        response = anon.request(method, path, json=_body(method, path))
    if path.startswith("/api/") or path == "/openapi.json":
        assert response.status_code == 401
    else:
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("method,path", PUBLIC)
def test_public_routes(server: RunningServer, method: str, path: str) -> None:
    with server.client() as anon:
        assert anon.request(method, path).status_code == 200


def test_state_change_without_csrf_token_is_refused(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    admin = clients["admin"]
    response = admin.post("/api/users", json=_body("POST", "/api/users"),
                          headers={"X-CSRF-Token": "wrong"})
    assert response.status_code == 403
    # the refusal is itself audited
    entries = admin.get("/api/audit", params={"action": "access.denied"}).json()
    assert any(e["target"] == "/api/users" and e["detail"]["reason"] == "csrf" for e in entries)


def test_api_token_authenticates_without_csrf(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    admin = clients["admin"]
    token = admin.post("/api/users/dispatcher/tokens", json={"name": "avl-feed"}).json()["token"]
    with server.client() as integration:
        integration.headers["Authorization"] = f"Bearer {token}"
        me = integration.get("/api/me")
        assert me.status_code == 200 and me.json()["role"] == "dispatcher"
        assert integration.get("/api/users").status_code == 403
    with server.client() as bad:
        bad.headers["Authorization"] = "Bearer cc_not-a-token"
        assert bad.get("/api/me").status_code == 401


def test_logins_and_changes_are_audited(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    admin = clients["admin"]
    with server.client() as c:  # a failed login
        page = c.get("/login")
        import re
        csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert c.post("/login", data={"username": "chair", "password": "nope-nope-1",
                                      "login_csrf": csrf}).status_code == 401
    name = "audited" + uuid.uuid4().hex[:6]
    assert admin.post("/api/users", json={"username": name, "password": "An0therStrongOne",
                                          "role": "inspector"}).status_code == 201
    assert admin.patch(f"/api/users/{name}", json={"role": "viewer"}).status_code == 200
    entries = admin.get("/api/audit", params={"limit": 500}).json()
    logins = [e for e in entries if e["action"] == "login"]
    assert any(e["actor"] == "chair" and e["outcome"] == "failed" for e in logins)
    assert {e["actor"] for e in logins if e["outcome"] == "ok"} >= set(ROLES)
    assert all(e["source"] == "127.0.0.1" for e in logins)
    create = [e for e in entries if e["action"] == "user.create" and e["target"] == name]
    assert create and create[0]["actor"] == "admin" and create[0]["detail"] == {"role": "inspector"}
    update = [e for e in entries if e["action"] == "user.update" and e["target"] == name]
    assert update and update[0]["detail"] == {"role": "viewer"}


def test_audit_log_cannot_be_rewritten(server: RunningServer) -> None:
    import asyncio

    import asyncpg

    async def tamper() -> None:
        conn = await asyncpg.connect(server.db_url)
        try:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("UPDATE audit_log SET actor = 'someone-else'")
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("DELETE FROM audit_log")
        finally:
            await conn.close()

    asyncio.run(tamper())


def test_bad_input_gets_clear_errors_and_changes_nothing(clients: dict[str, httpx.Client]) -> None:
    admin = clients["admin"]
    before = admin.get("/api/users").json()
    # malformed JSON
    r = admin.post("/api/users", content=b'{"username": "x", ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    # field errors name the field
    r = admin.post("/api/users", json={"username": "ok-name", "password": "Str0ngPassw0rd", "role": "emperor"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "role"]
    r = admin.post("/api/users", json={"username": "BAD NAME", "password": "x", "role": "viewer"})
    assert r.status_code == 422 and ["body", "username"] in [e["loc"] for e in r.json()["detail"]]
    # duplicate user
    r = admin.post("/api/users", json={"username": "chair", "password": "Str0ngPassw0rd", "role": "chair"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    # weak password (policy)
    r = admin.post("/api/users", json={"username": "weakling", "password": "short", "role": "viewer"})
    assert r.status_code == 400 and "at least 10 characters" in r.json()["detail"]
    # a PATCH with a weak password changes nothing, not even the valid role part
    r = admin.patch("/api/users/viewer", json={"role": "chair", "password": "short"})
    assert r.status_code == 400
    assert admin.get("/api/users").json() == before
    # not JSON at all, wrong types
    r = admin.patch("/api/users/viewer", content=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = admin.patch("/api/users/viewer", json={"disabled": "perhaps"})
    assert r.status_code == 422
    assert admin.get("/api/users").json() == before


async def test_events_websocket_streams_what_the_role_may_see(server: RunningServer,
                                                              clients: dict[str, httpx.Client]) -> None:
    ws_url = server.url.replace("http://", "ws://") + "/ws/events"

    def cookie(role: str) -> str:
        return "cc_session=" + clients[role].cookies["cc_session"]

    # anonymous: refused
    with pytest.raises(websockets.exceptions.InvalidStatus) as anonymous:
        async with ws_connect(ws_url):
            pass
    assert anonymous.value.response.status_code == 403
    async with ws_connect(ws_url, additional_headers={"Cookie": cookie("admin")}) as admin_ws, \
            ws_connect(ws_url, additional_headers={"Cookie": cookie("chair")}) as chair_ws:
        assert json.loads(await admin_ws.recv())["topic"] == "system.hello"
        assert json.loads(await chair_ws.recv())["topic"] == "system.hello"
        name = "ws" + uuid.uuid4().hex[:6]
        created = clients["admin"].post("/api/users", json={"username": name, "password": "Str0ngPassw0rd",
                                                             "role": "viewer"})
        assert created.status_code == 201
        import asyncio
        async def next_user_event(ws: Any) -> dict[str, Any]:
            while True:  # the running demo conference streams its own events too
                event: dict[str, Any] = json.loads(await ws.recv())
                if event["topic"].startswith("user."):
                    return event

        event = await asyncio.wait_for(next_user_event(admin_ws), 5)
        assert event["topic"] == "user.created" and event["payload"]["username"] == name
        with pytest.raises(asyncio.TimeoutError):  # user events are for admins only
            await asyncio.wait_for(next_user_event(chair_ws), 1.0)
    # a page on another site cannot ride the session
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with ws_connect(ws_url, additional_headers={"Cookie": cookie("admin")},
                              origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


def test_pages_reference_no_external_urls(clients: dict[str, httpx.Client]) -> None:
    import re

    admin = clients["admin"]
    for path in ["/", "/login", "/admin/users", "/admin/audit", "/docs", "/conference", "/join/80000001"]:
        html = admin.get(path).text
        external = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
        assert external == [], (path, external)
    # and what they reference is served
    assert admin.get("/static/vendor/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
    assert admin.get("/static/app/app.css").status_code == 200
