"""The camera registry from the site plan (halls → windows → cameras), and the demo's synthetic cameras."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.ingest import CameraConfig

SYNTHETIC_CAMERA = Path(__file__).with_name("synthetic_camera.py")
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class PlannedCamera:
    """A camera as the site plan places it."""

    camera_id: str
    label: str
    rtsp_url: str
    credentials: str
    hall: str
    hall_name: str
    window: str
    window_name: str


def planned_cameras(plan: Any) -> list[PlannedCamera]:
    """Every camera of every hall window in a `config.site_plan.SitePlan`."""
    return [
        PlannedCamera(c.id, c.label, c.rtsp_url, c.credentials, h.id, h.name, w.id, w.name)
        for h in plan.halls for w in h.windows for c in w.cameras
    ]


def load_credentials(keys_dir: Path, name: str) -> tuple[str, str]:
    """(username, password) from `<keys_dir>/camera-<name>.json`; the plan only names the credential."""
    path = keys_dir / f"camera-{name}.json"
    try:
        data = json.loads(path.read_text())
        return str(data["username"]), str(data["password"])
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"camera credential {name!r}: cannot read {path}: {exc}") from exc


def camera_config(cam: PlannedCamera, keys_dir: Path, demo_urls: dict[str, str]) -> CameraConfig:
    """The ingest configuration of a planned camera (`demo:` resolved to its synthetic stream)."""
    url = demo_urls.get(cam.camera_id, "") if cam.rtsp_url.startswith("demo:") else cam.rtsp_url
    if not url:
        raise ValueError(f"camera {cam.camera_id}: demo camera has no synthetic stream")
    username = password = None
    if cam.credentials:
        username, password = load_credentials(keys_dir, cam.credentials)
    return CameraConfig(cam.camera_id, url, label=cam.label, hall=cam.hall, window=cam.window,
                        username=username, password=password)


class DemoCameraServer:
    """One GStreamer RTSP server process serving every `demo:` camera (test pattern, clock, label)."""

    def __init__(self, port: int | None = None, width: int = 320, height: int = 180, fps: int = 10) -> None:
        self.port = port
        self.size = (width, height, fps)
        self.process: subprocess.Popen[str] | None = None

    @staticmethod
    def available() -> bool:
        return Path(SYSTEM_PYTHON).exists() and shutil.which("gst-inspect-1.0") is not None

    def start(self, cameras: list[PlannedCamera]) -> dict[str, str]:
        """Start serving; returns camera id → rtsp URL. Raises RuntimeError if GStreamer is missing."""
        demo = [c for c in cameras if c.rtsp_url.startswith("demo:")]
        if not demo:
            return {}
        if self.port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        width, height, fps = self.size
        args = [SYSTEM_PYTHON, str(SYNTHETIC_CAMERA), "--port", str(self.port), "--width", str(width),
                "--height", str(height), "--fps", str(fps), "--kbps", "200"]
        for c in demo:
            args += ["--mount", f"{c.camera_id}={c.label}"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"synthetic cameras did not start (GStreamer RTSP server missing?): {line.strip()}")
        return {c.camera_id: f"rtsp://127.0.0.1:{self.port}/{c.camera_id}" for c in demo}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
