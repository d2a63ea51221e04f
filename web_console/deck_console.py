"""The chair console's slide deck (REST): upload a PDF/PNG/JPEG, page it, stop it, remove it.

* `GET  /api/decks/<conference>`: the conference's content state (its ``deck``: name, pages, page,
  showing), as `GET /api/conferences/<id>/content`;
* `PUT  /api/decks/<conference>?name=<file name>`: the deck file as the raw body. It is checked by
  its first bytes (PDF, PNG or JPEG, whatever its name or media type), bounded in size
  (``deck.max_mb``), rendered to page images by poppler in limited processes
  (:mod:`mcu.content.deck_render`) and shown at once under the content token, which the uploader
  takes (``chair:<user>``): it replaces the conference's previous deck;
* `POST /api/decks/<conference>` `{"action": "first"|"prev"|"next"|"last"|"goto"|"show"|"stop"|"remove", "page": n}`;
* `GET  /api/decks/<conference>/page.png`: the current page's image (the console's preview).

Chair, operator and leader roles (a leader chairing a meeting does what the chair does with
content) and admins. Every change, accepted or refused, is audited; refusals answer 400 (413 for
a file over the limit) with the reason in the caller's language and change nothing; 404 when the
conference does not run here, 503 when this node runs no conferences and has no node RPC.

On a node that runs no conferences (`--role web`) every route is answered by the node that hosts the
room, over node RPC (`RoomHost.deck`, ``room.deck``): this node authorises and audits. An upload is
too large for an RPC's arguments, so this node checks it (size, first bytes), writes it into
``deck_uploads`` (`mcu.content.deck_upload`) and sends the row's id; the hosting node takes the row
and renders it, and this node deletes the row whatever happened. The page preview comes back in the
reply (base64). A dead or silent hosting node is a 503 with a message in the caller's language.
"""
from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import Field
from starlette.requests import ClientDisconnect

from config.roles import Role
from mcu.content.deck import ConferenceDeck, DeckManager, apply_action
from mcu.content.deck_render import DeckError, sniff
from mcu.content.deck_upload import DeckUpload, DeckUploads
from mcu.content.service import ConferenceContent
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.conference_host import HostRefused, RemoteRoomHost
from web_console.guards import ApiModel
from web_console.i18n import translate
from web_console.templating import language_of

router = APIRouter(route_class=RoleFirstRoute)
DECK_ROLES = require(Role.CHAIR, Role.OPERATOR, Role.LEADER)
Presenter = Annotated[Principal, Depends(DECK_ROLES)]


class DeckAction(ApiModel):
    action: Literal["first", "prev", "next", "last", "goto", "show", "stop", "remove"]
    page: int | None = Field(None, ge=1, le=100_000)


def _remote(request: Request) -> RemoteRoomHost | None:
    """The hosting nodes' decks over node RPC when no MCU runs here (None: one does)."""
    node = node_of(request)
    if node.mcu is not None or node.rpc is None:
        return None
    return RemoteRoomHost(node.rpc, language_of(request))


async def _remote_call(request: Request, principal: Principal | None, host: RemoteRoomHost, conference_id: str,
                       args: dict[str, Any], audit: tuple[str, dict[str, Any]] | None = None,
                       deadline_s: float | None = None) -> dict[str, Any] | JSONResponse:
    """`host.deck(...)`'s answer, or its refusal as this node's response (audited when `audit` names the action)."""
    try:
        result = await host.deck(conference_id, args, deadline_s)
    except HostRefused as exc:
        if audit is not None and principal is not None:
            await _audit(request, principal, audit[0], conference_id,
                         audit[1] | {"code": exc.code, "error": exc.message, "via": "node-rpc"}, "failed")
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)
    error = result.get("error")
    if isinstance(error, dict):
        code, status = str(error.get("code", "failed")), int(error.get("status", 400))
        raw = error.get("values")
        values: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if audit is not None and principal is not None:
            await _audit(request, principal, audit[0], conference_id,
                         audit[1] | {"code": code, "error": str(error.get("detail") or code), "via": "node-rpc"},
                         "failed")
        if code == "not_running":
            return JSONResponse({"detail": translate(language_of(request), "deck.error.not_running",
                                                     id=conference_id)}, status_code=404)
        return _refusal(request, code, status, **values)
    return result


def _decks(request: Request) -> DeckManager:
    mcu = node_of(request).mcu
    if mcu is None or mcu.decks is None:
        raise HTTPException(503, "本节点未运行会议服务（会控需与 MCU 在同一进程）")
    return mcu.decks


async def _audit(request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any],
                 outcome: str = "ok") -> None:
    await services_of(request).audit.record(principal.user.username, action, target, outcome=outcome,
                                            source=client_address(request), detail=detail)


def _refusal(request: Request, code: str, status: int = 400, **values: object) -> JSONResponse:
    message = translate(language_of(request), f"deck.error.{code}", **values)
    return JSONResponse({"detail": message, "code": code}, status_code=status)


async def _running(request: Request, principal: Principal, conference_id: str, action: str,
                   detail: dict[str, Any]) -> ConferenceContent | JSONResponse:
    content = _decks(request).of(conference_id)
    if content is None:
        await _audit(request, principal, action, conference_id, detail | {"error": "not running"}, "failed")
        return JSONResponse({"detail": translate(language_of(request), "deck.error.not_running",
                                                 id=conference_id)}, status_code=404)
    return content


@router.get("/api/decks/{conference_id}", tags=["content"])
async def deck_state(request: Request, conference_id: str, principal: Presenter) -> Any:
    if (host := _remote(request)) is not None:
        result = await _remote_call(request, None, host, conference_id, {"action": "state"})
        return result if isinstance(result, JSONResponse) else result["state"]
    content = _decks(request).of(conference_id)
    if content is None:
        return JSONResponse({"detail": translate(language_of(request), "deck.error.not_running",
                                                 id=conference_id)}, status_code=404)
    return content.state()


@router.get("/api/decks/{conference_id}/page.png", tags=["content"])
async def deck_page(request: Request, conference_id: str, principal: Presenter) -> Any:
    if (host := _remote(request)) is not None:
        result = await _remote_call(request, None, host, conference_id, {"action": "page_png"})
        if isinstance(result, JSONResponse):
            return result
        try:
            png = base64.b64decode(str(result["png"]), validate=True)
        except (KeyError, binascii.Error):
            return JSONResponse({"detail": translate(language_of(request), "node.failed")}, status_code=502)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
    content = _decks(request).of(conference_id)
    deck = content.deck if content is not None else None
    if not isinstance(deck, ConferenceDeck) or deck.closed:
        return _refusal(request, "none", 404)
    return FileResponse(deck.pages[deck.pager.index], media_type="image/png",
                        headers={"Cache-Control": "no-store"})


@router.put("/api/decks/{conference_id}", tags=["content"])
async def deck_upload(request: Request, conference_id: str, principal: Presenter,
                      name: Annotated[str, Query(max_length=200)] = "") -> Any:
    """Upload a deck (raw body): checked, rendered and shown; a refusal changes nothing."""
    host = _remote(request)
    decks = _decks(request) if host is None else None
    declared: int | None = None
    if (length := request.headers.get("content-length")) is not None:
        try:
            declared = int(length)
        except ValueError:
            declared = None
    detail: dict[str, Any] = {"name": name[:200], "bytes": declared}
    if host is not None:
        return await _remote_upload(request, principal, host, conference_id, name, declared, detail)
    assert decks is not None
    content = await _running(request, principal, conference_id, "conference.deck.upload", detail)
    if isinstance(content, JSONResponse):
        return content
    try:
        deck = await decks.upload(content, request.stream(), name, principal.user.username, declared)
    except DeckError as exc:
        await _audit(request, principal, "conference.deck.upload", conference_id,
                     detail | {"code": exc.code, "error": exc.detail or exc.code}, "failed")
        return _refusal(request, exc.code, 413 if exc.code == "too_big" else 400, **exc.values)
    except ClientDisconnect:  # the upload was abandoned half-way: nothing kept
        await _audit(request, principal, "conference.deck.upload", conference_id,
                     detail | {"code": "disconnected"}, "failed")
        return JSONResponse({"detail": "client disconnected"}, status_code=400)
    await _audit(request, principal, "conference.deck.upload", conference_id,
                 detail | {"pages": len(deck.pages), "deck": deck.directory.name})
    return content.state()


async def _read_bounded(request: Request, limit: int) -> bytes:
    """The request body, DeckError too_big past `limit` bytes (read no further)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise DeckError("too_big", limit_mb=limit // (1024 * 1024))
    return bytes(body)


async def _remote_upload(request: Request, principal: Principal, host: RemoteRoomHost, conference_id: str,
                         name: str, declared: int | None, detail: dict[str, Any]) -> Any:
    """A web node's upload: checked here, handed to the hosting node through ``deck_uploads``."""
    settings = services_of(request).settings.deck
    limit = settings.max_mb * 1024 * 1024
    try:
        if declared is not None and declared > limit:
            raise DeckError("too_big", limit_mb=settings.max_mb)
        data = await _read_bounded(request, limit)
        if not data:
            raise DeckError("empty")
        if sniff(data[:16]) is None:
            raise DeckError("not_supported")
    except DeckError as exc:
        await _audit(request, principal, "conference.deck.upload", conference_id,
                     detail | {"code": exc.code, "error": exc.detail or exc.code}, "failed")
        return _refusal(request, exc.code, 413 if exc.code == "too_big" else 400, **exc.values)
    except ClientDisconnect:
        await _audit(request, principal, "conference.deck.upload", conference_id,
                     detail | {"code": "disconnected"}, "failed")
        return JSONResponse({"detail": "client disconnected"}, status_code=400)
    uploads = DeckUploads(services_of(request).db)
    row_id = await uploads.put(DeckUpload(conference_id, name[:200], principal.user.username, data))
    try:
        result = await _remote_call(request, principal, host, conference_id,
                                    {"action": "upload", "upload_id": row_id},
                                    ("conference.deck.upload", detail), deadline_s=settings.render_seconds + 30.0)
    finally:
        await uploads.drop(row_id)  # taken by the hosting node, or left by a dead one: never kept
    if isinstance(result, JSONResponse):
        return result
    await _audit(request, principal, "conference.deck.upload", conference_id,
                 detail | {"pages": result.get("pages"), "deck": result.get("deck"), "via": "node-rpc"})
    return result["state"]


@router.post("/api/decks/{conference_id}", tags=["content"])
async def deck_action(request: Request, conference_id: str, body: DeckAction, principal: Presenter) -> Any:
    """Page the deck, show it again (the chair takes the token), stop showing it, or remove it."""
    action = f"conference.deck.{body.action}"
    detail = body.model_dump(exclude_none=True)
    if (host := _remote(request)) is not None:
        result = await _remote_call(request, principal, host, conference_id,
                                    {"action": body.action, "page": body.page, "actor": principal.user.username},
                                    (action, detail))
        if isinstance(result, JSONResponse):
            return result
        await _audit(request, principal, action, conference_id, detail | {"page": result.get("page"), "via": "node-rpc"})
        return result["state"]
    content = await _running(request, principal, conference_id, action, detail)
    if isinstance(content, JSONResponse):
        return content
    try:
        deck = await apply_action(content, body.action, body.page, principal.user.username)
    except DeckError as exc:  # no deck, a page out of range, a refusal of the token
        await _audit(request, principal, action, conference_id, detail | {"code": exc.code, "error": str(exc)}, "failed")
        return _refusal(request, exc.code, 400, **exc.values)
    await _audit(request, principal, action, conference_id, detail | {"page": deck.pager.index + 1})
    return content.state()
