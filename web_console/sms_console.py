"""SMS routes and the SMS console page ``/sms`` (issue 20): dispatchers and leaders send situation
bulletins, meeting notices and command messages by SMS and follow each recipient's delivery status.
The work is done by ``sms.service.SmsService`` (docs/sms.md); this module is HTTP only. 503 when SMS
does not run on this node (``sms.enabled`` off); 422 names the bad field; 429 when the send queue is
full.

The page (短信平台: ``web_console/templates/sms.html``, ``static/sms.js``) shows the outbox with each
recipient's status and delivery-report times, filtered by status and source, the gateway's state,
and updates live from the ``sms.*`` events of ``/ws/events``. Dispatchers and leaders read it
(leaders only read); dispatchers (and admins) send and retry a message's failed or waiting recipients.
"""
from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import ConfigDict, Field

from config.roles import Role
from sms.capability import SmsCapability
from sms.flow import STATUSES, QueueFull
from sms.service import SOURCES, SmsError, SmsService
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require
from web_console.guards import ApiModel
from web_console.i18n import texts_with_prefix
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)

SENDERS = require(Role.DISPATCHER, Role.LEADER, Role.CHAIR)
Sender = Annotated[Principal, Depends(SENDERS)]
RowId = Annotated[int, Path(ge=1, le=2**62)]
# the console page: dispatchers and leaders (read); retrying is the dispatchers' (and admins')
PAGE_READERS = require(Role.DISPATCHER, Role.LEADER)
RETRIERS = require(Role.DISPATCHER)
PageReader = Annotated[Principal, Depends(PAGE_READERS)]
Retrier = Annotated[Principal, Depends(RETRIERS)]
StatusFilter = Literal["queued", "submitted", "buffered", "delivered", "failed"]
SourceFilter = Literal["warning", "plan", "meeting", "manual"]
assert set(typing.get_args(StatusFilter)) == set(STATUSES) and set(typing.get_args(SourceFilter)) == set(SOURCES)


def capability_of(request: Request) -> SmsCapability:
    cap = node_of(request).sms
    if cap is None:
        raise HTTPException(503, "短信服务未在本节点运行（sms.enabled）")
    return cap


def sms_of(request: Request) -> SmsService:
    return capability_of(request).service


@contextlib.contextmanager
def sms_errors() -> Iterator[None]:
    try:
        yield
    except SmsError as e:
        raise HTTPException(422, str(e)) from None
    except QueueFull as e:
        raise HTTPException(429, str(e)) from None
    except LookupError as e:
        raise HTTPException(404, str(e)) from None


class Send(ApiModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=5000, description="the message (checked: at most sms.max_parts parts)")
    kind: Literal["bulletin", "meeting", "command", "other"] = "bulletin"
    reference: str = Field("", max_length=200, description="what it is about (a conference id, an incident…)")
    numbers: list[str] = Field(default_factory=list, max_length=2000)
    users: list[str] = Field(default_factory=list, max_length=500)
    posts: list[str] = Field(default_factory=list, max_length=20)
    groups: list[str] = Field(default_factory=list, max_length=50)


@router.post("/api/sms/messages", status_code=201, tags=["sms"])
async def send_sms(request: Request, body: Send, principal: Sender) -> dict[str, Any]:
    """Send a message to numbers, users, duty posts (whoever is on duty now) and SMS groups."""
    with sms_errors():
        return await sms_of(request).send(body.text, kind=body.kind, reference=body.reference,
                                          actor=principal.user.username, source=client_address(request),
                                          numbers=body.numbers, users=body.users, posts=body.posts,
                                          groups=body.groups)


@router.get("/api/sms/messages", tags=["sms"])
async def list_sms(request: Request, principal: Sender,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   status: StatusFilter | None = None, source: SourceFilter | None = None) -> dict[str, Any]:
    """The newest messages with their recipients' counts per status; ``status`` keeps messages with a
    recipient in that status, ``source`` those from warnings, plans, meeting notices or sent by hand."""
    with sms_errors():
        return {"messages": await sms_of(request).messages(limit, status=status, source=source)}


@router.post("/api/sms/messages/{message_id}/retry", tags=["sms"])
async def retry_sms(request: Request, message_id: RowId, principal: Retrier) -> dict[str, Any]:
    """Send a message's failed and still waiting recipients again now; how many were requeued."""
    with sms_errors():
        n = await sms_of(request).retry(message_id, principal.user.username, client_address(request))
    return {"requeued": n}


@router.get("/api/sms/gateway", tags=["sms"])
async def sms_gateway(request: Request, principal: Sender) -> dict[str, Any]:
    """The gateway's state: Kannel up or down (bearerbox and the SMSC link), what it holds, and the
    recipients waiting in our queue."""
    return await capability_of(request).gateway()


@router.get("/sms", include_in_schema=False)
async def sms_page(request: Request, principal: PageReader) -> Response:
    """短信平台: the outbox, each recipient's delivery, the gateway; live."""
    lang = language_of(request)
    role = principal.user.role
    return render(request, "sms.html", sms_config={
        "lang": lang, "t": texts_with_prefix(lang, "sms."), "enabled": node_of(request).sms is not None,
        "can_send": role in (Role.DISPATCHER, Role.ADMIN), "can_retry": role in (Role.DISPATCHER, Role.ADMIN),
        "statuses": list(STATUSES), "sources": list(SOURCES)})


@router.get("/api/sms/messages/{message_id}", tags=["sms"])
async def sms_detail(request: Request, message_id: RowId, principal: Sender) -> dict[str, Any]:
    """One message and each recipient's delivery status."""
    with sms_errors():
        return await sms_of(request).message(message_id)


@router.get("/api/sms/groups", tags=["sms"])
async def sms_groups(request: Request, principal: Sender) -> dict[str, Any]:
    """The SMS notification lists of the site plan."""
    svc = sms_of(request)
    areas = {g.name: list(g.areas) for g in svc.core.plan.sms_groups}
    return {"groups": [{"name": n, "members": list(m), "areas": areas.get(n, [])} for n, m in svc.groups.items()]}
