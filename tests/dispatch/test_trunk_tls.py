"""A trunk peer identified by its TLS client certificate (issue 13), over a real TLS connection.

The SIP TLS listener asks for client certificates verified against ``emergency.trunk.tls_ca``; the
trunk accepts an emergency INVITE from the peer's address only when that certificate names the
peer's ``tls_identity``. Without a certificate, or with one for another name, the INVITE gets 403.
"""
from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dispatch.calltaking.trunk import EmergencyTrunk, IncomingEmergencyCall, TrunkConfig
from dispatch.calltaking.trunk_trust import TrunkPeer
from mcu.call_rooms import CallRooms
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.aio.tls import make_self_signed, server_context
from sip_gateway.sip.invite_router import with_route
from sip_gateway.sip.useragent import UserAgentConfig

pytestmark = pytest.mark.timeout(60)
NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(tmp: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("Operator Trunk CA")).issuer_name(_name("Operator Trunk CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1)).not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / "trunk-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_client(tmp: Path, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path], dns: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(dns)).issuer_name(ca[1].subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1)).not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca[0], hashes.SHA256()))
    cert_path, key_path = tmp / f"{dns}.crt", tmp / f"{dns}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    return cert_path, key_path


class Desk:
    def __init__(self) -> None:
        self.calls: list[IncomingEmergencyCall] = []

    async def call_arrived(self, call: IncomingEmergencyCall, handle: Any) -> object:
        self.calls.append(call)
        return None

    async def caller_hung_up(self, call_key: str) -> None:
        return None


def invite(port: int, local_port: int, n: int) -> bytes:
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    return (f"INVITE sip:110@127.0.0.1:{port};transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS 127.0.0.1:{local_port};branch=z9hG4bKtls{n};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:13900000001@sbc.operator.cn>;tag=t{n}\r\n"
            "To: <sip:110@127.0.0.1>\r\n"
            "P-Asserted-Identity: <sip:13712345678@operator.example.cn>\r\n"
            f"Call-ID: tls-call-{n}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:sbc@127.0.0.1:{local_port};transport=tls>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


async def final_status(port: int, n: int, client: tuple[Path, Path] | None) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(*client)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(invite(port, writer.get_extra_info("sockname")[1], n))
        await writer.drain()
        buffer = b""
        async with asyncio.timeout(10):
            while True:
                buffer += await reader.read(65536)
                for line in buffer.split(b"\r\n"):
                    if line.startswith(b"SIP/2.0 ") and int(line.split()[1]) >= 200:
                        return int(line.split()[1])
    finally:
        writer.close()


async def test_tls_identity_of_the_trunk_peer_is_checked_on_a_real_connection(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    sbc = make_client(tmp_path, ca, "sbc.operator.cn")
    other = make_client(tmp_path, ca, "someone-else.example")
    cert_pem, key_pem = make_self_signed("127.0.0.1", NOW)
    (tmp_path / "server.crt").write_bytes(cert_pem)
    (tmp_path / "server.key").write_bytes(key_pem)
    context = server_context(tmp_path / "server.crt", tmp_path / "server.key", client_ca=ca[2])
    endpoint = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=0))
    await endpoint.start(udp=True, tcp=False)
    port = await endpoint.start_tls(context, 0)
    desk = Desk()
    peer = TrunkPeer("127.0.0.1", tls_identity="sbc.operator.cn", name="operator-sbc")
    trunk = EmergencyTrunk(endpoint, desk, TrunkConfig(recordings_dir=tmp_path / "calls", peers=(peer,)),
                           media=CallRooms())
    endpoint.router = with_route(endpoint.router, trunk.route)
    try:
        assert await final_status(port, 1, None) == 403  # right address, no certificate
        assert await final_status(port, 2, other) == 403  # a certificate from the CA, for another name
        assert desk.calls == []
        assert await final_status(port, 3, sbc) == 200
        assert len(desk.calls) == 1
        call = desk.calls[0]
        assert call.number == "13712345678" and call.caller_verified and call.trunk_peer == "operator-sbc"
        assert call.source.startswith("tls:127.0.0.1:")
    finally:
        await trunk.close()
        await endpoint.close()
