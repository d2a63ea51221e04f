"""TLS material for SIP over TLS (port 5061): the server context and a self-signed certificate.

An installation names its certificate and key (``sip.tls_certificate``/``sip.tls_key``); when it
does not, :func:`ensure_self_signed` makes one once (EC P-256, ten years, the SIP host in the
subjectAltName) so TLS works out of the box. Room systems that check certificates need the
installation's own; the self-signed one gives encryption, and its SHA-256 fingerprint
(:func:`fingerprint`, logged at start-up) lets an operator pin it on the endpoints.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=3650)


class TlsSetupError(ValueError):
    """The certificate or key cannot be used; ``field`` names the setting at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _subject_alt_names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    else:
        if str(address) != "127.0.0.1":
            names.append(x509.IPAddress(address))
    return names


def make_self_signed(host: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM) of a new self-signed certificate for ``host``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host or "commandcenter-sip"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "commandcenter SIP")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_self_signed(cert_path: Path, key_path: Path, host: str) -> bool:
    """Create the certificate and key unless both exist; True when they were made now.

    The key file is created with mode 0600 (never readable by others, not even briefly).
    """
    if cert_path.exists() and key_path.exists():
        return False
    cert_pem, key_pem = make_self_signed(host, datetime.datetime.now(datetime.UTC))
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path.unlink(missing_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    cert_path.write_bytes(cert_pem)
    return True


def server_context(cert_path: Path, key_path: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS server context for SIP; TlsSetupError says which file is wrong and why.

    ``client_ca`` (the emergency trunk's CA): ask every client for a certificate and verify one that is
    sent against this bundle; clients without one still connect (conference sites), and the trunk
    checks the identity of the certificate (:meth:`SipEndpoint.peer_certificate`).
    """
    contents = {}
    for field, path in (("tls_certificate", cert_path), ("tls_key", key_path)):
        try:
            contents[field] = path.read_bytes()
        except OSError as exc:
            raise TlsSetupError(field, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        x509.load_pem_x509_certificates(contents["tls_certificate"])
    except ValueError:
        raise TlsSetupError("tls_certificate", f"{cert_path} is not a PEM certificate") from None
    try:
        serialization.load_pem_private_key(contents["tls_key"], password=None)
    except (ValueError, TypeError):
        raise TlsSetupError("tls_key", f"{key_path} is not an unencrypted PEM private key") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise TlsSetupError("tls_key", f"{key_path} does not belong to {cert_path}: {exc.reason or exc}") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError("tls_ca", f"cannot load {client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint of the (first) certificate in ``cert_path``, as AA:BB:..."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


__all__ = ["TlsSetupError", "ensure_self_signed", "fingerprint", "make_self_signed", "server_context"]
