"""Synthetic RTSP cameras for the recorder tests (GStreamer RTSP server, system Python)."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CAMERA_SCRIPT = REPO / "recorder" / "synthetic_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def _gst_rtsp_available() -> bool:
    try:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import GstRtspServer"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


GST_PACKAGES = ("gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gir1.2-gstreamer-1.0 python3-gi "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
                "gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x")
_AVAILABLE = _gst_rtsp_available()
# A skip here fails the test (tests/conftest.py): a missing camera is a broken install step.
needs_rtsp = pytest.mark.skipif(not _AVAILABLE, reason=f"needs Debian packages: {GST_PACKAGES}")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SyntheticCamera:
    """One GStreamer RTSP test camera in its own process; can be killed and restarted."""

    path: str
    label: str
    audio: bool
    port: int
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.path}"

    def start(self) -> None:
        args = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(self.port), "--path", self.path,
                "--label", self.label] + (["--audio"] if self.audio else [])
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"synthetic camera did not start: {line}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
