"""H.323 call-setup load: our endpoint dials our MCU endpoint over loopback TCP.

Measures call setups per second and CPU per setup for fast start with tunnelled H.245
(the normal case for room systems), and, as the reference in the same run, the slow path
without fast start over a separate H.245 connection. Also holds N calls open at once and
reports CPU per held participant (signalling only: media is a later session's work).

    PYTHONPATH=. python bench/h323_load.py [--calls 200] [--concurrency 8] [--hold 200] [--room 1,4,8]

``--room`` runs H.323 participants IN A CONFERENCE ROOM (the MCU with the H.323 bridge, the
room's mixer/compositor/shared encoder, an embedded PostgreSQL): a child process runs N room
systems (G.722 audio, a pre-encoded H.264 CIF stream, decoding what they receive) so the
parent's CPU is the MCU's alone; reported per participant, with the empty running room as the
reference in the same run. ``--room ''`` skips it.

Writes bench/results/h323_load.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from sip_gateway.aio.h323_endpoint import CallHandle, H323Endpoint
from sip_gateway.h323.call import EndpointConfig
from sip_gateway.h323.events import (
    CallConnected,
    CallIncoming,
    CallReleased,
    ChannelOpened,
    MasterSlaveDetermined,
    MediaAddress,
)
from sip_gateway.h323.q931 import Cause

RESULTS = Path(__file__).resolve().parent / "results" / "h323_load.json"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _answer(handle: CallHandle) -> None:
    await handle.wait_for(CallIncoming, 10)  # the Setup arrives after the connection
    handle.alert()
    await handle.answer()


async def until_media_ready(handle: CallHandle) -> None:
    """A setup counts once the call is connected, master/slave is settled and our audio and
    video transmit channels are open (so both paths are measured to the same point)."""
    needed = {"connected", "msd", "send-audio", "send-video"}
    async with asyncio.timeout(10):
        while needed:
            event = await handle.events.get()
            if isinstance(event, CallConnected):
                needed.discard("connected")
            elif isinstance(event, MasterSlaveDetermined):
                needed.discard("msd")
            elif isinstance(event, ChannelOpened) and event.channel.outgoing:
                needed.discard("send-audio" if event.channel.session_id == 1 else "send-video")
            elif isinstance(event, CallReleased):
                raise RuntimeError(f"call released with cause {event.cause}")


async def run_setups(fast_start: bool, tunnelling: bool, calls: int, concurrency: int) -> dict[str, Any]:
    """Dial ``calls`` calls, ``concurrency`` at a time; each waits until media is ready, then hangs up."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_incoming(handle: CallHandle) -> None:
        task = loop.create_task(_answer(handle))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    mcu = H323Endpoint(EndpointConfig(h323_id="mcu", fast_start=fast_start, tunnelling=tunnelling),
                       on_incoming=on_incoming)
    room = H323Endpoint(EndpointConfig(h323_id="room", is_mcu=False, fast_start=fast_start, tunnelling=tunnelling))
    address = await mcu.listen("127.0.0.1", 0)
    latencies: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one_call() -> None:
        async with semaphore:
            start = time.perf_counter()
            handle = await room.dial(MediaAddress(address.host, address.port), "80000001")
            await until_media_ready(handle)
            latencies.append(time.perf_counter() - start)
            handle.release(Cause.NORMAL_CALL_CLEARING)
            await handle.wait_closed(10)

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(one_call() for _ in range(calls)))
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    await room.close()
    await mcu.close()
    return {
        "calls": calls, "concurrency": concurrency, "wall_s": round(wall, 3),
        "setups_per_s": round(calls / wall, 1),
        "cpu_ms_per_setup": round(1000 * cpu / calls, 2),  # both ends of the call, one process
        "latency_ms_median": round(1000 * statistics.median(latencies), 2),
        "latency_ms_p95": round(1000 * sorted(latencies)[int(0.95 * (len(latencies) - 1))], 2),
    }


async def run_hold(participants: int, seconds: float) -> dict[str, Any]:
    """Hold ``participants`` connected calls with 1 s round-trip-delay keep-alives."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_incoming(handle: CallHandle) -> None:
        task = loop.create_task(_answer(handle))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    mcu = H323Endpoint(EndpointConfig(h323_id="mcu", round_trip_interval=1.0), on_incoming=on_incoming)
    room = H323Endpoint(EndpointConfig(h323_id="room", is_mcu=False))
    address = await mcu.listen("127.0.0.1", 0)
    handles = []
    for _ in range(participants):
        handle = await room.dial(MediaAddress(address.host, address.port), "80000001")
        await handle.wait_for(MasterSlaveDetermined, 10)
        handles.append(handle)
    cpu0 = cpu_seconds()
    await asyncio.sleep(seconds)
    cpu = cpu_seconds() - cpu0
    await room.close()
    await mcu.close()
    return {"participants": participants, "seconds": seconds,
            "cpu_ms_per_participant_per_s": round(1000 * cpu / participants / seconds, 4)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from bench.h323_room import run_room_scenarios  # the room part needs the database and the MCU

    sizes = [int(n) for n in args.room.split(",") if n.strip()]
    room = await run_room_scenarios(sizes, args.room_seconds, args.room_fps) if sizes else None
    fast = await run_setups(True, True, args.calls, args.concurrency)
    slow = await run_setups(False, False, args.calls, args.concurrency)
    sequential = await run_setups(True, True, max(20, args.calls // 4), 1)
    hold = await run_hold(args.hold, args.hold_seconds)
    return {
        "room_participants": room,
        "benchmark": "h323_load",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "fast_start_tunnelled": fast,
        "reference_no_fast_start_separate_h245": slow,
        "fast_start_sequential": sequential,
        "ratio_setups_per_s_fast_vs_reference": round(fast["setups_per_s"] / slow["setups_per_s"], 2),
        "held_participants": hold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--hold", type=int, default=200)
    parser.add_argument("--hold-seconds", type=float, default=5.0)
    parser.add_argument("--room", default="1,4,8", help="participants per room scenario, comma separated")
    parser.add_argument("--room-seconds", type=float, default=10.0)
    parser.add_argument("--room-fps", type=int, default=15)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    rows = [("fast start, tunnelled", result["fast_start_tunnelled"]),
            ("no fast start, separate H.245 (reference)", result["reference_no_fast_start_separate_h245"]),
            ("fast start, one at a time", result["fast_start_sequential"])]
    print(f"{'scenario':<44}{'calls':>7}{'conc':>6}{'setups/s':>10}{'CPU ms/setup':>14}{'p50 ms':>9}{'p95 ms':>9}")
    for name, r in rows:
        print(f"{name:<44}{r['calls']:>7}{r['concurrency']:>6}{r['setups_per_s']:>10}{r['cpu_ms_per_setup']:>14}"
              f"{r['latency_ms_median']:>9}{r['latency_ms_p95']:>9}")
    print(f"ratio fast start / reference (setups/s): {result['ratio_setups_per_s_fast_vs_reference']}")
    hold = result["held_participants"]
    print(f"held participants: {hold['participants']}, CPU {hold['cpu_ms_per_participant_per_s']} ms per participant "
          f"per second (signalling + 1 s RTD keep-alive)")
    if result["room_participants"]:
        from bench.h323_room import print_room_table

        print_room_table(result["room_participants"])
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
