"""WebRTC room benchmark: N aiortc clients in one room, MCU in its own process.

    python -m bench.webrtc_room              # N = 4, 9, 16; 15 s measured per N
    python -m bench.webrtc_room --quick      # N = 4, 9; 6 s

The MCU process runs a :class:`mcu.room.Room` with its :class:`mcu.runner.MediaRunner`
(1280x720 @ 25 fps composite, shared H.264 encoder) and one :class:`mcu.legs.webrtc.WebRtcLeg`
per client, signalled over a local websocket. This process runs N aiortc clients: each sends a
320x180 @ 15 fps camera (a solid colour; client 0's carries its frame number as a row of
black/white blocks) and a tone, and receives and decodes the composite and its N-1 audio.

Measured:

* CPU per participant on the MCU side: MCU process CPU-seconds per second / N (includes
  decoding every camera, mixing, composing, the one shared encode, Opus for each N-1 mix,
  SRTP and packetization);
* end-to-end latency: from client 0's camera producing frame k to frame k appearing in a
  receiver's decoded composite (read back from the frame-number pattern in client 0's pane;
  every receiver, first appearance of each number). Both ends use this process's clock.

The clients (N decodes of the 720p composite) share the machine with the MCU, so latency
includes client-side decode queueing on a loaded box. Writes bench/results/webrtc_room.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "webrtc_room.json"


# -- MCU side (child process) -------------------------------------------------------------------

class _Conference:
    """The part of RunningConference a leg uses, without the database."""

    def __init__(self, room: Any, runner: Any) -> None:
        self.room = room
        self.runner = runner  # the conference's audio clock drives the sites (SiteMedia)
        self.id = room.id
        self.sites: dict[str, Any] = {}
        from mcu.tiers import TierMachine

        self.tiers = TierMachine()  # the receivers' encoder tiers

    async def join(self, pid: str, name: str, protocol: str, *, chair: bool = False) -> Any:
        return self.room.join(pid, name, chair=chair)

    async def leave(self, pid: str, reason: str = "left", detail: str | None = None) -> None:
        if pid in self.room.participants:
            self.room.leave(pid, reason)


async def serve(port: int) -> None:
    import websockets

    from mcu.legs.webrtc import WebRtcConfig, WebRtcLegs
    from mcu.room import Room, RoomSettings
    from mcu.runner import MediaRunner
    from mcu.tiers import tier_for_size

    room = Room("bench", "bench", settings=RoomSettings())
    runner = MediaRunner(room)
    await runner.start()
    legs = WebRtcLegs(WebRtcConfig(host_addresses=("127.0.0.1",)))
    conference = _Conference(room, runner)
    count = 0

    async def handle(ws: Any) -> None:
        nonlocal count
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "join":
                count += 1
                leg = legs.create(conference, participant_id=f"c{message['index']:02d}",  # type: ignore[arg-type]
                                  name=f"c{count}", size=(message["width"], message["height"]))
                # One tier is measured: a budget that fits exactly that tier (no probing up).
                leg.remb.override_kbps = math.ceil(tier_for_size(message["width"], message["height"]).kbps
                                                   / conference.tiers.rules.headroom)
                answer = await leg.answer(message["sdp"], codec="h264")
                await ws.send(json.dumps({"type": "answer", "sdp": answer}))
            elif message["type"] == "cpu":
                t = os.times()
                await ws.send(json.dumps({"cpu": t.user + t.system, "at": time.monotonic(),
                                          "fps_ticks": runner.stats.video_ticks,
                                          "skipped": runner.stats.video_skipped}))
            elif message["type"] == "reset":
                await legs.stop()
                await ws.send(json.dumps({"ok": True, "participants": len(room.participants)}))

    async with websockets.serve(handle, "127.0.0.1", port, max_size=2**20):
        print("ready", flush=True)
        await asyncio.Future()


# -- client side ---------------------------------------------------------------------------------

async def run_n(url: str, n: int, warmup: float, measure: float, size: tuple[int, int]) -> dict[str, Any]:
    import websockets

    from bench.webrtc_client import ColourCamera, ToneMicrophone, WebRtcTestClient, read_frame_number
    from mcu.layout import pane_rects, resolve_auto

    rect = pane_rects(resolve_auto("auto", n), *size)[0]
    latencies: list[float] = []
    measuring = False
    camera0 = ColourCamera((128, 88, 168), 320, 180, fps=15, stamp=True)

    def on_frame_factory() -> Any:
        seen: set[int] = set()

        def on_frame(frame: av.VideoFrame, now: float) -> None:
            if not measuring or frame.width != size[0]:
                return
            y = frame.to_ndarray(format="gray")[rect.y:rect.y + rect.h, rect.x:rect.x + rect.w]
            number = read_frame_number(y)
            sent = camera0.sent_at.get(number)
            if sent is not None and number not in seen and 0 <= now - sent < 5:
                seen.add(number)
                latencies.append(now - sent)
        return on_frame

    control = await websockets.connect(url)
    clients = []
    for i in range(n):
        camera = camera0 if i == 0 else ColourCamera((128, 48 + (i * 37) % 160, 208 - (i * 53) % 160), 320, 180, 15)
        client = WebRtcTestClient(camera, ToneMicrophone(300 + 40 * i), on_frame=on_frame_factory())
        ws = await websockets.connect(url)
        await ws.send(json.dumps({"type": "join", "index": i, "sdp": await client.offer(),
                                  "width": size[0], "height": size[1]}))
        reply = json.loads(await ws.recv())
        await client.accept(reply["sdp"])
        await ws.close()
        clients.append(client)
    await asyncio.sleep(warmup)

    async def cpu() -> dict[str, Any]:
        await control.send(json.dumps({"type": "cpu"}))
        result: dict[str, Any] = json.loads(await control.recv())
        return result

    measuring = True
    before = await cpu()
    frames_before = [c.frames for c in clients]
    load_before = os.getloadavg()[0]
    await asyncio.sleep(measure)
    after = await cpu()
    measuring = False
    received_fps = [(c.frames - f) / measure for c, f in zip(clients, frames_before, strict=True)]
    for client in clients:
        await client.close()
    await control.send(json.dumps({"type": "reset"}))
    await control.recv()
    await control.close()
    span = after["at"] - before["at"]
    mcu_cpu = (after["cpu"] - before["cpu"]) / span
    lat = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "n": n, "mcu_cpu_cores": round(mcu_cpu, 3), "mcu_cpu_per_participant": round(mcu_cpu / n, 4),
        "composite_fps": round((after["fps_ticks"] - before["fps_ticks"]) / span, 1),
        "received_fps_median": round(float(np.median(received_fps)), 1),
        "latency_samples": len(latencies), "latency_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1),
        "load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="", help="comma-separated N values")
    parser.add_argument("--resolution", default="640x360", choices=["1280x720", "640x360", "352x288"],
                        help="composite size the receivers get (the clients decode it on this machine too)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([4, 9] if args.quick else [4, 9, 16])
    warmup, measure = (3.0, 6.0) if args.quick else (5.0, 15.0)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "bench.webrtc_room", "--serve", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        w, h = (int(v) for v in args.resolution.split("x"))
        rows = [asyncio.run(run_n(f"ws://127.0.0.1:{port}", n, warmup, measure, (w, h))) for n in sizes]
    finally:
        server.terminate()
        server.wait(10)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu_count": os.cpu_count(),
                                   "composite": f"room 1280x720@25, sent as {args.resolution} H.264 "
                                                "(one shared encoder)",
                                   "sources": "320x180@15 H.264 from aiortc", "results": rows}, indent=2))
    header = ("N", "MCU CPU (cores)", "CPU/participant", "composite fps", "recv fps", "p50 ms", "p95 ms", "samples",
              "load avg")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r['n']} | {r['mcu_cpu_cores']} | {r['mcu_cpu_per_participant']} | {r['composite_fps']} | "
              f"{r['received_fps_median']} | {r['latency_p50_ms']} | {r['latency_p95_ms']} | {r['latency_samples']} | "
              f"{r['load_avg_before']}-{r['load_avg_after']} |")


if __name__ == "__main__":
    main()
