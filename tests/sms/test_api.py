"""The SMS routes on a running system with SMS on (real Kannel + fakesmsc): dispatchers send and
follow delivery; other roles get 403; bad input is 422 naming the field and stores nothing."""
from __future__ import annotations

import contextlib
import time

from tests.conftest import RunningServer
from tests.sms.conftest import require_kannel

SERVER_ENV = {"CC_SMS__ENABLED": "true", "CC_SMS__THROUGHPUT": "20"}
ROLES = ("admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer", "leader")


def test_send_and_follow_delivery(server: RunningServer) -> None:
    require_kannel()
    with contextlib.closing(server.login("dispatcher")) as c:
        r = c.post("/api/sms/messages", json={"text": "【情况通报】西江云浮段水位超警戒，请各单位加强值守。",
                                              "kind": "bulletin", "numbers": ["13800008001"],
                                              "groups": ["市三防指挥部成员"]})
        assert r.status_code == 201, r.text
        mid = r.json()["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            detail = c.get(f"/api/sms/messages/{mid}").json()
            if {x["status"] for x in detail["recipients"]} == {"delivered"}:
                break
            time.sleep(0.3)
        assert {x["status"] for x in detail["recipients"]} == {"delivered"}, detail
        assert "13800008001" in {x["number"] for x in detail["recipients"]}
        listed = c.get("/api/sms/messages").json()["messages"]
        assert listed[0]["id"] == mid and listed[0]["delivered"] == listed[0]["recipients"]
        assert c.get("/api/sms/groups").json()["groups"][0]["name"] == "市三防指挥部成员"
        assert c.get("/api/sms/messages/999999").status_code == 404


def test_bad_input_names_the_field(server: RunningServer) -> None:
    with contextlib.closing(server.login("dispatcher")) as c:
        before = len(c.get("/api/sms/messages").json()["messages"])
        for body, field in [({"text": "", "numbers": ["13800000001"]}, "text"),
                            ({"text": "x" * 5000, "numbers": ["13800000001"]}, "text"),
                            ({"text": "hi", "numbers": ["abc"]}, "numbers[0]"),
                            ({"text": "hi", "groups": ["nope"]}, "groups[0]")]:
            r = c.post("/api/sms/messages", json=body)
            assert r.status_code == 422 and field in r.text, (body, r.status_code, r.text)
        r = c.post("/api/sms/messages", json={"text": "x" * 5001, "numbers": ["13800000001"]})
        assert r.status_code == 422 and "text" in r.text
        assert len(c.get("/api/sms/messages").json()["messages"]) == before


def test_role_matrix_sms(server: RunningServer) -> None:
    allowed = {"admin", "dispatcher", "leader", "chair"}
    for role in ROLES:
        c = server.login(role)
        got = c.get("/api/sms/messages").status_code
        sent = c.post("/api/sms/messages", json={"text": "hi", "numbers": ["13800000001"]}).status_code
        c.close()
        assert (got, sent) == ((200, 201) if role in allowed else (403, 403)), (role, got, sent)


def test_role_matrix_sms_console(server: RunningServer) -> None:
    """The console's routes: the gateway state for every SMS reader; retrying for dispatchers and
    admins only; the page for dispatchers and leaders (and admins)."""
    with contextlib.closing(server.login("dispatcher")) as c:
        mid = c.post("/api/sms/messages", json={"text": "retry drill", "numbers": ["13800000009"]}).json()["id"]
    outcomes = {}
    for role in ROLES:
        with contextlib.closing(server.login(role)) as c:
            outcomes[role] = (c.get("/api/sms/gateway").status_code,
                              c.post(f"/api/sms/messages/{mid}/retry").status_code,
                              c.get("/sms").status_code)
    readers = {"admin", "dispatcher", "leader", "chair"}
    assert outcomes == {r: (200 if r in readers else 403, 200 if r in ("admin", "dispatcher") else 403,
                            200 if r in ("admin", "dispatcher", "leader") else 403) for r in ROLES}, outcomes
    with contextlib.closing(server.login("dispatcher")) as c:
        gw = c.get("/api/sms/gateway").json()
        assert gw["up"] is True and gw["smsc"].startswith("online") and gw["waiting"] >= 0, gw
        assert c.post("/api/sms/messages/999999/retry").status_code == 404
        assert c.get("/api/sms/messages?status=bogus").status_code == 422
        assert c.get("/api/sms/messages?source=bogus").status_code == 422
        manual = c.get("/api/sms/messages?source=manual").json()["messages"]
        assert mid in {m["id"] for m in manual} and all(m["source"] == "manual" for m in manual)
        assert c.get("/api/sms/messages?source=warning").json()["messages"] == []
