"""The SIP bridge as configured by settings, against real peers.

* TLS (5061) from ``sip.tls_*``: a self-signed certificate made once under ``<var_dir>/keys``
  (key mode 0600), baresip joins a conference over ``transport=tls``; bad certificate/key
  settings are configuration errors naming the field.
* RTP ports from ``settings.rtp``: the ports baresip sees media from (and our SDP) lie in a
  narrow configured range; when it is exhausted a caller gets 503 and the chair's dial-out a
  clear refusal, nothing changed; ports come back when calls end.
* IVR PINs go through ``ConferenceService.admit``: wrong PINs keyed by RFC 4733 from pjsua2
  (from 127.0.0.2, direct dial-in) are refused, then the source is locked out (in the call, and
  its next INVITE gets 403), every refusal is audited; the right PIN from another source
  (127.0.0.3, through ``sip:ivr@``) still works.
"""
from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.errors import ConfigError
from config.settings import SipSettings
from core.runtime import CoreServices
from mcu.admission import Caller
from mcu.capability import start_sip
from mcu.conferences import ConferenceService, JoinRefused, PinGuard
from mcu.legs.sip_bridge import DialOutError, SipBridge
from mcu.legs.sip_config import tls_context
from sip_gateway.aio.tls import fingerprint
from tests.conftest import ROOT, free_port
from tests.sip_gateway.conference_helpers import joined, start_bridge, until
from tests.sip_gateway.peers import Baresip, MediaUas
from tests.sip_gateway.test_sip_pjsua import run_peer


@pytest.fixture
def pin_guard() -> PinGuard:
    # For the shared `conferences` fixture (tests/conftest.py): two wrong PINs from one source lock
    # it out for a minute (the default is 5, then 30 s).
    return PinGuard(max_failures=2, base_delay=60.0)


def free_port_range(pairs: int) -> tuple[int, int]:
    """A run of ``2 * pairs`` UDP ports below the ephemeral range, all free right now."""
    for _ in range(50):
        base = 30000 + 2 * int.from_bytes(os.urandom(2)) % 2700
        socks = []
        try:
            for port in range(base, base + 2 * pairs):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + 2 * pairs - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


# ---------------------------------------------------------------------------------------------- TLS

async def test_tls_listener_from_settings_with_a_generated_certificate(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    tls_port = free_port()
    services.settings.sip = SipSettings(udp_port=0, tls_port=tls_port, max_video_size="352x288")
    await conferences.create(name="TLS 会议", actor="test", guests=True, conference_id="80000061")
    conf = await conferences.start_conference("80000061", actor="test")
    bridge = await start_sip(services, conferences)
    assert isinstance(bridge, SipBridge) and bridge.endpoint.tls_port == tls_port
    cert = services.settings.var_dir / "keys" / "sip-tls.crt"
    key = services.settings.var_dir / "keys" / "sip-tls.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and cert.exists()
    # The listener presents the generated certificate.
    served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", tls_port))
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert.read_text())
    phone = Baresip(tmp_path / "baresip-tls", tone_hz=440)
    try:
        await phone.start(f"/dial sip:80000061@127.0.0.1:{tls_port};transport=tls")
        await until(lambda: len(joined(conf)) == 1, 20, "baresip to join over TLS")
        site = next(iter(bridge.sites.values()))
        assert site.call.flow.transport == "tls"
        await phone.wait_log(r"Call established: sip:80000061@127.0.0.1:\d+;transport=tls")
        await phone.wait_log(r"video: receiving with resolution 352 x 288")
        await bridge.hangup("80000061", site.site_id)
        await phone.wait_log(r"terminated", within=10)
        await until(lambda: not joined(conf), 10, "the site to leave")
        # Junk on the TLS port (no handshake, or a handshake then garbage) leaves the listener healthy:
        # an OPTIONS over TLS still gets its 200.
        await asyncio.to_thread(_junk_on, tls_port)
        answer = await asyncio.to_thread(_options_over_tls, tls_port)
        assert answer.startswith("SIP/2.0 200 "), answer
    finally:
        await phone.stop()
        await bridge.stop()
    # Made once: a second start keeps the same certificate and key.
    before = fingerprint(cert)
    context, used = tls_context(services.settings.sip, services.settings.var_dir)
    assert used == cert and fingerprint(cert) == before and isinstance(context, ssl.SSLContext)
    # The TLS port taken by someone else: SIP still starts (UDP+TCP), without TLS, and says so.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        services.settings.sip = SipSettings(udp_port=0, tls_port=squatter.getsockname()[1])
        with caplog.at_level("ERROR", logger="mcu.capability"):
            bridge = await start_sip(services, conferences)
        try:
            assert isinstance(bridge, SipBridge) and bridge.endpoint.tls_context is None
            assert bridge.endpoint.config.port and "SIP over TLS disabled: cannot listen" in caplog.text
        finally:
            if bridge is not None:
                await bridge.stop()


def _junk_on(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"OPTIONS sip:x SIP/2.0\r\n\r\n")  # plain text to a TLS port
    context = ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"\x00\xff" * 100 + b"\r\n\r\n")


def _options_over_tls(port: int) -> str:
    """One OPTIONS request over TLS (Python's ssl, i.e. OpenSSL), returning the status line."""
    context = ssl._create_unverified_context()  # the self-signed certificate was checked above
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        local_port = tls.getsockname()[1]
        tls.sendall((f"OPTIONS sip:127.0.0.1:{port};transport=tls SIP/2.0\r\n"
                     f"Via: SIP/2.0/TLS 127.0.0.1:{local_port};branch=z9hG4bK-tls-probe-1\r\n"
                     "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1>\r\n"
                     "Call-ID: tls-probe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").split("\r\n", 1)[0]


def test_tls_configured_certificate_and_bad_files(tmp_path: Path) -> None:
    from tests.sip_gateway.test_sip_tls_tcp import make_cert
    cert, key = make_cert(tmp_path)
    settings = SipSettings(tls_certificate=cert, tls_key=key)
    context, used = tls_context(settings, tmp_path / "var")
    assert used == cert and not (tmp_path / "var" / "keys").exists()  # nothing generated
    (tmp_path / "other").mkdir()
    _, other_key = make_cert(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (SipSettings(tls_certificate=tmp_path / "missing.crt", tls_key=key), "sip.tls_certificate: cannot read"),
        (SipSettings(tls_certificate=garbage, tls_key=key), "sip.tls_certificate: " + str(garbage)),
        (SipSettings(tls_certificate=cert, tls_key=garbage), "sip.tls_key: " + str(garbage)),
        (SipSettings(tls_certificate=cert, tls_key=other_key), "sip.tls_key:"),
    ]
    for bad, message in cases:
        with pytest.raises(ConfigError) as caught:
            tls_context(bad, tmp_path / "var")
        assert message in str(caught.value), str(caught.value)
    # TLS on the UDP/TCP port, or half a pair: refused while reading the settings, the field named.
    with pytest.raises(ValidationError, match="tls_port must differ from udp_port"):
        SipSettings(udp_port=5070, tls_port=5070)
    with pytest.raises(ValidationError, match="tls_certificate must be set when tls_key is set"):
        SipSettings(tls_key=key)
    assert SipSettings(udp_port=0, tls_port=0).tls_port == 0  # 0 and 0: any UDP port, no TLS
    # A key directory that cannot be written: a configuration error too (not a crash).
    blocker = tmp_path / "var-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="sip.tls_certificate: cannot create"):
        tls_context(SipSettings(), blocker)


def run_up(env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "commandcenter", "up"], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "CC_HTTP__PORT": str(free_port()),
                                                "CC_RECORDER__DEMO_CAMERAS": "false", **env})


async def test_bad_tls_settings_stop_the_node_with_a_named_error(pg_url: str, tmp_path: Path) -> None:
    # Certificate without key: refused while reading the settings, the field named.
    done = await asyncio.to_thread(run_up, {"CC_VAR_DIR": str(tmp_path / "a"),
                                            "CC_SIP__TLS_CERTIFICATE": str(tmp_path / "x.crt")})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "configuration error" in done.stderr and "tls_key must be set when tls_certificate is set" in done.stderr
    # An unreadable certificate: the node does not start, and says which file and why.
    missing = tmp_path / "nope.crt"
    done = await asyncio.to_thread(run_up, {
        "CC_VAR_DIR": str(tmp_path / "b"), "DATABASE_URL": pg_url, "CC_SIP__UDP_PORT": "0",
        "CC_SIP__TLS_PORT": str(free_port()), "CC_SIP__TLS_CERTIFICATE": str(missing),
        "CC_SIP__TLS_KEY": str(missing)})
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    assert re.search(rf"sip\.tls_certificate: cannot read {re.escape(str(missing))}: No such file", done.stderr)


# -------------------------------------------------------------------------------------- RTP range

async def test_rtp_ports_from_the_configured_range_and_503_when_exhausted(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path) -> None:
    low, high = free_port_range(pairs=4)  # room for two video calls (audio + video pair each)
    bridge = await start_bridge(services, conferences, port_range=(low, high), max_video_size="352x288")
    port = bridge.endpoint.config.port
    await conferences.create(name="端口会议", actor="test", guests=True, conference_id="80000062")
    conf = await conferences.start_conference("80000062", actor="test")
    first, second, third = (Baresip(tmp_path / f"b{i}", tone_hz=440 + 100 * i) for i in range(3))
    uas = MediaUas()
    await uas.start()
    try:
        await first.start(f"/dial sip:80000062@127.0.0.1:{port}")
        await until(lambda: len(joined(conf)) == 1, 20, "the first caller to join")
        await second.start(f"/dial sip:80000062@127.0.0.1:{port}")
        await until(lambda: len(joined(conf)) == 2, 20, "the second caller to join")
        # baresip receives our media from ports inside the range (symmetric RTP), and our SDP says so.
        for phone in (first, second):
            for kind in ("audio", "video"):
                found = await phone.wait_log(rf"incoming rtp for '{kind}' established, receiving from "
                                             r"127\.0\.0\.1:(\d+)")
                assert low <= int(found.group(1)) <= high, (kind, found.group(0), low, high)
        for site in bridge.sites.values():
            media = site.leg.local_media
            assert all(low <= p <= high for p in (media.audio_port, media.video_port) if p)

        # The range is full: a third caller gets a clean 503, the chair's dial-out a clear refusal.
        await third.start(f"/dial sip:80000062@127.0.0.1:{port}")
        await third.wait_log(r"503 No media ports available", within=15)
        with pytest.raises(DialOutError) as refused:
            await bridge.invite("80000062", site_id="hall", uri=f"sip:hall@127.0.0.1:{uas.endpoint.config.port}")
        assert refused.value.code == "no_ports" and "hall" not in conf.sites
        assert len(joined(conf)) == 2 and bridge.endpoint.ua.calls  # the others are unaffected

        # The first caller hangs up: its ports are free again and a call succeeds.
        await first.stop()
        await until(lambda: len(joined(conf)) == 1, 15, "the first caller to leave")
        await asyncio.sleep(0.3)  # leg sockets close on the next loop turns
        await bridge.invite("80000062", site_id="hall", uri=f"sip:hall@127.0.0.1:{uas.endpoint.config.port}")
        await until(lambda: "hall" in joined(conf), 15, "the dial-out to join")
    finally:
        for phone in (first, second, third):
            await phone.stop()
        await uas.close()
        await bridge.stop()
    # Everything released: the whole range binds again.
    assert all(_bindable(p) for p in range(low, high + 1))


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -------------------------------------------------------------------------------------- IVR PIN

@pytest.mark.slow
async def test_ivr_pin_goes_through_admit_with_back_off(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    bridge = await start_bridge(services, conferences)
    port = bridge.endpoint.config.port
    cid = "80000063"
    await conferences.create(name="密码会议", actor="test", pin="2468", guests=True, conference_id=cid)
    conf = await conferences.start_conference(cid, actor="test")
    target = f"sip:{cid}@127.0.0.1:{port}"
    try:
        # 127.0.0.2 keys three wrong PINs: two are "wrong", then the source is locked out in the call.
        result = await run_peer({"user": "intruder", "bind": "127.0.0.2", "target": target,
                                 "digits": ["1111#", "2222#", "3333#"], "digit_pause": 2.5,
                                 "wav": str(tmp_path / "a.wav"), "talk_seconds": 5.0})
        assert result["call_state"] == "CONFIRMED" and result["end_state"] == "DISCONNECTED", result
        assert joined(conf) == []
        # Its next INVITE is refused before it is answered.
        result = await run_peer({"user": "intruder", "bind": "127.0.0.2", "target": target,
                                 "wav": str(tmp_path / "b.wav")})
        assert result["last_status"] == 403 and result["call_state"] == "DISCONNECTED", result
        # The same back-off as the other ways in: even the right PIN from 127.0.0.2 is refused now.
        with pytest.raises(JoinRefused) as refused:
            await conferences.admit(cid, Caller("sip", "127.0.0.2", pin="2468"))
        assert refused.value.code == "too_many_attempts"

        # Another source with the right PIN gets in (through the IVR: conference id, then PIN).
        phone = asyncio.ensure_future(run_peer({"user": "deputy", "bind": "127.0.0.3",
                                                "target": f"sip:ivr@127.0.0.1:{port}",
                                                "digits": [f"{cid}#", "2468#"], "digit_pause": 2.0,
                                                "wav": str(tmp_path / "c.wav"), "talk_seconds": 3.0}))
        await until(lambda: len(joined(conf)) == 1 or phone.done(), 30, "the right PIN to admit 127.0.0.3")
        assert joined(conf) == ["sip-deputy"]
        result = await phone
        assert result["call_state"] == "CONFIRMED", result
    finally:
        await bridge.stop()
    entries = [e for e in await services.audit.recent(50, action="conference.join") if e.target == cid]
    seen = sorted((e.source, e.outcome, e.detail["code"]) for e in entries)
    assert seen == sorted([("127.0.0.2", "denied", "wrong_pin"), ("127.0.0.2", "denied", "wrong_pin"),
                           ("127.0.0.2", "denied", "too_many_attempts"),
                           ("127.0.0.2", "denied", "too_many_attempts"),
                           ("127.0.0.3", "ok", "pin")]), seen
    assert {e.actor for e in entries} == {"sip:intruder", "sip:deputy"}
    assert all(e.detail["protocol"] == "sip" for e in entries)

