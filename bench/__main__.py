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
    Bench("mcu_mix --panes", ("--panes", "--seconds", "8"), "mcu_mix_panes.json",
          "real time, one process: N sources offering H.264 720p25 that follow the pane size the room asks "
          "(256x144 clip after a 0.3 s round trip, from a key frame), hidden ones not decoded, small panes with "
          "skip_loop_filter; composed into 720p25 (auto layout, 5x5 at most), 2 worker threads",
          tuple(f for label, what in (("n25_before", "N=25 720p decoded fully"),
                                      ("n25_skip_loop_filter", "N=25 720p skip_loop_filter"),
                                      ("n25_pane", "N=25 asked for pane size"),
                                      ("n49_pane", "N=49 (25 shown) asked for pane size"),
                                      ("n64_pane", "N=64 (25 shown) asked for pane size"))
                for f in (Figure(f"{what}: output fps", f"rows[label={label}].output_fps", "25"),
                          Figure(f"{what}: p95 ms", f"rows[label={label}].latency_p95_ms", "<= 100"),
                          Figure(f"{what}: CPU cores", f"rows[label={label}].cpu_cores"))) + (
              Figure("720p decode ms/frame (thread CPU)", "decode_720p.full_ms_per_frame"),
              Figure("720p decode ms/frame with skip_loop_filter", "decode_720p.skip_loop_filter_ms_per_frame"),
              Figure("skip_loop_filter decode saving %", "decode_720p.saving_percent"))),
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
    Bench("monitoring", ("--readings", "30000"), "monitoring.json",
          "1,000 synthetic river gauges with two thresholds each; mosquitto + embedded PostgreSQL on this host; the "
          "monitoring service and its MQTT ingest in one process, paho-mqtt publishers (QoS 1; 4 processes for one "
          "reading per message) in others; clock from the go to the last reading stored and evaluated; reference: "
          "raw asyncpg COPY of as many rows, same run",
          (Figure("MQTT → stored + evaluated, readings/s, 1 reading per message", "single.readings_per_s", ">= 5,000"),
           Figure("MQTT → stored + evaluated, readings/s, 100 readings per message", "batch.readings_per_s", ">= 5,000"),
           Figure("1 reading per message ÷ goal 5,000/s", "single.ratio_to_goal", ">= 1"),
           Figure("reference: raw asyncpg COPY rows/s", "reference_copy.rows_per_s"),
           Figure("1 reading per message ÷ raw COPY", "single.ratio_to_raw_copy"),
           Figure("100 per message ÷ raw COPY", "batch.ratio_to_raw_copy"),
           Figure("ingest process CPU µs per reading, 1 per message", "single.ingest_process_cpu_us_per_reading"),
           Figure("ingest's own CPU µs per message (no broker)", "service_only.cpu_us_per_message"),
           Figure("readings lost (single)", "single.lost", "0"),
           Figure("threshold crossing → alarm event p95 ms", "crossing_to_alarm.p95_ms"))),
    Bench("warnings", (), "warnings.json",
          "20 samples each, on the shared 2-core machine beside other jobs (load recorded per part): crossing → "
          "console: a `commandcenter up` server (embedded PostgreSQL, managed mosquitto, demo plan) and a "
          "dispatcher's /ws/events websocket; approval → SMS: real Kannel + fakesmsc, 2 people on duty, reference: "
          "the SMS service's own send of the same text, same run; approval → banner: a baresip room called into the "
          "demo conference over SIP, the banner read as pixels of the conference composite",
          (Figure("threshold crossing → alarm on the console websocket p95 ms", "crossing_to_console.p95_ms"),
           Figure("approval → SMS at the operator (fakesmsc) p95 ms", "approval_to_sms.approval_to_operator.p95_ms"),
           Figure("reference: plain SMS send → operator p95 ms",
                  "approval_to_sms.reference_sms_send_to_operator.p95_ms"),
           Figure("approval → SMS ÷ plain SMS, p95", "approval_to_sms.ratio_p95_to_reference"),
           Figure("approval → banner in the room's conference video p95 ms", "approval_to_banner.p95_ms"))),
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
    Bench("bfcp", (), "bfcp.json",
          "pure floor control server over a content token; TCP and UDP listener and client in one process on "
          "127.0.0.1",
          (Figure("BFCP core: CPU per message, us", "core.us_per_message", "negligible"),
           Figure("BFCP over TCP: round trips/s", "tcp.round_trips_per_s"),
           Figure("BFCP over TCP: CPU per round trip (both ends), us", "tcp.cpu_us_per_round_trip"),
           Figure("BFCP over UDP: round trips/s", "udp.round_trips_per_s"),
           Figure("BFCP over UDP: CPU per round trip (both ends), us", "udp.cpu_us_per_round_trip"))),
    Bench("audit_chain", (), "audit_chain.json",
          "embedded PostgreSQL; reference: a plain INSERT into the same columns with no chain trigger, same run",
          (Figure("chained write p50 ms", "chained.write_p50_ms"),
           Figure("plain INSERT write p50 ms", "plain.write_p50_ms"),
           Figure("chained rows/s, 20 concurrent writers", "chained.concurrent_rows_per_s"),
           Figure("plain rows/s, 20 concurrent writers", "plain.concurrent_rows_per_s"),
           Figure("audit verify rows/s", "verify_rows_per_s"))),
    Bench("sms", (), "sms.json",
          "embedded PostgreSQL, real Kannel (bearerbox + smsbox) and fakesmsc on 127.0.0.1; reference: the "
          "configured throughput limit (50 parts/s)",
          (Figure("SMS delivered/s end to end", "delivered_per_s"),
           Figure("ratio to the configured limit", "ratio_to_limit", "≈ 1.0, never above"))),
    Bench("noderpc", (), "noderpc.json",
          "embedded PostgreSQL, two nodes in one process (own pools and LISTEN connections); reference: a "
          "SELECT 1 round trip on the same pool, same run",
          (Figure("node RPC call p50 ms", "call.p50_ms"),
           Figure("node RPC call p99 ms", "call.p99_ms"),
           Figure("call_owner (pin lookup + call) p50 ms", "call_owner.p50_ms"),
           Figure("SELECT 1 p50 ms", "select1.p50_ms"),
           Figure("calls/s, 20 concurrent callers", "concurrent_calls_per_s"))),
    Bench("cascade_failover", ("--runs", "5"), "cascade_failover.json",
          "real nodes in network namespaces, production thresholds (3 s RTP timeout, 5 s hold); each run "
          "of this benchmark is itself 5 failovers",
          (Figure("failover p50 s", "failover_p50_s", "<= 5"),
           Figure("failover max s", "failover_max_s", "<= 5")),
          needs_root=True),
    # ha (issue 17): database failover, web failover, MCU takeover, restore time (docs/ha.md)
    Bench("ha", ("--runs", "5"), "ha.json",
          "two-node Patroni/PostgreSQL 15 cluster on 127.0.0.1 with the deploy/ha settings (synchronous mode, "
          "ttl 10 s); the primary's machine SIGKILLed under two writers; two web nodes behind HAProxy, one "
          "SIGKILLed; two desk nodes behind Kamailio, the active one SIGKILLed (the scenario of desk_takeover); "
          "city, standby city, county and bridge MCU nodes in namespaces, the city SIGKILLed; a "
          "pgBackRest restore of a 256 MB-padded database; each run of this benchmark is itself 5 of each",
          (Figure("write outage p50 s", "write_outage_p50_s", "<= 15"),
           Figure("write outage max s", "write_outage_max_s", "<= 15"),
           Figure("acknowledged writes lost", "acknowledged_lost_total", "0"),
           Figure("web failover: kill -> next 200 s (median)", "web_failover.first_ok_after_kill_s.median"),
           Figure("desk takeover: active killed -> new call offered on the standby s (median)",
                  "desk_takeover.offered_s.median", "<= 10"),
           Figure("desk takeover: active killed -> its callers on the callback list s (median)",
                  "desk_takeover.listed_s.median"),
           Figure("MCU takeover: city killed -> township at standby s (median)",
                  "mcu_takeover.takeover_s.median", "<= 10"),
           Figure("MCU takeover s (max)", "mcu_takeover.takeover_s.max", "<= 10"),
           Figure("restore s per GB (median)", "restore.s_per_gb.median")),
          needs_root=True),
    # deskha (issue 17): the desk part of high availability (docs/nodes.md, "Two live desk nodes")
    Bench("desk_takeover", ("--runs", "3"), "desk_takeover.json",
          "embedded PostgreSQL, two real --role web desk nodes (heartbeat 0.5 s, dead after 3 s), Kamailio "
          "dispatcher in front (OPTIONS every 1 s); the active desk SIGKILLed with two SIPp callers waiting; "
          "each run of this benchmark is itself 3 takeovers",
          (Figure("crash -> callers on the callback list s (median)", "listed_s.median", "<= 3.5"),
           Figure("crash -> new call offered on the standby s (median)", "offered_s.median", "<= 10"),
           Figure("crash -> new call offered on the standby s (max)", "offered_s.max", "<= 10"))),
    # linesim (issue 16): SIP behind emulated leased lines, baseline (unpaced) and the product defaults
    Bench("lines", ("--runs", "3", "--seconds", "20"), "lines.json",
          "baresip (H.264, busy 640x360 source) behind emulated lines in a network namespace (tbf rate, 200 ms "
          "queue, NFQUEUE delay/loss), 720p25 composite; each run of this benchmark is itself 3 runs per row",
          tuple(Figure(f"{c} {m}: {label}", f"rows[condition={c},mode={m}].{key}.median", goal)
                for c in ("768k_20ms", "768k_1pct_30ms", "2M_2pct_30ms") for m in ("baseline", "product")
                for label, key, goal in (("audio loss %", "audio_loss_pct", "<= 0.5"),
                                         ("intact fps after 2 s", "intact_fps_after_2s", ">= 20"),
                                         ("router-queue drops", "router_queue_drops_down", ""))),
          needs_root=True),
    Bench("content", (), "content.json",
          "offline on the real room, compositor and shared encoders: 10 s of conference time at 25 fps; the content "
          "view 1920x1080 encoded every 2nd tick (12.5 fps); the broadcast 1280x720 with 4 sites; encode cost: the "
          "content view alone at 5 and 15 fps against the ffmpeg CLI's libx264 (same settings, same frames) in the "
          "same run; shared machine, not quiet",
          (Figure("content second stream, slide: % of a core", "second_stream[source=slide].percent_of_core"),
           Figure("content second stream, full motion: % of a core", "second_stream[source=motion].percent_of_core"),
           Figure("content second stream, slide: kbit/s", "second_stream[source=slide].kbit_per_s"),
           Figure("composite content+speakers over people: extra % of a core",
                  "composite_extra_percent_of_core")) + tuple(
              f for src in ("slide", "motion") for fps in (5, 15) for f in (
                  Figure(f"content 1080p {fps} fps {src}: % of a core", f"encode_cost[source={src},fps={fps}]"
                         ".ours_percent_of_core"),
                  Figure(f"content 1080p {fps} fps {src}: ours/ffmpeg CPU",
                         f"encode_cost[source={src},fps={fps}].ratio_ours_over_ffmpeg", "<= 1.3")))),
    # streaming (issue 18): live HLS for viewers (docs/mcu.md, "Live streaming")
    Bench("streaming", ("--seconds", "15", "--viewers", "500", "--load-seconds", "30"), "streaming.json",
          "a real node, demo conference with 6 demo sites; server CPU over 15 s per phase; the stream is the "
          "broadcast 720p H.264 (stream copy) + AAC as LL-HLS (0.3 s parts, ~2 s segments, from memory); then "
          "500 LL-HLS clients (blocking reload + every part) in one process for 30 s against the node; the "
          "machine (2 cores) is shared with other jobs and the load generator",
          (Figure("CPU with/without streaming, broadcast encoder already running", "ratio_streaming_vs_not_encoder_shared",
                  "<= 1.1"),
           Figure("CPU with/without streaming, nobody else watching the broadcast", "ratio_streaming_vs_not"),
           Figure("packager lag ms (last frame composed -> part published), own encoder",
                  "packager_lag_ms.own_encoder", "<= 400"),
           Figure("packager lag ms, encoder shared", "packager_lag_ms.encoder_shared", "<= 400"),
           Figure("500 viewers: node CPU % of a core", "cpu_pct.recording_streaming_viewers"),
           Figure("CPU per watch viewer, % of a core (upper bound: node CPU per part x parts/s)",
                  "cpu_per_viewer_pct_of_core"),
           Figure("viewers per core (lower bound)", "viewers_per_core", ">= 500"),
           Figure("viewers per core / 500 (the issue's target)", "ratio_viewers_per_core_over_target", ">= 1"),
           Figure("HLS delivery latency p50 ms (part published -> received)", "hls_delivery_ms.p50"),
           Figure("HLS delivery latency p95 ms", "hls_delivery_ms.p95"),
           Figure("part age at reception p50 ms (composed -> received)", "hls_age_at_reception_ms.p50"),
           Figure("client errors (must be 0)", "viewers.errors", "0"),
           Figure("parts missed by a client (must be 0)", "viewers.missing", "0"),
           Figure("glass-to-glass estimate s (age p50 + PART-HOLD-BACK)", "glass_to_glass_estimate_s"))),
    # fecc (issue 18): far-end camera control signalling (docs/sip-conference.md, "Far-end camera control")
    Bench("fecc", ("--messages", "20000"), "fecc.json",
          "offline: the pure H.224/H.281 core (build + parse a Continue Action), then two H224Channels over "
          "loopback UDP in one process (send + receive), bursts of 10",
          (Figure("core: µs per H.281 message built and parsed", "core.us_per_message"),
           Figure("channel: µs CPU per message sent and received", "channel.us_cpu_per_message"),
           Figure("a held button (2.5 msg/s): % of a core", "held_button_percent_of_core", "negligible"))),
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
