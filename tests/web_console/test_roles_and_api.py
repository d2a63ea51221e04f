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

ROLES = ["admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer"]
ALL = set(ROLES)
ADMIN = {"admin"}

# Expected access, written out by hand (not derived from the code under test).
MATRIX: list[tuple[str, str, set[str]]] = [
    ("GET", "/", ALL),
    ("GET", "/api/me", ALL),
    ("GET", "/conference", {"admin", "chair", "operator"}),
    ("GET", "/watch", {"admin", "chair", "operator", "viewer"}),
    ("GET", "/desk", {"admin", "calltaker"}),
    ("GET", "/dispatch", {"admin", "dispatcher"}),
    ("GET", "/inspect", {"admin", "inspector"}),
    ("GET", "/admin/users", ADMIN),
    ("GET", "/admin/audit", ADMIN),
    ("GET", "/docs", ADMIN),
    ("GET", "/openapi.json", ADMIN),
    ("GET", "/api/users", ADMIN),
    ("GET", "/api/audit", ADMIN),
    ("POST", "/api/users", ADMIN),
    ("PATCH", "/api/users/viewer", ADMIN),
    ("POST", "/api/users/viewer/tokens", ADMIN),
    # emergency resources (issue 19): read by dispatchers, call-takers and the chair (read-only)
    ("GET", "/api/resources", {"admin", "dispatcher", "calltaker", "chair"}),
    ("GET", "/api/resources/nearest?kind=depot&item=sandbag&min_quantity=500&lon=111.57&lat=22.77",
     {"admin", "dispatcher", "calltaker", "chair"}),
    # response plans (issue 19): dispatchers and the chair (the leader on duty); the library, admins
    ("GET", "/api/plans", {"admin", "dispatcher", "chair"}),
    ("GET", "/api/plans/flood", {"admin", "dispatcher", "chair"}),
    ("GET", "/api/plan-desk", {"admin", "dispatcher", "chair"}),
    ("GET", "/api/agency-desks", ADMIN),
    ("GET", "/plans", ADMIN),
    ("GET", "/api/duty/now", {"admin", "dispatcher", "chair"}),
]
PUBLIC = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/login"), ("GET", "/join/80000001")]


def _body(method: str, path: str) -> dict[str, object] | None:
    if path == "/api/users" and method == "POST":
        return {"username": "u" + uuid.uuid4().hex[:8], "password": "Str0ngPassw0rd", "role": "viewer"}
    if path.startswith("/api/users/viewer/tokens"):
        return {"name": "integration"}
    if method == "PATCH":
        return {"disabled": False}
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
    assert reads == {r: 200 if r in ("admin", "dispatcher", "calltaker", "chair") else 403 for r in ROLES}, reads
    allocation = clients["dispatcher"].get(path).json()[0]["id"]
    for role in ("calltaker", "chair", "viewer", "operator", "inspector"):
        assert clients[role].post(f"/api/resource-allocations/{allocation}/release").status_code == 403, role


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
