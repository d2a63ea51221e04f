"""sipvicious (PyPI) attacks the registrar: an extension scan finds nothing (unknown and known
users get the same 401), a password attempt on a strong password fails, and the rate limit engages."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from sip_gateway.sip import events as ev
from tests.sip_gateway.sip_testlib import start_test_endpoint

BIN = Path(sys.executable).parent
if shutil.which("sipvicious_svwar", path=str(BIN)) is None:  # a test extra: make test installs it
    pytest.fail("sipvicious is not installed in this venv (pip install -e '.[test]')", pytrace=False)
ACCOUNTS = {"201": "Zq8#long-and-random-Pw", "202": "another-Strong-1"}


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / args[0]), *args[1:], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    return out.decode(errors="replace")


async def test_extension_scan_and_password_attack() -> None:
    # sipvicious only speaks MD5 digest; with SHA-256 offered first its cracker crashes outright.
    endpoint, _ = await start_test_endpoint(auth_algorithms=("MD5",), accounts=dict(ACCOUNTS))
    rejected: list[ev.MessageRejected] = []
    endpoint.listeners.append(lambda e: rejected.append(e) if isinstance(e, ev.MessageRejected) else None)
    target = f"udp://127.0.0.1:{endpoint.config.port}"
    try:
        scan = await run("sipvicious_svwar", "-e190-230", "--force", "-b", "127.0.0.1", target)
        assert "found nothing" in scan, scan[-2000:]
        assert "| 201" not in scan and "| 202" not in scan
        crack = await run("sipvicious_svcrack", "-u", "201", "-r", "1000-1400", "-b", "127.0.0.1",
                          "--maximumtime", "30", target)
        assert "found nothing" in crack, crack[-2000:]
        assert ACCOUNTS["201"] not in crack
        assert any(r.status == 503 and "Rate limit" in r.reason for r in rejected)
        assert not endpoint.ua.bindings.lookup_user("201", endpoint.now())
    finally:
        await endpoint.close()
