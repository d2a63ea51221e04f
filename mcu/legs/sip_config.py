"""The SIP leg's configuration helpers: user agent settings and TLS contexts from ``settings.sip``.

Apart from the bridge because they only translate configuration (and write the self-signed
certificate once); the emergency trunk and the tests use them too.
"""
from __future__ import annotations

import logging
import ssl
from pathlib import Path

from config.errors import ConfigError
from config.settings import SipSettings
from sip_gateway.aio.tls import TlsSetupError, ensure_self_signed, server_context
from sip_gateway.rtp.media_description import MediaPolicy
from sip_gateway.sip.useragent import UserAgentConfig

log = logging.getLogger(__name__)


def user_agent_config(settings: SipSettings) -> UserAgentConfig:
    """The SIP user agent's configuration from the ``sip`` settings section."""
    return UserAgentConfig(
        host=settings.host, port=settings.udp_port, tls_port=settings.tls_port, realm=settings.realm,
        accounts=dict(settings.accounts), policy=MediaPolicy(srtp=settings.srtp),
        rate=settings.invite_rate_per_source, burst=settings.invite_burst_per_source)


def tls_files(settings: SipSettings, var_dir: Path) -> tuple[Path, Path, bool]:
    """(certificate, key, generated) for SIP over TLS: the configured pair, or our self-signed one."""
    if settings.tls_certificate is not None and settings.tls_key is not None:
        return settings.tls_certificate, settings.tls_key, False
    cert, key = var_dir / "keys" / "sip-tls.crt", var_dir / "keys" / "sip-tls.key"
    return cert, key, True


def client_tls_context(settings: SipSettings) -> ssl.SSLContext | None:
    """The context for dialling out over TLS: verified against ``sip.tls_ca`` when set (None: the
    endpoint's default, the system CA store). ConfigError naming the field if the file is unusable."""
    if settings.tls_ca is None:
        return None
    try:
        context = ssl.create_default_context(cafile=str(settings.tls_ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("<settings>", [f"sip.tls_ca: cannot load {settings.tls_ca}: {exc}"]) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_context(settings: SipSettings, var_dir: Path, client_ca: Path | None = None) -> tuple[ssl.SSLContext, Path]:
    """The TLS server context from settings (making the self-signed pair once); ConfigError if unusable.

    ``client_ca`` (``emergency.trunk.tls_ca``): client certificates are requested and verified with it."""
    cert, key, ours = tls_files(settings, var_dir)
    try:
        if ours and ensure_self_signed(cert, key, settings.host):
            log.info("SIP TLS: generated a self-signed certificate %s", cert)
        return server_context(cert, key, client_ca), cert
    except TlsSetupError as exc:
        if exc.field == "tls_ca":
            raise ConfigError("<settings>", [f"emergency.trunk.tls_ca: {exc.message}"]) from None
        field = f"sip.{exc.field}" if not ours else f"sip.{exc.field} (generated {cert})"
        raise ConfigError("<settings>", [f"{field}: {exc.message}"]) from None
    except OSError as exc:  # the keys directory cannot be written
        raise ConfigError("<settings>", [f"sip.tls_certificate: cannot create {cert}: {exc}"]) from None


__all__ = ["client_tls_context", "tls_context", "tls_files", "user_agent_config"]
