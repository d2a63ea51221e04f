"""Two `--role desk` nodes: leadership is a lease in PostgreSQL (noderpc/lease.py), no split brain.

Desk A takes the lease; desk B, the standby, answers neither OPTIONS nor emergency INVITEs (503: a
proxy's probing sends it nothing). A is frozen (SIGSTOP): B takes the lease once it expired and answers
a new emergency call within the bound (ttl = dead_after 3 s + renewal 0.5 s + slack for a loaded
machine). A is resumed (SIGCONT): its own clock says its lease ran out, so it answers 503 at once
(fenced) and never offers a call again. The real SIP wire (UDP on 127.0.0.1) is the judge.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import time
import uuid

import pytest

from tests.conftest import free_port, new_database, private_tmp_dir, run_async
from tests.noderpc.roles import RoleProcess, role_env, start_role
from tests.noderpc.test_split_recording import _rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
TAKEOVER_BOUND_S = 3.0 + 0.5 + 4.0  # lease ttl + one renewal + slack (2 shared cores)

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def sip_status(port: int, method: str, timeout: float = 2.0) -> int | None:
    """Send one OPTIONS (or INVITE to 110 with an audio offer) to the desk; its final status, None if silent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    local = sock.getsockname()[1]
    call_id, branch = uuid.uuid4().hex, "z9hG4bK" + uuid.uuid4().hex[:12]
    body = SDP.format(port=free_port()) if method == "INVITE" else ""
    uri = f"sip:110@127.0.0.1:{port}" if method == "INVITE" else f"sip:127.0.0.1:{port}"
    message = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:13800000009@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
               f"To: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
               f"Contact: <sip:13800000009@127.0.0.1:{local}>\r\n"
               + ("Content-Type: application/sdp\r\n" if body else "")
               + f"Content-Length: {len(body)}\r\n\r\n{body}")
    try:
        sock.sendto(message.encode(), ("127.0.0.1", port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                return None
            status = int(data.split(" ", 2)[1])
            if status >= 200:
                return status
        return None
    finally:
        sock.close()


def holder(db_url: str) -> str:
    rows = run_async(_rows(db_url, "SELECT holder FROM rpc_leases WHERE name = 'desk' AND expires_at > now()"))
    return str(rows[0]["holder"]) if rows else ""


def wait(predicate: object, within: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - start < within, f"{what}: not within {within:.1f} s"
        time.sleep(0.1)
    return time.monotonic() - start


def test_standby_takes_the_lease_and_a_resumed_desk_is_fenced(pg_url: str) -> None:
    db_url = new_database(pg_url, "desklease_")
    work = private_tmp_dir("cc-desklease-")
    port_a, port_b = free_port(), free_port()
    a = start_role("desk", role_env(db_url, work / "a", CC_NODE_NAME="desk-a", CC_SIP__UDP_PORT=str(port_a),
                                    CC_SIP__TCP_PORT=str(port_a)))
    b: RoleProcess | None = None
    try:
        wait(lambda: holder(db_url).startswith("desk-a/desk/"), 15, "desk A holds the lease")
        b = start_role("desk", role_env(db_url, work / "b", CC_NODE_NAME="desk-b", CC_SIP__UDP_PORT=str(port_b),
                                        CC_SIP__TCP_PORT=str(port_b)))
        assert sip_status(port_a, "OPTIONS") == 200
        assert sip_status(port_b, "OPTIONS") == 503, "the standby answers OPTIONS"
        assert sip_status(port_b, "INVITE") == 503, "the standby answered an emergency call"
        assert holder(db_url).startswith("desk-a/desk/")

        os.kill(a.process.pid, signal.SIGSTOP)  # frozen, not dead: its connections stay open
        frozen = time.monotonic()
        took = wait(lambda: holder(db_url).startswith("desk-b/desk/"), 20, "desk B takes the lease")
        wait(lambda: sip_status(port_b, "INVITE", 1.0) == 200, 20, "desk B answers a new call")
        answered = time.monotonic() - frozen
        print(f"\ndesk lease: standby holds the lease {took:.2f} s and answers a new call {answered:.2f} s "
              f"after the active froze (bound {TAKEOVER_BOUND_S:.1f} s)")
        assert answered <= TAKEOVER_BOUND_S, f"new call answered {answered:.2f} s after the freeze"

        os.kill(a.process.pid, signal.SIGCONT)
        # fenced at once: its own clock ran past the lease before it does anything else
        assert sip_status(port_a, "INVITE", 3.0) == 503, "the resumed desk answered a call (split brain)"
        assert sip_status(port_a, "OPTIONS") == 503
        time.sleep(2.0)  # several renewal rounds: it does not get the lease back while B holds it
        assert holder(db_url).startswith("desk-b/desk/")
        assert sip_status(port_a, "INVITE") == 503 and sip_status(port_b, "OPTIONS") == 200
        rows = run_async(_rows(db_url, "SELECT desk_node FROM emergency_calls"))
        assert rows and all(str(r["desk_node"]).startswith("desk-b/") for r in rows), rows
    finally:
        if a.process.poll() is None:
            os.kill(a.process.pid, signal.SIGCONT)
        a.kill()
        if b is not None:
            b.stop()
        shutil.rmtree(work, ignore_errors=True)
