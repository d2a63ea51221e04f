"""The leaders' command view (领导指挥视图, issue 19): the page ``/command`` and its one JSON API
``GET /api/command/summary``. Read-only: nothing here changes anything.

Who may: the leader (领导) and the chair (and admins). The page draws the map from the read-only
dispatch and resource routes (``/api/dispatch/state``, ``/api/resources``), the figures, plan
progress and charts from the summary, and keeps them live from ``/ws/events`` (each incident,
unit, plan, resource or conference event schedules one summary reload, at most one per
``RELOAD_MS`` of the page script: a burst of events is one request, not a storm). Call events
carry callers' numbers and places and are not sent to the leader; the call figures are reloaded
with the rest, and at least every ``IDLE_RELOAD_S`` seconds.

The figures are counted by the pure ``dispatch.command_view`` from rows that
``dispatch.command_figures`` reads from PostgreSQL. The command conference to preview is the
newest one of an active plan activation (else of an open incident) that is running on this
node's MCU; the page previews it receive-only over the join page's signalling (``/ws/conference``,
message ``preview``) and its "join" button opens the join page.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from config.roles import Role
from core.runtime import CoreServices
from dispatch.command_figures import command_conferences, command_summary
from web_console.auth import Principal, RoleFirstRoute, node_of, require, services_of
from web_console.i18n import texts_with_prefix
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)

COMMANDERS = require(Role.LEADER, Role.CHAIR)
Commander = Annotated[Principal, Depends(COMMANDERS)]
IDLE_RELOAD_S = 30  # the page reloads the summary at least this often (calls waiting, overdue tasks)


def _core(request: Request) -> CoreServices:
    if node_of(request).dispatch is None:
        raise HTTPException(503, "调度服务未在本节点运行")
    return services_of(request)


async def _conference(request: Request) -> dict[str, Any] | None:
    """The command conference to preview: running on this node's MCU (or recorded as running)."""
    candidates = await command_conferences(_core(request).db)
    mcu = node_of(request).mcu
    for c in candidates:
        if mcu is not None:
            if mcu.conferences.running(c["conference_id"]) is not None:
                return {**c, "status": "running", "previewable": mcu.webrtc is not None}
        elif c["status"] == "running":
            return {**c, "previewable": False}  # the MCU runs elsewhere: join only
    return None


@router.get("/api/command/summary", tags=["command"])
async def summary(request: Request, principal: Commander) -> dict[str, Any]:
    """Key figures (open incidents by priority and response level, units deployed, calls waiting,
    answer rate within 10 s / 15 s today, tasks overdue), the active plan activations with their
    progress per agency, supplies consumed, the last 24 h hour by hour (incidents, calls, answer
    times) and the command conference to preview. Training (演练) data is left out."""
    core = _core(request)
    out = await command_summary(core.db, datetime.now(UTC), en=language_of(request) == "en")
    out["conference"] = await _conference(request)
    alerts = node_of(request).alerts  # the warnings in force (issue 20); the map layer is static/warnings_layer.js
    out["warnings"] = await alerts.service.active() if alerts is not None else []
    return out


@router.get("/command", include_in_schema=False)
async def command_page(request: Request, principal: Commander) -> Response:
    """领导指挥视图: one screen (1920×1080 and larger), read-only."""
    lang = language_of(request)
    _core(request)
    return render(request, "command.html", command_texts=texts_with_prefix(lang, "command."),
                  idle_reload_s=IDLE_RELOAD_S)
