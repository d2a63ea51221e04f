"""Fuzz campaign: ``python -m security.fuzz --seconds N [--target NAME ...] [--runs N]``.

Runs each target in its own atheris process, one after the other (the machine is shared),
for ``--seconds`` each (or until ``--runs`` inputs), and prints per parser the inputs tried,
the inputs refused with the parser's documented error, and the crashes (any other exception,
a libFuzzer timeout or running out of memory). A process that dies (timeout, out of memory) is
recorded and restarted for the rest of its time. The JSON goes to
``security/results/fuzz-<timestamp>.json`` (and ``security/results/fuzz.json``, the latest);
crashing inputs go to ``security/results/crashes/``. Exit status 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from security.fuzz.targets import NAMES, ROOT

RESULTS = ROOT / "security" / "results"


def run_target(name: str, seconds: int, runs: int, artifacts: Path, seed: int, log_dir: Path,
               quiet: bool = False) -> dict[str, Any]:
    """Fuzz one target; restart the worker after a hard crash until its time is used."""
    total: dict[str, Any] = {"target": name, "inputs": 0, "refused": 0, "crashes": 0, "unique_crashes": {},
                             "seconds": 0.0, "restarts": 0, "hard_crashes": []}
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    corpus = work / "corpus"
    attempt = 0
    while True:
        left = int(seconds - total["seconds"])  # fuzzing time; start-up (imports, seeds) is not counted
        want = -1 if runs < 0 else runs - total["inputs"]
        if left < 1 or want == 0:
            break
        state_file = work / f"state-{attempt}.json"
        log_file = log_dir / f"{name}-{attempt}.log"
        cmd = [sys.executable, "-m", "security.fuzz.worker", "--target", name, "--seconds", str(left),
               "--runs", str(want), "--state", str(state_file), "--artifacts", str(artifacts),
               "--corpus", str(corpus), "--seed", str(seed + attempt)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
        env["PYTHONPATH"] = str(ROOT)
        with open(log_file, "wb") as log:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  timeout=left + 300)
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        total["description"] = state.get("description", total.get("description", ""))
        total["expected_errors"] = state.get("expected_errors", [])
        for key in ("inputs", "refused", "crashes"):
            total[key] += int(state.get(key, 0))
        total["seconds"] = round(total["seconds"] + float(state.get("seconds", 0.0)), 1)
        for sig, info in state.get("unique_crashes", {}).items():
            if sig in total["unique_crashes"]:
                total["unique_crashes"][sig]["count"] += info["count"]
            else:
                total["unique_crashes"][sig] = info
        if proc.returncode == 0 and state.get("finished"):
            break
        # Died: a libFuzzer timeout, out of memory, or the worker failed to start.
        text = log_file.read_text(errors="replace")
        kind = re.search(r"ERROR: libFuzzer: ([\w-]+)", text)
        reason = kind.group(1) if kind else f"exit {proc.returncode}"
        total["crashes"] += 1
        total["hard_crashes"].append({"reason": reason, "log": str(log_file), "tail": text[-2000:]})
        if not quiet:
            print(f"  {name}: worker died ({reason}), see {log_file}", file=sys.stderr)
        if not state or not state.get("inputs"):  # it did not even start: do not spin
            break
        attempt += 1
        total["restarts"] = attempt
    total["inputs_per_second"] = round(total["inputs"] / total["seconds"]) if total["seconds"] else 0
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m security.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument("--runs", type=int, default=-1, help="stop a target after this many inputs")
    parser.add_argument("--target", action="append", choices=NAMES, help="only this target (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="JSON file (default security/results/fuzz-<time>.json)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    names = args.target or NAMES
    RESULTS.mkdir(parents=True, exist_ok=True)
    artifacts = RESULTS / "crashes"
    log_dir = Path(tempfile.mkdtemp(prefix="fuzz-logs-"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {
        "command": "python -m security.fuzz " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_utc": stamp, "seconds_per_target": args.seconds, "runs_per_target": args.runs,
        "engine": "atheris (libFuzzer), one process at a time",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_at_start": os.getloadavg()[0]},
        "targets": {},
    }
    out = args.out or RESULTS / f"fuzz-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> str:
        report["total_inputs"] = sum(t["inputs"] for t in report["targets"].values())
        report["total_crashes"] = sum(t["crashes"] for t in report["targets"].values())
        text = json.dumps(report, indent=1, ensure_ascii=False)
        out.write_text(text)  # after every target, so a stopped campaign keeps what it measured
        return text

    if not args.quiet:
        print(f"{'target':<14}{'inputs':>12}{'refused':>11}{'crashes':>9}{'seconds':>9}{'inputs/s':>10}")
    for name in names:
        result = run_target(name, args.seconds, args.runs, artifacts, args.seed, log_dir, args.quiet)
        report["targets"][name] = result
        save()
        if not args.quiet:
            print(f"{name:<14}{result['inputs']:>12,}{result['refused']:>11,}{result['crashes']:>9}"
                  f"{result['seconds']:>9.0f}{result['inputs_per_second']:>10,}", flush=True)
            for sig, info in result["unique_crashes"].items():
                print(f"    CRASH x{info['count']}: {sig}: {info['message'][:120]} "
                      f"(input {artifacts / info['input']})")
    text = save()
    if args.out is None:
        (RESULTS / "fuzz.json").write_text(text)
    if not args.quiet:
        print(f"total: {report['total_inputs']:,} inputs, {report['total_crashes']} crashes -> {out}")
    return 1 if report["total_crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
