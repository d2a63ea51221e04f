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
conference does not run here, 503 when this node runs no conferences.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from starlette.requests import ClientDisconnect

from config.roles import Role
from mcu.content.deck import ConferenceDeck, DeckManager
from mcu.content.deck_render import DeckError
from mcu.content.service import ConferenceContent, ContentError
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.guards import ApiModel
from web_console.i18n import translate
from web_console.templating import language_of

router = APIRouter(route_class=RoleFirstRoute)
DECK_ROLES = require(Role.CHAIR, Role.OPERATOR, Role.LEADER)
Presenter = Annotated[Principal, Depends(DECK_ROLES)]


class DeckAction(ApiModel):
    action: Literal["first", "prev", "next", "last", "goto", "show", "stop", "remove"]
    page: int | None = Field(None, ge=1, le=100_000)


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
    content = _decks(request).of(conference_id)
    if content is None:
        return JSONResponse({"detail": translate(language_of(request), "deck.error.not_running",
                                                 id=conference_id)}, status_code=404)
    return content.state()


@router.get("/api/decks/{conference_id}/page.png", tags=["content"])
async def deck_page(request: Request, conference_id: str, principal: Presenter) -> Any:
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
    decks = _decks(request)
    declared: int | None = None
    if (length := request.headers.get("content-length")) is not None:
        try:
            declared = int(length)
        except ValueError:
            declared = None
    detail: dict[str, Any] = {"name": name[:200], "bytes": declared}
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


@router.post("/api/decks/{conference_id}", tags=["content"])
async def deck_action(request: Request, conference_id: str, body: DeckAction, principal: Presenter) -> Any:
    """Page the deck, show it again (the chair takes the token), stop showing it, or remove it."""
    action = f"conference.deck.{body.action}"
    detail = body.model_dump(exclude_none=True)
    content = await _running(request, principal, conference_id, action, detail)
    if isinstance(content, JSONResponse):
        return content
    deck = content.deck
    if not isinstance(deck, ConferenceDeck) or deck.closed:
        await _audit(request, principal, action, conference_id, detail | {"code": "none"}, "failed")
        return _refusal(request, "none")
    try:
        match body.action:
            case "show":
                await deck.show(principal.user.username)
            case "stop":
                deck.stop()
            case "remove":
                deck.stop()
                content.deck = None
                await deck.close()
            case "goto":
                await deck.page("goto", body.page)
            case "first" | "prev" | "next" | "last":
                await deck.page(body.action)
    except ValueError as exc:  # a page out of range, a refusal of the token
        code = exc.code if isinstance(exc, ContentError) else "bad_page"
        await _audit(request, principal, action, conference_id, detail | {"code": code, "error": str(exc)}, "failed")
        return _refusal(request, code, pages=len(deck.pages))
    await _audit(request, principal, action, conference_id, detail | {"page": deck.pager.index + 1})
    return content.state()
