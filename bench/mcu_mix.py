"""MCU media benchmark: N live 720p25 H.264 sources -> room -> 1280x720@25 H.264, vs ffmpeg.

    python -m bench.mcu_mix            # N = 4, 9, 16, 25; 10 s per run
    python -m bench.mcu_mix --quick    # N = 4, 25; 4 s per run

For each N:

* ours: N feeder threads play pre-encoded clips in real time (decode with PyAV, push the
  decoded frame into a :class:`mcu.room.Room` stamped with the packet's scheduled arrival);
  a :class:`mcu.runner.MediaRunner` composes the auto layout at 1280x720@25 and encodes
  it with the shared libx264 encoder. Measured: sustained output fps, process CPU-seconds
  per output second (decode + compose + encode, the whole process), and p50/p95 latency
  from a source frame's arrival to the first encoded packet that contains it;
* ffmpeg: the same inputs, read in real time (``-re``), decoded, scaled into the same
  pane rectangles (area filter), stacked with ``xstack`` and encoded with libx264 at the
  same preset, tune, profile and bitrate. Its CPU comes from ``getrusage(RUSAGE_CHILDREN)``.

Also the audio mixer: CPU-seconds per second of audio for 50, 100 and 200 participants
(gather + N-1 mix + limiter + speaker detection + delivery, every 20 ms tick).

Writes bench/results/mcu_mix.json and prints a table. Figures depend on machine load:
the JSON records the load average before and after every run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python bench/mcu_mix.py`
    sys.path.insert(0, str(ROOT))

from mcu.encoder import EncoderSettings  # noqa: E402
from mcu.layout import pane_rects, resolve_auto  # noqa: E402
from mcu.room import BROADCAST, Room, RoomSettings  # noqa: E402
from mcu.runner import MediaRunner, deprioritise_current_thread  # noqa: E402
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES, EncodedPacket  # noqa: E402

DECODER_NICE = int(os.environ.get("MCU_BENCH_DECODER_NICE", "5"))
RESULTS = ROOT / "bench" / "results" / "mcu_mix.json"
INPUTS = Path(os.environ.get("MCU_BENCH_INPUTS", "/tmp/mcu_bench_inputs"))
FPS = 25
WIDTH, HEIGHT = 1280, 720
BITRATE = 1_500_000
PANE_SIZE = "256x144"  # a 5x5 pane at 1280x720
PRESET = "veryfast"
SOURCES = (
    "testsrc2=size=1280x720:rate=25,noise=alls=12:allf=t",
    "mandelbrot=size=1280x720:rate=25,noise=alls=12:allf=t",
    "testsrc2=size=1280x720:rate=25,hue=h=120,noise=alls=12:allf=t",
)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_inputs(seconds: float, size: str = "1280x720", kbps: int = 1500) -> list[Path]:
    """Moving 25 fps content with noise, H.264 at ``kbps`` (cached between runs)."""
    INPUTS.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, pattern in enumerate(SOURCES):
        src = pattern.replace("1280x720", size)
        path = INPUTS / f"src{i}_{size}_{int(seconds)}s.mp4"
        if not path.exists():
            tmp = path.with_suffix(".tmp.mp4")
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-t", str(seconds),
                 "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
                 "-g", "50", "-bf", "0", "-pix_fmt", "yuv420p", str(tmp)],
                check=True,
            )
            tmp.rename(path)
        clips.append(path)
    return clips


@dataclass
class Clip:
    path: Path
    extradata: bytes | None
    packets: list[bytes]
    keyframes: list[int]  # packet indices where a decoder can start


def load_clip(path: Path) -> Clip:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        extradata = stream.codec_context.extradata
        packets: list[bytes] = []
        keys: list[int] = []
        for p in container.demux(stream):
            if p.size:
                if p.is_keyframe:
                    keys.append(len(packets))
                packets.append(bytes(p))
    return Clip(path, extradata, packets, keys)


class Feeder(threading.Thread):
    """One live source: decodes its clip in real time and pushes frames into the room."""

    def __init__(self, room: Room, pid: str, clip: Clip, index: int, start: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.room, self.pid, self.clip = room, pid, clip
        self.phase = (index * 0.37) % 1.0  # sources are not frame-aligned with each other
        self.offset = clip.keyframes[index % len(clip.keyframes)]  # and not showing the same picture
        self.start_at, self.stop_event = start, stop
        self.decoded = 0

    def run(self) -> None:
        if DECODER_NICE:
            deprioritise_current_thread(DECODER_NICE)  # as legs should (see mcu.runner)
        ctx = av.CodecContext.create("h264", "r")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.extradata = self.clip.extradata  # mp4 packets are AVCC: SPS/PPS come from extradata
        ctx.thread_count = 1  # many sources: parallelism comes from having one thread each
        site = self.room.participants[self.pid]
        packets = self.clip.packets
        k = 0
        while not self.stop_event.is_set():
            due = self.start_at + (k + self.phase) / FPS  # when this packet "arrives from the network"
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for frame in ctx.decode(av.Packet(packets[(self.offset + k) % len(packets)])):
                site.push_video(frame, arrival=due)
                self.decoded += 1
            k += 1


@dataclass
class OursResult:
    n: int
    source_size: str
    layout: str
    seconds: float
    output_fps: float
    cpu_per_output_second: float
    latency_p50_ms: float
    latency_p95_ms: float
    frames_decoded: int
    ticks_skipped: int
    load_before: float
    load_after: float


async def run_ours(n: int, clips: list[Clip], seconds: float,
                   warmup: float, workers: int, source_size: str = "1280x720") -> OursResult:
    settings = RoomSettings(fps=FPS, encoder=EncoderSettings(fps=FPS, bitrate=BITRATE, preset=PRESET))
    room = Room(f"bench{n}", settings=settings)
    room.set_labels(False)  # ffmpeg draws no labels either
    for i in range(n):
        room.join(f"s{i:02d}", f"会场{i}")
    stop = threading.Event()
    start = time.monotonic() + 0.2
    feeders = [Feeder(room, f"s{i:02d}", clips[i % len(clips)], i, start, stop) for i in range(n)]
    for f in feeders:
        f.start()
    seen: dict[str, int] = {}
    latencies: list[float] = []
    delivered: list[float] = []
    measuring = False

    def sink(packet: EncodedPacket) -> None:
        now = time.monotonic()
        if measuring:
            delivered.append(now)
        for pid, (seq, arrival) in packet.sources.items():
            if seq != seen.get(pid):
                seen[pid] = seq
                if measuring:
                    latencies.append(now - arrival)

    room.subscribe_view(BROADCAST, sink)
    load_before = os.getloadavg()[0]
    async with MediaRunner(room, workers=workers) as runner:
        await asyncio.sleep(warmup + 0.2)
        skipped0 = runner.stats.video_skipped
        decoded0 = sum(f.decoded for f in feeders)
        measuring = True
        cpu0, t0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = cpu_seconds(), time.monotonic()
        measuring = False
        skipped = runner.stats.video_skipped - skipped0
    stop.set()
    for f in feeders:
        f.join(timeout=5)
    room.end()
    elapsed = t1 - t0
    fps = len(delivered) / elapsed
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    return OursResult(
        n=n, source_size=source_size, layout=resolve_auto("auto", n), seconds=round(elapsed, 2), output_fps=round(fps, 2),
        cpu_per_output_second=round((cpu1 - cpu0) / max(1e-9, len(delivered) / FPS), 3),
        latency_p50_ms=round(float(np.percentile(lat, 50)), 1),
        latency_p95_ms=round(float(np.percentile(lat, 95)), 1),
        frames_decoded=sum(f.decoded for f in feeders) - decoded0, ticks_skipped=skipped,
        load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2),
    )


@dataclass
class OfflineResult:
    n: int
    frames: int
    cpu_per_output_second: float
    wall_per_frame_ms: float


def run_ours_offline(n: int, clips: list[Clip], frames: int, workers: int) -> OfflineResult:
    """Same work without a clock: decode one frame of every source, compose, encode; repeat.

    Nothing is dropped, as in an ffmpeg run that cannot keep up, so the CPU per output
    second compares the two pipelines' efficiency independent of scheduling under load.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mcu.clock import FakeClock

    clock = FakeClock()
    settings = RoomSettings(fps=FPS, encoder=EncoderSettings(fps=FPS, bitrate=BITRATE, preset=PRESET))
    room = Room(f"offline{n}", settings=settings, clock=clock)
    room.set_labels(False)
    decoders = []
    for i in range(n):
        room.join(f"s{i:02d}")
        ctx = av.CodecContext.create("h264", "r")
        assert isinstance(ctx, av.VideoCodecContext)
        clip = clips[i % len(clips)]
        ctx.extradata = clip.extradata
        ctx.thread_count = 1
        decoders.append((ctx, clip, clip.keyframes[i % len(clip.keyframes)]))
    out: list[EncodedPacket] = []
    room.subscribe_view(BROADCAST, out.append)

    def decode(i: int, k: int) -> None:
        ctx, clip, offset = decoders[i]
        for frame in ctx.decode(av.Packet(clip.packets[(offset + k) % len(clip.packets)])):
            room.participants[f"s{i:02d}"].push_video(frame, arrival=clock.monotonic())

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for k in range(5):  # warm-up: open decoders and the encoder
            list(pool.map(decode, range(n), [k] * n))
            room.video_tick()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        for k in range(5, 5 + frames):
            list(pool.map(decode, range(n), [k] * n))
            clock.advance(1 / FPS)
            room.video_tick()
        cpu1, t1 = cpu_seconds(), time.perf_counter()
    room.end()
    return OfflineResult(n, frames, round((cpu1 - cpu0) / (frames / FPS), 3), round((t1 - t0) / frames * 1000, 1))


@dataclass
class FfmpegResult:
    n: int
    seconds: float
    output_frames: int
    cpu_per_output_second: float
    load_before: float
    load_after: float


def run_ffmpeg(n: int, clips: list[Path], seconds: float, realtime: bool = True) -> FfmpegResult:
    layout = resolve_auto("auto", n)
    rects = pane_rects(layout, WIDTH, HEIGHT)[:n]
    frames = int(seconds * FPS)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-y"]
    for i in range(n):
        cmd += (["-re"] if realtime else []) + ["-stream_loop", "-1", "-i", str(clips[i % len(clips)])]
    chains = [f"[{i}:v]scale={r.w}:{r.h}:flags=area,setsar=1[v{i}]" for i, r in enumerate(rects)]
    if n == 1:
        graph = chains[0].replace(f"[v{0}]", "[out]")
    else:
        stack = "".join(f"[v{i}]" for i in range(n))
        positions = "|".join(f"{r.x}_{r.y}" for r in rects)
        graph = ";".join(chains) + f";{stack}xstack=inputs={n}:layout={positions}:fill=black,"
        graph += f"pad={WIDTH}:{HEIGHT}:0:0:black[out]"
    cmd += ["-filter_complex", graph, "-map", "[out]", "-frames:v", str(frames), "-r", str(FPS),
            "-c:v", "libx264", "-preset", PRESET, "-tune", "zerolatency", "-profile:v", "baseline",
            "-b:v", str(BITRATE), "-x264-params",
            f"keyint=250:min-keyint=250:scenecut=0:vbv-maxrate={BITRATE // 1000}:vbv-bufsize={BITRATE // 2000}",
            "-f", "h264", os.devnull]
    load_before = os.getloadavg()[0]
    cpu0, t0 = child_cpu_seconds(), time.monotonic()
    subprocess.run(cmd, check=True)
    cpu1, t1 = child_cpu_seconds(), time.monotonic()
    return FfmpegResult(n=n, seconds=round(t1 - t0, 2), output_frames=frames,
                        cpu_per_output_second=round((cpu1 - cpu0) / (frames / FPS), 3),
                        load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2))


def bench_audio(counts: list[int], seconds: float) -> list[dict[str, float]]:
    """CPU per second of audio for the whole tick (gather, mix, limiter, speaker, deliver)."""
    out = []
    rng = np.random.default_rng(1)
    for n in counts:
        room = Room(f"audio{n}", settings=RoomSettings(max_participants=max(200, n)))
        for i in range(n):
            room.join(f"a{i:03d}")
        sites = list(room.participants.values())
        frames = [(rng.standard_normal(FRAME_SAMPLES) * 3000).astype(np.int16) for _ in range(8)]
        ticks = int(seconds * 50)
        busy = 0.0
        for k in range(ticks):
            for j, site in enumerate(sites):  # the legs' work, not counted
                site.push_audio(frames[(j + k) % 8])
            t0 = time.thread_time()
            room.audio_tick()
            busy += time.thread_time() - t0
            for site in sites:
                site.pull_audio()
        out.append({"participants": n, "cpu_seconds_per_second": round(busy / (ticks / 50), 4),
                    "percent_of_one_core": round(100 * busy / (ticks / 50), 1)})
        room.end()
    return out


@dataclass
class Row:
    ours: OursResult
    ffmpeg: FfmpegResult | None
    ours_offline: OfflineResult
    ffmpeg_offline: FfmpegResult | None

    def ratio(self) -> float | None:
        if self.ffmpeg is None or not self.ffmpeg.cpu_per_output_second:
            return None
        return round(self.ours.cpu_per_output_second / self.ffmpeg.cpu_per_output_second, 2)

    def offline_ratio(self) -> float | None:
        if self.ffmpeg_offline is None or not self.ffmpeg_offline.cpu_per_output_second:
            return None
        return round(self.ours_offline.cpu_per_output_second / self.ffmpeg_offline.cpu_per_output_second, 2)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row], audio: list[dict[str, float]]) -> str:
    lines = [
        "| N | layout | output fps | p50 ms | p95 ms | CPU s/out s ours (real time) | ffmpeg -re | ratio "
        "| CPU s/out s ours (offline) | ffmpeg (offline) | ratio | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o = r.ours
        label = f"{o.n}" if o.source_size == "1280x720" else f"{o.n} (sources {o.source_size})"
        lines.append(
            f"| {label} | {o.layout} | {o.output_fps:.1f} | {o.latency_p50_ms:.0f} | {o.latency_p95_ms:.0f} | "
            f"{o.cpu_per_output_second:.2f} | {_fmt(r.ffmpeg.cpu_per_output_second if r.ffmpeg else None)} | "
            f"{_fmt(r.ratio())} | {r.ours_offline.cpu_per_output_second:.2f} | "
            f"{_fmt(r.ffmpeg_offline.cpu_per_output_second if r.ffmpeg_offline else None)} | {_fmt(r.offline_ratio())} | "
            f"{o.load_before:.1f}-{o.load_after:.1f} |")
    lines += ["", "| participants | N-1 mix CPU (% of one core) |", "|---|---|"]
    lines += [f"| {a['participants']} | {a['percent_of_one_core']:.1f} |" for a in audio]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N = 4 and 25, 4 s each")
    parser.add_argument("--sizes", type=int, nargs="*", help="override the N values")
    parser.add_argument("--seconds", type=float, help="measured seconds per real-time run")
    parser.add_argument("--workers", type=int, default=2, help="compose/encode worker threads")
    parser.add_argument("--no-ffmpeg", action="store_true", help="skip the ffmpeg reference")
    parser.add_argument("--no-pane-sized", action="store_true",
                        help="skip the extra N=25 run with sources sent at pane size")
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is required (Debian package ffmpeg)", file=sys.stderr)
        return 2
    sizes = args.sizes or ([4, 25] if args.quick else [4, 9, 16, 25])
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    offline_frames = 50 if args.quick else 100
    big_paths = make_inputs(10.0)
    big_clips = [load_clip(p) for p in big_paths]
    # What would get a 25-site room there: endpoints asked for pane-sized video (256x144 in 5x5).
    small_paths = make_inputs(10.0, PANE_SIZE, 150)
    small_clips = [load_clip(p) for p in small_paths]
    runs = [(n, big_paths, big_clips, "1280x720") for n in sizes]
    if not args.no_pane_sized:
        runs.append((25, small_paths, small_clips, PANE_SIZE))
    rows: list[Row] = []
    for n, paths, clips, size in runs:
        print(f"N={n} ({size}): ours, real time ...", flush=True)
        ours = asyncio.run(run_ours(n, clips, seconds, warmup=1.0, workers=args.workers, source_size=size))
        print(f"  {ours}", flush=True)
        print(f"N={n}: ours, offline ...", flush=True)
        offline = run_ours_offline(n, clips, offline_frames, args.workers)
        print(f"  {offline}", flush=True)
        ff = ff_off = None
        if not args.no_ffmpeg:
            print(f"N={n}: ffmpeg -re ...", flush=True)
            ff = run_ffmpeg(n, paths, seconds)
            print(f"  {ff}", flush=True)
            print(f"N={n}: ffmpeg offline ...", flush=True)
            ff_off = run_ffmpeg(n, paths, offline_frames / FPS, realtime=False)
            print(f"  {ff_off}", flush=True)
        rows.append(Row(ours, ff, offline, ff_off))
    audio = bench_audio([50, 100, 200], seconds=2.0 if args.quick else 5.0)
    result = {
        "benchmark": "mcu_mix",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(), "note":
                    "shared machine: other agents were running builds and tests at the same time"},
        "settings": {"fps": FPS, "size": f"{WIDTH}x{HEIGHT}", "bitrate": BITRATE, "preset": PRESET,
                     "tune": "zerolatency", "profile": "baseline", "workers": args.workers, "seconds": seconds,
                     "offline_frames": offline_frames,
                     "inputs": "ffmpeg testsrc2/mandelbrot + noise, H.264 720p25 1.5 Mbit/s"},
        "video": [{"ours": asdict(r.ours), "ffmpeg": asdict(r.ffmpeg) if r.ffmpeg else None,
                   "cpu_ratio_ours_over_ffmpeg": r.ratio(),
                   "ours_offline": asdict(r.ours_offline),
                   "ffmpeg_offline": asdict(r.ffmpeg_offline) if r.ffmpeg_offline else None,
                   "cpu_ratio_offline": r.offline_ratio()} for r in rows],
        "audio": audio,
        "goals": {"n25_fps": 25, "p95_ms": 100, "cpu_ratio": 1.3, "mix200_percent_core": 20},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(rows, audio))
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
