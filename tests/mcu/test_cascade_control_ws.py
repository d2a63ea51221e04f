"""The control channel over a real websocket on 127.0.0.1 (mcu.cascade.control_ws)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from mcu.cascade.control import (
    AuthFailed,
    CommandReceived,
    CommandResult,
    ControlConnection,
    Event,
    RemoteSite,
    SitesReplaced,
    SiteUpdated,
)
from mcu.cascade.control_ws import ControlSession

TOKEN = b"shared-cascade-token-0123456789"
SITES = [RemoteSite("445381-01", "罗城街道", via=("county-a",))]


@asynccontextmanager
async def city_server(events: list[Event], sessions: list[ControlSession],
                      **kw: Any) -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        session = ControlSession(ws, ControlConnection("city", TOKEN, expected_peer="county-a"),
                                 events.append, **kw)
        sessions.append(session)
        await session.run()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/cascade"


async def wait_for(cond: Any) -> None:
    """Poll `cond` (events arrive through plain list appends, so there is nothing to await)."""
    async with asyncio.timeout(5):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_roll_call_over_a_real_websocket() -> None:
    city_events: list[Event] = []
    sessions: list[ControlSession] = []
    county_events: list[Event] = []
    async with city_server(city_events, sessions) as uri, connect(uri) as ws:
        county = ControlSession(ws, ControlConnection("county-a", TOKEN, expected_peer="city"),
                                county_events.append)
        task = asyncio.create_task(county.run())
        await asyncio.wait_for(county.authenticated.wait(), 5)
        county.conn.announce_sites(SITES)
        await county.flush()
        await wait_for(lambda: any(isinstance(e, SitesReplaced) for e in city_events))
        city = sessions[0]
        cid = city.conn.send_command("roll_call", "445381-01", at=city.now())
        await city.flush()
        await wait_for(lambda: any(isinstance(e, CommandReceived) for e in county_events))
        county.conn.reply(cid, ok=False, code="site_left", message="该会场已离会")
        await county.flush()
        await wait_for(lambda: any(isinstance(e, CommandResult) for e in city_events))
        assert [e for e in city_events if isinstance(e, CommandResult)] == [
            CommandResult(cid, False, "site_left", "该会场已离会")]
        await ws.close()
        await asyncio.wait_for(task, 5)
        # the city notices the loss: the township is shown as unknown
        await wait_for(lambda: any(isinstance(e, SiteUpdated) and e.site.status == "unknown" for e in city_events))


async def test_wrong_token_is_closed_with_4401() -> None:
    city_events: list[Event] = []
    async with city_server(city_events, []) as uri, connect(uri) as ws:
        county = ControlSession(ws, ControlConnection("county-a", b"not-the-right-token-at-all"),
                                lambda e: None)
        await asyncio.wait_for(county.run(), 5)
        await wait_for(lambda: any(isinstance(e, AuthFailed) for e in city_events))
        assert ws.close_code == 4401


async def test_silent_peer_times_out_authentication() -> None:
    city_events: list[Event] = []
    async with city_server(city_events, [], auth_timeout=0.3) as uri, connect(uri) as ws:
        await ws.recv()  # the city's hello; we never answer
        await wait_for(lambda: any(isinstance(e, AuthFailed) for e in city_events))
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4401


async def test_unanswered_command_times_out_on_the_loop_clock() -> None:
    city_events: list[Event] = []
    sessions: list[ControlSession] = []
    async with city_server(city_events, sessions) as uri, connect(uri) as ws:
        county = ControlSession(ws, ControlConnection("county-a", TOKEN), lambda e: None)
        task = asyncio.create_task(county.run())
        await asyncio.wait_for(county.authenticated.wait(), 5)
        county.conn.announce_sites(SITES)
        await county.flush()
        await wait_for(lambda: any(isinstance(e, SitesReplaced) for e in city_events))
        city = sessions[0]
        city.conn.command_timeout = 0.3
        t0 = city.now()
        cid = city.conn.send_command("mute", "445381-01", at=t0)
        await city.flush()  # the county gets it and never answers
        await wait_for(lambda: any(isinstance(e, CommandResult) for e in city_events))
        assert city.now() - t0 >= 0.3
        assert [e for e in city_events if isinstance(e, CommandResult)] == [
            CommandResult(cid, False, "timeout", "下级节点未在规定时间内答复该命令")]
        await ws.close()
        await asyncio.wait_for(task, 5)
