"""Content encode cost: what one presenter's content costs the MCU (issue 18).

    python -m bench.content [--seconds 10]

Offline, in this process, on the real room, compositor and shared encoders (no network): for
``--seconds`` of conference time at the room's 25 fps,

* ``second_stream``: the content view (``mcu.room.CONTENT_VIEW``) composed at 1920x1080 and
  encoded by its one shared H.264 encoder every second tick (12.5 fps), for a slide-like source
  (a still page with a moving pointer) and a full-motion source (a moving gradient); this is
  paid once per conference, whatever the number of second-stream receivers;
* ``composite``: the broadcast view (1280x720, one shared encoder) with four 640x360 sites, in the
  people layout and in the content-plus-speakers layout with a 1920x1080 content source: the
  extra cost single-stream receivers' composite brings.

* ``encode_cost``: the content stream alone at 1920x1080 and 5 or 15 fps (a room of 10 or 30 fps,
  the content view encoded every 2nd tick), slide and full-motion sources, against a reference in
  the same run: the ffmpeg CLI's libx264 encoding the same frames at the same rate with the same
  settings (preset, zerolatency, baseline, GOP, VBV, bit rate, and the frame rate x264 is told:
  the room encoder's ``EncoderSettings.fps``, 25, whatever rate frames come at) from raw YUV. Ours includes placing
  the content picture in the view (the compositor) and the key-frame policy; ffmpeg's includes
  reading raw frames from a file.

CPU is the process's user+system time (libx264's own threads included) per second of conference
time (the reference: the ffmpeg child's); bit rates are what the encoders produced. The machine is
shared with other jobs (load average in the JSON): figures are comparative, in the same run.
Writes bench/results/content.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np

from mcu.clock import FakeClock
from mcu.content.layout import content_rects
from mcu.content.source import ContentSource
from mcu.encoder import ENCODER_BITRATE, EncoderSettings
from mcu.layout import Rect
from mcu.participant import VideoSample
from mcu.room import BROADCAST, CONTENT_EVERY, CONTENT_SIZE, CONTENT_VIEW, Room, RoomSettings
from mcu.text import TextRenderer

ROOT = Path(__file__).resolve().parents[1]
FPS = 25


class Feed:
    def __init__(self, layout: str) -> None:
        self.source = ContentSource()
        self.layout = layout

    def content_sample(self) -> VideoSample | None:
        return self.source.sample()

    def content_rects(self, width: int, height: int, sites: int) -> tuple[Rect, list[Rect]] | None:
        return None if self.layout == "people" else content_rects(self.layout, width, height, sites)


def slide(i: int) -> av.VideoFrame:
    """A white page with grey text lines and a red pointer that moves 8 px a frame."""
    rgb = np.full((1080, 1920, 3), 245, np.uint8)
    for row in range(12):
        rgb[150 + row * 70: 170 + row * 70, 200: 1500 - (row * 53) % 400] = 90
    x, y = 300 + (i * 8) % 1300, 500 + (i * 3) % 300
    rgb[y: y + 24, x: x + 24] = (220, 30, 30)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def motion(i: int) -> av.VideoFrame:
    """A full-frame moving gradient (a video clip played on the shared screen)."""
    xs = np.arange(1920, dtype=np.uint16)[None, :]
    ys = np.arange(1080, dtype=np.uint16)[:, None]
    y = ((xs + ys + i * 7) % 256).astype(np.uint8)
    u = np.full((540, 960), 128, np.uint8)
    v = ((np.arange(960)[None, :] + i * 3) % 256).astype(np.uint8).repeat(540, 0)
    return av.VideoFrame.from_ndarray(np.vstack([y, u.reshape(270, 1920), v.reshape(270, 1920)]), format="yuv420p")


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def run(view: str, layout: str, source: str, seconds: float, text: TextRenderer, fps: int = FPS) -> dict[str, Any]:
    clock = FakeClock()
    room = Room("bench", settings=RoomSettings(fps=fps), clock=clock, text=text)
    room.set_labels(False)
    feed = Feed(layout)
    room.content = feed
    for i in range(4):
        rgb = np.zeros((360, 640, 3), np.uint8)
        rgb[:, :] = (40 * i, 200 - 30 * i, 120)
        room.join(f"s{i}", f"会场{i}").push_video(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    feed.source.switch("s0")
    sent: list[int] = []
    width, height = (1920, 1080) if view == CONTENT_VIEW else (1280, 720)
    sub = room.subscribe_view(view, lambda p: sent.append(len(p.data)), width=width, height=height)
    frames = int(seconds * fps)
    pool = frame_pool(source)  # made before timing: the source's own cost is not ours
    for i in range(10):  # warm-up: encoder open, first key frame
        feed.source.push("s0", pool[i % len(pool)], clock.monotonic())
        room.video_tick()
        clock.advance(1 / fps)
    sent.clear()
    start = cpu()
    for i in range(frames):
        feed.source.push("s0", pool[i % len(pool)], clock.monotonic())
        for site in room.participants.values():  # sites keep sending (their frames stay fresh)
            if site.video is not None:
                site.push_video(site.video.frame)
        room.video_tick()
        clock.advance(1 / fps)
    used = cpu() - start
    sub.close()
    room.end()
    return {"view": view, "layout": layout, "source": source, "seconds": seconds, "room_fps": fps,
            "cpu_seconds_per_second": round(used / seconds, 3),
            "percent_of_core": round(100 * used / seconds, 1),
            "kbit_per_s": round(sum(sent) * 8 / seconds / 1000, 1), "packets": len(sent)}


_POOLS: dict[str, list[av.VideoFrame]] = {}
POOL_FRAMES = 50


def frame_pool(source: str) -> list[av.VideoFrame]:
    if source not in _POOLS:
        make = slide if source == "slide" else motion
        _POOLS[source] = [make(i) for i in range(POOL_FRAMES)]
    return _POOLS[source]


def ffmpeg_reference(source: str, fps: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """The ffmpeg CLI's libx264 encoding the same frames at `fps` with the content encoder's settings."""
    width, height = CONTENT_SIZE
    raw = workdir / f"{source}.yuv"
    if not raw.exists():
        with raw.open("wb") as out:
            for frame in frame_pool(source):
                for plane in frame.planes:  # tightly packed planes (1920 and 960 are 64-byte multiples)
                    out.write(bytes(plane))
    settings = EncoderSettings()
    bitrate = ENCODER_BITRATE[CONTENT_SIZE]
    kbps = bitrate // 1000
    gop = max(1, round(settings.keyframe_interval * fps))  # as the room's content encoder (told the content's rate)
    frames = int(seconds * fps)
    out_file = workdir / "ref.h264"
    command = [
        "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
        # x264 is told the frame rate the room's content encoder is told (Room.encoder_settings: the
        # content's own rate): the same rate control, the same frames, so the ratio is the implementation's.
        "-r", str(fps), "-stream_loop", "-1", "-i", str(raw), "-frames:v", str(frames),
        "-c:v", "libx264", "-preset", settings.preset, "-tune", "zerolatency", "-profile:v", "baseline",
        "-b:v", str(bitrate), "-g", str(gop),
        "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:vbv-maxrate={kbps}:"
                        f"vbv-bufsize={kbps // 2}",
        "-f", "h264", str(out_file)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"percent_of_core": round(100 * used / seconds, 1),
            "kbit_per_s": round(out_file.stat().st_size * 8 / seconds / 1000, 1), "frames": frames}


def encode_cost(seconds: float, text: TextRenderer) -> list[dict[str, Any]]:
    """The content stream at 5 and 15 fps, ours against the ffmpeg CLI on the same frames."""
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is missing (Debian package ffmpeg): it is the reference")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-content-") as tmp:
        for source in ("slide", "motion"):
            for content_fps in (5, 15):
                ours = run(CONTENT_VIEW, "content+speakers", source, seconds, text, fps=content_fps * CONTENT_EVERY)
                ref = ffmpeg_reference(source, content_fps, seconds, Path(tmp))
                rows.append({"source": source, "fps": content_fps, "ours_percent_of_core": ours["percent_of_core"],
                             "ours_kbit_per_s": ours["kbit_per_s"], "ours_frames": ours["packets"],
                             "ffmpeg_percent_of_core": ref["percent_of_core"], "ffmpeg_kbit_per_s": ref["kbit_per_s"],
                             "ratio_ours_over_ffmpeg": round(ours["percent_of_core"] / ref["percent_of_core"], 2)
                             if ref["percent_of_core"] else None})
        _POOLS.clear()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-encode-cost", action="store_true", help="only the second stream and composite")
    args = parser.parse_args()
    text = TextRenderer()
    load_before = os.getloadavg()[0]
    second = [run(CONTENT_VIEW, "content+speakers", source, args.seconds, text) for source in ("slide", "motion")]
    composite = [run(BROADCAST, layout, "slide", args.seconds, text) for layout in ("people", "content+speakers")]
    people, with_content = composite
    cost = [] if args.skip_encode_cost else encode_cost(args.seconds, text)
    result = {
        "benchmark": "content", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": load_before,
                    "load_after": os.getloadavg()[0]},
        "conditions": f"offline, {args.seconds:g} s of conference time at {FPS} fps; content view 1920x1080 "
                      "encoded every 2nd tick (12.5 fps); broadcast 1280x720 with 4 sites of 640x360; encode_cost: "
                      "the content view alone at 5 and 15 fps vs the ffmpeg CLI (libx264, same settings, same frames "
                      "from raw YUV) in the same run; the machine is shared with other jobs (NOT quiet): see load",
        "second_stream": second,
        "composite": composite,
        "composite_extra_percent_of_core": round(with_content["percent_of_core"] - people["percent_of_core"], 1),
        "encode_cost": cost,
    }
    out = ROOT / "bench" / "results" / "content.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"{'what':44} {'% of a core':>12} {'kbit/s':>9}")
    for row in second:
        print(f"{'second stream 1080p, ' + row['source']:44} {row['percent_of_core']:>12} {row['kbit_per_s']:>9}")
    for row in composite:
        print(f"{'broadcast 720p, ' + row['layout']:44} {row['percent_of_core']:>12} {row['kbit_per_s']:>9}")
    for c in cost:
        what = f"content 1080p {c['fps']} fps, {c['source']}"
        print(f"{what + ' (ours)':44} {c['ours_percent_of_core']:>12} {c['ours_kbit_per_s']:>9}")
        print(f"{what + ' (ffmpeg)':44} {c['ffmpeg_percent_of_core']:>12} {c['ffmpeg_kbit_per_s']:>9}"
              f"   ours/ffmpeg {c['ratio_ours_over_ffmpeg']}")


if __name__ == "__main__":
    main()
