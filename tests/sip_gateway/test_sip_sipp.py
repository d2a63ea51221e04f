"""SIPp scenarios (kept in tests/sip_gateway/sipp/) against our endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from sip_gateway.rtp.media_description import LocalMedia
from sip_gateway.sip import events as ev
from sip_gateway.sip.digest import Credentials
from tests.sip_gateway.sip_testlib import SIPP_DIR, free_port, run_sipp, start_test_endpoint

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed")


@pytest.mark.parametrize(
    ("scenario", "service", "transport"),
    [
        ("basic_call.xml", "80000001", "u1"),
        ("basic_call.xml", "80000001", "t1"),
        ("cancel_before_answer.xml", "slow", "u1"),
        ("auth_challenge.xml", "auth-80000001", "u1"),
        ("register_auth.xml", "sippuser", "u1"),
        ("reinvite_hold.xml", "80000001", "u1"),
        ("session_timer_uac_refresh.xml", "80000001", "u1"),
        ("bye_from_server.xml", "hangup", "u1"),
        ("malformed_requests.xml", "80000001", "u1"),
    ],
)
async def test_sipp_scenario(scenario: str, service: str, transport: str) -> None:
    endpoint, app = await start_test_endpoint(auth_algorithms=("MD5",))
    try:
        code, output = await run_sipp(scenario, endpoint.config.port, service, transport)
        assert code == 0, output[-4000:]
        assert "Successful call" in output
        # Every call the scenario made is gone from the core afterwards.
        assert not [c for c in endpoint.ua.calls.values() if c.state.value == "confirmed"]
    finally:
        await endpoint.close()


async def test_sipp_session_timer_server_refreshes() -> None:
    endpoint, _ = await start_test_endpoint(min_se=2)
    try:
        code, output = await run_sipp("session_timer_uas_refresh.xml", endpoint.config.port)
        assert code == 0, output[-4000:]
    finally:
        await endpoint.close()


async def test_sipp_load_many_calls_no_failures() -> None:
    endpoint, _ = await start_test_endpoint(rate=1000.0, burst=1000.0)
    ended: list[ev.CallEnded] = []
    endpoint.listeners.append(lambda e: ended.append(e) if isinstance(e, ev.CallEnded) else None)
    try:
        code, output = await run_sipp("basic_call.xml", endpoint.config.port, calls=40, rate=20,
                                      extra=("-l", "20"))
        assert code == 0, output[-4000:]
        assert len(ended) == 40 and all(e.reason == "remote hangup" for e in ended)
    finally:
        await endpoint.close()


async def _sipp_server(scenario: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(port), "-m", "1",
        "-nostdin", "-timeout", "20s", "-timeout_error", "-trace_err", "-error_file",
        f"/tmp/sipp-{scenario}-{port}.err",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd="/tmp",
    )
    await asyncio.sleep(0.5)
    return proc, port


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    out, _ = await asyncio.wait_for(proc.communicate(), 25)
    return proc.returncode or 0, out.decode(errors="replace")[-3000:]


async def test_our_client_registers_with_digest_at_sipp_registrar() -> None:
    proc, port = await _sipp_server("uas_register_auth.xml")
    endpoint, _ = await start_test_endpoint()
    try:
        endpoint.register(f"sip:127.0.0.1:{port}", "sip:trunkuser@trunk.example",
                          Credentials("trunkuser", "Trunk-Pass-9876"), expires=60)
        state = await endpoint.wait_for(ev.ClientRegistrationState, 10)
        assert isinstance(state, ev.ClientRegistrationState) and state.registered, state
        code, output = await _finish(proc)
        assert code == 0, output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await endpoint.close()


async def test_our_client_invite_with_digest_at_sipp_trunk() -> None:
    proc, port = await _sipp_server("uas_invite_auth.xml")
    endpoint, _ = await start_test_endpoint()
    try:
        call = endpoint.invite(f"sip:trunk@127.0.0.1:{port}", LocalMedia("127.0.0.1", 40000),
                               Credentials("trunkuser", "Trunk-Pass-9876"))
        await endpoint.wait_for(ev.CallEstablished, 10)
        assert call.streams and call.streams[0].remote_port == 6000
        endpoint.hangup(call)
        code, output = await _finish(proc)
        assert code == 0, output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await endpoint.close()
