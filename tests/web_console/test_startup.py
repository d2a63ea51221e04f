"""`make run`'s start-up path: `commandcenter up` on a fresh var/ with the embedded PostgreSQL."""
from __future__ import annotations

import time
from pathlib import Path

import psutil

from tests.conftest import private_tmp_dir, start_server, stop_server

READY_WITHIN_SECONDS = 60


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].endswith("/postgres") and str(data_dir) in cmd:
            found.append(p)
    return found


def test_up_from_scratch_then_sigterm_then_restart_keeps_data() -> None:
    var = private_tmp_dir("cc-startup-") / "var"
    started = time.monotonic()
    server = start_server("", var, timeout=READY_WITHIN_SECONDS)
    try:
        assert time.monotonic() - started < READY_WITHIN_SECONDS
        assert (var / "pg" / "PG_VERSION").exists(), "embedded PostgreSQL lives under var/pg"
        # one first login per role, plus the demo's agency desks (dispatchers: config/demo/agency_desks.toml)
        assert set(server.passwords) == {"admin", "chair", "operator", "calltaker", "dispatcher",
                                         "inspector", "viewer", "leader", "flood_desk", "meteo_desk", "em_desk",
                                         "fire_desk", "responder"}, server.output
        assert any(f"commandcenter is running: {server.url}" in line for line in server.output)
        admin = server.login("admin")
        created = admin.post("/api/users", json={"username": "survivor", "password": "Persist-2026x",
                                                 "role": "viewer"})
        assert created.status_code == 201
        assert postgres_processes(var / "pg"), "postgres runs while the system is up"
    finally:
        code = stop_server(server)
    assert code in (0, -15), server.output  # uvicorn re-raises SIGTERM after a clean shutdown
    assert any("commandcenter stopped" in line for line in server.output), server.output
    deadline = time.monotonic() + 10
    while postgres_processes(var / "pg") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postgres_processes(var / "pg"), "SIGTERM stops the embedded database too"

    again = start_server("", var, timeout=READY_WITHIN_SECONDS)
    try:
        assert again.passwords == {}, "credentials are printed once, on first run only"
        assert any("Users exist already" in line for line in again.output)
        # the first run's passwords (stored only as hashes) still work, and its data is there
        admin = again.login("admin", server.passwords["admin"])
        assert "survivor" in [u["username"] for u in admin.get("/api/users").json()]
    finally:
        stop_server(again)
