"""The console's invite / redial / hang-up API against `commandcenter up` with SIP on a free port.

A real server (subprocess) dials our test endpoints; the test checks statuses, statistics,
failures with their reason, roles, CSRF and the audit log.
"""
from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from sip_gateway.sip.dialog import Call
from sip_gateway.sip.endpoint import Decision, Reject, SipEndpoint
from sip_gateway.sip.useragent import UserAgentConfig
from tests.conftest import RunningServer, free_port
from tests.sip_gateway.peers import MediaUas

SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__MAX_VIDEO_SIZE": "352x288",
              "CC_SIP__STATS_INTERVAL_SECONDS": "1"}
DEMO = "80000001"


async def call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The HTTP client is synchronous; keep the event loop (our SIP peers) running meanwhile."""
    return await asyncio.to_thread(client.request, method, url, **kwargs)


async def wait_status(client: httpx.Client, site: str, status: str, within: float = 15.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    row: dict[str, Any] = {}
    while loop.time() < deadline:
        response = await call(client, "GET", f"/api/conferences/{DEMO}/calls/{site}")
        row = response.json()
        if response.status_code == 200 and row.get("status") == status:
            return row
        await asyncio.sleep(0.3)
    raise AssertionError(f"{site} never reached {status}: {row}")


@pytest.mark.slow
async def test_invite_redial_hangup_through_the_api(server: RunningServer) -> None:
    uas = MediaUas(tone_hz=1000)

    async def busy(c: Call) -> Decision:
        return Reject(486, "Busy Here")

    refuser = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=0), busy)
    await uas.start()
    await refuser.start()
    chair = server.login("chair")
    operator = server.login("operator")
    viewer = server.login("viewer")
    admin = server.login("admin")
    hall = f"sip:hall@127.0.0.1:{uas.endpoint.config.port}"
    try:
        assert any(f"SIP: sip:<会议号>@127.0.0.1:{SIP_PORT}" in line for line in server.output)
        response = await call(chair, "POST", f"/api/conferences/{DEMO}/calls", json={"site_id": "hall", "uri": hall})
        assert response.status_code == 202, response.text
        assert response.json()["status"] in ("calling", "joined")  # a local peer answers at once
        row = await wait_status(chair, "hall", "joined")
        await asyncio.sleep(2.5)
        row = (await call(operator, "GET", f"/api/conferences/{DEMO}/calls/hall")).json()
        streams = {s["kind"]: s for s in row["stats"]["streams"]}
        assert streams["audio"]["codec"] == "PCMU" and streams["video"]["codec"] == "H264"
        assert streams["video"]["resolution"] == [320, 240] and streams["video"]["bitrate_kbps"] > 0
        assert {"packets_lost", "jitter_ms"} <= set(streams["audio"])
        assert row["stats"]["send_video"]["width"] == 352 and row["connected"] is True
        listed = (await call(chair, "GET", f"/api/conferences/{DEMO}/calls")).json()
        assert [r["site_id"] for r in listed] == ["hall"]

        # Invite of a connected site is refused; hang-up; a second hang-up is refused.
        response = await call(chair, "POST", f"/api/conferences/{DEMO}/calls", json={"site_id": "hall", "uri": hall})
        assert response.status_code == 409
        response = await call(operator, "POST", f"/api/conferences/{DEMO}/calls/hall/hangup")
        assert response.status_code == 200, response.text
        row = await wait_status(chair, "hall", "left")
        assert row["detail"] == "已挂断"
        assert (await call(chair, "POST", f"/api/conferences/{DEMO}/calls/hall/hangup")).status_code == 409
        # Redial: the same address again.
        assert (await call(chair, "POST", f"/api/conferences/{DEMO}/calls/hall/redial")).status_code == 202
        await wait_status(chair, "hall", "joined")
        assert (await call(chair, "POST", f"/api/conferences/{DEMO}/calls/hall/hangup")).status_code == 200

        # A failing call: status failed with the reason.
        response = await call(chair, "POST", f"/api/conferences/{DEMO}/calls",
                              json={"uri": f"sip:busy@127.0.0.1:{refuser.config.port}", "name": "忙线会场"})
        assert response.status_code == 202
        busy_id = response.json()["site_id"]
        row = await wait_status(chair, busy_id, "failed")
        assert "486" in row["detail"] and row["name"] == "忙线会场"

        # Bad requests change nothing.
        for body, status in [({"uri": "bogus"}, 400), ({"site_id": "../x"}, 422), ({}, 400),
                             ({"site_id": "no-such-room"}, 404), ({"uri": hall, "extra": 1}, 422)]:
            response = await call(chair, "POST", f"/api/conferences/{DEMO}/calls", json=body)
            assert response.status_code == status, (body, response.text)
        assert (await call(chair, "POST", "/api/conferences/99999999/calls", json={"uri": hall})).status_code == 404
        assert (await call(chair, "GET", "/api/conferences/99999999/calls")).status_code == 404
        assert len((await call(chair, "GET", f"/api/conferences/{DEMO}/calls")).json()) == 2

        # Roles and CSRF.
        assert (await call(viewer, "GET", f"/api/conferences/{DEMO}/calls")).status_code == 403
        no_csrf = server.login("chair")
        del no_csrf.headers["X-CSRF-Token"]
        response = await call(no_csrf, "POST", f"/api/conferences/{DEMO}/calls/hall/redial")
        assert response.status_code == 403
        anonymous = server.client()
        assert (await call(anonymous, "POST", f"/api/conferences/{DEMO}/calls", json={"uri": hall})).status_code == 401

        # Audited, with the outcome.
        entries = (await call(admin, "GET", "/api/audit?action=conference.call.invite")).json()
        outcomes = {(e["actor"], e["target"], e["outcome"]) for e in entries}
        assert ("chair", f"{DEMO}/hall", "ok") in outcomes
        assert any(e["outcome"] == "failed" for e in entries)
        hangups = (await call(admin, "GET", "/api/audit?action=conference.call.hangup")).json()
        assert {e["actor"] for e in hangups} == {"chair", "operator"}
    finally:
        for client in (chair, operator, viewer, admin):
            client.close()
        await uas.close()
        await refuser.close()
