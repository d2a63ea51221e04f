"""One fuzzing process for one target, driven by atheris (libFuzzer, coverage-guided).

Run by ``python -m security.fuzz``; not meant to be started by hand. Every input goes through
the target; an exception that is not one of the parser's documented error types is a crash:
it is counted, its first input is saved to the artifacts directory, and fuzzing goes on (so
one bug does not hide the next). Figures are written to ``--state`` as JSON about once a
second and at the end, because libFuzzer ends the process with exit() and Python's own exit
handlers do not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import atheris

INSTRUMENT = ["sip_gateway", "dispatch", "config", "recorder", "aiortc.rtp", "security.fuzz.bundle"]


def _signature(exc: BaseException) -> str:
    """Exception type and the innermost frame in our code: one line per distinct bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/security/" not in f.filename] or frames
    last = ours[-1] if ours else None
    where = f"{Path(last.filename).name}:{last.lineno} in {last.name}" if last else "?"
    return f"{type(exc).__name__} at {where}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--runs", type=int, default=-1)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with atheris.instrument_imports(include=INSTRUMENT):
        from security.fuzz.targets import build

        target = build(args.target)
    args.corpus.mkdir(parents=True, exist_ok=True)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds:
        (args.corpus / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}").write_bytes(seed[: target.max_len])

    state: dict[str, Any] = {"target": args.target, "description": target.description,
                             "expected_errors": [e.__name__ for e in target.expected],
                             "inputs": 0, "refused": 0, "crashes": 0, "unique_crashes": {},
                             "seeds": len(target.seeds), "started": time.time(), "seconds": 0.0}
    started = time.monotonic()
    next_flush = [started + 1.0]
    deadline = started + args.seconds

    def flush() -> None:
        state["seconds"] = round(time.monotonic() - started, 1)
        tmp = args.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, ensure_ascii=False))
        os.replace(tmp, args.state)

    expected = target.expected
    run = target.run

    def one(data: bytes) -> None:
        state["inputs"] += 1
        try:
            run(data)
        except expected:
            state["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - any other exception is what we are looking for
            state["crashes"] += 1
            sig = _signature(exc)
            seen = state["unique_crashes"].get(sig)
            if seen is None:
                name = f"crash-{args.target}-{hashlib.sha1(data).hexdigest()[:16]}"
                (args.artifacts / name).write_bytes(data)
                state["unique_crashes"][sig] = {
                    "count": 1, "input": name, "message": str(exc)[:300],
                    "traceback": traceback.format_exc(limit=-6)[-2500:]}
                flush()
            else:
                seen["count"] += 1
        now = time.monotonic()
        if now >= next_flush[0]:
            next_flush[0] = now + 1.0
            flush()
        if now >= deadline or state["inputs"] == args.runs:
            # Stop here rather than let libFuzzer exit(): the figures are then exact.
            state["finished"] = True
            flush()
            for cleanup in target.cleanup:
                cleanup()
            os._exit(0)

    flush()
    libfuzzer = [sys.argv[0], f"-max_total_time={args.seconds + 120}", "-runs=-1",
                 f"-max_len={target.max_len}", f"-seed={args.seed}", "-timeout=20", "-rss_limit_mb=3072",
                 f"-artifact_prefix={args.artifacts}/{args.target}-", "-print_final_stats=1",
                 str(args.corpus)]
    atheris.Setup(libfuzzer, one)
    try:
        atheris.Fuzz()
    finally:
        flush()


if __name__ == "__main__":
    main()
