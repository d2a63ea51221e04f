"""Cost of far-end camera control signalling (issue 18): what steering a room's camera costs the MCU.

    python -m bench.fecc [--messages 20000]

* ``core``: the pure H.224/H.281 core alone — a Continue Action built into an H.224 frame by
  :class:`~sip_gateway.h224.FeccSession` and parsed back by a camera-side session (µs per message);
* ``channel``: two real :class:`~sip_gateway.aio.h224_channel.H224Channel` s over loopback UDP (RTP
  packets, the asyncio loop, the far end parsing), both in this process: CPU (process user+system
  time) per message sent *and* received (so an upper bound of the MCU's share), sent in bursts of 10;
* ``held_button_percent_of_core``: a chair holding a button sends a Continue every 400 ms
  (2.5 messages/s): the share of one core that costs, from the channel figure.

Writes bench/results/fecc.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sip_gateway.aio.h224_channel import H224Channel
from sip_gateway.h224 import Action, FeccSession

ROOT = Path(__file__).resolve().parents[1]
HELD_RATE = 2.5  # Continue Actions per second while a button is held (one every 400 ms)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def core(messages: int) -> dict[str, Any]:
    mcu, camera = FeccSession(), FeccSession()
    start = _cpu()
    for i in range(messages):
        for frame in mcu.continue_action(Action.PAN_LEFT, i * 0.4):
            camera.receive(frame, i * 0.4)
    seconds = _cpu() - start
    return {"messages": messages, "us_per_message": round(seconds / messages * 1e6, 2)}


async def channel(messages: int) -> dict[str, Any]:
    mcu = await H224Channel.allocate("127.0.0.1", (41000, 41999))
    camera = await H224Channel.allocate("127.0.0.1", (42000, 42999))
    try:
        mcu.start("127.0.0.1", camera.port, 100)
        camera.start("127.0.0.1", mcu.port, 100)
        await asyncio.sleep(0.2)
        before = camera.session.received
        start, wall = _cpu(), time.perf_counter()
        for i in range(messages):
            mcu.continue_action(Action.PAN_LEFT)
            if i % 10 == 9:
                await asyncio.sleep(0.001)  # let the loop deliver (loopback buffers are finite)
        for _ in range(1000):  # up to 10 s for the last packets to arrive
            if camera.session.received - before >= messages:
                break
            await asyncio.sleep(0.01)
        seconds, wall_seconds = _cpu() - start, time.perf_counter() - wall
        got = camera.session.received - before
        return {"messages": messages, "received": got, "us_cpu_per_message": round(seconds / max(got, 1) * 1e6, 1),
                "wall_seconds": round(wall_seconds, 2)}
    finally:
        mcu.close()
        camera.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fecc.json")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "bench": "fecc", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
        "core": core(args.messages),
        "channel": asyncio.run(channel(args.messages)),
    }
    result["held_button_percent_of_core"] = round(result["channel"]["us_cpu_per_message"] * HELD_RATE / 1e6 * 100, 5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
