"""The HTTP surface against a running server, as an outside tester would probe it (issue 13):
conference ids cannot be enumerated through the anonymous join page, a NUL character anywhere is a
clear 422 (never a 500), websocket refusals are audited, and bodies have a size limit (413)."""
from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from tests.conftest import RunningServer, run_async

# A small anonymous join budget so the limit is reached quickly; 1 page per minute refill.
SERVER_ENV = {"CC_HTTP__JOIN_BURST": "12", "CC_HTTP__JOIN_PER_MINUTE": "1"}


def create(chair: httpx.Client, name: str, **kw: Any) -> str:
    response = chair.post("/api/conferences", json={"name": name, "start_now": True, "guests": True, **kw})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def ws_join(server: RunningServer, conference_id: str) -> dict[str, Any]:
    url = server.url.replace("http://", "ws://") + f"/ws/conference/{conference_id}"
    async with ws_connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "sdp": "v=0 placeholder offer", "pin": ""}))
        reply: dict[str, Any] = json.loads(await ws.recv())
        return reply


def test_anonymous_join_reveals_nothing_and_is_rate_limited(server: RunningServer) -> None:
    chair = server.login("chair")
    guest = server.client()
    names = {"closed": "内部闭门会议甲", "locked": "锁定会议乙", "ended": "已结束会议丙", "later": "未开始会议丁"}
    ids = {"closed": create(chair, names["closed"], guests=False), "locked": create(chair, names["locked"]),
           "ended": create(chair, names["ended"])}
    starts = datetime.now(UTC) + timedelta(hours=2)
    ids["later"] = create(chair, names["later"], start_now=False, starts_at=starts.isoformat(),
                          ends_at=(starts + timedelta(hours=1)).isoformat())
    ids["unknown"] = "99999998"
    assert chair.post(f"/api/conferences/{ids['locked']}/ops", json={"op": "lock"}).status_code == 200
    assert chair.post(f"/api/conferences/{ids['ended']}/end").status_code == 200
    open_id = create(chair, "公开访客会议")

    answers = {}
    for kind, cid in ids.items():
        page = guest.get(f"/join/{cid}")
        answers[kind] = (page.status_code, page.text.replace(cid, "<id>"))
    assert len(set(answers.values())) == 1, {k: v[0] for k, v in answers.items()}  # byte-identical pages
    status, text = answers["closed"]
    assert status == 404 and 'data-state="unavailable"' in text and "/login?next=/join/" in text
    assert not any(name in text for name in names.values())
    # The websocket says the same: one refusal code, whatever the reason.
    codes = {kind: run_async(ws_join(server, cid))["code"] for kind, cid in ids.items()}
    assert set(codes.values()) == {"unavailable"}, codes
    # A guest conference that runs: the join form, with its name.
    opened = guest.get(f"/join/{open_id}")
    assert opened.status_code == 200 and "公开访客会议" in opened.text and 'data-testid="join-form"' in opened.text
    # A signed-in user keeps the informative page.
    assert chair.get(f"/join/{ids['locked']}").status_code == 423
    assert chair.get(f"/join/{ids['ended']}").status_code == 410
    assert chair.get(f"/join/{ids['later']}").status_code == 409
    assert chair.get(f"/join/{ids['unknown']}").status_code == 404
    closed = chair.get(f"/join/{ids['closed']}")
    assert closed.status_code == 200 and names["closed"] in closed.text

    # Per-source limit: the burst (12) is spent by now or soon; then 429 with Retry-After.
    statuses = [guest.get(f"/join/{10000000 + i}").status_code for i in range(12)]
    assert 429 in statuses, statuses
    limited = guest.get("/join/80000001")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "全市视频会议" not in limited.text
    assert chair.get("/join/80000001").status_code == 200  # signed-in users are not limited


NUL = "\u0000"


def _names_field(response: httpx.Response, field: str) -> bool:
    return response.status_code == 422 and f"字段 {field} " in response.text


def test_nul_anywhere_is_a_clear_422_not_a_500(server: RunningServer) -> None:
    chair, dispatcher = server.login("chair"), server.login("dispatcher")
    calltaker, admin = server.login("calltaker"), server.login("admin")
    before = len(chair.get("/api/conferences").json())
    bad_name = chair.post("/api/conferences", json={"name": f"防汛{NUL}会议"})
    assert _names_field(bad_name, "name"), bad_name.text
    assert bad_name.json()["detail"][0]["loc"] == ["body", "name"]
    bad_sites = chair.post("/api/conferences", json={"name": "防汛会议", "sites": ["ok", f"x{NUL}"]})
    assert _names_field(bad_sites, "sites[1]"), bad_sites.text
    assert len(chair.get("/api/conferences").json()) == before  # nothing was created
    banner = chair.post("/api/conferences/80000001/ops", json={"op": "banner", "text": NUL})
    assert _names_field(banner, "text"), banner.text
    incident = dispatcher.post("/api/incidents", json={"category": "fire", "priority": 2, "lon": 112.0,
                                                       "lat": 22.9, "description": f"a{NUL}"})
    assert _names_field(incident, "description"), incident.text
    # Path and query parameters.
    assert _names_field(dispatcher.get("/api/incidents/INC%00"), "path")
    assert _names_field(admin.get("/api/audit", params={"actor": NUL}), "actor")
    assert _names_field(admin.patch("/api/users/chair%00", json={"disabled": True}), "path")
    # Raw bodies: AVL, EIDO (JSON), AML (text).
    avl = dispatcher.post("/api/avl", json=[{"unit_id": f"u{NUL}", "lon": 112.0, "lat": 22.9, "ts": time.time()}])
    assert avl.status_code == 422 and "[0].unit_id" in avl.text, avl.text
    eido = dispatcher.post("/api/eido", json={"eidoMessageIdentifier": NUL})
    assert _names_field(eido, "eidoMessageIdentifier"), eido.text
    aml = calltaker.post("/api/aml", params={"from": "13800000000"}, content=f"A\"ML=1;lt=22.9{NUL}".encode(),
                         headers={"Content-Type": "text/plain"})
    assert aml.status_code == 400 and "NUL" in aml.text, aml.text
    assert calltaker.post("/api/aml", params={"from": f"1{NUL}"}, content=b"x",
                          headers={"Content-Type": "text/plain"}).status_code == 422
    # The login form.
    login = server.client()
    token = login.get("/login").text.split('name="login_csrf" value="')[1].split('"')[0]
    refused = login.post("/login", data={"username": f"admin{NUL}", "password": "x", "login_csrf": token})
    assert refused.status_code == 422 and "NUL" in refused.text
    # The refusal of the AML text is audited, with the NUL written visibly.
    rejected = admin.get("/api/audit", params={"action": "aml.rejected"}).json()
    assert rejected and "\\u0000" in json.dumps(rejected[0]["detail"], ensure_ascii=False)
    assert server.client().get("/readyz").status_code == 200


def test_websocket_role_refusals_are_audited(server: RunningServer) -> None:
    base = server.url.replace("http://", "ws://")
    viewer, chair, admin = server.login("viewer"), server.login("chair"), server.login("admin")

    async def refused(path: str, client: httpx.Client, origin: str | None = None) -> int:
        headers = {"Cookie": "cc_session=" + client.cookies["cc_session"]}
        with pytest.raises(websockets.exceptions.InvalidStatus) as caught:
            async with ws_connect(base + path, additional_headers=headers, origin=origin):  # type: ignore[arg-type]
                pass
        return caught.value.response.status_code

    assert run_async(refused("/ws/desk", viewer)) == 403
    assert run_async(refused("/ws/avl", chair)) == 403
    assert run_async(refused("/ws/events", viewer, origin="http://evil.example")) == 403
    denied = [e for e in admin.get("/api/audit", params={"action": "access.denied", "limit": 50}).json()
              if e["detail"].get("method") == "WEBSOCKET"]
    seen = {(e["actor"], e["target"], e["detail"]["reason"]) for e in denied}
    assert {("viewer", "/ws/desk", "role"), ("chair", "/ws/avl", "role"), ("viewer", "/ws/events", "origin")} <= seen
    assert all(e["source"] == "127.0.0.1" and e["outcome"] == "denied" for e in denied)


def test_bodies_over_the_limit_get_413_before_they_are_read(server: RunningServer) -> None:
    dispatcher, calltaker = server.login("dispatcher"), server.login("calltaker")
    big = b"[" + b"1," * (600 * 1024) + b"1]"  # ~1.2 MB of valid JSON
    for client, path in ((dispatcher, "/api/avl"), (dispatcher, "/api/eido"), (calltaker, "/api/aml"),
                         (server.login("chair"), "/api/conferences")):
        response = client.post(path, content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413, (path, response.status_code, response.text[:200])
        assert "1048576" in response.text
    # A body without a declared length (chunked) is counted as it arrives.
    chunked = dispatcher.post("/api/avl", content=iter([b"[" + b"1," * 100_000] * 8 + [b"1]"]),
                              headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413 and "1048576" in chunked.text
    # A declared 100 MB body is refused at once, after only the headers and a few bytes were sent.
    host, port = server.url.removeprefix("http://").split(":")
    cookie = dispatcher.cookies["cc_session"]
    csrf = dispatcher.headers["X-CSRF-Token"]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall((f"POST /api/avl HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {100 * 1024 * 1024}\r\nCookie: cc_session={cookie}\r\n"
                      f"X-CSRF-Token: {csrf}\r\n\r\n[1,2,3").encode())
        reply = sock.recv(4096).decode("latin-1")
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert time.monotonic() - started < 5
    # Below the limit still works.
    assert dispatcher.post("/api/avl", json=[]).status_code in (200, 422)
