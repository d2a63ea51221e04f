"""Wireshark's SIP dissector decodes a captured call (SIPp caller, our server) with no malformed packets."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sip_testlib import run_sipp, start_test_endpoint

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None or shutil.which("sipp") is None, reason="tshark/sipp missing"
)


async def _tshark(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "tshark", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


async def test_captured_call_has_no_malformed_sip(tmp_path: Path, artifacts_dir: Path) -> None:
    endpoint, _ = await start_test_endpoint(auth_algorithms=("MD5",))
    port = endpoint.config.port
    cap = tmp_path / "call.pcapng"
    capture = await asyncio.create_subprocess_exec(
        "tshark", "-i", "lo", "-f", f"port {port}", "-w", str(cap), "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert capture.stderr is not None
        async with asyncio.timeout(20):
            while b"Capturing on" not in await capture.stderr.readline():
                pass
        for scenario, service in (("auth_challenge.xml", "auth-1"), ("reinvite_hold.xml", "80000001"),
                                  ("session_timer_uac_refresh.xml", "80000001")):
            code, output = await run_sipp(scenario, port, service)
            assert code == 0, output[-2000:]
        await asyncio.sleep(0.5)
    finally:
        capture.terminate()
        await asyncio.wait_for(capture.wait(), 20)
        await endpoint.close()
    shutil.copy(cap, artifacts_dir / "sip_call.pcapng")
    decode = ("-d", f"udp.port=={port},sip")
    methods = await _tshark("-r", str(cap), *decode, "-Y", "sip", "-T", "fields", "-e", "sip.Method",
                            "-e", "sip.Status-Code")
    seen = {tok for line in methods.splitlines() for tok in line.split("\t") if tok}
    assert {"INVITE", "ACK", "BYE", "UPDATE", "401", "200"} <= seen, seen
    malformed = await _tshark("-r", str(cap), *decode, "-Y", "_ws.malformed || _ws.expert.severity >= error")
    assert malformed.strip() == "", malformed
