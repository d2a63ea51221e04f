"""WebRTC joins ask the one admission policy (issue 13): guest flag, login, PIN, and the room of an
emergency call, which no join reaches whoever asks. Against a running server over its websocket."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from tests.conftest import RunningServer, run_async

OFFER = "v=0 placeholder offer"  # admission is decided before the SDP is looked at


@pytest.fixture(scope="module")
def chair(server: RunningServer) -> Iterator[httpx.Client]:
    client = server.login("chair")
    yield client
    client.close()


@pytest.fixture(scope="module")
def viewer(server: RunningServer) -> Iterator[httpx.Client]:
    client = server.login("viewer")
    yield client
    client.close()


def create(chair: httpx.Client, name: str, **kw: Any) -> str:
    response = chair.post("/api/conferences", json={"name": name, "start_now": True, **kw})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def join(server: RunningServer, conference_id: str, client: httpx.Client | None = None, pin: str = "",
         kind: str = "join") -> dict[str, Any]:
    """The first reply of the signalling socket to a join (as ``client``'s session, else anonymous)."""
    headers = {}
    if client is not None:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())

    async def go() -> dict[str, Any]:
        url = server.url.replace("http://", "ws://") + f"/ws/conference/{conference_id}"
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": kind, "sdp": OFFER, "pin": pin}))
            reply: dict[str, Any] = json.loads(await ws.recv())
            return reply
    return run_async(go())


def refused(reply: dict[str, Any]) -> str | None:
    return str(reply["code"]) if reply.get("type") == "refused" else None


def test_guest_flag_login_and_pin_as_before(server: RunningServer, chair: httpx.Client,
                                            viewer: httpx.Client) -> None:
    open_id = create(chair, "公开会议", guests=True)
    closed_id = create(chair, "闭门会议", guests=False)
    pin_id = create(chair, "密码闭门会议", guests=False, pin="246810")
    assert refused(join(server, open_id)) is None  # admitted: the placeholder SDP is what fails next
    # Anonymous callers learn nothing about a conference they may not join (the same code for
    # unknown, closed, ended and locked); the page then offers the login.
    assert refused(join(server, closed_id)) == "unavailable"
    assert refused(join(server, closed_id, viewer)) is None
    assert refused(join(server, pin_id)) == "unavailable"  # no PIN guessing before a login
    assert refused(join(server, pin_id, viewer)) == "wrong_pin"  # asks for the PIN
    assert refused(join(server, pin_id, viewer, pin="000000")) == "wrong_pin"
    assert refused(join(server, pin_id, viewer, pin="246810")) is None
    assert refused(join(server, pin_id, chair)) is None  # a chair hosts: no PIN


def test_emergency_call_room_is_never_joined(server: RunningServer, chair: httpx.Client,
                                             viewer: httpx.Client) -> None:
    async def room(conference_id: str, guests: bool) -> None:
        # The desk's call rooms are kind emergency_call (mcu.call_rooms); even one that says
        # "guests, no PIN" stays closed. The scheduler starts it like any other conference.
        conn = await asyncpg.connect(server.db_url)
        try:
            await conn.execute("INSERT INTO conferences (id, name, guests, starts_at, created_by, kind) "
                               "VALUES ($1, $2, $3, now(), 'desk', 'emergency_call')",
                               conference_id, f"接警 {conference_id}", guests)
        finally:
            await conn.close()

    for conference_id, guests in (("81100110", False), ("81100119", True)):
        run_async(room(conference_id, guests))

        deadline = time.monotonic() + 10
        while chair.get(f"/api/conferences/{conference_id}").json().get("running") is False:
            assert time.monotonic() < deadline, f"{conference_id} did not start"
            time.sleep(0.1)
        assert refused(join(server, conference_id)) == "unavailable", conference_id  # anonymous: nothing said
        for client in (viewer, chair):
            assert refused(join(server, conference_id, client)) == "protected", (conference_id, client)
        assert refused(join(server, conference_id, chair, kind="preview")) == "protected"
    rows = run_async(_audit(server.db_url))
    assert rows.count(("81100110", "denied")) >= 3 and rows.count(("81100119", "denied")) >= 3


async def _audit(db_url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT target, outcome FROM audit_log WHERE action = 'conference.join' ORDER BY id")
    finally:
        await conn.close()
    return [(r["target"], r["outcome"]) for r in rows]
