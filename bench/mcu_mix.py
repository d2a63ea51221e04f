"""MCU media benchmark: N live 720p25 H.264 sources -> room -> 1280x720@25 H.264, vs ffmpeg.

    python -m bench.mcu_mix            # N = 4, 9, 16, 25; 10 s per run
    python -m bench.mcu_mix --quick    # N = 4, 25; 4 s per run
    python -m bench.mcu_mix --panes    # sources asked for their pane size: N = 25, 49, 64 (see main_panes)

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


def make_clip(path: Path, source: str, seconds: float, kbps: int) -> Path:
    """Encode ``seconds`` of the lavfi ``source`` as H.264 mp4 at ``kbps`` (GOP 2 s, no B-frames), cached."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.mp4")
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds),
             "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
             "-g", "50", "-bf", "0", "-pix_fmt", "yuv420p", str(tmp)],
            check=True,
        )
        tmp.rename(path)
    return path


def make_inputs(seconds: float, size: str = "1280x720", kbps: int = 1500) -> list[Path]:
    """Moving 25 fps content with noise, H.264 at ``kbps`` (cached between runs)."""
    return [make_clip(INPUTS / f"src{i}_{size}_{int(seconds)}s.mp4", pattern.replace("1280x720", size), seconds, kbps)
            for i, pattern in enumerate(SOURCES)]


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


class BroadcastTap:
    """The room's broadcast view, as a sink: while ``measuring``, when each packet came out and, for each
    source frame composed for the first time, how long after its arrival at the room."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.latencies: list[float] = []
        self.delivered: list[float] = []
        self.measuring = False

    def __call__(self, packet: EncodedPacket) -> None:
        now = time.monotonic()
        if self.measuring:
            self.delivered.append(now)
        for pid, (seq, arrival) in packet.sources.items():
            if seq != self.seen.get(pid):
                self.seen[pid] = seq
                if self.measuring:
                    self.latencies.append(now - arrival)

    def latency_ms(self) -> np.ndarray:
        """The latencies in ms (one NaN when there were none)."""
        return np.asarray(self.latencies) * 1000 if self.latencies else np.asarray([float("nan")])


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
    tap = BroadcastTap()
    room.subscribe_view(BROADCAST, tap)
    load_before = os.getloadavg()[0]
    async with MediaRunner(room, workers=workers) as runner:
        await asyncio.sleep(warmup + 0.2)
        skipped0 = runner.stats.video_skipped
        decoded0 = sum(f.decoded for f in feeders)
        tap.measuring = True
        cpu0, t0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = cpu_seconds(), time.monotonic()
        tap.measuring = False
        skipped = runner.stats.video_skipped - skipped0
    stop.set()
    for f in feeders:
        f.join(timeout=5)
    room.end()
    elapsed = t1 - t0
    fps = len(tap.delivered) / elapsed
    lat = tap.latency_ms()
    return OursResult(
        n=n, source_size=source_size, layout=resolve_auto("auto", n), seconds=round(elapsed, 2), output_fps=round(fps, 2),
        cpu_per_output_second=round((cpu1 - cpu0) / max(1e-9, len(tap.delivered) / FPS), 3),
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


# ---- real legs' behaviour, asked for pane size (issue 16) -------------------------------------------
PANES_RESULTS = ROOT / "bench" / "results" / "mcu_mix_panes.json"
ASK_ROUND_TRIP = 0.3  # a re-INVITE/flow-control round trip before a source sends the asked size


class PaneFeeder(threading.Thread):
    """A live source that behaves as our legs make it: follows the room's pane size.

    It offers 720p; once the room settles its pane (``Participant.pane``, mcu.pane_size) it
    answers "asked for WxH" after a round trip by sending the clip of that size (starting on
    a key frame), as a SIP peer does after an imageattr re-INVITE. Decoding follows
    ``Participant.decode_mode`` like SiteMedia drives a leg: hidden = not decoded (skipped
    frames counted), ``fast`` = a decoder opened with ``skip_loop_filter``; a change of mode
    or of size restarts decoding on a key frame, as the MCU asks for one.
    """

    def __init__(self, room: Room, pid: str, clips: dict[tuple[int, int], Clip], index: int, start: float,
                 stop: threading.Event, follow_size: bool, fast_decode: bool) -> None:
        super().__init__(daemon=True)
        self.room, self.pid, self.clips = room, pid, clips
        self.phase = (index * 0.37) % 1.0
        self.index = index
        self.start_at, self.stop_event = start, stop
        self.follow_size, self.fast_decode = follow_size, fast_decode
        self.decoded = 0
        self.skipped = 0

    def _clip_for(self, pane: tuple[int, int] | None) -> tuple[tuple[int, int], Clip]:
        sizes = sorted(self.clips, key=lambda s: s[0] * s[1])
        if self.follow_size and pane is not None:
            for size in sizes:  # the smallest clip at least as big as the pane
                if size[0] >= pane[0] and size[1] >= pane[1]:
                    return size, self.clips[size]
        return sizes[-1], self.clips[sizes[-1]]

    def _decoder(self, clip: Clip, mode: str) -> av.VideoCodecContext:
        ctx = av.CodecContext.create("h264", "r")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.extradata = clip.extradata
        ctx.thread_count = 1
        if mode == "fast":
            ctx.options = {"skip_loop_filter": "all"}
        return ctx

    def run(self) -> None:
        if DECODER_NICE:
            deprioritise_current_thread(DECODER_NICE)
        site = self.room.participants[self.pid]
        size, clip = self._clip_for(None)
        pos = clip.keyframes[self.index % len(clip.keyframes)]
        mode = "full"
        ctx = self._decoder(clip, mode)
        version_seen, switch_at = 0, None
        k = 0
        while not self.stop_event.is_set():
            due = self.start_at + (k + self.phase) / FPS
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            k += 1
            if site.pane_version != version_seen:  # the room asked for another size
                version_seen = site.pane_version
                switch_at = due + ASK_ROUND_TRIP
            if switch_at is not None and due >= switch_at:
                switch_at = None
                new_size, new_clip = self._clip_for(site.pane)
                if new_size != size:  # the source now sends the asked size, from a key frame
                    size, clip = new_size, new_clip
                    pos = next((i for i in clip.keyframes if i >= pos % len(clip.packets)), clip.keyframes[0])
                    ctx = self._decoder(clip, mode)
            want = site.decode_mode(size)
            if want == "fast" and not self.fast_decode:
                want = "full"
            if want != mode:
                mode = want
                if mode != "off":  # shown again / new decoder: the MCU asks for a key frame
                    pos = next((i for i in clip.keyframes if i >= pos % len(clip.packets)), clip.keyframes[0])
                    ctx = self._decoder(clip, mode)
            packet = clip.packets[pos % len(clip.packets)]
            pos += 1
            if mode == "off":
                self.skipped += 1
                continue
            for frame in ctx.decode(av.Packet(packet)):
                site.push_video(frame, arrival=due)
                self.decoded += 1


@dataclass
class PaneResult:
    label: str
    config: str
    n: int
    shown: int
    sources: str
    seconds: float
    output_fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    cpu_cores: float
    frames_decoded_per_s: float
    frames_skipped_per_s: float
    pane_requests: int
    load_before: float
    load_after: float


async def run_panes(label: str, config: str, n: int, clips: dict[tuple[int, int], Clip], seconds: float, warmup: float,
                    workers: int, follow_size: bool, fast_decode: bool) -> PaneResult:
    settings = RoomSettings(fps=FPS, encoder=EncoderSettings(fps=FPS, bitrate=BITRATE, preset=PRESET))
    room = Room(f"panes{n}", settings=settings)
    room.set_labels(False)
    for i in range(n):
        room.join(f"s{i:02d}", f"会场{i}")
    stop = threading.Event()
    start = time.monotonic() + 0.2
    feeders = [PaneFeeder(room, f"s{i:02d}", clips, i, start, stop, follow_size, fast_decode) for i in range(n)]
    for f in feeders:
        f.start()
    tap = BroadcastTap()
    room.subscribe_view(BROADCAST, tap)
    load_before = os.getloadavg()[0]
    async with MediaRunner(room, workers=workers) as runner:
        await asyncio.sleep(warmup + 0.2)
        decoded0, skipped0 = sum(f.decoded for f in feeders), sum(f.skipped for f in feeders)
        tap.measuring = True
        cpu0, t0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = cpu_seconds(), time.monotonic()
        tap.measuring = False
        requests = runner.stats.pane_requests
    stop.set()
    for f in feeders:
        f.join(timeout=5)
    shown = sum(1 for p in room.participants.values() if p.pane is not None)
    room.end()
    elapsed = t1 - t0
    lat = tap.latency_ms()
    sizes = sorted({f"{w}x{h}" for w, h in clips}) if follow_size else ["1280x720"]
    return PaneResult(
        label=label, config=config, n=n, shown=shown, sources="offer 1280x720" + (f", sent at {'/'.join(sizes)} when asked" if follow_size else ""),
        seconds=round(elapsed, 2), output_fps=round(len(tap.delivered) / elapsed, 2),
        latency_p50_ms=round(float(np.percentile(lat, 50)), 1), latency_p95_ms=round(float(np.percentile(lat, 95)), 1),
        cpu_cores=round((cpu1 - cpu0) / elapsed, 3),
        frames_decoded_per_s=round((sum(f.decoded for f in feeders) - decoded0) / elapsed, 1),
        frames_skipped_per_s=round((sum(f.skipped for f in feeders) - skipped0) / elapsed, 1),
        pane_requests=requests, load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2))


PANE_CONFIGS: tuple[tuple[str, str, int, bool, bool], ...] = (
    # (label, config, N, sources follow the pane size, skip_loop_filter for small panes)
    ("n25_before", "720p, every frame decoded fully (before)", 25, False, False),
    ("n25_skip_loop_filter", "720p, small panes decoded with skip_loop_filter", 25, False, True),
    ("n25_pane", "asked for pane size", 25, True, True),
    ("n49_pane", "asked for pane size, 25 shown", 49, True, True),
    ("n64_pane", "asked for pane size, 25 shown", 64, True, True),
)


def decode_cost(clip: Clip, frames: int = 250) -> dict[str, float]:
    """Thread CPU ms per 720p frame decoded, with and without skip_loop_filter (load-independent)."""
    out: dict[str, float] = {}
    for mode, options in (("full", {}), ("skip_loop_filter", {"skip_loop_filter": "all"})):
        ctx = av.CodecContext.create("h264", "r")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.extradata = clip.extradata
        ctx.thread_count = 1
        ctx.options = options
        t0 = time.thread_time()
        for k in range(frames):
            for _ in ctx.decode(av.Packet(clip.packets[k % len(clip.packets)])):
                pass
        out[f"{mode}_ms_per_frame"] = round((time.thread_time() - t0) / frames * 1000, 3)
    out["saving_percent"] = round(100 * (1 - out["skip_loop_filter_ms_per_frame"] / out["full_ms_per_frame"]), 1)
    return out


def main_panes(seconds: float, workers: int, only: list[int] | None) -> int:
    big = load_clip(make_inputs(10.0)[0])
    small = load_clip(make_inputs(10.0, PANE_SIZE, 150)[0])
    clips = {(1280, 720): big, (256, 144): small}
    decode = decode_cost(big)
    print(f"720p decode, thread CPU per frame: {decode}", flush=True)
    rows = []
    for label, config, n, follow, fast in PANE_CONFIGS:
        if only and n not in only:
            continue
        print(f"{config}, N={n} ...", flush=True)
        row = asyncio.run(run_panes(label, config, n, clips, seconds, warmup=2.0, workers=workers,
                                    follow_size=follow, fast_decode=fast))
        print(f"  {row}", flush=True)
        rows.append(row)
    result = {
        "benchmark": "mcu_mix --panes",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(), "note":
                    "shared machine: other agents were running builds and tests at the same time"},
        "settings": {"fps": FPS, "size": f"{WIDTH}x{HEIGHT}", "bitrate": BITRATE, "preset": PRESET,
                     "workers": workers, "seconds": seconds, "ask_round_trip_s": ASK_ROUND_TRIP,
                     "layout": "auto (5x5 at most: 25 shown, the rest hidden)",
                     "inputs": "ffmpeg testsrc2 + noise, H.264 720p25 1.5 Mbit/s and 256x144 150 kbit/s"},
        "rows": [asdict(r) for r in rows],
        "decode_720p": decode,
        "goals": {"n25_fps": 25, "p95_ms": 100},
    }
    PANES_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    PANES_RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print("\n| config | N | shown | fps | p50 ms | p95 ms | cores | decoded/s | skipped/s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.config} | {r.n} | {r.shown} | {r.output_fps:.1f} | {r.latency_p50_ms:.0f} | {r.latency_p95_ms:.0f} "
              f"| {r.cpu_cores:.2f} | {r.frames_decoded_per_s:.0f} | {r.frames_skipped_per_s:.0f} "
              f"| {r.load_before:.1f}-{r.load_after:.1f} |")
    print(f"\nwrote {PANES_RESULTS.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N = 4 and 25, 4 s each")
    parser.add_argument("--sizes", type=int, nargs="*", help="override the N values")
    parser.add_argument("--seconds", type=float, help="measured seconds per real-time run")
    parser.add_argument("--workers", type=int, default=2, help="compose/encode worker threads")
    parser.add_argument("--no-ffmpeg", action="store_true", help="skip the ffmpeg reference")
    parser.add_argument("--no-pane-sized", action="store_true",
                        help="skip the extra N=25 run with sources sent at pane size")
    parser.add_argument("--panes", action="store_true",
                        help="sources follow the pane size the room asks (N = 25, 49, 64): mcu_mix_panes.json")
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is required (Debian package ffmpeg)", file=sys.stderr)
        return 2
    if args.panes:
        return main_panes(args.seconds or 8.0, args.workers, args.sizes)
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
