"""The recorder as a capability of a node: `commandcenter up` (role recorder or all) starts it.

The composition root (commandcenter/node.py) calls `start` for the recorder and, when the MCU
runs in the same process, `start_conference_recording` with the MCU's conferences.

Reads an optional `settings.recorder` section (fields below, all optional; defaults in
brackets): enabled [true], recordings_dir [var/recordings], keys_dir [var/keys],
segment_seconds [6], head_interval_seconds [120], retention_days [30],
retention_max_bytes [none, per camera], min_free_bytes [1 GiB], demo_cameras [demo.enabled],
s3 [none: directory tree; else endpoint_url, bucket, prefix, region, credentials = name of
<keys_dir>/s3-<name>.json, cache_max_bytes], hall_retention / camera_retention
[{id = {days, max_bytes}}; unset days inherit hall → default; a hall's max_bytes is its total].
Cameras come from the site plan's halls; `demo:` cameras are served by one local
GStreamer process (synthetic test pattern with timecode and the window's name).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.cameras import DemoCameraServer, PlannedCamera, camera_config, planned_cameras
from recorder.retention import RetentionConfig, RetentionPolicy
from recorder.s3_store import S3Config
from recorder.service import RecorderConfig, RecorderService

if TYPE_CHECKING:
    from core.audit import AuditLog
    from core.bus import Bus
    from recorder.conference_recording import ConferenceRecordingRole
    from recorder.live_source import LiveSource

log = logging.getLogger(__name__)


@dataclass
class RecorderRole:
    """The running recorder of a node (`Node.recorder`): the service (for routes) and the demo cameras."""

    service: RecorderService
    cameras: list[PlannedCamera]
    demo: DemoCameraServer | None = None

    async def stop(self) -> None:
        try:
            await self.service.stop()
        finally:
            if self.demo is not None:
                await asyncio.to_thread(self.demo.stop)


def _option(section: Any, name: str, default: Any) -> Any:
    value = getattr(section, name, None) if section is not None else None
    return default if value is None else value


class RecorderConfigError(ValueError):
    """The recorder section does not fit the site plan (e.g. retention for an unknown hall)."""


def _retention(section: Any, planned: list[PlannedCamera] | None) -> RetentionConfig:
    default = RetentionPolicy(max_days=_option(section, "retention_days", 30.0),
                              max_bytes=_option(section, "retention_max_bytes", None))
    halls_cfg = dict(_option(section, "hall_retention", {}))
    cameras_cfg = dict(_option(section, "camera_retention", {}))
    camera_hall = {c.camera_id: c.hall for c in planned or []}
    if planned is not None:
        known_halls = sorted(set(camera_hall.values()))
        for hall in halls_cfg:
            if hall not in known_halls:
                raise RecorderConfigError(
                    f"recorder.hall_retention: 场地规划中没有大厅 {hall!r} (unknown hall; known: {', '.join(known_halls)})")
        for camera in cameras_cfg:
            if camera not in camera_hall:
                raise RecorderConfigError(f"recorder.camera_retention: 场地规划中没有摄像机 {camera!r} (unknown camera)")
    per_hall = {h: RetentionPolicy(max_days=o.days if o.days is not None else default.max_days, max_bytes=o.max_bytes)
                for h, o in halls_cfg.items()}

    def camera_policy(camera: str, o: Any) -> RetentionPolicy:
        hall = per_hall.get(camera_hall.get(camera, ""))
        days = o.days if o.days is not None else (hall.max_days if hall is not None else default.max_days)
        return RetentionPolicy(max_days=days, max_bytes=o.max_bytes if o.max_bytes is not None else default.max_bytes)

    return RetentionConfig(
        default=default,
        per_camera={c: camera_policy(c, o) for c, o in cameras_cfg.items()},
        min_free_bytes=int(_option(section, "min_free_bytes", 1 << 30)),
        per_hall=per_hall,
        camera_hall=camera_hall,
    )


def _s3(section: Any, keys_dir: Path) -> S3Config | None:
    s3 = _option(section, "s3", None)
    if s3 is None:
        return None
    return S3Config(endpoint_url=s3.endpoint_url, bucket=s3.bucket, prefix=s3.prefix, region=s3.region,
                    credentials_file=keys_dir / f"s3-{s3.credentials}.json" if s3.credentials else None,
                    cache_max_bytes=int(s3.cache_max_bytes))


def recorder_config(settings: Any, planned: list[PlannedCamera] | None = None) -> RecorderConfig:
    """Map the node's settings (and the site plan's cameras, for per-hall retention) to a `RecorderConfig`.

    Raises RecorderConfigError when a retention override names a hall or camera the plan lacks.
    """
    section = getattr(settings, "recorder", None)
    var = Path(settings.var_dir)
    keys_dir = Path(_option(section, "keys_dir", var / "keys"))
    return RecorderConfig(
        recordings_dir=Path(_option(section, "recordings_dir", var / "recordings")),
        keys_dir=keys_dir,
        recorder_id=str(getattr(settings, "node_name", "recorder-1")),
        segment_seconds=float(_option(section, "segment_seconds", 6.0)),
        head_interval_s=float(_option(section, "head_interval_seconds", 120.0)),
        retention=_retention(section, planned),
        s3=_s3(section, keys_dir),
    )


async def start(core: Any) -> RecorderRole | None:
    """Start recording the site plan's cameras; None when the recorder is switched off."""
    settings = core.settings
    section = getattr(settings, "recorder", None)
    if not _option(section, "enabled", True):
        return None
    planned = planned_cameras(core.plan)
    config = recorder_config(settings, planned)
    # Built first: with S3 this checks the bucket, so a bad store fails before anything starts.
    service = await asyncio.to_thread(RecorderService, core.db, config, core.audit)
    demo: DemoCameraServer | None = None
    urls: dict[str, str] = {}
    wants_demo = _option(section, "demo_cameras", getattr(getattr(settings, "demo", None), "enabled", True))
    if wants_demo and any(c.rtsp_url.startswith("demo:") for c in planned):
        if DemoCameraServer.available():
            demo = DemoCameraServer()
            try:
                urls = await asyncio.to_thread(demo.start, planned)
            except RuntimeError as exc:
                log.error("recorder: demo cameras unavailable: %s", exc)
                demo = None
        else:
            log.error("recorder: demo cameras need GStreamer's RTSP server (Debian gir1.2-gst-rtsp-server-1.0)")
    cameras = []
    skipped_demo = [c.camera_id for c in planned if c.rtsp_url.startswith("demo:") and c.camera_id not in urls]
    if skipped_demo and not wants_demo:
        log.info("recorder: demo cameras switched off; %d demo camera(s) not recorded", len(skipped_demo))
    for cam in planned:
        if cam.camera_id in skipped_demo and not wants_demo:
            continue
        try:
            cameras.append(camera_config(cam, config.keys_dir, urls))
        except ValueError as exc:  # one bad camera entry must not stop the others
            log.error("recorder: camera %s not recorded: %s", cam.camera_id, exc)
    try:
        await service.start(cameras)
    except BaseException:
        if demo is not None:
            await asyncio.to_thread(demo.stop)
        raise
    return RecorderRole(service, planned, demo)


async def start_conference_recording(bus: Bus, audit: AuditLog, live: LiveSource | None,
                                     recorder: RecorderService | None) -> ConferenceRecordingRole | None:
    """Recording of MCU conferences into the recorder's store: needs the MCU's conferences (`live`,
    the recording tap the root passes) and the recorder running in this process (None, with a log
    line, when either is missing)."""
    from recorder.conference_recording import ConferenceRecorder, ConferenceRecordingRole

    if live is None or recorder is None:
        log.info("conference recording needs the mcu and recorder roles in one process; not started")
        return None
    return ConferenceRecordingRole(ConferenceRecorder(live, recorder, bus, audit))
