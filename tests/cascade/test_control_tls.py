"""The cascade control channel over TLS between real nodes on 127.0.0.1 (city ← 罗定), with a
throwaway CA and node certificates made here: wss:// with mutual TLS carries the site list and a
remote command; clients without a certificate, with plain ws:// or checking the wrong host name are
refused without disturbing the real channel; a child that does not trust its parent's certificate
audits the failure and keeps retrying; broken TLS settings are configuration errors naming the field."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from config.errors import ConfigError
from config.settings import CascadeSettings
from mcu.cascade.control import ControlConnection
from mcu.cascade.control_tls import client_context, contexts, tls_failure
from mcu.cascade.control_ws import ControlSession
from tests.cascade.test_control_nodes import (
    CONF,
    TOKEN,
    NodeUnderTest,
    create_databases,
    eventually,
    remote,
    start_node,
    stop_nodes,
    write_plan,
)
from tests.conftest import free_port, with_database

NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    cert_path: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_ca(directory: Path, label: str) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1)).not_valid_after(NOW + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = directory / f"{label}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issuer(name, key, path)


def make_node_cert(directory: Path, issuer: Issuer, node: str) -> tuple[Path, Path]:
    """A node certificate for 127.0.0.1 (the control host of the test plan), usable both ways."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
            .issuer_name(issuer.name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1)).not_valid_after(NOW + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                           critical=False)
            .sign(issuer.key, hashes.SHA256()))
    cert_path, key_path = directory / f"{node}.crt", directory / f"{node}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path                       # a CA that signed none of the nodes' certificates
    certs: dict[str, tuple[Path, Path]]  # node -> (certificate, key), signed by `ca`
    stranger: tuple[Path, Path]          # a certificate signed by `other_ca`


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca, other = make_ca(directory, "cascade-ca"), make_ca(directory, "other-ca")
    certs = {node: make_node_cert(directory, ca, node) for node in ("city", "luoding")}
    return Pki(ca.cert_path, other.cert_path, certs, make_node_cert(directory, other, "stranger"))


def tls_settings(pki: Pki, node: str) -> dict[str, Any]:
    cert, key = pki.certs[node]
    return {"token": TOKEN, "tls": "on", "tls_certificate": cert, "tls_key": key, "tls_ca": pki.ca}


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path, pki: Pki) -> AsyncIterator[dict[str, NodeUnderTest]]:
    """The city and 罗定 (the township MCU of the plan is not started), each with TLS on."""
    names = ["city", "luoding"]
    dbs = await create_databases(pg_url, names, "t_")
    plan = write_plan(tmp_path, {n: free_port() for n in names})
    started: dict[str, NodeUnderTest] = {}
    try:
        for name in names:
            started[name], _ = await start_node(name, with_database(pg_url, dbs[name]), tmp_path, plan,
                                                tls_settings(pki, name), "级联加密测试会议")
        yield started
    finally:
        await stop_nodes(started, dbs, pg_url)


def control_port(node: NodeUnderTest) -> int:
    address = node.core.plan.node(node.name).control  # type: ignore[union-attr]
    return int(address.rpartition(":")[2])


async def attempt(uri: str, tls: ssl.SSLContext | None, name: str = "luoding", token: str = TOKEN) -> str:
    """Connect and authenticate as `name`: 'open', or the kind of failure (within a few seconds)."""
    try:
        async with asyncio.timeout(8):
            async with connect(uri, ssl=tls, open_timeout=5) as ws:
                conn = ControlConnection(name, token.encode(), expected_peer="city")
                session = ControlSession(ws, conn, lambda event: None, auth_timeout=3)
                running = asyncio.create_task(session.run())
                await asyncio.wait({running, asyncio.create_task(session.authenticated.wait())},
                                   return_when=asyncio.FIRST_COMPLETED)
                opened = session.authenticated.is_set()
                await ws.close()
                await running
                return "open" if opened else f"closed {ws.close_code}"
    except TimeoutError:
        return "hung"
    except Exception as exc:  # noqa: BLE001 - the failure's kind is the result
        return f"failed {type(exc).__name__}: {exc}"


async def test_wss_channel_carries_sites_and_commands_and_refuses_bad_clients(
        nodes: dict[str, NodeUnderTest], pki: Pki) -> None:
    city, county = nodes["city"], nodes["luoding"]
    for node in (city, county):
        await node.start_control()
    assert city.control is not None and county.control is not None
    assert city.control.server_ssl is not None and county.control.client_ssl is not None
    assert city.control.server_ssl.verify_mode is ssl.CERT_REQUIRED  # tls_ca set: mutual TLS
    await eventually(lambda: "luoding-room" in remote(city), within=10)
    assert remote(city)["luoding-room"]["status"] == "joined"
    # a command round trip over the encrypted channel
    await city.control.command(CONF, "luoding-room", "mute", {})
    assert county.conf.room.participants["luoding-room"].muted is True
    await eventually(lambda: remote(city)["luoding-room"]["muted"] is True)

    port = control_port(city)
    trusted_no_cert = client_context(pki.ca, None, None)
    # a client whose certificate the parent does not trust (another CA), and one without any
    stranger = client_context(pki.ca, *pki.stranger)
    # (the real child's session is replaced only after authentication, so nothing below reaches it)
    for label, uri, tls in (("no client certificate", f"wss://127.0.0.1:{port}", trusted_no_cert),
                            ("untrusted client certificate", f"wss://127.0.0.1:{port}", stranger),
                            ("plain ws:// to a TLS parent", f"ws://127.0.0.1:{port}", None)):
        outcome = await attempt(uri, tls)
        assert outcome.startswith("failed"), (label, outcome)
    # the parent's certificate names 127.0.0.1, not localhost: a child checking that host refuses
    own = client_context(pki.ca, *pki.certs["luoding"])
    outcome = await attempt(f"wss://localhost:{port}", own)
    assert outcome.startswith("failed") and "certificate verify failed" in outcome, outcome
    # a correct client (the real one's certificate) gets through TLS; the token decides as before
    assert await attempt(f"wss://127.0.0.1:{port}", own, token="not-the-cascade-token-at-all!!") == "closed 4401"
    assert await attempt(f"wss://127.0.0.1:{port}", own, name="luoding") == "open"
    # the real channel comes back (the test client replaced it while it was open) and works
    await eventually(lambda: city.control.channels() == {"luoding": True}  # type: ignore[union-attr]
                     and remote(city).get("luoding-room", {}).get("status") == "joined", within=10)
    await city.control.command(CONF, "luoding-room", "unmute", {})
    assert county.conf.room.participants["luoding-room"].muted is False


@pytest.mark.parametrize(("mistake", "reason"), [
    ("parent not signed by tls_ca", "certificate verify failed"),
    ("child without a certificate", "closed the connection in the opening handshake"),
])
async def test_a_child_whose_tls_fails_audits_and_keeps_retrying(
        nodes: dict[str, NodeUnderTest], pki: Pki, mistake: str, reason: str) -> None:
    city, county = nodes["city"], nodes["luoding"]
    await city.start_control()
    cascade = county.core.settings.cascade
    if mistake == "parent not signed by tls_ca":
        cascade.tls_ca = pki.other_ca
    else:
        county.core.plan.nodes[:] = [n for n in county.core.plan.nodes if n.name != "luoding-t1"]  # no server
        cascade.tls_certificate = cascade.tls_key = None
    service = await county.start_control()
    service.refused_interval = 0.2  # (production: 30 s between audited attempts)
    rows: list[Any] = []
    async with asyncio.timeout(15):
        while len(rows) < 3:
            rows = await county.core.db.fetch("SELECT actor, outcome, source, detail FROM audit_log "
                                              "WHERE action = 'cascade.control.tls' ORDER BY id")
            await asyncio.sleep(0.1)
    assert {(r["actor"], r["outcome"]) for r in rows} == {("node:city", "failed")}
    assert reason in str(rows[0]["detail"]), rows[0]["detail"]
    assert service.channels()["city"] is False
    assert "luoding-room" not in remote(city)
    # the loop is still running: with the right CA the channel comes up on the next attempt
    service.client_ssl = client_context(pki.ca, *pki.certs["luoding"])
    await eventually(lambda: "luoding-room" in remote(city), within=10)
    assert service.channels()["city"] is True


@pytest.mark.parametrize(("change", "field"), [
    ({"tls_certificate": "missing.crt"}, "cascade.tls_certificate"),
    ({"tls_key": "garbage.key"}, "cascade.tls_key"),
    ({"tls_key": "other.key"}, "cascade.tls_key"),    # a key of another certificate
    ({"tls_ca": "garbage.key"}, "cascade.tls_ca"),
    ({"tls_ca": "missing.crt"}, "cascade.tls_ca"),
    ({"tls_certificate": None, "tls_key": None}, "cascade.tls_certificate"),  # a parent needs its own
])
def test_unusable_tls_files_are_config_errors_naming_the_field(
        pki: Pki, tmp_path: Path, change: dict[str, str | None], field: str) -> None:
    (tmp_path / "garbage.key").write_text("not a pem file\n")
    values: dict[str, Any] = {**tls_settings(pki, "city"), "tls_key": pki.certs["city"][1]}
    values.update({k: None if v is None else (pki.certs["luoding"][1] if v == "other.key" else tmp_path / v)
                   for k, v in change.items()})
    settings = CascadeSettings(**values)
    with pytest.raises(ConfigError) as raised:
        contexts(settings, serves=True, connects=True)
    assert raised.value.problems[0].startswith(field + ":"), raised.value.problems


def test_tls_settings_defaults_and_pairing(pki: Pki) -> None:
    off = CascadeSettings(token=TOKEN)
    assert off.tls == "off" and contexts(off, serves=True, connects=True).server is None
    with pytest.raises(ValidationError, match="tls_key must be set"):
        CascadeSettings(tls="on", tls_certificate=pki.certs["city"][0])
    with pytest.raises(ValidationError):
        CascadeSettings(tls="yes")
    # a child without a certificate of its own (server-only TLS at its parent) is valid
    child = contexts(CascadeSettings(tls="on", tls_ca=pki.ca), serves=False, connects=True)
    assert child.server is None and child.client is not None and child.client.check_hostname


async def test_a_tls_child_against_a_plain_parent_fails_promptly(pki: Pki) -> None:
    """The opposite misconfiguration (parent tls = "off"): the attempt fails at once (the plain
    server resets or answers garbage; nothing hangs), and the parent loop simply retries."""
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        started = asyncio.get_running_loop().time()
        outcome = await attempt(f"wss://127.0.0.1:{port}", client_context(pki.ca, *pki.certs["luoding"]))
        assert outcome.startswith("failed") and asyncio.get_running_loop().time() - started < 5, outcome
    assert tls_failure(ConnectionRefusedError(111, "refused")) is None
