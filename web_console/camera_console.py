"""The chair console's far-end camera control (FECC: H.281 over H.224) of a selected room system.

* `GET  /api/conferences/<id>/cameras/<site>`: `{available, axes: {pan, tilt, zoom, focus},
  presets, ...}` — whether the site negotiated FECC (SIP RFC 4573, H.323 H.224 data channel) and what its camera said it can do;
* `POST /api/conferences/<id>/cameras/<site>` `{"action": "start"|"continue"|"stop", "move":
  "pan_left"|…}` or `{"action": "preset"|"store", "preset": 1..6}`: press-and-hold on the console is
  a start, a continue about every 400 ms, a stop on release.

Chair, operator and leader roles (and admins): the operator runs every other site operation on
this console (invite, mute, hang-up), so steering a room's camera is theirs too. Refusals: 404
conference not running / site not in it, 409 `fecc_unavailable` (the room system did not negotiate
FECC) or `fecc_unsupported` (its camera said it cannot), 422 malformed, 503 no MCU in this process.
Start, stop and presets are audited (`conference.camera.<action>`), refusals too; the continues
of a held button are not (one every 400 ms would drown the audit log).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from config.roles import Role
from mcu.legs.fecc import MAX_PRESET, Camera, FeccError, Steer, camera_state, find_camera, steer
from sip_gateway.h224 import Action
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.guards import ApiModel

router = APIRouter(route_class=RoleFirstRoute)
CAMERA_ROLES = (Role.CHAIR, Role.OPERATOR, Role.LEADER)

Move = Literal["pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out", "focus_in", "focus_out"]


class CameraCommand(ApiModel):
    action: Literal["start", "continue", "stop", "preset", "store"]
    move: Move | None = None
    preset: int | None = Field(None, ge=1, le=MAX_PRESET)


def _camera(request: Request, conference_id: str, site_id: str) -> Camera | None:
    """The site's camera; HTTPException 503/404 when there is no MCU, conference or site."""
    node = node_of(request)
    if node.mcu is None:
        raise HTTPException(503, "本节点未运行会议服务（会控需与 MCU 在同一进程）")
    conf = node.mcu.conferences.running(conference_id)
    if conf is None:
        raise HTTPException(404, f"会议未在进行：{conference_id}")
    if site_id not in conf.room.participants and site_id not in conf.record.sites:
        raise HTTPException(404, f"会场不在会议中：{site_id}")
    return find_camera((node.sip, node.h323.bridge if node.h323 is not None else None), conference_id, site_id)


@router.get("/api/conferences/{conference_id}/cameras/{site_id}", tags=["camera"])
async def camera_get(request: Request, conference_id: str, site_id: str,
                     principal: Annotated[Principal, Depends(require(*CAMERA_ROLES))]) -> Any:
    """Whether the site can be steered, and how."""
    return camera_state(_camera(request, conference_id, site_id)) | {"site": site_id}


@router.post("/api/conferences/{conference_id}/cameras/{site_id}", tags=["camera"])
async def camera_post(request: Request, conference_id: str, site_id: str, body: CameraCommand,
                      principal: Annotated[Principal, Depends(require(*CAMERA_ROLES))]) -> Any:
    """Steer the site's camera (H.281 Start/Continue/Stop Action, Activate/Store Preset)."""
    target = f"{conference_id}/{site_id}"
    detail = body.model_dump(exclude_none=True)
    audited = body.action != "continue"
    try:
        camera = _camera(request, conference_id, site_id)
        steer(camera, Steer(body.action, Action(body.move) if body.move else None, body.preset))
    except HTTPException as exc:
        await _audit(request, principal, body.action, target, detail | {"error": str(exc.detail)}, "failed")
        raise
    except FeccError as exc:
        await _audit(request, principal, body.action, target, detail | {"code": exc.code, "error": exc.message},
                     "failed")
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)
    if audited:
        await _audit(request, principal, body.action, target, detail)
    return camera_state(camera) | {"site": site_id}


async def _audit(request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any],
                 outcome: str = "ok") -> None:
    await services_of(request).audit.record(principal.user.username, f"conference.camera.{action}", target,
                                            outcome=outcome, source=client_address(request), detail=detail)
