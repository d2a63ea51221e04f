"""The inspector console (纪检监察 · 录像检查): search, timeline, logged playback, bookmarks, holds, exports.

Page `/inspect` and REST API `/api/inspect/...`, role inspector (admins too). Everything goes
through the running `RecorderService` (`Node.recorder.service`):

* viewing footage needs a reason: `POST /api/inspect/playback` calls `service.playback(...)`,
  which appends a view leaf to the transparency log and an audit entry *before* it returns the
  segment list; bad input (bad range, unknown camera, more than 4 cameras, cameras of two
  halls, no reason) is refused with a 4xx before anything is logged;
* segment bytes (`GET /api/inspect/segments/<key>`) are served only when a logged view of the
  same user covers that segment (`service.viewed_segment`), so knowing a key is not enough;
* bookmarks, legal holds, exports and watermarked viewing copies are state changes: each is
  audited and announced on the bus (`recording.*`, seen by inspectors) so other inspectors'
  consoles refresh.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ConfigDict, Field

from config.roles import Role
from recorder.cameras import planned_cameras
from recorder.conference_recording import CAMERA_PREFIX
from recorder.holds import HoldError
from recorder.index import NoRecording, Span
from recorder.replay import broadcast_track_only
from recorder.service import AccessError, RecorderService
from recorder.signing import SignatureError
from recorder.store import StoreError, parse_key
from recorder.timeline import camera_timeline, probe_fps
from recorder.transparency_log import LogIntegrityError
from recorder.tree_head import SignedTreeHead
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.guards import ApiModel
from web_console.i18n import MESSAGES
from web_console.templating import language_of, render

router = APIRouter(route_class=RoleFirstRoute)
INSPECTOR = require(Role.INSPECTOR)

MAX_PLAYBACK_CAMERAS = 4  # the issue: synchronised playback of up to 4 cameras of a hall
MAX_EXPORT_CAMERAS = 16
MAX_PLAYBACK_MS = 12 * 3600 * 1000  # one playback plan: at most half a day (7,200 segments per camera)
MAX_EXPORT_MS = 24 * 3600 * 1000
MAX_VIEWING_COPY_MS = 10 * 60 * 1000  # viewing copies are re-encoded: keep them short
MAX_SEARCH_MS = 31 * 86400 * 1000
MAX_HOLD_MS = 10 * 366 * 86400 * 1000
MAX_REASON = 500
VIEW_GRANT_S = 8 * 3600  # a logged view lets its user fetch the covered segments for this long
COMPLAINT_WINDOW_MS = 5 * 60 * 1000
FRESH_HEAD_MS = 10_000  # sign a new head for an inspector when the latest is older and the log grew  # a jump from a complaint shows ±5 minutes around its time
KEEP_DOWNLOADS_S = 24 * 3600  # exports and viewing copies are kept a day for download
_FILE_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}\.(zip|mp4)$")


# ---- helpers -------------------------------------------------------------------------------------

def _fail(status: int, code: str, message: str) -> HTTPException:
    """A 4xx with a stable `code` (the page translates it) and a readable message."""
    return HTTPException(status, {"code": code, "message": message})


def _service(request: Request) -> RecorderService:
    role = node_of(request).recorder
    if role is None:
        raise _fail(503, "recorder_unavailable", "录像服务未在本节点运行 (the recorder is not running on this node)")
    return role.service


@dataclass(frozen=True)
class CameraInfo:
    id: str
    label: str
    hall: str
    hall_name: str
    window: str
    window_name: str


CONFERENCE_HALL = "conferences"  # recorded MCU conferences appear as one pseudo-hall


async def camera_registry(request: Request) -> dict[str, CameraInfo]:
    """Cameras of the site plan's halls, any added to the recorder at run time, and recorded
    conferences (camera `conf-<id>`, in the pseudo-hall 会议录像)."""
    cams = {c.camera_id: CameraInfo(c.camera_id, c.label, c.hall, c.hall_name, c.window, c.window_name)
            for c in planned_cameras(services_of(request).plan)}
    role = node_of(request).recorder
    for cid, cfg in (role.service.cameras if role is not None else {}).items():
        if cid not in cams:
            cams[cid] = CameraInfo(cid, cfg.label or cid, cfg.hall, cfg.hall, cfg.window, cfg.window)
    conference_recording = node_of(request).conference_recording
    if conference_recording is not None:
        for rec in await conference_recording.recorder.recorded():
            label = f"{rec['name'] or rec['conference_id']}（{rec['conference_id']}）"
            cams[rec["camera"]] = CameraInfo(rec["camera"], label, CONFERENCE_HALL, "会议录像",
                                             rec["camera"], label)
    return cams


def check_range(start_ms: int, end_ms: int, limit_ms: int, what: str) -> None:
    """400 unless 0 <= start < end and the range is at most `limit_ms` long."""
    if start_ms < 0 or end_ms <= start_ms:
        raise _fail(400, "bad_range", "时间范围无效：结束时间必须晚于开始时间 (end must be after start)")
    if end_ms - start_ms > limit_ms:
        hours = limit_ms / 3_600_000
        raise _fail(400, "range_too_long",
                    f"{what}时间范围过长：最长 {hours:g} 小时 ({what} range is limited to {hours:g} h)")


async def check_cameras(request: Request, cameras: list[str], limit: int, same_hall: bool) -> list[CameraInfo]:
    """The cameras, known and de-duplicated; 400/404 otherwise."""
    names = list(dict.fromkeys(c.strip() for c in cameras if c.strip()))
    if not names:
        raise _fail(400, "no_cameras", "请选择摄像机 (choose at least one camera)")
    if len(names) > limit:
        raise _fail(400, "too_many_cameras", f"最多同时选择 {limit} 路摄像机 (at most {limit} cameras)")
    registry = await camera_registry(request)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise _fail(404, "unknown_camera", f"未知摄像机：{', '.join(unknown)} (unknown camera)")
    infos = [registry[n] for n in names]
    if same_hall and len({i.hall for i in infos}) > 1:
        raise _fail(400, "mixed_halls", "同步回放的摄像机必须属于同一个大厅 (cameras must be of one hall)")
    return infos


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise _fail(400, "reason_required", "必须填写原因，原因将记入日志 (a reason is required; it is logged)")
    if len(reason) > MAX_REASON:
        raise _fail(400, "reason_too_long", f"原因最长 {MAX_REASON} 字 (reason too long)")
    return reason


def span_json(span: Span) -> dict[str, Any]:
    return {"camera": span.camera, "start_ms": span.start_ms, "end_ms": span.end_ms}


def no_recording(exc: NoRecording) -> JSONResponse:
    """404 'no recording in range' with the nearest recorded spans (before and after)."""
    return JSONResponse({"detail": {
        "code": "no_recording", "message": "该时间范围内没有录像 (no recording in range)",
        "nearest": [span_json(s) for s in exc.nearest]}}, status_code=404)


def bookmark_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "camera": row["camera"], "at_ms": row["at_ms"], "note": row["note"],
            "created_by": row["created_by"], "created_at": row["created_at"].isoformat()}


def hold_json(hold: Any) -> dict[str, Any]:
    return {"id": hold.id, "cameras": list(hold.cameras), "start_ms": hold.start_ms, "end_ms": hold.end_ms,
            "placed_by": hold.placed_by, "placed_reason": hold.placed_reason, "lifted": hold.lifted}


def user_dir(request: Request, kind: str, username: str) -> Path:
    """Per-user folder for exports/viewing copies (named by a hash: usernames are not path-safe by rule)."""
    tag = hashlib.sha256(username.encode()).hexdigest()[:16]
    return Path(services_of(request).settings.var_dir) / kind / tag


def prune_old_files(folder: Path, max_age_s: float = KEEP_DOWNLOADS_S) -> int:
    """Delete a user's downloads older than `max_age_s` (blocking). Bundles can be made again from the store."""
    cutoff = time.time() - max_age_s
    removed = 0
    for path in folder.glob("*"):
        if _FILE_NAME.match(path.name) and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def new_file_name(ext: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}.{ext}"


# ---- request bodies ------------------------------------------------------------------------------

class RangeBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    cameras: list[str] = Field(default_factory=list, max_length=64)
    start_ms: int
    end_ms: int
    reason: str = ""


class CopyBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    camera: str
    start_ms: int
    end_ms: int
    reason: str = ""


class BookmarkBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    camera: str
    at_ms: int
    note: str = Field("", max_length=1000)


class LiftBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class HeadCheckBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    tree_head: dict[str, Any]


# ---- page ----------------------------------------------------------------------------------------

@router.get("/inspect", include_in_schema=False)
async def inspect_page(request: Request, principal: Annotated[Principal, Depends(INSPECTOR)]) -> Response:
    """The console; `?window=…&at=…` (a complaint: window and time) or `?hall/camera/start/end` preset the search."""
    lang = language_of(request)
    texts = {k: v for k, v in MESSAGES.get(lang, MESSAGES["zh-CN"]).items() if k.startswith("inspect.")}
    return render(request, "inspect.html", texts_json=json.dumps(texts, ensure_ascii=False),
                  complaint_window_ms=COMPLAINT_WINDOW_MS, max_cameras=MAX_PLAYBACK_CAMERAS)


# ---- cameras, search, timeline -------------------------------------------------------------------

@router.get("/api/inspect/cameras", tags=["inspect"])
async def cameras(request: Request, principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any]:
    """Halls → windows → cameras, with each camera's live recording state."""
    health = _service(request).health()
    halls: dict[str, dict[str, Any]] = {}
    for cam in (await camera_registry(request)).values():
        hall = halls.setdefault(cam.hall, {"id": cam.hall, "name": cam.hall_name, "windows": {}})
        window = hall["windows"].setdefault(cam.window, {"id": cam.window, "name": cam.window_name, "cameras": []})
        h = health.get(cam.id)
        window["cameras"].append({"id": cam.id, "label": cam.label, "state": h.state if h else "not_recording",
                                  "fps": round(h.fps, 1) if h else 0.0, "last_error": h.last_error if h else None})
    return {"halls": [{**h, "windows": list(h["windows"].values())} for h in halls.values()],
            "max_playback_cameras": MAX_PLAYBACK_CAMERAS}


@router.get("/api/inspect/search", tags=["inspect"])
async def search(request: Request, principal: Annotated[Principal, Depends(INSPECTOR)],
                 start_ms: int, end_ms: int, hall: str = "", window: str = "",
                 camera: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    """Cameras matching hall / window / camera(s), each with a timeline of recorded spans and explained gaps.

    Searching shows no footage, so it is not a logged view. When nothing at all was recorded
    in the range, `no_recording` is true and `nearest` lists the closest recorded spans.
    """
    service = _service(request)
    check_range(start_ms, end_ms, MAX_SEARCH_MS, "检索")
    registry = await camera_registry(request)
    if camera:
        found = await check_cameras(request, camera, MAX_EXPORT_CAMERAS, same_hall=False)
    elif window:
        found = [c for c in registry.values() if c.window == window]
        if not found:
            raise _fail(404, "unknown_window", f"未知窗口：{window} (unknown window)")
    elif hall:
        found = [c for c in registry.values() if c.hall == hall]
        if not found:
            raise _fail(404, "unknown_hall", f"未知大厅：{hall} (unknown hall)")
    else:
        raise _fail(400, "no_filter", "请选择大厅、窗口或摄像机 (choose a hall, window or camera)")
    ids = [c.id for c in found]
    timelines = [{**c.__dict__, **await camera_timeline(service, c.id, start_ms, end_ms)} for c in found]
    recorded = any(t["recorded_ms"] > 0 for t in timelines)
    nearest = [] if recorded else [span_json(s) for s in await service.index.nearest_spans(ids, start_ms)]
    holds = [hold_json(h) for h in await service.holds.list()
             if not h.lifted and set(h.cameras) & set(ids) and h.start_ms < end_ms and h.end_ms > start_ms]
    return {"start_ms": start_ms, "end_ms": end_ms, "now_ms": int(service.clock() * 1000), "cameras": timelines,
            "no_recording": not recorded, "nearest": nearest, "holds": holds,
            "bookmarks": [bookmark_json(b) for b in await service.index.bookmarks(ids, start_ms, end_ms)]}


# ---- playback ------------------------------------------------------------------------------------

@router.post("/api/inspect/playback", tags=["inspect"], response_model=None)
async def playback(request: Request, body: RangeBody,
                   principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any] | JSONResponse:
    """Log the view (leaf + audit, with the reason), then return the segments per camera for an MSE player."""
    service = _service(request)
    infos = await check_cameras(request, body.cameras, MAX_PLAYBACK_CAMERAS, same_hall=True)
    check_range(body.start_ms, body.end_ms, MAX_PLAYBACK_MS, "回放")
    reason = check_reason(body.reason)
    user = principal.user.username
    try:
        plan = await service.playback(user, [c.id for c in infos], body.start_ms, body.end_ms, reason,
                                      source=client_address(request))
    except NoRecording as exc:
        return no_recording(exc)
    except AccessError as exc:
        raise _fail(400, "bad_request", str(exc)) from None
    await services_of(request).bus.publish("recording.viewed", {
        "user": user, "cameras": [c.id for c in infos], "start_ms": body.start_ms, "end_ms": body.end_ms})
    out = []
    for cam in infos:
        segs = plan.get(cam.id, [])
        fps = await asyncio.to_thread(probe_fps, service.store.local_path(segs[0]["key"])) if segs else 25.0
        out.append({**cam.__dict__, "fps": fps, "segments": [
            {**s, "url": "/api/inspect/segments/" + s["key"]} for s in segs]})
    return {"start_ms": body.start_ms, "end_ms": body.end_ms, "reason": reason, "cameras": out}


@router.get("/api/inspect/segments/{key:path}", tags=["inspect"])
async def segment(request: Request, key: str, principal: Annotated[Principal, Depends(INSPECTOR)]) -> Response:
    """Segment bytes, only when a logged view of the caller covers the segment (403 otherwise)."""
    service = _service(request)
    try:
        parse_key(key)
    except StoreError:
        raise _fail(404, "unknown_segment", "没有该录像片段 (no such segment)") from None
    seg = await service.viewed_segment(principal.user.username, key, VIEW_GRANT_S)
    if seg is None:
        if await service.index.segment_by_key(key) is None:
            raise _fail(404, "unknown_segment", "没有该录像片段 (no such segment)")
        await services_of(request).audit.record(
            principal.user.username, "recorder.segment", key, outcome="denied", source=client_address(request),
            detail={"reason": "no logged view covers this segment"})
        raise _fail(403, "view_not_logged",
                    "未登记查看原因，不能获取该录像 (no logged view of yours covers this segment)")
    path = service.store.local_path(key)
    if path is None or not path.is_file():
        raise _fail(404, "segment_missing", "录像文件不存在 (the segment file is missing from the store)")
    if seg.camera.startswith(CAMERA_PREFIX):  # a conference segment with a content track: the player's
        people = await asyncio.to_thread(broadcast_track_only, path)  # one SourceBuffer takes the broadcast
        if people is not None:
            return Response(people, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})


# ---- bookmarks -----------------------------------------------------------------------------------

@router.get("/api/inspect/bookmarks", tags=["inspect"])
async def bookmarks(request: Request, principal: Annotated[Principal, Depends(INSPECTOR)],
                    start_ms: int, end_ms: int,
                    camera: Annotated[list[str] | None, Query()] = None) -> list[dict[str, Any]]:
    """Bookmarks of every inspector on these cameras in the range."""
    service = _service(request)
    check_range(start_ms, end_ms, MAX_SEARCH_MS, "检索")
    infos = await check_cameras(request, camera or [], MAX_EXPORT_CAMERAS, same_hall=False)
    return [bookmark_json(b) for b in await service.index.bookmarks([c.id for c in infos], start_ms, end_ms)]


@router.post("/api/inspect/bookmarks", status_code=201, tags=["inspect"])
async def add_bookmark(request: Request, body: BookmarkBody,
                       principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any]:
    """A bookmark (with an optional note: an annotation) at a moment of a camera, shared with all inspectors."""
    service = _service(request)
    cam = (await check_cameras(request, [body.camera], 1, same_hall=False))[0]
    if body.at_ms < 0:
        raise _fail(400, "bad_time", "书签时间无效 (bad bookmark time)")
    user = principal.user.username
    note = body.note.strip()
    bookmark_id = await service.index.add_bookmark(cam.id, body.at_ms, note, user)
    await services_of(request).audit.record(user, "recorder.bookmark", cam.id, source=client_address(request),
                                            detail={"id": bookmark_id, "at_ms": body.at_ms, "note": note})
    event = {"id": bookmark_id, "camera": cam.id, "at_ms": body.at_ms, "note": note, "created_by": user}
    await services_of(request).bus.publish("recording.bookmark", event)
    return event


# ---- legal holds ---------------------------------------------------------------------------------

@router.get("/api/inspect/holds", tags=["inspect"])
async def holds(request: Request, principal: Annotated[Principal, Depends(INSPECTOR)]) -> list[dict[str, Any]]:
    return [hold_json(h) for h in await _service(request).holds.list()]


@router.post("/api/inspect/holds", status_code=201, tags=["inspect"])
async def place_hold(request: Request, body: RangeBody,
                     principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any]:
    """Place a legal hold: the range is exempt from retention until lifted (logged with who and why)."""
    service = _service(request)
    infos = await check_cameras(request, body.cameras, MAX_EXPORT_CAMERAS, same_hall=False)
    check_range(body.start_ms, body.end_ms, MAX_HOLD_MS, "保全")
    reason = check_reason(body.reason)
    try:
        hold_id = await service.holds.place(principal.user.username, [c.id for c in infos], body.start_ms,
                                            body.end_ms, reason, source=client_address(request))
    except HoldError as exc:
        raise _fail(400, "bad_hold", str(exc)) from None
    await services_of(request).bus.publish("recording.hold", {"id": hold_id, "action": "place",
                                                              "user": principal.user.username})
    return {"id": hold_id}


@router.post("/api/inspect/holds/{hold_id}/lift", tags=["inspect"])
async def lift_hold(request: Request, hold_id: str, body: LiftBody,
                    principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any]:
    service = _service(request)
    reason = check_reason(body.reason)
    try:
        await service.holds.lift(hold_id, principal.user.username, reason, source=client_address(request))
    except HoldError as exc:
        status = 404 if "unknown hold" in str(exc) else 409
        raise _fail(status, "unknown_hold" if status == 404 else "hold_lifted", str(exc)) from None
    await services_of(request).bus.publish("recording.hold", {"id": hold_id, "action": "lift",
                                                              "user": principal.user.username})
    return {"id": hold_id, "lifted": True}


# ---- exports and viewing copies ------------------------------------------------------------------

@router.post("/api/inspect/exports", status_code=201, tags=["inspect"], response_model=None)
async def export(request: Request, body: RangeBody,
                 principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any] | JSONResponse:
    """Export a range as a zip bundle (segments, manifest, inclusion proofs, signed head, public key)."""
    service = _service(request)
    infos = await check_cameras(request, body.cameras, MAX_EXPORT_CAMERAS, same_hall=False)
    check_range(body.start_ms, body.end_ms, MAX_EXPORT_MS, "导出")
    reason = check_reason(body.reason)
    user = principal.user.username
    folder = user_dir(request, "exports", user)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(prune_old_files, folder)
    name = new_file_name("zip")
    try:
        result = await service.export(user, [c.id for c in infos], body.start_ms, body.end_ms, reason,
                                      folder / name, as_zip=True, source=client_address(request))
    except NoRecording as exc:
        return no_recording(exc)
    except (AccessError, ValueError) as exc:
        raise _fail(400, "bad_request", str(exc)) from None
    await services_of(request).bus.publish("recording.export", {"user": user, "cameras": [c.id for c in infos],
                                                                "start_ms": body.start_ms, "end_ms": body.end_ms})
    return {"name": name, "url": f"/api/inspect/exports/{name}", "segments": result.segments,
            "bytes": result.bytes, "tree_size": result.tree_size, "export_leaf": result.export_leaf_index}


@router.get("/api/inspect/exports/{name}", tags=["inspect"])
async def download_export(request: Request, name: str,
                          principal: Annotated[Principal, Depends(INSPECTOR)]) -> Response:
    """An export bundle, to the inspector who made it only."""
    return _own_file(request, "exports", name, principal, "application/zip")


@router.post("/api/inspect/viewing-copies", status_code=201, tags=["inspect"], response_model=None)
async def viewing_copy(request: Request, body: CopyBody,
                       principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any] | JSONResponse:
    """A re-encoded copy with viewer, time and reason burned in (logged as a view); evidence untouched."""
    service = _service(request)
    cam = (await check_cameras(request, [body.camera], 1, same_hall=False))[0]
    check_range(body.start_ms, body.end_ms, MAX_VIEWING_COPY_MS, "水印副本")
    reason = check_reason(body.reason)
    user = principal.user.username
    folder = user_dir(request, "viewing-copies", user)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(prune_old_files, folder)
    name = new_file_name("mp4")
    try:
        frames = await service.viewing_copy(user, cam.id, body.start_ms, body.end_ms, reason, folder / name,
                                            source=client_address(request))
    except NoRecording as exc:
        return no_recording(exc)
    except (AccessError, ValueError) as exc:
        raise _fail(400, "bad_request", str(exc)) from None
    return {"name": name, "url": f"/api/inspect/viewing-copies/{name}", "frames": frames}


@router.get("/api/inspect/viewing-copies/{name}", tags=["inspect"])
async def download_viewing_copy(request: Request, name: str,
                                principal: Annotated[Principal, Depends(INSPECTOR)]) -> Response:
    return _own_file(request, "viewing-copies", name, principal, "video/mp4")


def _own_file(request: Request, kind: str, name: str, principal: Principal, media_type: str) -> Response:
    path = user_dir(request, kind, principal.user.username) / name
    if not _FILE_NAME.match(name) or not path.is_file():
        raise _fail(404, "unknown_file", "文件不存在或不属于您 (no such file of yours)")
    return FileResponse(path, media_type=media_type, filename=name)


# ---- signed tree heads ---------------------------------------------------------------------------

@router.get("/api/inspect/head", tags=["inspect"])
async def head(request: Request, principal: Annotated[Principal, Depends(INSPECTOR)],
               kept_size: int | None = None) -> dict[str, Any]:
    """The latest signed tree head and public key; with `kept_size`, the RFC 6962 consistency proof from it."""
    service = _service(request)
    await service.log.refresh()
    latest = service.log.latest_head
    if latest is None or (latest.tree_size != service.log.size
                          and service.clock() * 1000 - latest.timestamp_ms > FRESH_HEAD_MS):
        latest = await service.log.sign_head()  # inspectors get a head covering (almost) today's log
    if kept_size is not None and (kept_size < 1 or latest is None or kept_size > latest.tree_size):
        raise _fail(400, "bad_kept_size", "保存的树头大小无效 (kept size must be between 1 and the head's size)")
    return await service.head_for_inspector(kept_size)


@router.post("/api/inspect/head/check", tags=["inspect"])
async def check_head(request: Request, body: HeadCheckBody,
                     principal: Annotated[Principal, Depends(INSPECTOR)]) -> dict[str, Any]:
    """Check a head the inspector kept: its signature, and that today's log extends it (consistency proof)."""
    service = _service(request)
    try:
        kept = SignedTreeHead.from_dict(body.tree_head)
    except ValueError as exc:
        raise _fail(400, "bad_head", f"树头格式错误 (malformed tree head): {exc}") from None
    if not re.fullmatch(r"[0-9a-f]{16}", kept.key_id):
        raise _fail(400, "bad_head", "树头格式错误：密钥编号无效 (malformed tree head: bad key id)")
    await service.log.refresh()
    current = service.log.latest_head
    result: dict[str, Any] = {"kept_size": kept.tree_size, "tree_size": service.log.size,
                              "head": current.to_dict() if current else None}
    try:
        service.log.check_head(kept)
    except (LogIntegrityError, SignatureError, ValueError) as exc:
        result.update(consistent=False, detail=str(exc) or type(exc).__name__)
    else:
        result.update(consistent=True, detail="")
        if current is not None and kept.tree_size <= current.tree_size:
            result["consistency_proof"] = [p.hex() for p in service.log.consistency_proof(kept.tree_size,
                                                                                          current.tree_size)]
    await services_of(request).audit.record(principal.user.username, "recorder.head.check", service.log.log_id,
                                            outcome="ok" if result["consistent"] else "failed",
                                            source=client_address(request),
                                            detail={"kept_size": kept.tree_size, "consistent": result["consistent"]})
    return result
