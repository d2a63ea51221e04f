"""The long schemathesis run: every role (and anonymous) against a freshly started system.

    python -m security.schemathesis_run [--max-examples 100] [--seed 13] [--only /api/conferences]

Starts `commandcenter up` on its own embedded PostgreSQL under a temporary directory (127.0.0.1,
a free port), signs in one demo user per role, fetches `/openapi.json` as admin, fuzzes every
operation with each role's session and anonymously (see security/api_fuzz.py for what counts as
a server error or a violation), stops the system and writes the figures to
security/results/schemathesis.json. Exit status 1 when any 5xx or violation was seen.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from security.api_fuzz import ROLES, describe, dump, run_role, summary
from tests.conftest import private_tmp_dir, start_server, stop_server

RESULTS = Path(__file__).resolve().parent / "results" / "schemathesis.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=100, help="generated requests per operation and role")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--only", action="append", default=[], help="only paths starting with this (repeatable)")
    parser.add_argument("--roles", default=",".join((*ROLES, "anonymous")))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    var = private_tmp_dir("cc-schemathesis-")
    server = start_server("", var, timeout=180)
    try:
        sessions = {role: server.login(role) for role in ROLES}
        schema = sessions["admin"].get("/openapi.json").json()
        runs = []
        for role in args.roles.split(","):
            if role == "anonymous":
                headers: dict[str, str] = {}
            else:
                client = sessions[role]
                headers = {"Cookie": f"cc_session={client.cookies['cc_session']}",
                           "X-CSRF-Token": client.headers["X-CSRF-Token"]}
            run = run_role(schema, server.url, None if role == "anonymous" else role, headers, args.max_examples,
                           seed=args.seed, only=args.only)
            runs.append(run)
            print(f"{run.role}: {run.requests} requests, {len(run.server_errors)} 5xx, "
                  f"{len(run.violations)} violations, {run.seconds:.0f} s", flush=True)
    finally:
        code = stop_server(server)
        shutil.rmtree(var, ignore_errors=True)
    operations = sum(len(ops) for ops in schema["paths"].values())
    payload = {"tool": "schemathesis", "at": datetime.now(UTC).isoformat(timespec="seconds"),
               "command": "python -m security.schemathesis_run " + " ".join(argv or sys.argv[1:]),
               "max_examples": args.max_examples, "seed": args.seed, "operations": operations,
               "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                           "load_avg": list(__import__("os").getloadavg())},
               "server_exit": code, **summary(runs)}
    dump(args.out, payload)
    print(describe(runs))
    print(f"figures written to {args.out}")
    return 0 if payload["server_errors"] == 0 and payload["violations"] == 0 and not payload["run_errors"] else 1


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    print(f"took {time.monotonic() - started:.0f} s")
    sys.exit(status)
