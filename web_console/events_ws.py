"""`/ws/events`: a live stream of the bus events the caller's role may see."""
from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from core.bus import visible_to
from web_console.auth import SESSION_COOKIE, RoleFirstRoute, refuse_websocket, resolve_principal, same_origin

router = APIRouter(route_class=RoleFirstRoute)


@router.websocket("/ws/events")
async def events(websocket: WebSocket, topics: str = "*") -> None:
    services = websocket.app.state.services
    principal = await resolve_principal(
        services, websocket.headers.get("authorization"), websocket.cookies.get(SESSION_COOKIE))
    if principal is None or not same_origin(websocket):
        await refuse_websocket(websocket, principal, "unauthenticated" if principal is None else "origin")
        return
    await websocket.accept()
    role = principal.user.role
    with services.bus.subscribe(topics) as subscription:

        async def pump() -> None:
            async for event in subscription:
                if visible_to(event.topic, role):
                    await websocket.send_text(event.json_text)

        sender = asyncio.create_task(pump())
        try:
            await websocket.send_json({"topic": "system.hello", "payload": {"user": principal.user.username,
                                                                             "role": role.value}})
            while True:  # the client may send pings; we only need to notice it leaving
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
