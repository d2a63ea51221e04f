"""The desk survives a crash of its node: the waiting callers and an unmatched AML report are found again.

A real `commandcenter up --role web` (the desk with its own SIP trunk) on the embedded PostgreSQL;
SIPp calls 110 twice and waits in the queue (nobody signed on); an AML report arrives for a number
with no call. The node is killed (SIGKILL) and started again: the two callers are on the callback list
in queue order with their waiting times, and the AML report, still waiting, gives its location to the
call that its number makes after the restart.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dispatch.calltaking.aml import build_sms
from tests.conftest import new_database, private_tmp_dir
from tests.dispatch.calltaking_samples import LUODING_LAT, LUODING_LON, SIPP_DIR, free_port
from tests.noderpc.roles import RoleProcess, role_env, start_role

pytestmark = pytest.mark.timeout(300)
HERE = Path(__file__).parent


def sipp(scenario: Path, port: int, calls: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sipp", "-sf", str(scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), *extra,
         "-s", "110", "-m", str(calls), "-l", str(calls), "-r", "2", "-t", "u1", "-nostdin", "-timeout", "60s",
         "-mp", str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp")


def stop_sipp(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def queue(client: httpx.Client) -> list[dict[str, object]]:
    response = client.get("/api/desk/state")
    assert response.status_code == 200, response.text
    return list(response.json()["queue"]["calls"])


def until(predicate: object, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.3)


def test_queue_and_unmatched_aml_survive_a_desk_crash(pg_url: str) -> None:
    db_url = new_database(pg_url, "desk_")
    work = private_tmp_dir("cc-desk-")
    sip_port = free_port()
    env = role_env(db_url, work / "desk", CC_SIP__UDP_PORT=str(sip_port))
    desk: RoleProcess | None = start_role("web", env)
    callers = waiting_after = None
    try:
        assert desk is not None
        passwords = desk.passwords()
        calltaker = desk.login("calltaker", passwords["calltaker"])
        aml = calltaker.post("/api/aml", params={"from": "13800138000"},
                             content=build_sms(LUODING_LAT, LUODING_LON, 20, datetime.now(UTC)).encode(),
                             headers={"content-type": "text/plain"})
        assert aml.status_code == 200 and aml.json()["matched_call"] is None, aml.text
        callers = sipp(SIPP_DIR / "emergency_wait.xml", sip_port, 2)
        until(lambda: len(queue(calltaker)) == 2)
        before = [c["number"] for c in queue(calltaker)]
        assert before == ["13900000001", "13900000002"], before
        time.sleep(1.0)  # they wait a little

        desk.kill()  # a crash: no BYE, no clean-up, nothing written on the way out
        stop_sipp(callers)
        desk = None
        desk = start_role("web", env)
        calltaker = desk.login("calltaker", passwords["calltaker"])
        callbacks = calltaker.get("/api/desk/callbacks").json()
        assert [c["number"] for c in callbacks] == before, callbacks  # in queue order
        assert all(c["waited_s"] >= 1.0 for c in callbacks), callbacks
        assert queue(calltaker) == [], "the lost callers are not offered again (their calls died with the node)"

        # the AML report still waits for its call: the caller's call after the restart gets its location
        waiting_after = sipp(HERE / "sipp" / "emergency_wait_from.xml", sip_port, 1, "-inf",
                             str(HERE / "sipp" / "caller.csv"))
        until(lambda: len(queue(calltaker)) == 1)
        call = queue(calltaker)[0]
        assert call["number"] == "13800138000"
        view = calltaker.get(f"/api/desk/calls/{call['id']}").json()
        location = view["location"]
        assert location is not None and location["source"] == "aml-sms", view
        assert location["lat"] == pytest.approx(LUODING_LAT) and location["lon"] == pytest.approx(LUODING_LON)
    finally:
        for proc in (callers, waiting_after):
            if proc is not None:
                stop_sipp(proc)
        if desk is not None:
            desk.stop()
        shutil.rmtree(work, ignore_errors=True)
