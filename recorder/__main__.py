"""Run one recorder node standalone (used by the crash-recovery test and for debugging).

    python -m recorder --db-url postgresql://... --var DIR --camera cam1=rtsp://127.0.0.1:8554/cam1 [...]

`commandcenter up --role recorder` is the normal way; this entry point skips the web console.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from core.db import Database, apply_migrations
from recorder.ingest import CameraConfig
from recorder.service import RecorderConfig, RecorderService


async def run(args: argparse.Namespace) -> None:
    db = Database(args.db_url)
    await db.connect(max_size=4)
    async with db.pool.acquire() as conn:
        await apply_migrations(conn)
    var = Path(args.var)
    config = RecorderConfig(recordings_dir=var / "recordings", keys_dir=var / "keys",
                            segment_seconds=args.segment_seconds, head_interval_s=args.head_interval)
    service = RecorderService(db, config)
    cams = [CameraConfig(c.split("=", 1)[0], c.split("=", 1)[1]) for c in args.camera]
    await service.start(cams)
    print(f"recording {len(cams)} cameras; recovery {service.recovery}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--var", required=True)
    parser.add_argument("--camera", action="append", default=[], help="ID=URL, repeatable")
    parser.add_argument("--segment-seconds", type=float, default=6.0)
    parser.add_argument("--head-interval", type=float, default=120.0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
