"""Real peers behind an emulated line: baresip in the line's namespace, the MCU's SIP bridge on the
line's root-namespace address (see tests/linesim/line.py)."""
from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.settings import SipSettings
from config.site_plan import SitePlan
from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.legs.sip_bridge import SipBridge
from mcu.legs.sip_config import user_agent_config
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.rtp_leg import DscpMarking
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.rtp.media_description import MediaPolicy
from tests.linesim.line import Line
from tests.sip_gateway.peers import Baresip


@dataclass
class LineBaresip(Baresip):
    """baresip run inside ``line``'s namespace, listening on the peer address."""

    line: Line | None = None
    video_file: Path | None = None  # a video-only file to send instead of fakevideo's pattern

    def write_config(self) -> None:
        super().write_config()
        assert self.line is not None
        for name in ("config", "accounts"):
            path = self.home / name
            path.write_text(path.read_text().replace("127.0.0.1", self.line.peer_address))
        if self.video_file is not None:
            path = self.home / "config"
            path.write_text(path.read_text().replace("video_source fakevideo,nil",
                                                     f"video_source avformat,{self.video_file}")
                            + "module avformat.so\n")


    async def start(self, *commands: str) -> None:
        assert self.line is not None
        self.write_config()
        args = self.line.exec_args("baresip", "-f", str(self.home))
        for command in commands:
            args += ["-e", command]
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, cwd=str(self.home))
        self._reader = asyncio.ensure_future(self._read())


async def start_line_bridge(core: CoreServices, service: ConferenceService, line: Line,
                            policy: MediaPolicy | None = None, dscp: DscpMarking | None = None,
                            pace_video: bool = False, **settings: object) -> SipBridge:
    """The MCU's SIP bridge with SIP and RTP on the line's MCU address (a free SIP port). Its sites
    are not paced to their rate budget unless ``pace_video`` (the product's default is to pace):
    the line tests and bench compare an unpaced leg with one paced at a fixed budget."""
    sip = SipSettings(udp_port=0, tls_port=0, host=line.mcu_address, **settings)
    config = user_agent_config(sip)
    if policy is not None:
        config.policy = policy
    endpoint = SipEndpoint(config)
    bridge = SipBridge(core, service, endpoint, sip, media_host=line.mcu_address, port_range=RTP_PORT_RANGE,
                       dscp=dscp or DscpMarking(), pace_video=pace_video)
    await endpoint.start()
    return bridge


def state_the_line(monkeypatch: pytest.MonkeyPatch, plan: SitePlan, kbps: int) -> None:
    """Every SIP site's line rate as if its plan entry named it (``line_kbps``): sites start at the tier
    that rate fits, not low on an unknown line (mcu.legs.site_rate)."""
    monkeypatch.setattr(type(plan), "configured_line_kbps", lambda *_a, **_k: kbps)


def busy_video(path: Path, seconds: int = 60) -> Path:
    """A video-only H.264 file of a busy, noisy picture (big key frames, like a real camera's scene)."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=15,noise=alls=40:allf=t+u", "-t", str(seconds), "-an",
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", "26", "-pix_fmt", "yuv420p", str(path)],
                   check=True, timeout=120)
    return path
