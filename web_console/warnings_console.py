"""Public warnings (预警发布, issue 20): the drafting/approval page ``/warnings`` and its JSON API.

Who may: dispatchers draft, edit, submit, propose updates and cancels; the leader on duty
(``leader``) or the ``chair`` approves or rejects (approval sends at once). All three read the
list, the active warnings (also drawn on the dispatch map and on ``/command``) and download each
CAP message's XML. The Atom feed of every sent CAP message (``GET /api/warnings/feed.atom``) and the
XML are also open to other departments' systems (the national early-warning release system) that
present a configured feed token (``X-Warning-Feed-Token``, ``[warnings] feed_tokens``); such a
system can read nothing else. Admins pass the gates but the lifecycle still refuses them approval (the rule
is the leader's, ``alerts.lifecycle.APPROVER_ROLES``).

Errors: a refused transition answers 409 (wrong state), 403 (role) or 422 (content), with
``{"detail": {"field": ..., "reason": ...}}`` naming the field; nothing is changed then.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, ConfigDict, Field

from alerts.feed import FeedMeta, build_feed
from alerts.lifecycle import LIMITS, MAX_AREAS, MAX_POLYGON_POINTS, Area, Content, Refused
from alerts.service import NotFound, WarningService
from config.roles import Role
from web_console.auth import (
    Principal,
    RoleFirstRoute,
    SystemTokenGate,
    client_address,
    node_of,
    require,
    services_of,
)
from web_console.guards import ApiModel
from web_console.i18n import texts_with_prefix, translate
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)

READERS = require(Role.DISPATCHER, Role.CHAIR, Role.LEADER)
DRAFTERS = require(Role.DISPATCHER, Role.CHAIR, Role.LEADER)
APPROVERS = require(Role.LEADER, Role.CHAIR)
Reader = Annotated[Principal, Depends(READERS)]
Drafter = Annotated[Principal, Depends(DRAFTERS)]
Approver = Annotated[Principal, Depends(APPROVERS)]
WarningId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
FEED_TOKEN_HEADER = "x-warning-feed-token"
FEED_LIMIT = 200


def _feed_system(request: Request, token: str) -> str | None:
    alerts = node_of(request).alerts
    return alerts.feed_system(token) if alerts is not None else None


# the readers' roles, or a system presenting a configured feed token (X-Warning-Feed-Token)
FEED_READERS = SystemTokenGate(READERS.roles, FEED_TOKEN_HEADER, _feed_system)
FeedReader = Annotated[Principal, Depends(FEED_READERS)]
Identifier = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")]


def warnings_of(request: Request) -> WarningService:
    cap = node_of(request).alerts
    if cap is None:
        raise HTTPException(503, "预警服务未在本节点运行")
    return cap.service


@contextlib.contextmanager
def warning_errors() -> Iterator[None]:
    try:
        yield
    except NotFound as e:
        raise HTTPException(404, {"field": "id", "reason": f"unknown warning {e}"}) from None
    except Refused as e:
        status = 403 if e.field == "role" else 409 if e.field == "state" else 422
        raise HTTPException(status, {"field": e.field, "reason": e.reason}) from None


class _Body(ApiModel):
    model_config = ConfigDict(extra="forbid")


class AreaIn(_Body):
    desc: str = Field(min_length=1, max_length=200)
    polygons: list[list[tuple[float, float]]] = Field(default_factory=list, max_length=20)
    circles: list[tuple[float, float, float]] = Field(default_factory=list, max_length=20)
    adcodes: list[str] = Field(default_factory=list, max_length=100)

    def to_area(self) -> Area:
        for ring in self.polygons:
            if len(ring) > MAX_POLYGON_POINTS:
                raise Refused("areas", f"a polygon has more than {MAX_POLYGON_POINTS} points")
        return Area(self.desc, tuple(tuple(p for p in ring) for ring in self.polygons), tuple(self.circles),
                    tuple(self.adcodes))


class ContentIn(_Body):
    event: str = Field(min_length=1, max_length=LIMITS["event"])
    headline: str = Field(min_length=1, max_length=LIMITS["headline"])
    description: str = Field(min_length=1, max_length=LIMITS["description"])
    instruction: str = Field("", max_length=LIMITS["instruction"])
    severity: Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
    urgency: Literal["Immediate", "Expected", "Future", "Past", "Unknown"] = "Expected"
    certainty: Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"] = "Likely"
    category: Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                      "CBRNE", "Other"] = "Met"
    expires: AwareDatetime
    areas: list[AreaIn] = Field(min_length=1, max_length=MAX_AREAS)

    def to_content(self) -> Content:
        return Content(event=self.event, headline=self.headline, description=self.description,
                       instruction=self.instruction, severity=self.severity, urgency=self.urgency,
                       certainty=self.certainty, areas=tuple(a.to_area() for a in self.areas),
                       expires=self.expires, category=self.category)


class DraftIn(ContentIn):
    plan_activation: int | None = Field(None, ge=1, le=2**62, description="the plan activation this draft comes from")


class ReasonIn(_Body):
    reason: str = Field("", max_length=LIMITS["reason"])


async def _detail(svc: WarningService, warning_id: str) -> dict[str, Any]:
    w = svc.view(await svc.get(warning_id))
    w["cap_messages"] = await svc.messages(warning_id)
    w["deliveries"] = await svc.deliveries(warning_id)
    return w


@router.get("/api/warnings", tags=["warnings"])
async def list_warnings(request: Request, principal: Reader) -> list[dict[str, Any]]:
    """Every warning, newest change first (at most 200)."""
    return await warnings_of(request).list_warnings()


@router.get("/api/warnings/active", tags=["warnings"])
async def active_warnings(request: Request, principal: Reader) -> list[dict[str, Any]]:
    """Warnings in force (sent and neither cancelled nor expired), with their areas."""
    return await warnings_of(request).active()


@router.get("/api/warnings/plan-draft/{activation_id}", tags=["warnings"])
async def plan_draft(request: Request, principal: Drafter,
                     activation_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict[str, Any]:
    """The warning a response-plan activation drafted, to prefill the drafting form."""
    with warning_errors():
        return await warnings_of(request).plan_draft(activation_id)


@router.get("/api/warnings/feed.atom", tags=["warnings"],
            responses={200: {"content": {"application/atom+xml": {}}, "description": "Atom feed (RFC 4287)"}})
async def cap_feed(request: Request, principal: FeedReader) -> Response:
    """Atom feed of the CAP messages sent (Alert, Update, Cancel; never a draft or an unapproved one),
    newest first (at most 200), each with its CAP XML inline and linked."""
    svc = warnings_of(request)
    lang = language_of(request)
    base = str(request.base_url).rstrip("/")
    meta = FeedMeta(sender=svc.sender, title=translate(lang, "warnings.feed.title", sender=svc.sender_name),
                    author=svc.sender_name, self_url=f"{base}/api/warnings/feed.atom", language=lang)
    kinds = {k: translate(lang, f"warnings.proposal.{k}") for k in ("Alert", "Update", "Cancel")}
    body = build_feed(await svc.feed_messages(FEED_LIMIT), meta, f"{base}/api/warnings/cap/{{identifier}}.xml",
                      svc.clock(), kinds)
    return Response(body, media_type="application/atom+xml; charset=utf-8")


@router.get("/api/warnings/{warning_id}", tags=["warnings"])
async def get_warning(request: Request, principal: Reader, warning_id: WarningId) -> dict[str, Any]:
    """One warning: its content, steps, CAP messages (with references) and deliveries."""
    with warning_errors():
        return await _detail(warnings_of(request), warning_id)


@router.get("/api/warnings/cap/{identifier}.xml", tags=["warnings"])
async def cap_xml(request: Request, principal: FeedReader, identifier: Identifier) -> Response:
    """The CAP 1.2 XML of one sent message, as sent."""
    xml = await warnings_of(request).xml(identifier)
    if xml is None:
        raise HTTPException(404, {"field": "identifier", "reason": "unknown CAP message"})
    return Response(xml, media_type="application/cap+xml",
                    headers={"Content-Disposition": f'attachment; filename="{identifier}.xml"'})


@router.post("/api/warnings", tags=["warnings"], status_code=201)
async def draft_warning(request: Request, principal: Drafter, body: DraftIn) -> dict[str, Any]:
    """Draft a warning (from scratch, or from a plan activation's drafted warning)."""
    svc = warnings_of(request)
    with warning_errors():
        return await svc.draft(body.to_content(), principal.user.username, principal.user.role.value,
                               client_address(request), plan_activation=body.plan_activation)


@router.put("/api/warnings/{warning_id}", tags=["warnings"])
async def edit_warning(request: Request, principal: Drafter, warning_id: WarningId, body: ContentIn) -> dict[str, Any]:
    """Change a draft (or a rejected one: it becomes a draft again)."""
    with warning_errors():
        return await warnings_of(request).edit(warning_id, body.to_content(), principal.user.username,
                                               principal.user.role.value, client_address(request))


@router.post("/api/warnings/{warning_id}/submit", tags=["warnings"])
async def submit_warning(request: Request, principal: Drafter, warning_id: WarningId) -> dict[str, Any]:
    """Ask the leader on duty for approval."""
    with warning_errors():
        return await warnings_of(request).submit(warning_id, principal.user.username, principal.user.role.value,
                                                 client_address(request))


@router.post("/api/warnings/{warning_id}/update", tags=["warnings"])
async def update_warning(request: Request, principal: Drafter, warning_id: WarningId,
                         body: ContentIn) -> dict[str, Any]:
    """Propose an Update of an active warning (sent once approved)."""
    with warning_errors():
        return await warnings_of(request).propose_update(warning_id, body.to_content(), principal.user.username,
                                                         principal.user.role.value, client_address(request))


@router.post("/api/warnings/{warning_id}/cancel", tags=["warnings"])
async def cancel_warning(request: Request, principal: Drafter, warning_id: WarningId, body: ReasonIn) -> dict[str, Any]:
    """Propose a Cancel of an active warning (sent once approved)."""
    with warning_errors():
        return await warnings_of(request).propose_cancel(warning_id, principal.user.username,
                                                         principal.user.role.value, body.reason,
                                                         client_address(request))


@router.post("/api/warnings/{warning_id}/approve", tags=["warnings"])
async def approve_warning(request: Request, principal: Approver, warning_id: WarningId) -> dict[str, Any]:
    """The leader on duty approves the pending message; it is sent and distributed at once."""
    with warning_errors():
        return await warnings_of(request).approve(warning_id, principal.user.username, principal.user.role.value,
                                                  client_address(request))


@router.post("/api/warnings/{warning_id}/reject", tags=["warnings"])
async def reject_warning(request: Request, principal: Approver, warning_id: WarningId, body: ReasonIn) -> dict[str, Any]:
    """The leader on duty rejects the pending message, with a reason."""
    with warning_errors():
        return await warnings_of(request).reject(warning_id, principal.user.username, principal.user.role.value,
                                                 body.reason, client_address(request))


@router.get("/warnings", include_in_schema=False)
async def warnings_page(request: Request, principal: Reader) -> Response:
    """预警发布: draft, approve, follow deliveries, download CAP."""
    warnings_of(request)
    lang = language_of(request)
    role = principal.user.role.value
    plan = services_of(request).plan
    en = lang == "en"
    areas = [{"code": c.adcode, "name": c.name_en if en else c.name, "county": ""} for c in plan.counties]
    areas += [{"code": t.id, "name": t.name, "county": t.county} for t in plan.townships]
    return render(request, "warnings.html", warnings_config={
        "lang": lang, "t": texts_with_prefix(lang, "warnings."), "areas": areas,
        "can_approve": role in ("leader", "chair"), "can_draft": role in ("dispatcher", "leader", "chair", "admin"),
        "center": list(plan.counties[0].position) if plan.counties else [112.04, 22.93]})
