"""Run the benchmarks several times and report each figure as median [min–max] over the runs.

    python -m bench                       # every benchmark, 3 runs each
    python -m bench --runs 5 sip_load     # some of them, more runs
    python -m bench --list                # what there is

Each benchmark is a module of this package that writes one JSON file to bench/results/. This
runner starts it as a subprocess `--runs` times, keeps every run's JSON, and writes
bench/results/summary.json: per benchmark the conditions, per figure every run's value and the
median, min and max. The README quotes the median with its min and max, never the best run.
The machine's load average is recorded before each run: a figure measured beside other jobs
says so.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Figure:
    """One number a benchmark reports: `path` into its JSON, e.g. ``video[n=25,source_size=1280x720].ours.output_fps``."""

    label: str
    path: str
    goal: str = ""


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    result_file: str
    conditions: str
    figures: tuple[Figure, ...] = field(default_factory=tuple)
    needs_root: bool = False


def _mix(n: int, size: str = "1280x720") -> str:
    return f"video[n={n},source_size={size}]"


BENCHES: tuple[Bench, ...] = (
    Bench("mcu_mix", ("--seconds", "10"), "mcu_mix.json",
          "real time: N H.264 720p25 sources composed into 720p25, 2 worker threads; offline: the same "
          "work as fast as possible; reference ffmpeg (decode+scale+xstack+libx264) in the same run",
          tuple(
              f for n in (4, 9, 16, 25) for f in (
                  Figure(f"N={n} output fps", f"{_mix(n)}.ours.output_fps", "25 at N=25"),
                  Figure(f"N={n} p95 latency ms", f"{_mix(n)}.ours.latency_p95_ms", "<= 100"),
                  Figure(f"N={n} CPU ours/ffmpeg, real time", f"{_mix(n)}.cpu_ratio_ours_over_ffmpeg", "<= 1.3"),
                  Figure(f"N={n} CPU ours/ffmpeg, offline", f"{_mix(n)}.cpu_ratio_offline", "<= 1.3"),
              )) + (
              Figure("N=25 pane-sized sources: output fps", f"{_mix(25, '256x144')}.ours.output_fps", "25"),
              Figure("N=25 pane-sized sources: p95 ms", f"{_mix(25, '256x144')}.ours.latency_p95_ms", "<= 100"),
              Figure("N=25 pane-sized: CPU ours/ffmpeg, real time",
                     f"{_mix(25, '256x144')}.cpu_ratio_ours_over_ffmpeg", "<= 1.3"),
              Figure("audio N-1 mix, 200 participants, % of a core",
                     "audio[participants=200].percent_of_one_core", "< 20"),
          )),
    Bench("recorder", ("--seconds", "20"), "recorder.json",
          "simulated 1080p 4 Mbit/s cameras into 6 s segments; reference ffmpeg segment muxer (stream copy)",
          (Figure("64 streams: CPU % of a core per stream", "rows[streams=64].cpu_per_stream_pct"),
           Figure("64 streams: ratio to ffmpeg", "rows[streams=64].cpu_ratio_vs_ffmpeg", "<= 1.3"),
           Figure("64 streams: frame loss %", "rows[streams=64].frame_loss_pct", "0"),
           Figure("64 streams: seek to first frame, median ms", "rows[streams=64].seek_first_frame_ms_median"))),
    Bench("sip_load", (), "sip_load.json",
          "SIPp INVITE/200/ACK/BYE from one source at stepped rates against our endpoint with its "
          "per-source INVITE limiter OFF (rate=1e6; the product's default limits one source to 10 INVITE/s); "
          "reference SIPp's own UAS in the same run",
          (Figure("calls/s with 0 failures (ours, limiter off)", "calls_per_second.ours"),
           Figure("calls/s with 0 failures (SIPp UAS)", "calls_per_second.sipp_uas_reference"),
           Figure("ratio ours/SIPp", "calls_per_second.ratio"),
           Figure("CPU per G.711 leg, % of a core", "cpu_per_participant.g711_leg_percent_of_core"))),
    Bench("sip_load --room", ("--room",), "sip_room_load.json",
          "MCU CPU per extra SIP participant in a mixing room (slope between two room sizes)",
          (Figure("% of a core per G.711 participant", "audio.percent_of_core_per_participant"),
           Figure("audio mixes delivered per site, large room", "audio.high.mixes_out_per_site",
                  "= frames in (about 50/s x seconds)"),
           Figure("% of a core per H.264 CIF participant", "video.percent_of_core_per_participant"))),
    Bench("h323_load", (), "h323_load.json",
          "our H.323 caller and callee in one process on loopback; reference: no fast start, separate "
          "H.245 connection, in the same run",
          (Figure("fast-start setups/s", "fast_start_tunnelled.setups_per_s"),
           Figure("reference setups/s", "reference_no_fast_start_separate_h245.setups_per_s"),
           Figure("ratio fast start / reference", "ratio_setups_per_s_fast_vs_reference"),
           Figure("CPU ms per setup (both ends)", "fast_start_tunnelled.cpu_ms_per_setup"),
           Figure("held calls: CPU ms per participant per s", "held_participants.cpu_ms_per_participant_per_s"))),
    Bench("webrtc_room", (), "webrtc_room.json",
          "aiortc clients on the same 2 cores as the MCU (only N=4 is a fair MCU figure)",
          (Figure("N=4 MCU cores per participant", "results[n=4].mcu_cpu_per_participant"),
           Figure("N=4 end-to-end p95 latency ms", "results[n=4].latency_p95_ms"))),
    Bench("dispatch_recommend", (), "dispatch_recommend.json",
          "10,000 units, 500 open incidents, in process; reference brute-force scan in the same run",
          (Figure("p99 ms, great circle", "modes.great_circle.p99_ms", "<= 20"),
           Figure("p99 ms, road graph (warm)", "modes.road_warm.p99_ms", "<= 20"),
           Figure("p99 ms, brute force", "modes.brute_force.p99_ms"))),
    Bench("resources", (), "resources.json",
          "10,000 resources (depots, shelters, teams, hospitals, experts) in the Yunfu boundaries, 1,000 queries "
          "'3 nearest with >= N of an item / a skill' by ETA, in process; brute-force reference in the same run",
          (Figure("nearest p99 ms, great circle", "modes.great_circle.p99_ms", "<= 20"),
           Figure("nearest p99 ms, road graph (warm)", "modes.road_warm.p99_ms", "<= 20"),
           Figure("nearest p99 ms, brute force", "modes.brute_force.p99_ms"))),
    Bench("plans", (), "plans.json",
          "a `commandcenter up` server on its embedded PostgreSQL; 20 activations of the demo flood plan at "
          "level II (4 agencies, conference with the county and township rooms); the 4 agency desks and the chair "
          "read over HTTP at once",
          (Figure("activation to desks + conference p95 s", "activation_to_desks_and_conference.p95_s", "<= 2"),)),
    Bench("dispatch", (), "dispatch.json",
          "through the service and the embedded PostgreSQL; 200 websocket consoles on the same machine",
          (Figure("recommendation p99 ms", "recommendation.p99_ms", "<= 20"),
           Figure("AVL updates/s persisted", "avl.updates_per_s", ">= 10,000"),
           Figure("fan-out p99 ms to the LAST console (the goal's metric)", "fanout.last_console_p99_ms",
                  "<= 100"),
           Figure("fan-out p99 ms over all deliveries", "fanout.p99_ms"))),
    Bench("audit_chain", (), "audit_chain.json",
          "embedded PostgreSQL; reference: a plain INSERT into the same columns with no chain trigger, same run",
          (Figure("chained write p50 ms", "chained.write_p50_ms"),
           Figure("plain INSERT write p50 ms", "plain.write_p50_ms"),
           Figure("chained rows/s, 20 concurrent writers", "chained.concurrent_rows_per_s"),
           Figure("plain rows/s, 20 concurrent writers", "plain.concurrent_rows_per_s"),
           Figure("audit verify rows/s", "verify_rows_per_s"))),
    Bench("cascade_failover", ("--runs", "5"), "cascade_failover.json",
          "real nodes in network namespaces, production thresholds (3 s RTP timeout, 5 s hold); each run "
          "of this benchmark is itself 5 failovers",
          (Figure("failover p50 s", "failover_p50_s", "<= 5"),
           Figure("failover max s", "failover_max_s", "<= 5")),
          needs_root=True),
)


def lookup(document: Any, path: str) -> float | None:
    """The number at `path` in a benchmark's JSON, or None where the run did not produce it.

    Path steps are keys separated by dots; `key[a=1,b=x]` picks the first list element whose fields
    match (compared as text)."""
    node = document
    for step in path.split("."):
        selector = ""
        if "[" in step:
            step, selector = step[:-1].split("[", 1)
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
        if selector:
            wanted = dict(part.split("=", 1) for part in selector.split(","))
            if not isinstance(node, list):
                return None
            found = [item for item in node if isinstance(item, dict)
                     and all(str(_field(item, k)) == v for k, v in wanted.items())]
            if not found:
                return None
            node = found[0]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def _field(item: dict[str, Any], key: str) -> Any:
    """A list element's field, looking one level down too (mcu_mix keeps `n` under `ours`)."""
    if key in item:
        return item[key]
    for value in item.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None


def summarize(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    if not got:
        return {"runs": values, "median": None, "min": None, "max": None}
    return {"runs": values, "median": round(statistics.median(got), 3), "min": round(min(got), 3),
            "max": round(max(got), 3)}


def run_bench(bench: Bench, runs: int) -> dict[str, Any]:
    module = "bench." + bench.name.split()[0]
    documents: list[dict[str, Any] | None] = []
    loads: list[float] = []
    failures: list[str] = []
    for index in range(runs):
        loads.append(round(os.getloadavg()[0], 2))
        print(f"[{bench.name}] run {index + 1}/{runs} (load {loads[-1]})", flush=True)
        result_path = RESULTS / bench.result_file
        result_path.unlink(missing_ok=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", module, *bench.args], cwd=ROOT)
        if done.returncode != 0 or not result_path.exists():
            failures.append(f"run {index + 1}: exit {done.returncode}")
            documents.append(None)
            continue
        document = json.loads(result_path.read_text())
        documents.append(document)
        print(f"[{bench.name}] run {index + 1} took {time.monotonic() - started:.0f} s", flush=True)
    kept = [d for d in documents if d is not None]
    if kept:  # beside the last run's file, one that keeps every run
        runs_file = RESULTS / bench.result_file.replace(".json", ".runs.json")
        runs_file.write_text(json.dumps(kept, indent=2) + "\n")
    return {
        "conditions": bench.conditions, "load_average_before_runs": loads, "failures": failures,
        "figures": {f.label: {"goal": f.goal, **summarize([lookup(d, f.path) if d else None for d in documents])}
                    for f in bench.figures},
    }


def print_table(summary: dict[str, Any]) -> None:
    print(f"\n{'benchmark / figure':64} {'median':>10} {'min':>10} {'max':>10}  goal")
    print("-" * 104)
    for name, bench in summary["benchmarks"].items():
        print(f"{name}  (load before runs: {bench['load_average_before_runs']})")
        for label, fig in bench["figures"].items():
            cells = [("-" if fig[k] is None else f"{fig[k]:.3g}") for k in ("median", "min", "max")]
            print(f"  {label:62} {cells[0]:>10} {cells[1]:>10} {cells[2]:>10}  {fig['goal']}")
        for failure in bench["failures"]:
            print(f"  FAILED {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="runs per benchmark (>= 3 for a quoted figure)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for bench in BENCHES:
            print(f"{bench.name:20} {bench.conditions}")
        return 0
    chosen = [b for b in BENCHES if not args.names or b.name in args.names or b.name.split()[0] in args.names]
    if not chosen:
        parser.error(f"no benchmark named {args.names}; try --list")
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary_path = RESULTS / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.setdefault("benchmarks", {})
    summary.update({"cpus": os.cpu_count(), "python": sys.version.split()[0]})
    for bench in chosen:
        if bench.needs_root and os.geteuid() != 0:
            print(f"[{bench.name}] needs root (network namespaces): not run", flush=True)
            continue
        entry = run_bench(bench, args.runs)
        entry["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry["runs"] = args.runs
        summary["benchmarks"][bench.name] = entry
        summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print_table({"benchmarks": {b.name: summary["benchmarks"][b.name] for b in chosen
                                if b.name in summary["benchmarks"]}})
    print(f"wrote {summary_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
