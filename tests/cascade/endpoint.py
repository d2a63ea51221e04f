"""A test meeting-room endpoint for the multi-host tests: our SIP stack plus a media leg.

Run in a network namespace: ``python -m tests.cascade.endpoint --host 10.0.0.2 --target
sip:81000001@10.0.0.2:5060 --tone 700 --color 30,200,30 --watch-tone 1000 --watch-color
city=200,40,40 --out FILE``. It calls ``--target``, sends a tone and a solid picture of its
colour (with a moving line, so the encoder has work), and every 0.1 s appends one JSON line to
``--out``: wall time, the amplitude of each watched tone in the last 0.3 s of what it hears,
the number of video frames received, and the share of the latest picture in each watched colour.
For latency (bench/cascade_failover.py): ``--pulse`` sends the tone only during the first 0.2 s
of each wall-clock second, ``--onsets`` reports when each watched tone starts (per 20 ms frame);
all namespaces share the host clock, so onset − whole second = mouth-to-ear delay.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import signal
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from sip_gateway.aio.rtp_leg import MediaLeg, tone
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES
from sip_gateway.sip import events as ev
from sip_gateway.sip.digest import Credentials
from sip_gateway.sip.useragent import UserAgentConfig

RATE = 48_000
ONSET_LEVEL = 1500.0   # a watched tone louder than this in one 20 ms frame is "on"
PULSE = 0.2            # --pulse: the tone plays for the first 0.2 s of every wall-clock second


def tone_amplitude(pcm: np.ndarray, hz: float) -> float:
    """Amplitude (int16 units) of a sine at ``hz`` in ``pcm`` (Hann-windowed DFT peak near hz)."""
    if len(pcm) == 0:
        return 0.0
    window = np.hanning(len(pcm))
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * window))
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    band = spectrum[(freqs > hz - 20) & (freqs < hz + 20)]
    return float(2 * band.max() / window.sum()) if len(band) else 0.0


def colour_share(frame: av.VideoFrame, rgb: tuple[int, int, int], tolerance: int = 60) -> float:
    """Share of the picture's pixels within ``tolerance`` of ``rgb`` (on a 160x90 thumbnail)."""
    img = frame.reformat(width=160, height=90, format="rgb24").to_ndarray().astype(np.int16)
    close = np.all(np.abs(img - np.array(rgb, dtype=np.int16)) <= tolerance, axis=2)
    return float(close.mean())


def picture(i: int, rgb: tuple[int, int, int], width: int = 320, height: int = 240) -> av.VideoFrame:
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = rgb
    img[(i * 4) % height, :] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts = i
    frame.time_base = fractions.Fraction(1, 15)
    return frame


class Sink:
    def __init__(self, onset_tones: list[float]) -> None:
        self.onset_tones = onset_tones
        self.onsets: dict[float, list[float]] = {}
        self._loud: dict[float, bool] = {}
        self.audio: list[np.ndarray] = []
        self.frames = 0
        self.latest: av.VideoFrame | None = None

    def on_audio(self, leg: MediaLeg, pcm: np.ndarray) -> None:
        self.audio.append(pcm)
        del self.audio[:-15]
        now = time.time()
        for hz in self.onset_tones:  # rising edges of the watched tones, per 20 ms frame
            loud = tone_amplitude(pcm, hz) > ONSET_LEVEL
            if loud and not self._loud.get(hz, False):
                self.onsets.setdefault(hz, []).append(now)
            self._loud[hz] = loud

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.frames += 1
        self.latest = frame

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        pass

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        pass


def parse_colour(text: str) -> tuple[int, int, int]:
    r, g, b = (int(x) for x in text.split(","))
    return r, g, b


async def run(args: argparse.Namespace) -> None:
    endpoint = SipEndpoint(UserAgentConfig(host=args.host, port=0, user=args.user))
    await endpoint.start()
    sink = Sink(args.watch_tone if args.onsets else [])
    leg = await MediaLeg.allocate(args.host, video=True, sink=sink)
    credentials = Credentials(args.user, args.password) if args.password else None
    call = endpoint.invite(args.target, leg.local_media, credentials, from_user=args.user)
    established = asyncio.Event()
    ended = asyncio.Event()
    end_status: list[int | None] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.CallEstablished | ev.MediaUpdated) and event.call.key == call.key:
            leg.start(event.call.streams)
            established.set()
        elif isinstance(event, ev.CallEnded) and event.call.key == call.key:
            end_status.append(event.status)
            ended.set()

    endpoint.listeners.append(on_event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    colour = parse_colour(args.color)
    watch_colours = {name: parse_colour(rgb) for name, _, rgb in (w.partition("=") for w in args.watch_color)}
    out = Path(args.out).open("a", buffering=1)  # noqa: ASYNC230 - a test peer, line-buffered appends

    busy = [np.random.default_rng(n).integers(0, 256, (360, 640, 3), dtype=np.uint8) for n in range(8)] if args.busy else []

    async def stream() -> None:
        await established.wait()
        i = 0
        start = loop.time()
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        while True:
            on = not args.pulse or time.time() % 1.0 < PULSE  # pulses mark wall-clock seconds (latency)
            pcm = tone(args.tone, i * FRAME_SAMPLES, amplitude=6000) if on else silence
            leg.send_audio(pcm, marker=i == 0)
            if i % 4 == 0:
                frame = picture(i // 4, colour)
                if busy:  # the same timing (pts) as the plain picture, random pixels
                    pts = frame.pts
                    frame = av.VideoFrame.from_ndarray(busy[(i // 4) % len(busy)], format="rgb24")
                    frame.pts, frame.time_base = pts, fractions.Fraction(1, 15)
                await leg.send_video(frame, keyframe=i % 100 == 0)
            i += 1
            await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))

    async def report() -> None:
        while True:
            await asyncio.sleep(0.1)
            pcm = np.concatenate(sink.audio) if sink.audio else np.zeros(0, dtype=np.int16)
            line: dict[str, Any] = {"t": time.time(), "up": established.is_set() and not ended.is_set(), "frames": sink.frames,
                    "ended": ended.is_set(), "end_status": end_status[0] if end_status else None,
                    "audio": {str(hz): round(tone_amplitude(pcm, hz), 1) for hz in args.watch_tone},
                    "colours": {name: round(colour_share(sink.latest, rgb), 4) if sink.latest is not None else 0.0
                                for name, rgb in watch_colours.items()}}
            if sink.onsets:
                line["onsets"] = {str(hz): times for hz, times in sink.onsets.items()}
                sink.onsets = {}
            out.write(json.dumps(line) + "\n")

    tasks = [asyncio.create_task(stream()), asyncio.create_task(report())]
    await stop.wait()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        endpoint.hangup(call)
        await asyncio.sleep(0.2)
    await leg.close()
    await endpoint.close()
    out.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--user", default="endpoint")
    parser.add_argument("--password", default="", help="digest credentials (posing as a node in the bad-path test)")
    parser.add_argument("--tone", type=float, required=True)
    parser.add_argument("--color", required=True)
    parser.add_argument("--watch-tone", type=float, action="append", default=[])
    parser.add_argument("--watch-color", action="append", default=[])
    parser.add_argument("--out", required=True)
    parser.add_argument("--pulse", action="store_true", help="send the tone only at the start of each second")
    parser.add_argument("--onsets", action="store_true", help="report rising edges of the watched tones")
    parser.add_argument("--busy", action="store_true", help="send random 640x360 pictures (a busy camera) instead")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
