"""Two live desk nodes on one PostgreSQL behind Kamailio, the active one killed: the scenario.

Shared by tests/noderpc/test_desk_takeover.py (which asserts) and bench/desk_takeover.py (which
measures). Two real desk nodes (distinct var dirs and node names); Kamailio
(deploy/ha/desk-proxy/kamailio.cfg, dispatcher algorithm 8 with OPTIONS probing) in front on
127.0.0.1, desk A first by priority. SIPp callers dial 110 through Kamailio and wait in A's queue;
A is killed (SIGKILL) and, at that moment, a new SIPp caller dials 110 through Kamailio.

``role="web"``: two `--role web` desk nodes, each with its own desk and API (no lease; the older
pair). ``role="desk"``: the deploy/ha example, two `--role desk` nodes holding the desk lease in turn
plus one `--role web` node with ``emergency.remote_desk`` through which everything is read. Until
the standby holds the lease both desks are unavailable to Kamailio (the dead one silent, the standby
answering 503), so a call in that window is refused; the new caller therefore redials every second
(as a caller, or a trunk that retries, does) and the time is until its first call is offered on B.
Everything started here is stopped here.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import ROOT, free_port, private_tmp_dir, run_async, with_database
from tests.noderpc.roles import RoleProcess, role_env, start_role

HERE = Path(__file__).parent
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
PROXY_CFG = ROOT / "deploy" / "ha" / "desk-proxy" / "kamailio.cfg"
DEAD_AFTER_S, HEARTBEAT_S = 3.0, 0.5  # tests/noderpc/roles.py role_env
WAITING = ["13900000001", "13900000002"]
LATE = "13700000001"


@dataclass
class Takeover:
    waiting_on_a: list[str]
    waiting_on_b_before: list[str]
    listed_s: float  # crash → the waiting callers on B's callback list
    offered_s: float  # crash → the new call offered on B
    late_refused: int = 0  # role desk: the redialling caller's calls before its first one offered on B (not
    #                        offered: refused by Kamailio or B in the takeover window, or still ringing nowhere)
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # B's callback list at the end
    audited: list[str] = field(default_factory=list)  # details of desk.calls_lost_with_node


def sipp_via_proxy(proxy_port: int, caller: str, calls: int, rate: float = 2.0) -> subprocess.Popen[bytes]:
    """`calls` callers numbered `caller`1, `caller`2, ... at `rate` calls per second."""
    return subprocess.Popen(
        ["sipp", "-sf", str(HERE / "sipp" / "emergency_wait_proxy.xml"), f"127.0.0.1:{proxy_port}",
         "-i", "127.0.0.1", "-p", str(free_port()), "-key", "caller", caller, "-s", "110", "-m", str(calls),
         "-l", str(calls), "-r", f"{rate:g}", "-t", "u1", "-nostdin", "-timeout", "90s", "-mp", str(free_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp")


def lease_holder(db_url: str) -> str:
    async def query() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            found = await conn.fetchval("SELECT holder FROM rpc_leases WHERE name = 'desk' AND expires_at > now()")
            return str(found or "")
        finally:
            await conn.close()
    return run_async(query())


def listed(db_url: str) -> list[str]:
    """The numbers on the callback list, in the table (a web node's view of the desk waits for the
    lease holder, up to its node-RPC deadline, while the dead holder's lease runs out)."""
    async def query() -> list[str]:
        conn = await asyncpg.connect(db_url)
        try:
            return [str(r["number"]) for r in await conn.fetch("SELECT number FROM desk_callbacks WHERE done_at IS NULL")]
        finally:
            await conn.close()
    return run_async(query())


def numbers_on(db_url: str, node_prefix: str) -> list[str]:
    """The numbers of the open calls a desk node took (emergency_calls.desk_node), oldest first."""
    async def query() -> list[str]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT number FROM emergency_calls WHERE desk_node LIKE $1 AND ended_at IS NULL "
                                    "ORDER BY offered_at", node_prefix + "%")
            return [str(r["number"]) for r in rows]
        finally:
            await conn.close()
    return run_async(query())


def stop(proc: subprocess.Popen[bytes] | None, group: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    if group:  # Kamailio forks its workers into the session it leads
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait(10)


def numbers(client: httpx.Client, path: str, key: str | None = None) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body[key]["calls"] if key else body
    return [str(r["number"]) for r in rows]


def wait_for(predicate: object, within: float, what: str) -> float:
    """Seconds until `predicate()` held; fails naming `what` after `within`."""
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - start < within, f"{what}: not within {within:.1f} s"
        time.sleep(0.1)
    return time.monotonic() - start


def run_takeover(pg_url: str, give_up_s: float = 30.0, role: str = "web") -> Takeover:
    """One run of the scenario on a fresh database of `pg_url`'s server; `role` of the desk nodes."""
    assert role in ("web", "desk"), role
    assert Path(KAMAILIO).exists(), "kamailio (Debian package kamailio, Makefile TEST_DEBS) is not installed"
    name = "deskha_" + uuid.uuid4().hex[:10]

    async def create() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_async(create())
    db_url = with_database(pg_url, name)
    work = private_tmp_dir("cc-deskha-")
    port_a, port_b, proxy_port = free_port(), free_port(), free_port()
    a: RoleProcess | None = None
    b: RoleProcess | None = None
    web: RoleProcess | None = None
    proxy = queued = late = None
    try:
        if role == "web":
            a = start_role("web", role_env(db_url, work / "a", CC_NODE_NAME="desk-a", CC_SIP__UDP_PORT=str(port_a)))
            b = start_role("web", role_env(db_url, work / "b", CC_NODE_NAME="desk-b", CC_SIP__UDP_PORT=str(port_b)))
            passwords = a.passwords()
            on_a = a.login("calltaker", passwords["calltaker"])
            on_b = b.login("calltaker", passwords["calltaker"])
        else:  # the example: two lease-holding desk nodes, a web node reaching the holder
            a = start_role("desk", role_env(db_url, work / "a", CC_NODE_NAME="desk-a", CC_SIP__UDP_PORT=str(port_a),
                                            CC_SIP__TCP_PORT=str(port_a)))
            wait_for(lambda: lease_holder(db_url).startswith("desk-a/"), 30, "desk A holds the desk lease")
            b = start_role("desk", role_env(db_url, work / "b", CC_NODE_NAME="desk-b", CC_SIP__UDP_PORT=str(port_b),
                                            CC_SIP__TCP_PORT=str(port_b)))
            web = start_role("web", role_env(db_url, work / "web", CC_NODE_NAME="web",
                                             CC_EMERGENCY__REMOTE_DESK="true"))
            on_a = on_b = web.login("calltaker", a.passwords()["calltaker"])

        (work / "desks.list").write_text(f"1 sip:127.0.0.1:{port_a} 0 10 duid=desk-a\n"
                                         f"1 sip:127.0.0.1:{port_b} 0 5 duid=desk-b\n")
        with (work / "kamailio.log").open("w") as log:
            proxy = subprocess.Popen(
                [KAMAILIO, "-DD", "-E", "-f", str(PROXY_CFG), "-Y", str(work), "-w", str(work), "-m", "32", "-M", "8",
                 "-A", f"LISTEN=udp:127.0.0.1:{proxy_port}", "-A", f'DESK_LIST="{work / "desks.list"}"',
                 "-A", "TRUNK_NET=127.0.0.1/32", "-A", "DESK_PING_S=1", "-A", "DESK_PROBE_THRESHOLD=2", "-A", "DESK_FR_TIMER_MS=2000"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(1.0)
        assert proxy.poll() is None, (work / "kamailio.log").read_text()[-3000:]

        queued = sipp_via_proxy(proxy_port, WAITING[0][:-1], len(WAITING))
        wait_for(lambda: len(numbers(on_a, "/api/desk/state", "queue")) == len(WAITING), 30,
                 "the callers queued on desk A")
        waiting_on_a = numbers(on_a, "/api/desk/state", "queue")
        waiting_on_b = numbers(on_b, "/api/desk/state", "queue") if role == "web" else numbers_on(db_url, "desk-b/")
        time.sleep(1.0)  # they wait a little

        a.kill()  # a crash: no BYE, no clean-up, nothing written on the way out
        crashed = time.monotonic()
        # a new caller at the moment of the crash (role desk: redialling every second, see above)
        late = sipp_via_proxy(proxy_port, LATE[:-1], 1) if role == "web" else \
            sipp_via_proxy(proxy_port, LATE[:-1], 9, rate=1.0)
        listed_at = offered_at = None  # both watched in one loop, so neither time waits for the other
        first_late = ""
        while listed_at is None or offered_at is None:
            elapsed = time.monotonic() - crashed
            assert elapsed < give_up_s, (f"not within {give_up_s:.0f} s: callers listed on B after {listed_at} s, "
                                         f"new call offered on B after {offered_at} s")
            on_list = numbers(on_b, "/api/desk/callbacks") if role == "web" else listed(db_url)
            if listed_at is None and set(waiting_on_a) <= set(on_list):
                listed_at = time.monotonic() - crashed
            if offered_at is None:
                queue = numbers(on_b, "/api/desk/state", "queue") if role == "web" else numbers_on(db_url, "desk-b/")
                late_queued = [n for n in queue if n.startswith(LATE[:-1])]
                if late_queued:
                    offered_at = time.monotonic() - crashed
                    first_late = min(late_queued)
            time.sleep(0.05)
        listed_s, offered_s = listed_at, offered_at
        if role == "desk":  # through the web node, once it reaches the new holder
            wait_for(lambda: on_b.get("/api/desk/callbacks").status_code == 200, 20, "the web node reaches desk B")
        callbacks = list(on_b.get("/api/desk/callbacks").json())

        async def audited() -> list[str]:
            conn = await asyncpg.connect(db_url)
            try:
                rows = await conn.fetch("SELECT detail FROM audit_log WHERE action = 'desk.calls_lost_with_node'")
                return [str(r["detail"]) for r in rows]
            finally:
                await conn.close()

        return Takeover(waiting_on_a, waiting_on_b, listed_s, offered_s, int(first_late[len(LATE) - 1:]) - 1,
                        callbacks, run_async(audited()))
    finally:
        for proc in (queued, late):
            stop(proc)
        stop(proxy, group=True)
        for node in (web, a, b):
            if node is not None:
                node.stop()
        shutil.rmtree(work, ignore_errors=True)
