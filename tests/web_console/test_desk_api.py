"""The desk over HTTP on a running `commandcenter up`: SIPp callers on its SIP port, AML posts
(SMS and HTTPS) matched to live calls, stored-then-matched, bad payloads 400 + logged, incident
from a call, hang-up with disposition (SIPp receives the BYE), the recording plays and its viewing
is audited, roles enforced."""
from __future__ import annotations

import functools
import io
import subprocess
import time
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dispatch.calltaking.aml import build_sms
from tests.conftest import RunningServer
from tests.conftest import wait_for as shared_wait_for
from tests.dispatch.calltaking_samples import SIPP_DIR, finish_sipp, free_port

SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__TCP_PORT": str(SIP_PORT)}
LAT, LON = 22.7690, 111.5700
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def taker(server: RunningServer) -> Iterator[httpx.Client]:
    c = server.login("calltaker")
    yield c
    c.close()


def queue(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/api/desk/state")
    assert r.status_code == 200, r.text
    q: dict[str, Any] = r.json()["queue"]
    return q


wait_for = functools.partial(shared_wait_for, within=10.0)


def sipp(scenario: str, port: int, calls: int = 1) -> subprocess.Popen[str]:
    """SIPp calling our SIP port (110, or 120 for the PIDF-LO scenario)."""
    return subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
         "-s", "120" if "pidf" in scenario else "110", "-m", str(calls), "-l", str(calls), "-r", "10", "-t", "u1",
         "-nostdin", "-timeout", "60s", "-timeout_error", "-mp", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/tmp")


finish = finish_sipp


def answer_and_end(c: httpx.Client, call_id: str, disposition: str = "advice") -> None:
    r = c.post(f"/api/desk/calls/{call_id}/answer")
    assert r.status_code == 200, (r.text, queue(c))
    r = c.post(f"/api/desk/calls/{call_id}/hangup", json={"disposition": disposition})
    assert r.status_code == 200, r.text


def test_aml_matched_to_live_calls_and_bad_payloads_refused(server: RunningServer, taker: httpx.Client) -> None:
    # An AML for a number with no live call is stored, then matched when the call arrives.
    early = taker.post("/api/aml?from=13700000009", content=build_sms(LAT, LON, 15, datetime.now(UTC)),
                       headers={"Content-Type": "text/plain"})
    assert early.status_code == 200 and early.json()["matched_call"] is None, early.text
    callers = sipp("emergency_wait.xml", SIP_PORT, calls=2)
    late = sipp("emergency_abandon.xml", SIP_PORT)
    calls = wait_for(lambda: (q := queue(taker)["calls"]) and len(q) == 3 and q)
    by_number = {c["number"]: c for c in calls}
    assert by_number["13700000009"]["location"]["source"] == "aml-sms"  # stored, matched on arrival
    first, second = by_number["13900000001"], by_number["13900000002"]
    assert first["location"] is None and first["category"] == "police"

    sms = taker.post("/api/aml", params={"from": "+8613900000001"},
                     content=build_sms(LAT, LON, 20, datetime.now(UTC)), headers={"Content-Type": "text/plain"})
    assert sms.status_code == 200 and sms.json() == {**sms.json(), "matched_call": first["id"], "valid": True}
    form = {"v": "3", "emergency_number": "110", "device_number": "13900000002", "location_latitude": "22.7702",
            "location_longitude": "111.5688", "location_accuracy": "12", "location_source": "gps",
            "location_time": str(int(time.time() * 1000))}
    https = taker.post("/api/aml", data=form)
    assert https.status_code == 200 and https.json()["matched_call"] == second["id"], https.text
    # An AML with a failed length check is still matched, shown invalid with its reason.
    broken = build_sms(LAT, LON, 20, datetime.now(UTC)).replace("rd=20", "rd=2000")
    flagged = taker.post("/api/aml?from=13900000001", content=broken, headers={"Content-Type": "text/plain"})
    assert flagged.status_code == 200 and flagged.json()["valid"] is False and "长度校验失败" in flagged.json()["reason"]

    detail = taker.get(f"/api/desk/calls/{first['id']}").json()
    sources = [(loc["source"], loc["valid"]) for loc in detail["locations"]]
    assert sources == [("aml-sms", True), ("aml-sms", False)]
    assert detail["location"]["county_code"] == 445381 and detail["location"]["county"] == "罗定市"
    assert detail["locations"][1]["raw"] == broken
    second_detail = taker.get(f"/api/desk/calls/{second['id']}").json()
    assert second_detail["location"]["source"] == "aml-https" and second_detail["location"]["radius_m"] == 12

    for payload, ctype, params in [("hello", "text/plain", {"from": "139"}), ("a=1", "application/x-www-form-urlencoded", {}),
                                   (build_sms(LAT, LON, 20, datetime.now(UTC)), "text/plain", {}),
                                   ("{}", "application/json", {})]:
        bad = taker.post("/api/aml", params=params, content=payload, headers={"Content-Type": ctype})
        assert bad.status_code == 400 and bad.json()["detail"], (payload, bad.text)
    admin = server.login("admin")
    audit = admin.get("/api/audit", params={"action": "aml.rejected"})
    assert audit.status_code == 200
    assert len([e for e in audit.json() if e.get("action") == "aml.rejected"]) >= 4
    admin.close()

    # The third caller gives up while queued: on the callback list with its number.
    finish(late)
    callbacks = wait_for(lambda: taker.get("/api/desk/callbacks").json())
    assert [c["number"] for c in callbacks] == ["13700000009"]
    # The calltaker takes both waiting calls, in order, ending each wrap-up by making itself available.
    for call in (first, second):
        assert taker.post("/api/desk/position", json={"state": "available"}).status_code == 200
        wait_for(lambda cid=call["id"]: any(c["id"] == cid and c["state"] == "offered"
                                                 for c in queue(taker)["calls"]))
        answer_and_end(taker, call["id"])
    finish(callers)
    assert taker.post(f"/api/desk/callbacks/{callbacks[0]['call_id']}/done").status_code == 200
    assert taker.post(f"/api/desk/callbacks/{callbacks[0]['call_id']}/done").status_code == 409
    assert taker.post("/api/desk/position", json={"state": "paused"}).status_code == 200


def test_incident_from_call_recording_and_roles(server: RunningServer, taker: httpx.Client) -> None:
    assert taker.post("/api/desk/position", json={"state": "available"}).status_code == 200
    caller = sipp("emergency_pidf.xml", SIP_PORT)
    call = wait_for(lambda: next((c for c in queue(taker)["calls"] if c["state"] == "offered"), None))
    assert call["position"] == "calltaker" and call["dialled"] == "120" and call["name"] == "Zhang San"
    other = server.login("dispatcher")
    assert other.post(f"/api/desk/calls/{call['id']}/answer").status_code == 403
    assert other.post("/api/desk/position", json={"state": "available"}).status_code == 403
    assert taker.post(f"/api/desk/calls/{call['id']}/answer").status_code == 200
    assert taker.post(f"/api/desk/calls/{call['id']}/answer").status_code == 409  # already answered
    assert taker.post(f"/api/desk/calls/{call['id']}/incident", json={"priority": 9}).status_code == 422
    time.sleep(1.0)
    r = taker.post(f"/api/desk/calls/{call['id']}/incident",
                   json={"category": "medical", "subtype": "cardiac", "priority": 1, "description": "胸痛"})
    assert r.status_code == 200, r.text
    inc = r.json()
    assert inc["county_code"] == 445381 and inc["lat"] == pytest.approx(LAT) and inc["uncertainty_m"] == 35
    assert inc["county_name"] == "罗定市" and inc["location_source"] == "pidf-lo" and call["id"] in inc["calls"]
    seen = other.get("/api/dispatch/state").json()["incidents"]
    assert any(i["id"] == inc["id"] for i in seen)  # on the dispatchers' consoles
    assert taker.post(f"/api/desk/calls/{call['id']}/hangup", json={"disposition": "nope"}).status_code == 422
    assert taker.post(f"/api/desk/calls/{call['id']}/hangup", json={"disposition": "incident"}).status_code == 200
    finish(caller)  # SIPp got our BYE and answered it

    sent = other.post(f"/api/incidents/{inc['id']}/dispatch", json={"recommended": True})
    assert sent.status_code == 200, sent.text
    linked = wait_for(lambda: (rows := other.get(f"/api/incidents/{inc['id']}/calls").json())
                      and rows[0]["first_dispatch_at"] and rows)
    assert [c["id"] for c in linked] == [call["id"]] and linked[0]["has_recording"]
    assert linked[0]["answered_at"] <= linked[0]["incident_created_at"] <= linked[0]["first_dispatch_at"]
    audio = other.get(f"/api/desk/calls/{call['id']}/recording")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as wav:
        assert wav.getframerate() == 48000 and wav.getnframes() >= 48000
    admin = server.login("admin")
    audit = admin.get("/api/audit", params={"action": "call.recording_view"})
    assert audit.status_code == 200
    assert any(e.get("actor") == "dispatcher" and e.get("target") == call["id"] for e in audit.json())
    assert other.get("/api/desk/calls/NOPE/recording").status_code == 409
    dash = taker.get("/api/desk/dashboard").json()
    assert dash["answered"] >= 1 and dash["within"]["10"] is not None
    other.close()
    admin.close()
    assert taker.get("/desk").status_code == 200
