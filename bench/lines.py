"""Video on emulated leased lines: each line condition x peer, baseline and with send pacing.

    python -m bench.lines [--runs 3] [--seconds 20] [--conditions 768k_20ms,...] [--peers sip,chromium,h323,cascade]
                          [--out bench/results/lines.json]

``--peers`` other than ``sip`` (Chromium as a WebRTC site, H323Plus, a cascade link between two node
processes) are described in bench/lines_peers.py; they run main's defaults only (mode ``product``).
The default conditions are the issue's six (the ``mobile_*`` profile of issue 20 only when named).

Needs root (network namespaces, tc, iptables; see tests/linesim/line.py). For every condition a
real SIP room system (baresip, H.264, sending a busy 640x360 picture) sits behind the line in its
own namespace and dials the MCU's conference (720p composite, 25 fps, the SIP default). What
reaches the site is captured behind the line (an NFLOG rule after the line's loss stage, read by
tshark; bench/line_capture.py, the H.323 rows use it too), so every figure is what the site really
got (frames judged by bench/video_frames.py):

* video sent: what the MCU's leg sent (RTP bytes), kbit/s over the call;
* video delivered: RTP bytes that reached the site, kbit/s;
* audio / video loss: what baresip counted lost (its ``rtp_stats``); the capture's own count is kept
  beside it (``*_loss_capture_pct``: it also counts packets the capture missed on a loaded machine);
* intact frames/s after 2 s: frames that arrived whole AND whose reference chain back to a key
  frame arrived whole (what a decoder can show without artefacts), from 2 s after the first
  picture to the end of the call;
* freezes > 1 s: gaps between intact frames longer than 1 s (and the longest);
* first picture: seconds from the site joining to its first intact key frame.

Modes: ``baseline`` is the leg without pacing and with the default SIP line (``lines.sip`` of the
plan, no ``line_kbps`` for this site): the leg as it was before issue 16, except that the budget
from the peer's signals still picks the encoder tier. ``product`` is main's default for a planned
site: the site's ``line_kbps`` is the line's configured rate (as a site plan would say; on the line
that drops, the rate before the drop), video paced to the budget, which follows b=, TMMBR, REMB and
the receiver reports' loss, and picks the shared encoder tier.

The machine is shared: every run records the load average at its start (``load_average``).

Writes bench/results/lines.json (median [min-max] of ``--runs`` runs per row) and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench.lines_peers as lines_peers
from bench.line_capture import capture_behind, tshark_rows, video_rows
from bench.lines_peers import cascade_call, chromium_call, h323_call
from bench.video_frames import analyse_video
from config.settings import Settings
from config.site_plan import SitePlan
from core.db import EmbeddedPostgres
from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.room import RoomSettings
from sip_gateway.rtp.media_description import MediaPolicy
from tests.linesim.line import PROFILES, open_line
from tests.linesim.peers import LineBaresip, busy_video, start_line_bridge

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "lines.json"
DEMO = "80000001"
FIGURES = ("video_sent_kbps", "video_delivered_kbps", "audio_loss_pct", "video_loss_pct", "intact_fps_after_2s",
           "freezes_over_1s", "longest_freeze_s", "first_picture_s")


def baresip_loss(text: str) -> dict[str, float]:
    """Receive-side loss % per stream from baresip's ``rtp_stats`` table at hang-up."""
    out: dict[str, float] = {}
    kind = ""
    packets = 0
    for raw in text.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", raw).strip()
        if m := re.match(r"(audio|video)\s+Transmit:\s+Receive:", line):
            kind = m.group(1)
        elif kind and (m := re.match(r"packets:\s+(\d+)\s+(\d+)", line)):
            packets = int(m.group(2))
        elif kind and (m := re.match(r"lost:\s+(-?\d+)\s+(-?\d+)", line)):
            lost = max(0, int(m.group(2)))
            out[kind] = round(100 * lost / max(1, packets + lost), 2)
            kind = ""
    return out


@contextlib.contextmanager
def stated_line(plan: SitePlan, kbps: int) -> Iterator[None]:
    """Every SIP site's line as if its plan entry named ``line_kbps = kbps``: a stated line, so the site
    starts at the tier that rate fits (an unstated one starts low; mcu.legs.site_rate)."""
    cls = type(plan)
    saved = cls.__dict__["configured_line_kbps"]
    cls.configured_line_kbps = lambda *_a, **_k: kbps  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.configured_line_kbps = saved  # type: ignore[method-assign]


async def one_call(services: CoreServices, condition: str, mode: str, seed: int, seconds: float,
                   video: Path, work: Path) -> dict[str, Any]:
    conferences = ConferenceService(services, room_settings=RoomSettings())
    await conferences.start()
    try:
        with open_line(condition, seed=seed) as line, contextlib.ExitStack() as stack:
            pcap = work / f"{condition}-{mode}-{seed}.pcapng"
            async with capture_behind(line, pcap):
                if mode == "product" and line.rate_kbps:
                    # the site plan's line_kbps for this room (before a drop: the rate then), read at the call's start
                    stack.enter_context(stated_line(services.plan, line.rate_kbps))
                bridge = await start_line_bridge(services, conferences, line,
                                                 MediaPolicy(h264_modes=(1, 0), video_codecs=("H264",)),
                                                 pace_video=mode == "product")
                peer = LineBaresip(work / f"peer-{condition}-{mode}-{seed}", line=line, video_file=video)
                conf = conferences.running(DEMO)
                assert conf is not None
                try:
                    await peer.start(f"/dial sip:{DEMO}@{line.mcu_address}:{bridge.endpoint.config.port}")
                    async with asyncio.timeout(30):
                        while not any(s.status == "joined" for s in conf.sites.values()):  # noqa: ASYNC110 (polled state)
                            await asyncio.sleep(0.05)
                    joined_at = time.time()
                    await asyncio.sleep(seconds)
                    ended_at = time.time()
                    leg = next(iter(bridge.sites.values())).leg
                    assert leg.audio is not None and leg.video is not None
                    assert leg.audio.session is not None and leg.video.session is not None
                    ports = {"audio": leg.audio.port, "video": leg.video.port}
                    sent = {kind: (ch.session.send.packets, ch.session.send.octets + 12 * ch.session.send.packets)
                            for kind, ch in (("audio", leg.audio), ("video", leg.video)) if ch.session is not None}
                    pacer = leg.pacer.counters
                    site = next(iter(bridge.sites.values()))
                    budget = site.rate.statistics() if site.rate is not None else {}
                    tbf = line.tbf_drops()
                finally:
                    await bridge.stop()
                    await peer.stop()
    finally:
        await conferences.stop()
    audio_rows = await tshark_rows(pcap, ports["audio"])
    received = await video_rows(pcap, ports["video"])
    peer_loss = baresip_loss(peer.text)
    result: dict[str, Any] = {
        "video_sent_kbps": round(sent["video"][1] * 8 / 1000 / (ended_at - joined_at), 1),
        "audio_loss_capture_pct": round(100 * max(0, sent["audio"][0] - len({r[1] for r in audio_rows}))
                                        / max(1, sent["audio"][0]), 2),
        **analyse_video(received, joined_at, ended_at, sent["video"][0]),
        "audio_loss_pct": peer_loss.get("audio", -1.0),  # what baresip counted (rtp_stats); -1: not printed
        "video_loss_pct": peer_loss.get("video", -1.0),
        "router_queue_drops_down": tbf["down"],
        "pacer_frames_dropped": pacer.frames_dropped,
        "peer_decoded_video": "video: receiving with resolution" in peer.text,
        "budget_video_kbps_at_end": budget.get("video_kbps", -1),
    }
    pcap.unlink(missing_ok=True)
    return result


PEER_CALLS = {"chromium": ("webrtc-chromium", chromium_call), "h323": ("h323-h323plus", h323_call),
              "cascade": ("cascade-link", cascade_call)}


async def other_peer_rows(services: CoreServices, peer: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Rows for Chromium or H323Plus (bench/lines_peers.py): main's defaults only ("product")."""
    name, call = PEER_CALLS[peer]
    rows = []
    for condition in args.conditions:
        runs: list[dict[str, Any]] = []
        for seed in range(1, args.runs + 1):
            load = os.getloadavg()[0]
            try:
                result = await call(services, condition, seed, args.seconds, work)
            except Exception as exc:  # a failed run is reported, not hidden
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["load_average"] = round(load, 2)
            runs.append(result)
            print(condition, peer, seed, json.dumps(result, ensure_ascii=False), flush=True)
        good = [r for r in runs if "error" not in r]
        row: dict[str, Any] = {"condition": condition, "peer": name, "mode": "product",
                               "line": PROFILES[condition].describe(), "runs": runs, "failed_runs": len(runs) - len(good)}
        numeric = {k for r in good for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for figure in sorted(numeric - {"load_average"}):
            values = [float(r[figure]) for r in good if isinstance(r.get(figure), int | float)]
            if values:
                row[figure] = summarize(values)
        for figure in sorted({k for r in good for k, v in r.items() if isinstance(v, str)}):
            row[figure] = good[0][figure]  # "not measured (...)": said in the row, not invented
        rows.append(row)
    return rows


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="linesim-bench-"))
    pg = EmbeddedPostgres(work / "pg")
    url = pg.start()
    lines_peers.PG_URL = url
    services = await CoreServices.start(Settings(var_dir=work / "var", database={"url": url}))
    video = busy_video(work / "busy.mp4", seconds=int(args.seconds) + 60)
    rows: list[dict[str, Any]] = []
    try:
        for peer in args.peers:
            if peer != "sip":
                rows += await other_peer_rows(services, peer, args, work)
        for condition in args.conditions if "sip" in args.peers else ():
            for mode in args.modes:
                if mode == "product" and PROFILES[condition].rate_kbps is None:
                    continue  # an unlimited line: no budget to pace to
                runs: list[dict[str, Any]] = []
                for seed in range(1, args.runs + 1):
                    load = os.getloadavg()[0]
                    try:
                        result = await one_call(services, condition, mode, seed, args.seconds, video, work)
                    except Exception as exc:  # a failed run is reported, not hidden
                        result = {"error": f"{type(exc).__name__}: {exc}"}
                    result["load_average"] = round(load, 2)
                    runs.append(result)
                    print(condition, mode, seed, json.dumps(result), flush=True)
                good = [r for r in runs if "error" not in r]
                row: dict[str, Any] = {"condition": condition, "peer": "sip-baresip", "mode": mode,
                                       "line": PROFILES[condition].describe(), "runs": runs,
                                       "failed_runs": len(runs) - len(good)}
                for figure in (*FIGURES, "router_queue_drops_down", "pacer_frames_dropped", "audio_loss_capture_pct",
                               "video_loss_capture_pct"):
                    values = [float(r[figure]) for r in good if figure in r]
                    if values:
                        row[figure] = summarize(values)
                rows.append(row)
    finally:
        await services.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"seconds": args.seconds, "runs": args.runs, "rows": rows,
            "conditions": {c: PROFILES[c].describe() for c in args.conditions},
            "peer": "baresip 1.0 (H.264, busy 640x360 15 fps source), MCU 720p25 composite, SIP default",
            "note": "baseline = no pacing, default SIP line; product = main's defaults with the site's line_kbps "
                    "set to the line rate (budget from signals, encoder tiers, pacing). The machine was NOT quiet: "
                    "other engineers' jobs ran beside it (see load_average per run).",
            "load_average_range": [min((r.get("load_average", 0) for row in rows for r in row["runs"]), default=0),
                                   max((r.get("load_average", 0) for row in rows for r in row["runs"]), default=0)]}


def fmt(figure: dict[str, float] | str | None) -> str:
    if isinstance(figure, str):
        return "not measured"
    if not figure:
        return "-"
    return f"{figure['median']:g} [{figure['min']:g}-{figure['max']:g}]"


def table(result: dict[str, Any]) -> str:
    head = ("| line | peer | mode | video sent → delivered kbit/s | audio loss % | video loss % | intact fps after 2 s "
            "| freezes > 1 s (longest s) | first picture s | router-queue drops | load |")
    lines = [head, "|" + "---|" * 11]
    for row in result["rows"]:
        intact = fmt(row.get("intact_fps_after_2s"))
        if "decoded_fps_average" in row:
            intact += f" (decoded avg {fmt(row.get('decoded_fps_average'))})"
        loads = [r.get("load_average", 0) for r in row["runs"]]
        lines.append(
            f"| {row['condition']} | {row.get('peer', 'sip-baresip')} | {row['mode']} | {fmt(row.get('video_sent_kbps'))} → "
            f"{fmt(row.get('video_delivered_kbps'))} | {fmt(row.get('audio_loss_pct'))} | "
            f"{fmt(row.get('video_loss_pct'))} | {intact} | "
            f"{fmt(row.get('freezes_over_1s'))} ({fmt(row.get('longest_freeze_s'))}) | "
            f"{fmt(row.get('first_picture_s'))} | {fmt(row.get('router_queue_drops_down'))} | "
            f"{min(loads, default=0):g}-{max(loads, default=0):g} |"
            + (f" {row['failed_runs']} run(s) failed" if row["failed_runs"] else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--conditions", default=",".join(p for p in PROFILES if not p.startswith("mobile")))
    parser.add_argument("--peers", default="sip", help="sip, chromium, h323 (comma-separated)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--modes", default="baseline,product", help="SIP rows: baseline, product (comma-separated)")
    args = parser.parse_args()
    args.conditions = [c for c in args.conditions.split(",") if c]
    args.peers = [p for p in args.peers.split(",") if p]
    args.modes = [m for m in args.modes.split(",") if m]
    if set(args.peers) - {"sip", *PEER_CALLS}:
        parser.error(f"unknown peers {args.peers}; known: sip, {', '.join(PEER_CALLS)}")
    unknown = [c for c in args.conditions if c not in PROFILES]
    if unknown:
        parser.error(f"unknown conditions {unknown}; known: {', '.join(PROFILES)}")
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{', '.join(args.peers)} behind emulated lines, {args.seconds:g} s calls, median [min-max] of {args.runs} runs")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
