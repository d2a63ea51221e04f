"""`/ws/events`: a live stream of the bus events the caller's role may see."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from core.bus import visible_to
from core.tasks import cancel_and_wait
from web_console.auth import SESSION_COOKIE, RoleFirstRoute, refuse_websocket, resolve_principal, same_origin

router = APIRouter(route_class=RoleFirstRoute)


async def stream_until_disconnect(websocket: WebSocket, pump: Callable[[], Awaitable[None]],
                                  hello: dict[str, object] | None = None) -> None:
    """Run ``pump`` (which sends to the client) until the client leaves, then stop it.

    The client may send pings; their content does not matter, reading them is how we notice the
    client leaving. ``hello`` is sent first when given.
    """
    sender = asyncio.ensure_future(pump())
    try:
        if hello is not None:
            await websocket.send_json(hello)
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        await cancel_and_wait([sender], swallow_errors=True)


@router.websocket("/ws/events")
async def events(websocket: WebSocket, topics: str = "*", since: int | None = Query(None, ge=0)) -> None:
    """Live events; with `since=<event id>`, first the stored events after that id (a console that
    reconnects after a node or database failover catches up; each event is sent once)."""
    services = websocket.app.state.services
    principal = await resolve_principal(
        services, websocket.headers.get("authorization"), websocket.cookies.get(SESSION_COOKIE))
    if principal is None or not same_origin(websocket):
        await refuse_websocket(websocket, principal, "unauthenticated" if principal is None else "origin")
        return
    await websocket.accept()
    role = principal.user.role
    with services.bus.subscribe(topics) as subscription:
        # subscribed first, then read the backlog: an event in between comes both ways, sent once
        backlog = await services.bus.stored_since(since, topics) if since is not None else []
        sent = {e.id for e in backlog}

        async def pump() -> None:
            for event in backlog:
                if visible_to(event.topic, role):
                    await websocket.send_text(event.json_text)
            async for event in subscription:
                if event.id in sent:
                    continue
                if visible_to(event.topic, role):
                    await websocket.send_text(event.json_text)

        await stream_until_disconnect(websocket, pump, {"topic": "system.hello", "payload": {
            "user": principal.user.username, "role": role.value}})
