"""The recorder as a capability of a node: `commandcenter up` (role recorder or all) starts it.

Register in commandcenter/capabilities.py:
    CapabilitySpec("recorder", frozenset({"recorder"}), "recorder.capability:start")

Reads an optional `settings.recorder` section (fields below, all optional; defaults in
brackets): enabled [true], recordings_dir [var/recordings], keys_dir [var/keys],
segment_seconds [6], head_interval_seconds [120], retention_days [30],
retention_max_bytes [none, per camera], min_free_bytes [1 GiB], demo_cameras [demo.enabled].
Cameras come from the site plan's halls; `demo:` cameras are served by one local
GStreamer process (synthetic test pattern with timecode and the window's name).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.cameras import DemoCameraServer, PlannedCamera, camera_config, planned_cameras
from recorder.retention import RetentionConfig, RetentionPolicy
from recorder.service import RecorderConfig, RecorderService

log = logging.getLogger(__name__)


@dataclass
class RecorderRole:
    """What `core.capabilities["recorder"]` holds: the service (for routes) and the demo cameras."""

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


def recorder_config(settings: Any) -> RecorderConfig:
    """Map the node's settings to a `RecorderConfig`."""
    section = getattr(settings, "recorder", None)
    var = Path(settings.var_dir)
    return RecorderConfig(
        recordings_dir=Path(_option(section, "recordings_dir", var / "recordings")),
        keys_dir=Path(_option(section, "keys_dir", var / "keys")),
        recorder_id=str(getattr(settings, "node_name", "recorder-1")),
        segment_seconds=float(_option(section, "segment_seconds", 6.0)),
        head_interval_s=float(_option(section, "head_interval_seconds", 120.0)),
        retention=RetentionConfig(
            default=RetentionPolicy(max_days=_option(section, "retention_days", 30.0),
                                    max_bytes=_option(section, "retention_max_bytes", None)),
            min_free_bytes=int(_option(section, "min_free_bytes", 1 << 30)),
        ),
    )


async def start(core: Any) -> RecorderRole | None:
    """Start recording the site plan's cameras; None when the recorder is switched off."""
    settings = core.settings
    section = getattr(settings, "recorder", None)
    if not _option(section, "enabled", True):
        return None
    config = recorder_config(settings)
    planned = planned_cameras(core.plan)
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
    service = RecorderService(core.db, config, core.audit)
    try:
        await service.start(cameras)
    except BaseException:
        if demo is not None:
            await asyncio.to_thread(demo.stop)
        raise
    return RecorderRole(service, planned, demo)
