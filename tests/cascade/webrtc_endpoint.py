"""An aiortc (WebRTC) participant for the multi-host tests: joins a node's web console.

``python -m tests.cascade.webrtc_endpoint WS_URL R,G,B OUT [name=R,G,B ...]`` joins the
conference websocket as a guest (retrying while the node's web server starts), sends a solid
picture of its colour and a tone, and every 0.2 s appends a JSON line to OUT: wall time, video
frames received, and the share of the latest picture in each watched colour.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.webrtc_client import ColourCamera, ToneMicrophone, WebRtcTestClient
from tests.cascade.endpoint import colour_share, parse_colour


def yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited-range Y'CbCr of an RGB colour (what ColourCamera takes)."""
    r, g, b = (np.float64(c) for c in rgb)
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return int(round(y)), int(round(u)), int(round(v))


async def main(url: str, colour: str, out: Path, watch: list[str]) -> None:
    watched = {name: parse_colour(rgb) for name, _, rgb in (w.partition("=") for w in watch)}
    deadline = time.monotonic() + 60
    while True:
        client = WebRtcTestClient(ColourCamera(yuv(parse_colour(colour))), ToneMicrophone(500.0, 3000.0))
        try:
            reply = await client.join_ws(url)
            if reply.get("type") == "answer":
                break
            raise RuntimeError(f"refused: {reply}")
        except (OSError, RuntimeError, TimeoutError) as exc:
            await client.close()
            if time.monotonic() > deadline:
                raise
            print(f"retrying: {exc}", flush=True)
            await asyncio.sleep(1.0)
    with out.open("a", buffering=1) as fh:  # noqa: ASYNC230 - a test peer, line-buffered appends
        while True:
            frame = client.latest
            line = {"t": time.time(), "frames": client.frames,
                    "colours": {name: round(colour_share(frame, rgb), 4) if frame is not None else 0.0
                                for name, rgb in watched.items()}}
            fh.write(json.dumps(line) + "\n")
            await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]))
