"""SIP gateway load benchmark.

    PYTHONPATH=. python bench/sip_load.py [--quick]

1. Call setup rate: SIPp (basic_call.xml: INVITE/200/ACK/BYE) at increasing rates against our
   endpoint; reports the highest rate with 0 failed calls. The reference is SIPp's own built-in
   UAS (C++) measured the same way in the same run; the ratio is ours / SIPp's.
2. Media cost per participant (no MCU yet, so a participant's leg only): N concurrent G.711
   legs each decoding 50 packets/s to 48 kHz frames and encoding/sending a 20 ms frame back
   (what a mixer output costs the leg), and N H.264 legs decoding a 352x288 25 fps stream.
   Load is generated with pre-built RTP packets so the generator costs almost nothing; its
   cost is measured alone and subtracted.

Writes bench/results/sip_load.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sip_gateway.rtp.codecs import SAMPLES_PER_FRAME, AudioEncoder, VideoEncoder  # noqa: E402
from sip_gateway.rtp.leg import MediaLeg, tone  # noqa: E402
from sip_gateway.rtp.session import RtpSession  # noqa: E402
from sip_gateway.sip.dialog import Call  # noqa: E402
from sip_gateway.sip.endpoint import Answer, SipEndpoint  # noqa: E402
from sip_gateway.sip.sdp import (  # noqa: E402
    LocalMedia,
    MediaPolicy,
    SessionDescription,
    answer,
    create_offer,
)
from sip_gateway.sip.useragent import UserAgentConfig  # noqa: E402

SCENARIO = ROOT / "tests" / "sip_gateway" / "sipp" / "load_call.xml"
RESULTS = ROOT / "bench" / "results" / "sip_load.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sipp_run(port: int, rate: int, calls: int) -> tuple[int, int, float]:
    """Run SIPp as UAC; returns (successful, failed, achieved cumulative call rate)."""
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIO), f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
        "-s", "80000001", "-m", str(calls), "-r", str(rate), "-l", str(rate * 2), "-nostdin",
        "-timeout", "60s", "-timeout_error", "-trace_stat", "-stf", "/tmp/sipload.csv", "-fd", "100",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd="/tmp",
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode(errors="replace")
    ok = failed = 0
    achieved = 0.0
    for line in text.splitlines():
        if line.strip().startswith("Call Rate"):
            achieved = float(line.split("|")[2].split()[0])
        if line.strip().startswith("Successful call"):
            ok = int(line.split("|")[2].split()[0])
        elif line.strip().startswith("Failed call"):
            failed = int(line.split("|")[2].split()[0])
    return ok, failed, achieved


async def max_rate(port: int, rates: list[int], seconds: float) -> tuple[float, list[dict[str, float]]]:
    """Step the offered rate up; the result is the best achieved rate with 0 failed calls."""
    best = 0.0
    steps: list[dict[str, float]] = []
    for rate in rates:
        calls = int(rate * seconds)
        ok, failed, achieved = await sipp_run(port, rate, calls)
        steps.append({"offered": rate, "achieved": achieved, "calls": calls, "ok": ok, "failed": failed})
        if failed == 0 and ok == calls:
            best = max(best, achieved)
        else:
            break
        if achieved < rate * 0.8:
            break  # saturated: offering more only builds a queue
    return best, steps


async def bench_ours(rates: list[int], seconds: float) -> tuple[float, list[dict[str, float]], float]:
    async def on_invite(call: Call) -> Answer:
        return Answer(LocalMedia("127.0.0.1", 40000))

    endpoint = SipEndpoint(UserAgentConfig(port=0, rate=1e6, burst=1e6), on_invite)
    await endpoint.start()
    cpu0 = time.process_time()
    try:
        best, steps = await max_rate(endpoint.config.port, rates, seconds)
    finally:
        await endpoint.close()
    return best, steps, time.process_time() - cpu0


async def bench_sipp_uas(rates: list[int], seconds: float) -> tuple[float, list[dict[str, float]]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-nostdin",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd="/tmp",
    )
    await asyncio.sleep(0.5)
    try:
        return await max_rate(port, rates, seconds)
    finally:
        proc.terminate()
        await proc.wait()


# --- media cost -------------------------------------------------------------------------------


class EchoSink:
    """What a mixer would do: one 20 ms frame back per frame received."""

    def __init__(self) -> None:
        self.audio = 0
        self.video = 0

    def on_audio(self, leg: MediaLeg, pcm: np.ndarray) -> None:
        self.audio += 1
        leg.send_audio(pcm)

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.video += 1

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        pass

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        pass


def prebuilt_audio(packets: int) -> list[bytes]:
    offer = create_offer(MediaPolicy(audio_codecs=("PCMU",)), LocalMedia("127.0.0.1", 4000))
    _, streams = answer(offer, MediaPolicy(audio_codecs=("PCMU",)), LocalMedia("127.0.0.1", 5000))
    session = RtpSession(streams[0])
    encoder = AudioEncoder(streams[0].codec)
    out = []
    for i in range(packets):
        out += session.packetize(encoder.encode(tone(440, i * SAMPLES_PER_FRAME)), i * 160)
    return out


def prebuilt_video(frames: int) -> list[list[bytes]]:
    policy = MediaPolicy(video_codecs=("H264",), h264_modes=(1,))
    offer = create_offer(policy, LocalMedia("127.0.0.1", 4000, 4002))
    _, streams = answer(offer, policy, LocalMedia("127.0.0.1", 5000, 5002))
    video = streams[1]
    session = RtpSession(video)
    encoder = VideoEncoder(video.codec, bitrate=384_000, fps=25)
    out = []
    for i in range(frames):
        img = np.zeros((288, 352, 3), dtype=np.uint8)
        img[:, :, 0] = (np.arange(352) + i * 3) % 256
        img[:, :, 1] = (np.arange(288)[:, None] + i) % 256
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i, fractions.Fraction(1, 25)
        out.append(session.packetize(encoder.encode(frame, keyframe=i % 50 == 0), i * 3600))
    return out


async def media_cost(kind: str, legs_count: int, seconds: float, generator_only: bool) -> float:
    """CPU seconds per wall second for ``legs_count`` legs (or the generator alone)."""
    loop = asyncio.get_running_loop()
    policy = MediaPolicy(audio_codecs=("PCMU",), video_codecs=("H264",), h264_modes=(1,))
    legs: list[MediaLeg] = []
    targets: list[tuple[tuple[str, int], socket.socket | None]] = []
    sinks = []
    for _ in range(legs_count):
        if generator_only:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            targets.append((sock.getsockname(), sock))
            continue
        sink = EchoSink()
        leg = await MediaLeg.allocate("127.0.0.1", video=kind == "video", sink=sink)
        offer = create_offer(policy, LocalMedia("127.0.0.1", 4000, 4002 if kind == "video" else None))
        _, streams = answer(SessionDescription.parse(offer.serialize()), policy, leg.local_media)
        leg.start(streams)
        legs.append(leg)
        sinks.append(sink)
        channel = leg.video if kind == "video" else leg.audio
        assert channel is not None
        targets.append((("127.0.0.1", channel.port), None))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    audio = prebuilt_audio(50) if kind == "audio" else []
    video = prebuilt_video(50) if kind == "video" else []
    interval = 0.02 if kind == "audio" else 0.04
    ticks = int(seconds / interval)
    await asyncio.sleep(0.2)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_tick = loop.time()
    for i in range(ticks):
        packets = [audio[i % len(audio)]] if kind == "audio" else video[i % len(video)]
        for addr, _ in targets:
            for p in packets:
                # Rewrite the sequence number and timestamp so the stream runs forward.
                data = bytearray(p)
                seq = (int.from_bytes(data[2:4], "big") + (i // len(audio or video)) * 1000) & 0xFFFF
                data[2:4] = seq.to_bytes(2, "big")
                step = 160 if kind == "audio" else 3600
                ts = (int.from_bytes(data[4:8], "big") + (i // len(audio or video)) * len(audio or video) * step) & 0xFFFFFFFF
                data[4:8] = ts.to_bytes(4, "big")
                try:
                    sender.sendto(bytes(data), addr)
                except BlockingIOError:
                    pass
        next_tick += interval
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
    await asyncio.sleep(0.3)
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    for leg in legs:
        await leg.close()
    for _, maybe_sock in targets:
        if maybe_sock is not None:
            maybe_sock.close()
    sender.close()
    if sinks:
        got = sum(s.audio if kind == "audio" else s.video for s in sinks) / len(sinks)
        expected = ticks if kind == "audio" else ticks
        if got < expected * 0.8:
            print(f"warning: {kind} legs got {got:.0f} of {expected} frames each", file=sys.stderr)
    return cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 6.0
    rates = [25, 50, 100, 200, 300, 400, 600, 800, 1000]
    ours, our_steps, our_cpu = await bench_ours(rates, seconds)
    ref, ref_steps = await bench_sipp_uas(rates, seconds)
    n_audio, n_video = (20, 4) if args.quick else (40, 8)
    media_seconds = 5.0 if args.quick else 10.0
    gen_audio = await media_cost("audio", n_audio, media_seconds, True)
    with_audio = await media_cost("audio", n_audio, media_seconds, False)
    gen_video = await media_cost("video", n_video, media_seconds, True)
    with_video = await media_cost("video", n_video, media_seconds, False)
    per_g711 = max(0.0, with_audio - gen_audio) / n_audio
    per_h264 = max(0.0, with_video - gen_video) / n_video
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "calls_per_second": {"ours": ours, "sipp_uas_reference": ref,
                             "ratio": round(ours / ref, 3) if ref else None,
                             "ours_steps": our_steps, "reference_steps": ref_steps},
        "cpu_per_participant": {
            "g711_leg_percent_of_core": round(per_g711 * 100, 3),
            "h264_cif25_decode_leg_percent_of_core": round(per_h264 * 100, 3),
            "g711_legs_measured": n_audio, "h264_legs_measured": n_video,
            "g711_legs_per_core": round(1 / per_g711) if per_g711 else None,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':48} {'value':>12}")
    print("-" * 61)
    print(f"{'calls/s with 0 failures (ours)':48} {ours:>12.1f}")
    print(f"{'calls/s with 0 failures (SIPp UAS reference)':48} {ref:>12.1f}")
    print(f"{'ratio ours/reference':48} {result['calls_per_second']['ratio']!s:>12}")
    print(f"{'CPU per G.711 leg (% of one core)':48} {per_g711 * 100:>12.2f}")
    print(f"{'CPU per H.264 CIF 25fps decode leg (% core)':48} {per_h264 * 100:>12.2f}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
