"""Content and request-to-speak messages on the join page's signalling websocket (`/ws/conference/<id>`).

Shared by the signalling loop of :mod:`web_console.conference_console` (which hands over the
message types it does not know itself). Messages, once the site has joined:

    client -> {"type": "content_offer", "sdp": OFFER}     share the screen (a second peer connection)
    server -> {"type": "content_answer", "sdp": ANSWER}   granted: the share is the conference's content
    server -> {"type": "content_refused", "code": "busy"|"awaiting_chair"|..., "message": "..."}
    client -> {"type": "content_stop"}                     stop sharing / withdraw the request
    server -> {"type": "content_granted"}                  the chair granted a queued request: offer again
    server -> {"type": "content_state", "presenting": true}
    server -> {"type": "content_stopped", "reason": "revoked"|"timeout"|"chair"|"released"|...}
    server -> {"type": "content_live", "live": true|false, "presenter": "..."}   (to every site)
    client -> {"type": "content_watch", "sdp": OFFER}     the content as a second stream (receive-only)
    server -> {"type": "content_watch_answer", "sdp": ANSWER} | {"type": "content_watch_refused", ...}
    client -> {"type": "content_unwatch"}
    client -> {"type": "raise_hand"} | {"type": "lower_hand"}
    server -> {"type": "hand", "state": "raised"|"lowered"|"approved"|"dismissed"}

A preview (receive-only) connection is no site and gets ``content_refused`` / ``not_site``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket

from mcu.content.service import ContentError, ContentService
from mcu.legs.webrtc import WebRtcLeg

CONTENT_MESSAGES = frozenset({"content_offer", "content_stop", "content_watch", "content_unwatch", "raise_hand",
                              "lower_hand"})
MAX_SDP = 64 * 1024


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps(message, ensure_ascii=False))


def attach(websocket: WebSocket, content: ContentService | None, leg: WebRtcLeg) -> Callable[[], None]:
    """Let the content service tell this site about its share and hand; returns the detach."""
    if content is None or leg.media is None:
        return lambda: None
    conference = content.of(leg.conference)
    tasks: set[asyncio.Task[None]] = set()

    def channel(message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(_send(websocket, message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    conference.channels[leg.participant_id] = channel
    if conference.source.sample() is not None:  # joined while someone presents
        channel({"type": "content_live", "live": True, "presenter": conference.holder_name})

    def detach() -> None:
        if conference.channels.get(leg.participant_id) is channel:
            del conference.channels[leg.participant_id]

    return detach


async def handle(websocket: WebSocket, content: ContentService | None, leg: WebRtcLeg,
                 message: dict[str, Any]) -> None:
    """One content/hand message from the site (the type is in CONTENT_MESSAGES)."""
    kind = message["type"]
    refused = ("content_watch_refused" if kind == "content_watch" else "content_refused" if kind.startswith("content")
               else "hand_refused")
    if content is None or leg.media is None:
        await _send(websocket, {"type": refused, "code": "not_site", "message": "预览连接不能共享或举手"})
        return
    conference = content.of(leg.conference)
    who = leg.participant_id
    try:
        if kind == "content_offer":
            sdp = message.get("sdp")
            if not isinstance(sdp, str) or not 10 <= len(sdp) <= MAX_SDP:
                raise ContentError("bad_offer", "共享屏幕请求缺少有效的 SDP")
            answer = await conference.share(who, sdp)
            await _send(websocket, {"type": "content_answer", "sdp": answer})
        elif kind == "content_watch":
            sdp = message.get("sdp")
            if not isinstance(sdp, str) or not 10 <= len(sdp) <= MAX_SDP:
                raise ContentError("bad_offer", "内容观看请求缺少有效的 SDP")
            answer = await conference.watch(who, sdp)
            await _send(websocket, {"type": "content_watch_answer", "sdp": answer})
        elif kind == "content_unwatch":
            await conference.unwatch(who)
        elif kind == "content_stop":
            conference.stop(who)
        elif kind == "raise_hand":
            conference.raise_hand(who)
        elif kind == "lower_hand":
            conference.lower_hand(who)
    except ContentError as exc:  # the page shows its own text for the code (zh-CN/English), else the message
        await _send(websocket, {"type": refused, "code": exc.code, "message": exc.message,
                                "presenter": conference.holder_name})
