"""SIP gateway load benchmark.

    PYTHONPATH=. python bench/sip_load.py [--quick] [--room]

1. Call setup rate: SIPp (basic_call.xml: INVITE/200/ACK/BYE) at increasing rates against our
   endpoint; reports the highest rate with 0 failed calls. The reference is SIPp's own built-in
   UAS (C++) measured the same way in the same run; the ratio is ours / SIPp's.
2. Media cost per participant (no MCU yet, so a participant's leg only): N concurrent G.711
   legs each decoding 50 packets/s to 48 kHz frames and encoding/sending a 20 ms frame back
   (what a mixer output costs the leg), and N H.264 legs decoding a 352x288 25 fps stream.
   Load is generated with pre-built RTP packets so the generator costs almost nothing; its
   cost is measured alone and subtracted.

Writes bench/results/sip_load.json and prints a table.

3. ``--room``: MCU CPU per participant *in a mixing room*: real media legs joined to a running
   room through ``mcu.legs.site_media.SiteMedia`` (decode → N-1 mixer / compositor → shared encoder
   → packetise per leg), G.711 audio-only participants and H.264 CIF 25 fps video participants
   (who also receive the shared 640x360 composite). Each kind is measured at two sizes; the
   marginal cost per participant is the slope (so the room's fixed cost — its mixer tick, the
   one shared encode — is reported apart as the intercept), the generator's own cost
   subtracted. Writes bench/results/sip_room_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from mcu.legs.site_media import SiteMedia, VideoFormat  # noqa: E402
from mcu.room import Room, RoomSettings  # noqa: E402
from mcu.runner import MediaRunner, deprioritise_current_thread  # noqa: E402
from sip_gateway.aio.rtp_leg import MediaLeg, NullSink, tone  # noqa: E402
from sip_gateway.aio.sip_endpoint import Answer, SipEndpoint  # noqa: E402
from sip_gateway.rtp.codecs import AudioEncoder, VideoEncoder  # noqa: E402
from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy  # noqa: E402
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES  # noqa: E402
from sip_gateway.rtp.session import RtpSession  # noqa: E402
from sip_gateway.sip.dialog import Call  # noqa: E402
from sip_gateway.sip.sdp import SessionDescription, answer, create_offer  # noqa: E402
from sip_gateway.sip.useragent import UserAgentConfig  # noqa: E402

SCENARIO = ROOT / "tests" / "sip_gateway" / "sipp" / "load_call.xml"
RESULTS = ROOT / "bench" / "results" / "sip_load.json"
ROOM_RESULTS = ROOT / "bench" / "results" / "sip_room_load.json"


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
        out += session.packetize(encoder.encode(tone(440, i * FRAME_SAMPLES)), i * 160)
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


class _BenchConference:
    """The part of RunningConference that SiteMedia uses, without the database (bench only)."""

    def __init__(self, room: Room, runner: MediaRunner) -> None:
        self.room = room
        self.runner = runner  # the conference's audio clock drives the sites
        self.id = room.id
        self.sites: dict[str, Any] = {}

    async def leave(self, participant_id: str, reason: str = "left", detail: str | None = None) -> None:
        if participant_id in self.room.participants:
            self.room.leave(participant_id, reason)


async def room_cost(kind: str, count: int, seconds: float) -> dict[str, float]:
    """CPU s/s of a running room with ``count`` SIP-leg participants of ``kind`` fed in real time."""
    loop = asyncio.get_running_loop()
    video = kind == "video"
    policy = MediaPolicy(audio_codecs=("PCMU",), video_codecs=("H264",), h264_modes=(1,))
    room = Room(f"bench-{kind}-{count}", "基准会议", settings=RoomSettings(fps=25))
    runner = MediaRunner(room)
    await runner.start()
    conf = _BenchConference(room, runner)
    legs: list[MediaLeg] = []
    sites: list[SiteMedia] = []
    for i in range(count):
        leg = await MediaLeg.allocate("127.0.0.1", video=video, sink=NullSink())
        offer = create_offer(policy, LocalMedia("127.0.0.1", 4000, 4002 if video else None))
        _, streams = answer(SessionDescription.parse(offer.serialize()), policy, leg.local_media)
        leg.start(streams)
        leg._executor.submit(deprioritise_current_thread)
        participant = room.join(f"site{i}", f"会场{i}")
        media = SiteMedia(conf, participant, leg, video=VideoFormat("h264", 640, 360) if video else None,  # type: ignore[arg-type]
                          stats_interval=0)
        leg.sink = media  # SiteMedia is the leg's sink
        media.start()
        legs.append(leg)
        sites.append(media)
    channels = [leg.video if video else leg.audio for leg in legs]
    targets = [("127.0.0.1", c.port) for c in channels if c is not None]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    packets_by_tick: list[list[bytes]] = [[p] for p in prebuilt_audio(50)] if not video else prebuilt_video(50)
    interval = 0.04 if video else 0.02
    step = 3600 if video else 160
    warmup = 1.5
    ticks = int((seconds + warmup) / interval)
    cpu0 = wall0 = 0.0
    next_tick = loop.time()
    for i in range(ticks):
        if i == int(warmup / interval):
            cpu0, wall0 = time.process_time(), time.perf_counter()
        lap, idx = divmod(i, len(packets_by_tick))
        for p in packets_by_tick[idx]:
            data = bytearray(p)
            seq = (int.from_bytes(data[2:4], "big") + lap * 1000) & 0xFFFF
            data[2:4] = seq.to_bytes(2, "big")
            ts = (int.from_bytes(data[4:8], "big") + lap * len(packets_by_tick) * step) & 0xFFFFFFFF
            data[4:8] = ts.to_bytes(4, "big")
            for addr in targets:
                with contextlib.suppress(BlockingIOError):
                    sender.sendto(bytes(data), addr)
        next_tick += interval
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    frames_in = sum(m.counters.video_frames_in if video else m.counters.audio_frames_in for m in sites)
    frames_out = sum(m.counters.audio_frames_out for m in sites)
    for media in sites:
        await media.close()
    for leg in legs:
        await leg.close()
    sender.close()
    await runner.stop()
    expected = count * ticks
    if count and frames_in < expected * 0.7:
        print(f"warning: {kind} room got {frames_in} of {expected} input frames", file=sys.stderr)
    return {"cpu": cpu, "frames_in_per_site": frames_in / max(1, count), "mixes_out_per_site": frames_out / max(1, count),
            "video_ticks": runner.stats.video_ticks, "video_skipped": runner.stats.video_skipped}


async def main_room(quick: bool) -> None:
    """Marginal MCU CPU per SIP participant in a mixing room (slope between two sizes)."""
    seconds = 4.0 if quick else 8.0
    sizes = {"audio": (10, 40) if quick else (10, 60), "video": (2, 5) if quick else (2, 8)}
    result: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                          "platform": platform.platform(),
                                          "load_before": os.getloadavg()[0]},
                              "seconds": seconds}
    rows = []
    for kind, (n1, n2) in sizes.items():
        low = await room_cost(kind, n1, seconds)
        high = await room_cost(kind, n2, seconds)
        gen_low = await media_cost(kind, n1, seconds, True)
        gen_high = await media_cost(kind, n2, seconds, True)
        slope = ((high["cpu"] - gen_high) - (low["cpu"] - gen_low)) / (n2 - n1)
        fixed = (low["cpu"] - gen_low) - slope * n1
        result[kind] = {"sizes": [n1, n2], "cpu_low": round(low["cpu"], 4), "cpu_high": round(high["cpu"], 4),
                        "generator_low": round(gen_low, 4), "generator_high": round(gen_high, 4),
                        "percent_of_core_per_participant": round(slope * 100, 3),
                        "room_fixed_percent_of_core": round(fixed * 100, 2),
                        "low": low, "high": high}
        rows.append((kind, n1, n2, slope * 100, fixed * 100, high))
    result["machine"]["load_after"] = os.getloadavg()[0]
    ROOM_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    ROOM_RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'participant kind':34} {'N':>7} {'% core / participant':>21} {'room fixed % core':>18} {'in/site':>8}")
    print("-" * 92)
    names = {"audio": "G.711 audio (PCMU)", "video": "H.264 CIF 25 fps in, 640x360 out"}
    for kind, n1, n2, per, fixed, high in rows:
        print(f"{names[kind]:34} {f'{n1}-{n2}':>7} {per:>21.2f} {fixed:>18.1f} {high['frames_in_per_site']:>8.0f}")
    print(f"load average {result['machine']['load_before']:.1f} → {result['machine']['load_after']:.1f}")
    print(f"wrote {ROOM_RESULTS.relative_to(ROOT)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--room", action="store_true", help="only: MCU CPU per SIP participant in a mixing room")
    args = parser.parse_args()
    if args.room:
        await main_room(args.quick)
        return
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
