"""Monitoring (监测, issue 20) over HTTP: the gauges for the maps, their charts, the alarm list with
acknowledge, and the push API for systems that send readings.

| route | who |
|---|---|
| ``GET /api/monitoring/gauges`` (gauges, newest values, states, texts) | dispatcher, leader, chair |
| ``GET /api/monitoring/gauges/{id}/series?span=24h|7d`` (downsampled chart) | dispatcher, leader, chair |
| ``GET /api/monitoring/alarms`` | dispatcher, leader, chair |
| ``POST /api/monitoring/alarms/{id}/acknowledge`` (audited) | dispatcher (the flood desk is one) |
| ``POST /api/monitoring/readings`` | a system with a push token (``X-Monitoring-Token``), or an admin |

The push body is ``{"readings": [{"gauge": id, "value": v, "at": t}, ...]}`` (monitoring/payload.py):
each item is accepted or rejected on its own, with its reason; nothing rejected is stored.
"""
from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import ConfigDict, Field

from config.roles import Role
from monitoring.capability import MonitoringCapability
from monitoring.payload import MAX_BATCH_ITEMS, Reading, parse_item
from web_console.auth import (
    Principal,
    RoleFirstRoute,
    SystemTokenGate,
    client_address,
    node_of,
    require,
)
from web_console.guards import ApiModel
from web_console.i18n import texts_with_prefix
from web_console.templating import language_of

router = APIRouter(route_class=RoleFirstRoute)

WATCHERS = require(Role.DISPATCHER, Role.LEADER, Role.CHAIR)
Watcher = Annotated[Principal, Depends(WATCHERS)]
ACKERS = require(Role.DISPATCHER)
Acker = Annotated[Principal, Depends(ACKERS)]
TOKEN_HEADER = "x-monitoring-token"


def _push_system(request: Request, token: str) -> str | None:
    monitoring = node_of(request).monitoring
    return monitoring.push_system(token) if monitoring is not None else None


# a system presenting a configured push token (X-Monitoring-Token), else admins only
PUSHERS = SystemTokenGate(frozenset(), TOKEN_HEADER, _push_system)
Pusher = Annotated[Principal, Depends(PUSHERS)]


def _monitoring(request: Request) -> MonitoringCapability:
    monitoring = node_of(request).monitoring
    if monitoring is None:
        raise HTTPException(503, "监测服务未在本节点运行 (monitoring does not run on this node)")
    return monitoring


@router.get("/api/monitoring/gauges", tags=["monitoring"])
async def gauges(request: Request, principal: Watcher) -> dict[str, Any]:
    """Every gauge with its newest reading and state, the page texts, and whether the caller may acknowledge."""
    monitoring = _monitoring(request)
    lang = language_of(request)
    return {"gauges": monitoring.service.gauge_views(), "texts": texts_with_prefix(lang, "monitoring."),
            "lang": lang, "can_acknowledge": principal.user.role in (Role.DISPATCHER, Role.ADMIN),
            "mqtt": {"connected": bool(monitoring.ingest and monitoring.ingest.connected.is_set()),
                     "error": monitoring.broker_error},
            "counters": monitoring.service.counters.view()}


@router.get("/api/monitoring/gauges/{gauge_id}/series", tags=["monitoring"])
async def series(request: Request, principal: Watcher, gauge_id: str,
                 span: Annotated[Literal["24h", "7d"], Query()] = "24h") -> dict[str, Any]:
    """One gauge's readings over the last 24 h or 7 d, downsampled (min, max, mean, sum per bucket)."""
    monitoring = _monitoring(request)
    if monitoring.service.gauges.get(gauge_id) is None:
        raise HTTPException(404, f"gauge_id: 未知监测站点 {gauge_id[:64]!r}")
    buckets = await monitoring.service.series(gauge_id, span)
    return {"gauge": gauge_id, "span": span,
            "points": [{"at": b.at, "min": b.min, "max": b.max, "mean": b.mean, "sum": b.sum, "count": b.count}
                       for b in buckets]}


@router.get("/api/monitoring/alarms", tags=["monitoring"])
async def alarms(request: Request, principal: Watcher, active: bool = True) -> dict[str, Any]:
    """Alarms and faults, newest first: open or unacknowledged ones (``active``), or the last 200."""
    from monitoring import store

    monitoring = _monitoring(request)
    return {"alarms": await store.alarms(monitoring.service.db, active_only=active)}


class AcknowledgeRequest(ApiModel):
    note: str = Field("", max_length=500, description="what was done, e.g. 已通知县三防办")

    model_config = ConfigDict(extra="forbid")


@router.post("/api/monitoring/alarms/{alarm_id}/acknowledge", tags=["monitoring"])
async def acknowledge(request: Request, principal: Acker, alarm_id: int,
                      body: AcknowledgeRequest | None = None) -> dict[str, Any]:
    """A person acknowledges an alarm (once; audited with who, when and from where)."""
    monitoring = _monitoring(request)
    note = body.note.strip() if body is not None else ""
    if not 0 < alarm_id < 2**63:
        raise HTTPException(404, f"alarm_id: 告警 {alarm_id} 不存在")
    result = await monitoring.service.acknowledge(alarm_id, principal.user.username, client_address(request), note)
    if result is None:
        raise HTTPException(404, f"alarm_id: 告警 {alarm_id} 不存在")
    if not result:
        raise HTTPException(409, f"alarm_id: 告警 {alarm_id} 已被确认")
    return {"alarm": result}


class ReadingBatch(ApiModel):
    """Readings pushed by a system; items are judged one by one (monitoring/payload.py)."""

    readings: list[dict[str, Any]] = Field(description='[{"gauge": id, "value": number, "at": ISO 8601 or epoch s}]')

    model_config = ConfigDict(extra="forbid")


@router.post("/api/monitoring/readings", tags=["monitoring"])
async def push_readings(request: Request, principal: Pusher, body: ReadingBatch) -> dict[str, Any]:
    """Accept a batch of readings: each stored and evaluated, or rejected with its reason (422 when none is accepted)."""
    monitoring = _monitoring(request)
    if monitoring.service.saturated:  # the database is away: push back rather than lose readings
        raise HTTPException(503, "监测数据暂存已满，请稍后重发 (readings are waiting for the database; retry later)",
                            headers={"Retry-After": "5"})
    if len(body.readings) > MAX_BATCH_ITEMS:
        monitoring.service.counters.rejected["too_large"] += 1
        raise HTTPException(413, f"readings: 一次最多 {MAX_BATCH_ITEMS} 条 (at most {MAX_BATCH_ITEMS} readings)")
    now = time.time()
    accepted, rejected = 0, []
    for i, item in enumerate(body.readings):
        result = parse_item(item, monitoring.service.gauges, now)
        if isinstance(result, Reading):
            monitoring.service.submit(result)
            accepted += 1
        else:
            monitoring.service.reject(result, f"http:{principal.user.username}")
            rejected.append({"index": i, "reason": result.reason, "detail": result.detail})
    if rejected and not accepted:
        raise HTTPException(422, [{"loc": ["body", "readings", r["index"]], "msg": r["detail"], "type": r["reason"]}
                                  for r in rejected[:100]])
    return {"accepted": accepted, "rejected": rejected[:100], "rejected_total": len(rejected)}
