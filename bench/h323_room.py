"""H.323 participants in a conference room: the MCU side of ``bench/h323_load.py --room``.

The parent process runs the MCU (embedded PostgreSQL, conference service, H.323 bridge); a
child process (``python -m bench.h323_room terminals N HOST PORT SECONDS``) runs N room systems
that dial the conference, send G.722 audio and a pre-encoded H.264 CIF stream at 15 fps and
decode what they get back. The parent's CPU is therefore the MCU's own; it is sampled over a
window once every site has joined, and the running room with no sites is the reference.
"""
from __future__ import annotations

import asyncio
import fractions
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

CONFERENCE = "80000001"
ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------- child: terminals

def _gop(frames: int = 30) -> list[bytes]:
    """A short H.264 CIF clip (a moving bar), encoded once and looped by every terminal."""
    ctx: Any = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 352, 288, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 15)
    ctx.bit_rate = 256_000
    ctx.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline",
                   "x264-params": f"keyint={frames}:min-keyint={frames}:scenecut=0:repeat-headers=1"}
    out = []
    for i in range(frames):
        rgb = np.full((288, 352, 3), (30, 90, 160), dtype=np.uint8)
        rgb[:, (i * 10) % 330:(i * 10) % 330 + 22] = 250
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out.append(b"".join(bytes(p) for p in ctx.encode(frame)))
    out[-1] += b"".join(bytes(p) for p in ctx.encode(None))
    return out


class _Counting:
    """A terminal's media sink that only counts what it receives."""

    def __init__(self, got: dict[str, int]) -> None:
        self.got = got

    def on_audio(self, leg: object, pcm: object) -> None:
        self.got["audio_frames"] += 1

    def on_video(self, leg: object, frame: object) -> None:
        self.got["video_frames"] += 1

    def on_dtmf(self, leg: object, digit: str) -> None:
        """Not counted."""

    def on_keyframe_request(self, leg: object) -> None:
        """Not counted."""


async def _terminal(index: int, host: str, port: int, seconds: float, gop: list[bytes]) -> dict[str, int]:
    from sip_gateway.aio.h323_endpoint import H323Endpoint
    from sip_gateway.aio.h323_media import H323MediaLeg
    from sip_gateway.aio.ports import RtpPortManager
    from sip_gateway.aio.rtp_leg import tone
    from sip_gateway.h323.call import EndpointConfig
    from sip_gateway.h323.events import CallReleased, ChannelOpened, MediaAddress

    ports = RtpPortManager("127.0.0.1", 40000, 49999)
    endpoint = H323Endpoint(EndpointConfig(h323_id=f"bench-{index}", is_mcu=False), ports=ports)
    handle = await endpoint.dial(MediaAddress(host, port), CONFERENCE)
    media = await H323MediaLeg.adopt(ports, handle.call.media_ports, "127.0.0.1")
    got = {"video_frames": 0, "audio_frames": 0}
    media.sink = _Counting(got)

    async def events() -> None:
        while True:
            event = await handle.events.get()
            if isinstance(event, ChannelOpened):
                media.apply(event.channel)
            elif isinstance(event, CallReleased):
                return

    pump = asyncio.ensure_future(events())
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() - start < seconds:
        media.send_audio(tone(500 + 50 * index, n * 960))
        if n % 4 == 0 and (2, True) in media.channels:  # 12.5 fps
            media.send_video_access_unit(gop[(n // 4) % len(gop)], n * 1800)
        n += 1
        await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
    handle.release()
    await asyncio.sleep(0.3)
    pump.cancel()
    await media.close()
    await endpoint.close()
    return got


async def _terminals(count: int, host: str, port: int, seconds: float) -> list[dict[str, int]]:
    gop = _gop()
    results = []
    tasks = []
    for i in range(count):
        tasks.append(asyncio.ensure_future(_terminal(i, host, port, seconds - 0.1 * i, gop)))
        await asyncio.sleep(0.1)
    for task in tasks:
        results.append(await task)
    return results


# ---------------------------------------------------------------------------- parent: the MCU

async def _wait_joined(conf: Any, count: int, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        for _ in itertools.count():  # the site list is plain data: poll it
            if sum(1 for s in conf.site_list() if s["protocol"] == "h323" and s["status"] == "joined") >= count:
                return
            await asyncio.sleep(0.1)


async def run_room_scenarios(sizes: list[int], seconds: float, fps: int) -> dict[str, Any]:
    """CPU of the MCU with N H.323 participants in one room, per size; plus the empty room."""
    from config.settings import Settings
    from core.db import EmbeddedPostgres
    from core.runtime import CoreServices
    from mcu.conferences import ConferenceService
    from mcu.legs.h323_bridge import H323Bridge
    from mcu.legs.h323_settings import BridgeSettings
    from mcu.room import RoomSettings

    data_dir = Path(tempfile.mkdtemp(prefix="cc-bench-pg-"))
    var_dir = Path(tempfile.mkdtemp(prefix="cc-bench-var-"))
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    core = await CoreServices.start(Settings(var_dir=var_dir, database={"url": url}))
    conferences = ConferenceService(core, RoomSettings(width=1280, height=720, fps=fps))
    await conferences.start()
    bridge = H323Bridge(conferences, BridgeSettings(host="127.0.0.1", port=0, round_trip_interval=10.0))
    address = await bridge.start()
    conf = conferences.running(CONFERENCE)
    assert conf is not None
    rows: list[dict[str, Any]] = []
    try:
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.sleep(min(seconds, 5.0))
        idle = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
        for count in sizes:
            hold = seconds + 3.0 + 0.1 * count + 4.0
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.h323_room", "terminals", str(count), address.host, str(address.port),
                str(hold), stdout=subprocess.PIPE, env=env)
            await _wait_joined(conf, count, 30)
            await asyncio.sleep(1.0)  # settle: first key frames, decoders opened
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu_share = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
            encoders = [f"{k.codec} {k.width}x{k.height} {k.view_id}" for k in conf.room.encoder_keys]
            stdout, _ = await child.communicate()
            got = json.loads(stdout.decode().strip().splitlines()[-1])
            await asyncio.sleep(1.0)
            rows.append({
                "participants": count, "fps": fps, "seconds": seconds,
                "mcu_cpu_percent": round(100 * cpu_share, 1),
                "mcu_cpu_percent_per_participant": round(100 * (cpu_share - idle) / count, 2),
                "shared_encoders": encoders,
                "terminal_video_frames_min": min(g["video_frames"] for g in got),
                "terminal_audio_frames_min": min(g["audio_frames"] for g in got),
            })
    finally:
        await bridge.stop()
        await conferences.stop()
        await core.stop()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(var_dir, ignore_errors=True)
    return {"reference_empty_room_cpu_percent": round(100 * idle, 2), "canvas": "1280x720", "scenarios": rows}


def print_room_table(result: dict[str, Any]) -> None:
    print(f"\nH.323 participants in one room (canvas {result['canvas']}; empty running room: "
          f"{result['reference_empty_room_cpu_percent']}% CPU)")
    print(f"{'participants':>12}{'fps':>5}{'MCU CPU %':>11}{'CPU %/participant':>19}{'video frames/terminal':>23}"
          f"  shared encoders")
    for r in result["scenarios"]:
        print(f"{r['participants']:>12}{r['fps']:>5}{r['mcu_cpu_percent']:>11}{r['mcu_cpu_percent_per_participant']:>19}"
              f"{r['terminal_video_frames_min']:>23}  {', '.join(r['shared_encoders'])}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "terminals":
        out = asyncio.run(_terminals(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
        print(json.dumps(out))
    else:
        sys.exit("usage: python -m bench.h323_room terminals N HOST PORT SECONDS")
