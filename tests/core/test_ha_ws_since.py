"""`/ws/events?since=<id>`: a console that reconnects (after a web node or database failover)
receives the stored events it missed, each once, then the live ones."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RunningServer

LUODING = {"lon": 111.5700, "lat": 22.7690}


def _create(client: httpx.Client, note: str) -> str:
    r = client.post("/api/incidents", json={"category": "police", "priority": 3, **LUODING, "description": note})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _next_incident(ws: Any) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event["topic"] == "incident.created":
            return event


def test_reconnecting_console_catches_up_from_its_last_event_id(server: RunningServer) -> None:
    dispatcher = server.login("dispatcher")
    url = server.url.replace("http://", "ws://") + "/ws/events?topics=incident.created"
    headers = {"Cookie": "cc_session=" + dispatcher.cookies["cc_session"]}

    async def scenario() -> None:
        async with ws_connect(url, additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["topic"] == "system.hello"
            first_id = await asyncio.to_thread(_create, dispatcher, "before the drop")
            first = await _next_incident(ws)
            assert first["payload"]["incident"]["id"] == first_id
        # the console is away: two incidents happen
        missed = [await asyncio.to_thread(_create, dispatcher, f"while away {i}") for i in range(2)]
        async with ws_connect(f"{url}&since={first['id']}", additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["topic"] == "system.hello"
            caught_up = [await _next_incident(ws) for _ in range(2)]
            assert [e["payload"]["incident"]["id"] for e in caught_up] == missed
            assert caught_up[0]["id"] < caught_up[1]["id"]
            live_id = await asyncio.to_thread(_create, dispatcher, "after the return")
            live = await _next_incident(ws)
            assert live["payload"]["incident"]["id"] == live_id
            with pytest.raises(TimeoutError):  # nothing doubled
                await _next_incident(ws)

    asyncio.run(scenario())


def test_a_negative_or_malformed_since_is_refused(server: RunningServer) -> None:
    dispatcher = server.login("dispatcher")
    headers = {"Cookie": "cc_session=" + dispatcher.cookies["cc_session"]}
    base = server.url.replace("http://", "ws://") + "/ws/events?since="

    async def attempt(value: str) -> None:
        async with ws_connect(base + value, additional_headers=headers) as ws:
            await asyncio.wait_for(ws.recv(), 5)

    for bad in ("-1", "abc"):
        with pytest.raises(InvalidStatus) as info:
            asyncio.run(attempt(bad))
        assert info.value.response.status_code == 403  # closed before the handshake completes
