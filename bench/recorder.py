"""Recorder benchmark: N simulated 1080p H.264 cameras (~4 Mbit/s) through the real segmenter.

    python bench/recorder.py [--streams 8 16 32 64] [--seconds 20] [--no-reference]

Each simulated camera is a `CameraWorker` reading a pre-encoded 1080p H.264 file paced at
real time (as a live camera delivers it), cutting 6 s fragmented-MP4 segments on key
frames, hashing, fsync+rename into a `DirectoryStore`, and appending a segment leaf to a
Merkle log. Reported per N:
  * CPU per stream (% of one core), from the process's CPU time;
  * frame loss: frames not written + frames handled > 1 s behind real time (a live
    camera's socket buffer would have overflowed);
  * write throughput (MB/s committed);
  * seek-to-first-frame: open a random segment and decode its first frame (PyAV);
  * export + verify time per GB (bundle of everything recorded, then `verify_export`).
Reference, in the same run: ffmpeg's own segment muxer (`ffmpeg -re -i clip -c copy -f segment`,
one process per stream, same fMP4 flags), CPU per stream; the table shows ours/ffmpeg as a ratio.
RTSP/RTP depacketisation is not included on either side (file sources).
Writes bench/results/recorder.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recorder.export import ExportSegment, export_bundle  # noqa: E402
from recorder.ingest import CameraConfig, CameraWorker, CommittedSegment  # noqa: E402
from recorder.leaves import SegmentLeaf  # noqa: E402
from recorder.segmenter import MOVFLAGS, CutPolicy  # noqa: E402
from recorder.signing import KeyStore  # noqa: E402
from recorder.store import DirectoryStore  # noqa: E402
from recorder.transparency_log import MemoryLogStorage, TransparencyLog  # noqa: E402
from recorder.verify import verify_export  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "recorder.json"
FPS = 25
GOP_S = 2


def make_clip(path: Path, seconds: int, kbps: int = 4000) -> None:
    """A 1080p H.264 clip at ~4 Mbit/s, key frame every 2 s (libx264, moving noise so bitrate is real)."""
    out = av.open(str(path), "w", format="mp4")
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
    stream.codec_context.time_base = Fraction(1, FPS)
    stream.bit_rate = kbps * 1000
    stream.options = {"preset": "ultrafast", "g": str(FPS * GOP_S), "keyint_min": str(FPS * GOP_S),
                      "sc_threshold": "0", "x264-params": f"vbv-maxrate={kbps}:vbv-bufsize={kbps}:nal-hrd=cbr"}
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (1080, 1920), dtype=np.uint8)
    for i in range(seconds * FPS):
        y = np.roll(base, i * 7, axis=1)
        frame = av.VideoFrame.from_ndarray(np.stack([y, np.roll(y, 5, 0), np.roll(y, 9, 1)], -1), format="rgb24")
        frame.pts = i
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)
    out.close()


def cpu_seconds(children: bool = False) -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_ours(clip: Path, n: int, seconds: float, work: Path) -> dict[str, object]:
    store = DirectoryStore(work / "store")
    segments: list[CommittedSegment] = []
    lock = threading.Lock()

    def on_segment(seg: CommittedSegment) -> None:
        with lock:
            segments.append(seg)

    workers = [CameraWorker(CameraConfig(f"sim{i:02d}", str(clip)), store, on_segment, lambda g: None,
                            policy=CutPolicy(6.0), realtime=True) for i in range(n)]
    cpu0, t0 = cpu_seconds(), time.monotonic()
    for w in workers:
        w.start()
    time.sleep(seconds)
    for w in workers:
        w._stop.set()  # stop all at once, then join
    for w in workers:
        w.stop()
    wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    fed = sum(w.health.video_frames for w in workers)
    written = sum(s.video_frames for s in segments)
    late = sum(w.late_frames for w in workers)
    total_bytes = sum(s.size for s in segments)
    # The log: one leaf per segment, as the service does (timed separately: it is tiny).
    tlog = TransparencyLog(MemoryLogStorage(), KeyStore(work / "keys"))
    asyncio.run(tlog.open())
    leaf_t0 = time.perf_counter()
    indexes = [asyncio.run(tlog.append(SegmentLeaf(s.camera, s.start_ms, s.end_ms, s.sha256, s.size, "bench", s.key)))
               for s in segments]
    leaf_ms = (time.perf_counter() - leaf_t0) * 1000 / max(1, len(segments))
    # Seek to first frame: open a random segment, decode its first video frame.
    rng = random.Random(n)
    seeks = []
    for s in rng.sample(segments, min(20, len(segments))):
        path = store.local_path(s.key)
        st = time.perf_counter()
        with av.open(str(path)) as c:
            next(c.decode(video=0))
        seeks.append((time.perf_counter() - st) * 1000)
    # Export everything, then verify offline.
    export_dir = work / "bundle"
    et0 = time.perf_counter()
    result = asyncio.run(export_bundle(
        tlog, store, export_dir, user="bench", reason="benchmark", cameras=[f"sim{i:02d}" for i in range(n)],
        start_ms=min(s.start_ms for s in segments), end_ms=max(s.end_ms for s in segments),
        segments=[ExportSegment(i, s.key) for i, s in zip(indexes, segments, strict=True)]))
    export_s = time.perf_counter() - et0
    vt0 = time.perf_counter()
    report = verify_export(export_dir)
    verify_s = time.perf_counter() - vt0
    assert report.ok, report.format()
    gb = result.bytes / 1e9
    return {
        "streams": n, "seconds": round(wall, 2), "segments": len(segments),
        "cpu_per_stream_pct": round(100 * cpu / wall / n, 2),
        "frames_fed": fed, "frames_written": written, "frames_late": late,
        "frame_loss_pct": round(100 * ((fed - written) + late) / max(1, fed), 3),
        "max_lag_s": round(max(w.max_lag_s for w in workers), 3),
        "write_mb_s": round(total_bytes / wall / 1e6, 2),
        "stream_mbit_s": round(total_bytes * 8 / wall / n / 1e6, 2),
        "leaf_append_ms": round(leaf_ms, 3),
        "seek_first_frame_ms_median": round(sorted(seeks)[len(seeks) // 2], 1),
        "seek_first_frame_ms_max": round(max(seeks), 1),
        "export_s_per_gb": round(export_s / gb, 2), "verify_s_per_gb": round(verify_s / gb, 2),
        "export_gb": round(gb, 3),
    }


def run_ffmpeg(clip: Path, n: int, seconds: float, work: Path) -> dict[str, object]:
    """Reference: ffmpeg's segment muxer, stream copy, same fMP4 flags, one process per stream."""
    cpu0, t0 = cpu_seconds(children=True), time.monotonic()
    procs = []
    for i in range(n):
        out = work / f"ff{i:02d}"
        out.mkdir(parents=True)
        procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(clip), "-t", str(seconds), "-c", "copy",
             "-f", "segment", "-segment_time", "6", "-segment_format", "mp4", "-reset_timestamps", "1",
             "-segment_format_options", f"movflags={MOVFLAGS}", str(out / "%05d.mp4")]))
    for p in procs:
        p.wait()
    wall, cpu = time.monotonic() - t0, cpu_seconds(children=True) - cpu0
    return {"streams": n, "cpu_per_stream_pct": round(100 * cpu / wall / n, 2), "seconds": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "cc-bench-recorder"
    cache.mkdir(exist_ok=True)
    clip_s = int(args.seconds) + 4
    clip = cache / f"clip1080p_{clip_s}s.mp4"
    if not clip.exists():
        print(f"encoding {clip_s} s 1080p test clip ...", flush=True)
        make_clip(clip, clip_s)
    with av.open(str(clip)) as c:
        kbps = os.path.getsize(clip) * 8 / ((c.duration or 1) / 1e6) / 1000
    rows = []
    for n in args.streams:
        work = Path(tempfile.mkdtemp(prefix=f"cc-bench-rec-{n}-"))
        try:
            row = run_ours(clip, n, args.seconds, work)
            if not args.no_reference and shutil.which("ffmpeg"):
                ref = run_ffmpeg(clip, n, args.seconds, work / "ref")
                row["ffmpeg_cpu_per_stream_pct"] = ref["cpu_per_stream_pct"]
                ffcpu = float(ref["cpu_per_stream_pct"])  # type: ignore[arg-type]
                row["cpu_ratio_vs_ffmpeg"] = round(float(row["cpu_per_stream_pct"]) / ffcpu, 2) if ffcpu else None  # type: ignore[arg-type]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "benchmark": "recorder", "clip_kbps": round(kbps), "clip": "1920x1080 H.264 25 fps GOP 2 s",
        "segment_s": 6, "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "av": av.__version__, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
        "goal": "64 streams on 2 cores with no frame loss",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(result: dict[str, object]) -> str:
    head = ("| N | CPU/stream % | ffmpeg CPU/stream % | ratio | frame loss % | max lag s | write MB/s "
            "| seek→1st frame ms (median/max) | export s/GB | verify s/GB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {r['streams']} | {r['cpu_per_stream_pct']} | {r.get('ffmpeg_cpu_per_stream_pct', '-')} "
            f"| {r.get('cpu_ratio_vs_ffmpeg', '-')} | {r['frame_loss_pct']} | {r['max_lag_s']} | {r['write_mb_s']} "
            f"| {r['seek_first_frame_ms_median']} / {r['seek_first_frame_ms_max']} | {r['export_s_per_gb']} "
            f"| {r['verify_s_per_gb']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
