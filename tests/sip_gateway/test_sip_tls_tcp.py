"""SIP over TLS and TCP between two of our endpoints (real sockets on 127.0.0.1).

Debian's SIPp is built without OpenSSL, so TLS is checked between our own client and server."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sip_gateway.aio.sip_endpoint import Answer, SipEndpoint
from sip_gateway.rtp.media_description import LocalMedia
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call, CallState
from sip_gateway.sip.useragent import UserAgentConfig


def make_cert(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def answer_all(call: Call) -> Answer:
    return Answer(LocalMedia("127.0.0.1", 40000))


@pytest.mark.parametrize("transport", ["tls", "tcp"])
async def test_call_over_stream_transport(tmp_path: Path, transport: str) -> None:
    cert, key = make_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    server = SipEndpoint(UserAgentConfig(port=0), answer_all, tls_context=server_ctx, tls_port=0)
    client = SipEndpoint(UserAgentConfig(port=0, user="caller"), client_tls_context=client_ctx)
    await server.start()
    await client.start(udp=True, tcp=True)
    try:
        port = server.tls_port if transport == "tls" else server.config.port
        call = client.invite(f"sip:80000001@127.0.0.1:{port};transport={transport}", LocalMedia("127.0.0.1", 41000))
        await client.wait_for(ev.CallEstablished, 5)
        await server.wait_for(ev.CallEstablished, 5)
        assert call.state == CallState.CONFIRMED and call.flow.transport == transport
        server_call = next(iter(server.ua.calls.values()))
        assert server_call.flow.transport == transport
        # The server hangs up over the same connection.
        server.hangup(server_call)
        ended = await client.wait_for(ev.CallEnded, 5)
        assert isinstance(ended, ev.CallEnded) and ended.reason == "remote hangup"
    finally:
        await client.close()
        await server.close()


async def test_dial_out_over_tls_trusts_the_configured_ca_only(tmp_path: Path) -> None:
    """`sip.tls_ca`: a room system with a certificate of the city's own CA is reachable over TLS;
    without the setting (system store) the same call is refused by verification; a bad file is a
    configuration error naming the field."""
    from config.errors import ConfigError
    from config.settings import SipSettings
    from mcu.legs.sip_config import client_tls_context

    cert, key = make_cert(tmp_path)  # self-signed: its own CA
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    room_system = SipEndpoint(UserAgentConfig(port=0), answer_all, tls_context=server_ctx, tls_port=0)
    await room_system.start()
    trusted = SipEndpoint(UserAgentConfig(port=0, user="mcu"),
                          client_tls_context=client_tls_context(SipSettings(tls_ca=cert)))
    default = SipEndpoint(UserAgentConfig(port=0, user="mcu"), client_tls_context=client_tls_context(SipSettings()))
    await trusted.start()
    await default.start()
    try:
        target = f"sip:80000001@127.0.0.1:{room_system.tls_port};transport=tls"
        call = trusted.invite(target, LocalMedia("127.0.0.1", 41000))
        await trusted.wait_for(ev.CallEstablished, 5)
        assert call.state == CallState.CONFIRMED and call.flow.transport == "tls"
        refused = default.invite(target, LocalMedia("127.0.0.1", 41002))
        with pytest.raises(TimeoutError):
            await default.wait_for(ev.CallEstablished, 2)
        assert refused.state != CallState.CONFIRMED and len(room_system.ua.calls) == 1
    finally:
        for endpoint in (trusted, default, room_system):
            await endpoint.close()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    for bad in (junk, tmp_path / "missing.pem"):
        with pytest.raises(ConfigError, match="sip.tls_ca"):
            client_tls_context(SipSettings(tls_ca=bad))
