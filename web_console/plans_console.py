"""Response plans (应急预案) over HTTP: the plan library with versions and approval (admins), plan
activation on an incident, level changes and the task list per agency (dispatchers and the chair,
the leader on duty), and the agency desks. The work is done by ``dispatch.plans.service.PlanService``,
reached through ``plans_of`` only.

Who may: reading plans and an incident's activations — dispatchers, the chair and the leader
(领导, read-only: the command view, issue 19); activating,
changing the level, ending, updating tasks — dispatchers and the chair, except that an agency desk
(a dispatcher listed in ``agency_desks``) sees and updates only its agency's tasks and may not
activate or change levels (403); uploading, approving and assigning desks — admins.
Errors: unknown → 404; state conflicts (two plans of one hazard, a task moving backward, an
ended response) → 409; another agency's task → 403; bad input → 422 naming the field.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import AwareDatetime, ConfigDict, Field

from config.roles import Role
from dispatch.model import AGENCIES, ValidationError
from dispatch.names_en import AGENCY_EN
from dispatch.plans.duty import shift_view
from dispatch.plans.model import (
    LEVEL_NAMES,
    LEVEL_NAMES_EN,
    TASK_STATUS_NAMES,
    TASK_STATUS_NAMES_EN,
    AgencyScopeError,
    Level,
    PlanConflict,
    PlanError,
    PlanNotFound,
    TaskStatus,
)
from dispatch.plans.service import PlanService
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require
from web_console.guards import ApiModel
from web_console.i18n import MESSAGES
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)

ACTORS = require(Role.DISPATCHER, Role.CHAIR)
READERS = require(Role.DISPATCHER, Role.CHAIR, Role.LEADER)  # the leader reads, never changes (issue 19)
ADMINS = require()
Actor = Annotated[Principal, Depends(ACTORS)]
Reader = Annotated[Principal, Depends(READERS)]
Admin = Annotated[Principal, Depends(ADMINS)]
MAX_DOCUMENT = 200_000
# ids as the database stores them (a larger number could not be a row: 404, not an overflow)
RowId = Annotated[int, Path(ge=1, le=2**62)]
VersionNo = Annotated[int, Path(ge=1, le=100_000)]


def plans_of(request: Request) -> PlanService:
    """The plan service of this node (the one place the console reaches it)."""
    cap = node_of(request).dispatch
    if cap is None:
        raise HTTPException(503, "调度服务未在本节点运行")
    svc: PlanService = cap.plans
    return svc


@contextlib.contextmanager
def plan_errors() -> Iterator[None]:
    try:
        yield
    except PlanNotFound as e:
        raise HTTPException(404, str(e)) from None
    except AgencyScopeError as e:
        raise HTTPException(403, str(e)) from None
    except PlanConflict as e:
        raise HTTPException(409, str(e)) from None
    except (PlanError, ValidationError) as e:
        raise HTTPException(422, str(e)) from None


async def _desk(request: Request, principal: Principal) -> str | None:
    """The agency of the caller's desk (None: a dispatcher/leader for every agency)."""
    if principal.user.role is not Role.DISPATCHER:
        return None
    return await plans_of(request).desk_agency(principal.user.username)


class _Body(ApiModel):
    model_config = ConfigDict(extra="forbid")


class Upload(_Body):
    format: Literal["toml", "json"] = "toml"
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT, description="the plan document (docs/plans.md)")


class Activate(_Body):
    plan_key: str = Field(min_length=1, max_length=40)
    level: Literal["I", "II", "III", "IV"]
    reason: str = Field("", max_length=500)


class LevelChange(_Body):
    level: Literal["I", "II", "III", "IV"]
    reason: str = Field("", max_length=500)


class TaskUpdate(_Body):
    status: Literal["acknowledged", "in_progress", "done"]
    note: str = Field("", max_length=500)


class Desk(_Body):
    agency: str | None = Field(None, max_length=40, description="the agency, or null: not an agency desk")


def _legend(en: bool) -> dict[str, Any]:
    return {"levels": {lv.name: (LEVEL_NAMES_EN if en else LEVEL_NAMES)[lv] for lv in Level},
            "statuses": {s.value: (TASK_STATUS_NAMES_EN if en else TASK_STATUS_NAMES)[s] for s in TaskStatus},
            "agencies": dict(AGENCY_EN) if en else dict(AGENCIES)}


# ---------------------------------------------------------------- the plan library


@router.get("/api/plans", tags=["plans"])
async def list_plans(request: Request, principal: Reader) -> dict[str, Any]:
    """Every plan with its versions and the approved one; the caller's desk agency; names to show."""
    svc = plans_of(request)
    return {"plans": await svc.plans(), "desk_agency": await _desk(request, principal),
            "legend": _legend(language_of(request) == "en")}


@router.get("/api/plans/{key}", tags=["plans"])
async def plan_detail(request: Request, key: str, principal: Reader,
                      version: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> dict[str, Any]:
    """One version of a plan as its document (the approved version by default)."""
    with plan_errors():
        return await plans_of(request).plan_detail(key, version, language_of(request) == "en")


@router.get("/api/plans/{key}/export", tags=["plans"])
async def export_plan(request: Request, key: str, principal: Reader,
                      format: Literal["toml", "json"] = "toml",
                      version: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> Response:
    """The plan as a TOML or JSON file (the newest version unless ``version`` is given)."""
    with plan_errors():
        text = await plans_of(request).export(key, version, format)
    media = "application/toml" if format == "toml" else "application/json"
    return PlainTextResponse(text, media_type=f"{media}; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{key}.{format}"'})


@router.post("/api/plans", status_code=201, tags=["plans"])
async def upload_plan(request: Request, body: Upload, principal: Admin) -> dict[str, Any]:
    """Add a version (a draft) from a TOML/JSON document; 422 names the bad field."""
    with plan_errors():
        return await plans_of(request).upload(body.text, body.format, principal.user.username,
                                              client_address(request))


@router.post("/api/plans/{key}/versions/{version}/approve", tags=["plans"])
async def approve_plan(request: Request, key: str, version: VersionNo, principal: Admin) -> dict[str, Any]:
    """Approve a version: activations from now on use it (the previous approved version is superseded)."""
    with plan_errors():
        return await plans_of(request).approve(key, version, principal.user.username, client_address(request))


@router.get("/api/agency-desks", tags=["plans"])
async def list_desks(request: Request, principal: Admin) -> dict[str, str]:
    """username → agency of every agency desk."""
    return await plans_of(request).desks()


@router.put("/api/agency-desks/{username}", tags=["plans"])
async def set_desk(request: Request, username: str, body: Desk, principal: Admin) -> dict[str, Any]:
    """Make a user an agency desk (or not, with ``agency: null``)."""
    with plan_errors():
        await plans_of(request).set_desk(username, body.agency, principal.user.username, client_address(request))
    return {"username": username, "agency": body.agency}


# ---------------------------------------------------------------- activation and tasks


@router.get("/api/incidents/{incident_id}/plans", tags=["plans"])
async def incident_plans(request: Request, incident_id: str, principal: Reader) -> dict[str, Any]:
    """The incident's plan activations with their task lists (an agency desk: its own tasks only)."""
    desk = await _desk(request, principal)
    with plan_errors():
        acts = await plans_of(request).activations(incident_id, desk, language_of(request) == "en")
    return {"activations": acts, "desk_agency": desk}


@router.post("/api/incidents/{incident_id}/plans", status_code=201, tags=["plans"])
async def activate(request: Request, incident_id: str, body: Activate, principal: Actor) -> dict[str, Any]:
    """Activate a plan at a level: the task list per agency, the command conference, the proposals.
    409 when a plan of the same hazard is already active on the incident (nothing changes)."""
    desk = await _desk(request, principal)
    with plan_errors():
        return await plans_of(request).activate(incident_id, body.plan_key, body.level, principal.user.username,
                                                client_address(request), desk, body.reason)


@router.post("/api/plan-activations/{activation_id}/level", tags=["plans"])
async def change_level(request: Request, activation_id: RowId, body: LevelChange, principal: Actor) -> dict[str, Any]:
    """Escalate or de-escalate: the task list follows the level; the history is kept."""
    desk = await _desk(request, principal)
    with plan_errors():
        return await plans_of(request).change_level(activation_id, body.level, principal.user.username,
                                                    client_address(request), desk, body.reason)


@router.post("/api/plan-activations/{activation_id}/end", tags=["plans"])
async def end(request: Request, activation_id: RowId, principal: Actor) -> dict[str, Any]:
    """Stand the response down (终止响应)."""
    desk = await _desk(request, principal)
    with plan_errors():
        return await plans_of(request).end(activation_id, principal.user.username, client_address(request), desk)


@router.post("/api/plan-tasks/{task_id}", tags=["plans"])
async def update_task(request: Request, task_id: RowId, body: TaskUpdate, principal: Actor) -> dict[str, Any]:
    """Move a task forward (acknowledged, in progress, done) with a note; 403 for another agency's task."""
    desk = await _desk(request, principal)
    with plan_errors():
        return await plans_of(request).update_task(task_id, body.status, principal.user.username,
                                                   client_address(request), desk, body.note)


@router.get("/api/plan-desk", tags=["plans"])
async def my_desk(request: Request, principal: Reader) -> dict[str, Any]:
    """An agency desk's work: every active response with tasks for its agency (empty for others)."""
    desk = await _desk(request, principal)
    acts = await plans_of(request).desk_tasks(desk, language_of(request) == "en") if desk else []
    return {"desk_agency": desk, "activations": acts}


@router.get("/api/plans-ui", tags=["plans"])
async def ui(request: Request, principal: Reader) -> dict[str, Any]:
    """What the page script needs: its texts in the caller's language, the names, the caller's desk."""
    lang = language_of(request)
    return {"lang": lang, "texts": {k[6:]: v for k, v in {**MESSAGES["zh-CN"], **MESSAGES.get(lang, {})}.items()
                                    if k.startswith("plans.")},
            "legend": _legend(lang == "en"), "desk_agency": await _desk(request, principal),
            "admin": principal.user.role is Role.ADMIN, "user": principal.user.username}


# ---------------------------------------------------------------- the duty roster (值班)


class ShiftIn(_Body):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    posts: dict[str, list[str]] = Field(description="duty post → usernames (leader_on_duty and duty_officer needed)",
                                        max_length=20)
    contacts: dict[str, dict[str, str]] = Field(default_factory=dict, max_length=20,
                                                description="agency → {name, phone}: its on-duty contact")


class HandoverItem(_Body):
    text: str = Field(min_length=1, max_length=500)
    done: bool = False


class HandoverIn(_Body):
    notes: str = Field("", max_length=4000)
    items: list[HandoverItem] = Field(default_factory=list, max_length=100)


@router.get("/api/duty/now", tags=["plans"])
async def duty_now(request: Request, principal: Reader) -> dict[str, Any]:
    """The shift on duty now (None when nobody is rostered) and the last handovers."""
    roster = plans_of(request).roster
    shift = await roster.shift_at()
    return {"shift": shift_view(shift) if shift else None, "handovers": await roster.handovers(5)}


@router.get("/api/duty/shifts", tags=["plans"])
async def duty_shifts(request: Request, principal: Reader, start: AwareDatetime,
                      end: AwareDatetime) -> list[dict[str, Any]]:
    """The shifts between two moments."""
    if end <= start or end - start > timedelta(days=62):
        raise HTTPException(422, "end: 需要晚于 start，且不超过 62 天")
    return await plans_of(request).roster.shifts(start, end)


@router.post("/api/duty/shifts", status_code=201, tags=["plans"])
async def add_shift(request: Request, body: ShiftIn, principal: Admin) -> dict[str, Any]:
    """Roster a shift (409 when it overlaps another)."""
    with plan_errors():
        return await plans_of(request).roster.add_shift(body.starts_at, body.ends_at, body.posts, body.contacts,
                                                        principal.user.username, client_address(request))


@router.get("/api/duty/handovers", tags=["plans"])
async def handovers(request: Request, principal: Reader,
                    limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
    return await plans_of(request).roster.handovers(limit)


@router.post("/api/duty/handovers", status_code=201, tags=["plans"])
async def handover(request: Request, body: HandoverIn, principal: Actor) -> dict[str, Any]:
    """交接班: record the handover; the previous handover's open items carry over."""
    with plan_errors():
        return await plans_of(request).roster.handover(body.notes, [i.model_dump() for i in body.items],
                                                       principal.user.username, client_address(request))


# ---------------------------------------------------------------- the admins' page


@router.get("/plans", include_in_schema=False)
async def plans_page(request: Request, principal: Admin) -> Response:
    """The plan library: versions, approval, upload and download of TOML/JSON."""
    return render(request, "plans.html")


PLAN_MESSAGES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "plans.title": "应急预案", "plans.library": "预案库", "plans.upload": "上传新版本",
        "plans.format": "格式", "plans.file": "文件", "plans.text": "或粘贴内容", "plans.submit": "上传",
        "plans.version": "版本", "plans.status": "状态", "plans.approve": "批准", "plans.download": "下载",
        "plans.status.draft": "草稿", "plans.status.approved": "已批准", "plans.status.superseded": "已替代",
        "plans.hazards": "灾种", "plans.created": "创建", "plans.approved_by": "批准人", "plans.view": "查看",
        "plans.panel": "应急预案响应", "plans.pick_incident": "请先选择警情", "plans.activate": "启动预案",
        "plans.plan": "预案", "plans.level": "响应级别", "plans.reason": "依据", "plans.change_level": "调整级别",
        "plans.end": "终止响应", "plans.ack": "签收", "plans.start": "开始处置", "plans.done": "完成",
        "plans.note": "备注", "plans.none": "尚未启动预案", "plans.conference": "指挥会议",
        "plans.proposals": "建议", "plans.units": "建议调派", "plans.resources": "建议物资",
        "plans.warning": "预警草稿", "plans.notify": "通知", "plans.commander": "指挥长",
        "plans.history": "级别变更", "plans.desk": "部门席位", "plans.ok": "已保存", "plans.manage": "管理预案",
        "plans.ended": "已终止",
    },
    "en": {
        "plans.title": "Response plans", "plans.library": "Plan library", "plans.upload": "Upload a new version",
        "plans.format": "Format", "plans.file": "File", "plans.text": "or paste the text", "plans.submit": "Upload",
        "plans.version": "Version", "plans.status": "Status", "plans.approve": "Approve", "plans.download": "Download",
        "plans.status.draft": "Draft", "plans.status.approved": "Approved", "plans.status.superseded": "Superseded",
        "plans.hazards": "Hazards", "plans.created": "Created", "plans.approved_by": "Approved by",
        "plans.view": "View", "plans.panel": "Response plan", "plans.pick_incident": "Select an incident first",
        "plans.activate": "Activate plan", "plans.plan": "Plan", "plans.level": "Response level",
        "plans.reason": "Grounds", "plans.change_level": "Change level", "plans.end": "Stand down",
        "plans.ack": "Acknowledge", "plans.start": "Start", "plans.done": "Done", "plans.note": "Note",
        "plans.none": "No plan activated", "plans.conference": "Command conference", "plans.proposals": "Proposals",
        "plans.units": "Units to send", "plans.resources": "Supplies", "plans.warning": "Draft warning",
        "plans.notify": "Notify", "plans.commander": "Commander", "plans.history": "Level changes",
        "plans.desk": "Agency desk", "plans.ok": "Saved", "plans.manage": "Manage plans", "plans.ended": "Ended",
    },
}
for _lang, _texts in PLAN_MESSAGES.items():
    MESSAGES[_lang].update(_texts)
