"""TLS for the cascade control channel: the ssl contexts of a parent (wss:// server) and a child.

With `[cascade] tls = "on"` a parent serves its children over `wss://` with its own certificate
(`tls_certificate` / `tls_key`); when `tls_ca` is set it also *requires* a client certificate
signed by that CA (mutual TLS). A child connects with `wss://<parent control host:port>`, checks
the parent's certificate against `tls_ca` (the system trust store when unset) **for the control
host of the site plan** (a DNS name or an IP address in the certificate's subjectAltName), and
presents its own certificate when it has one. The HMAC token handshake still runs inside.

Bad or unreadable files are a `ConfigError` naming the setting (`cascade.tls_key: ...`), so a
node with a broken TLS configuration does not start, like SIP over TLS.
"""
from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from config.errors import ConfigError
from config.settings import CascadeSettings
from sip_gateway.aio.tls import TlsSetupError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlTls:
    """The contexts one node needs: `server` when it has children, `client` when it has a parent."""

    server: ssl.SSLContext | None = None
    client: ssl.SSLContext | None = None


def _read(field: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsSetupError(field, f"无法读取 {path}：{exc.strerror or exc}") from None


def _load_pair(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Check the certificate and key files one by one (to name the bad one), then load them."""
    try:
        x509.load_pem_x509_certificates(_read("tls_certificate", cert))
    except ValueError:
        raise TlsSetupError("tls_certificate", f"{cert} 不是 PEM 证书") from None
    try:
        serialization.load_pem_private_key(_read("tls_key", key), password=None)
    except (ValueError, TypeError):
        raise TlsSetupError("tls_key", f"{key} 不是未加密的 PEM 私钥") from None
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsSetupError("tls_key", f"{key} 与证书 {cert} 不匹配：{exc.reason or exc}") from None


def _load_ca(context: ssl.SSLContext, ca: Path) -> None:
    try:
        x509.load_pem_x509_certificates(_read("tls_ca", ca))
    except ValueError:
        raise TlsSetupError("tls_ca", f"{ca} 不是 PEM 证书包") from None
    context.load_verify_locations(cafile=ca)


def server_context(cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    """A parent's context: its certificate; with `ca`, client certificates required (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, cert, key)
    if ca is not None:
        _load_ca(context, ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """A child's context: verifies the parent (against `ca`, else the system store) and its
    host name; presents this node's certificate when one is configured."""
    if ca is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:  # only the cascade CA is trusted, not the system store
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
        _load_ca(context, ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        _load_pair(context, cert, key)
    return context


def contexts(settings: CascadeSettings, serves: bool, connects: bool) -> ControlTls:
    """The node's TLS contexts from `[cascade]` (none when `tls = "off"`); ConfigError if unusable."""
    if settings.tls != "on":
        if settings.tls_certificate is not None or settings.tls_ca is not None:
            log.warning("cascade: tls_certificate/tls_ca are set but tls = \"off\": the control channel is plain ws://")
        return ControlTls()
    try:
        server = None
        if serves:
            if settings.tls_certificate is None or settings.tls_key is None:
                raise TlsSetupError("tls_certificate", "本节点有下级节点且 tls = \"on\"，须设置本节点的证书和私钥 "
                                                       "(tls_certificate, tls_key)")
            server = server_context(settings.tls_certificate, settings.tls_key, settings.tls_ca)
        client = client_context(settings.tls_ca, settings.tls_certificate, settings.tls_key) if connects else None
    except TlsSetupError as exc:
        raise ConfigError("<settings>", [f"cascade.{exc.field}: {exc.message}"]) from None
    return ControlTls(server, client)


def tls_failure(exc: BaseException) -> str | None:
    """The TLS reason behind a failed connection attempt (certificate not trusted, host name
    mismatch, certificate required...), or None when it failed for another reason."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return str(current.reason or current)
        current = current.__cause__ or current.__context__
    return None
