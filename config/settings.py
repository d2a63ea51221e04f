"""The typed, validated settings of a commandcenter installation.

Sources, lowest priority first: built-in defaults, a TOML file (`commandcenter --config FILE`
or `CC_CONFIG`), then environment variables `CC_<SECTION>__<FIELD>` (e.g. `CC_HTTP__PORT=8081`).
`DATABASE_URL` selects an external PostgreSQL instead of the embedded one.
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.errors import ConfigError, describe_validation_error, load_toml
from config.password_policy import password_problem

DEMO_DIR = Path(__file__).resolve().parent / "demo"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    session_idle_seconds: int = Field(1800, ge=1, description="session ends after this much inactivity")
    session_max_seconds: int = Field(12 * 3600, ge=1, description="session ends this long after login")
    default_language: Literal["zh-CN", "en"] = "zh-CN"
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest request body accepted (413 beyond)")
    join_per_minute: float = Field(30.0, gt=0, description="anonymous /join page views per minute per source")
    join_burst: int = Field(10, ge=1, description="anonymous /join page views a source may make at once")

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("tls_certificate and tls_key must be set together")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_certificate else "http"


class DatabaseSettings(_Section):
    url: str | None = Field(None, description="external PostgreSQL; unset = embedded under var/pg")
    pool_size: int = Field(10, ge=2, le=200, description="at least 2: seeding holds a lock on one connection")
    events_keep_hours: float = Field(72.0, gt=0, description="bus events older than this are pruned")
    # high availability (issue 17): a multi-host URL rides out a Patroni failover within these bounds
    failover_wait_seconds: float = Field(
        30.0, gt=0, le=600, description="how long a command keeps retrying while no database node takes writes")
    connect_timeout_seconds: float = Field(5.0, gt=0, le=120, description="per connection attempt, per host")
    command_timeout_seconds: float | None = Field(
        120.0, gt=0, description="a statement without an answer this long counts as a lost connection")


class BackupSettings(_Section):
    """pgBackRest, wrapped by `commandcenter backup run|list|restore` (core/db/backup.py, docs/ha.md)."""

    stanza: str = Field("commandcenter", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="pgBackRest stanza")
    pgbackrest_config: Path | None = Field(None, description="pgbackrest.conf (unset: /etc/pgbackrest/pgbackrest.conf)")
    run_as: str = Field("postgres", description="system user pgbackrest runs as when started by root")
    # The repository on the S3-compatible store (docs/ha.md): set s3_endpoint to use it instead of
    # the repository of pgbackrest.conf. Key and secret come from settings/environment, never logged.
    s3_endpoint: str | None = Field(None, description="S3 host name (no scheme), e.g. 10.10.0.40 or s3.example.cn")
    s3_port: int | None = Field(None, gt=0, lt=65536, description="unset: 443")
    s3_bucket: str = Field("commandcenter-backups", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    s3_region: str = Field("us-east-1", min_length=1, max_length=64)
    s3_path: str = Field("/pgbackrest", pattern=r"^/[A-Za-z0-9_./-]*$", description="prefix in the bucket")
    s3_key: SecretStr | None = Field(None, description="set by CC_BACKUP__S3_KEY, never logged")
    s3_key_secret: SecretStr | None = Field(None, description="set by CC_BACKUP__S3_KEY_SECRET, never logged")
    s3_uri_style: Literal["path", "host"] = "path"
    s3_verify_tls: bool = Field(True, description="off only for a local test store")
    s3_ca_file: Path | None = Field(None, description="CA certificate of a store with its own CA")

    @model_validator(mode="after")
    def _s3_complete(self) -> BackupSettings:
        if self.s3_endpoint is not None and (self.s3_key is None or self.s3_key_secret is None):
            raise ValueError("backup.s3_endpoint needs backup.s3_key and backup.s3_key_secret")
        return self


class SecuritySettings(_Section):
    """Logins are slowed per (source address, account) and per source address, never locked for
    everyone (core/login_policy.py): after the free attempts each further one waits
    base * 2**(n - free) seconds, up to the maximum."""

    password_min_length: int = Field(10, ge=8, le=128)
    login_free_attempts: int = Field(
        5, ge=1, le=100, description="login attempts per (source address, account) before each further one must wait")
    login_max_delay_seconds: float = Field(300.0, gt=0, le=86400,
                                           description="longest wait per (source address, account)")
    login_source_free_attempts: int = Field(
        30, ge=1, le=100000, description="login attempts per source address, any account, before each must wait")
    login_source_max_delay_seconds: float = Field(60.0, gt=0, le=86400,
                                                  description="longest wait per source address")
    login_base_delay_seconds: float = Field(1.0, gt=0, le=3600, description="the first wait; it doubles each attempt")
    login_forget_seconds: float = Field(3600.0, gt=0, description="a counter quiet this long starts over")
    password_hash_workers: int = Field(2, ge=1, le=32, description="threads that hash and check passwords")
    password_hash_queue: int = Field(8, ge=0, le=10000,
                                     description="password checks that may wait; more are refused (503) at once")

    @model_validator(mode="after")
    def _delays(self) -> SecuritySettings:
        if self.login_base_delay_seconds > min(self.login_max_delay_seconds, self.login_source_max_delay_seconds):
            raise ValueError("login_base_delay_seconds must not exceed the maximum delays")
        return self


class SipSettings(_Section):
    enabled: bool = Field(True, description="SIP dial-in/dial-out for conferences (capability 'sip')")
    host: str = Field("127.0.0.1", description="address SIP listens on and puts in Contact/Via")
    udp_port: int = Field(5060, ge=0, le=65535, description="UDP and TCP listen port; 0 = any free port")
    tcp_port: int = Field(5060, ge=0, le=65535)
    tls_port: int = Field(5061, ge=0, le=65535, description="SIP over TLS listen port; 0 = no TLS")
    tls_certificate: Path | None = Field(
        None, description="PEM certificate (chain) for SIP over TLS; unset = a self-signed one is generated "
                          "once under <var_dir>/keys/sip-tls.crt")
    tls_key: Path | None = Field(None, description="PEM private key of tls_certificate (set both or neither)")
    content_on_dial_out: bool = Field(
        False, description="offer a slides stream and BFCP when the MCU calls a room system; off by default: "
                           "room systems without content sharing (baresip, the test peers) can take the second "
                           "video line for their main video")
    tls_ca: Path | None = Field(
        None, description="PEM CA bundle trusted when dialling sips:/transport=tls sites (e.g. the city's own "
                          "CA for room systems); unset = the system's CA store")
    media_host: str = Field("", description="address for RTP (SDP c=); empty = host")
    realm: str = "commandcenter"
    accounts: dict[str, str] = Field(default_factory=dict,
                                     description="SIP users that may register and call no-guest conferences "
                                                 "(username = password; weak passwords are refused, see "
                                                 "config/password_policy.py)")
    srtp: Literal["off", "optional", "required"] = "optional"
    max_video_size: Literal["1280x720", "640x360", "352x288"] = Field(
        "1280x720", description="largest composite sent to a SIP site (the codec level may lower it)")
    stats_interval_seconds: float = Field(5.0, ge=0, description="per-site statistics events; 0 = off")
    invite_rate_per_source: float = Field(
        10.0, gt=0, le=100_000, description="INVITE and REGISTER requests per second accepted from one source "
                                            "address (token bucket); emergency trunk peers are exempt for INVITE")
    invite_burst_per_source: float = Field(30.0, ge=1, le=100_000, description="bucket size of that limit")

    @field_validator("accounts")
    @classmethod
    def _strong_passwords(cls, v: dict[str, str]) -> dict[str, str]:
        # The value (with the passwords) is a dict, so the error message never shows it.
        problems = [f"account {user!r}: {problem}" for user, password in v.items()
                    if (problem := password_problem(user, password))]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> SipSettings:
        if self.tls_certificate is not None and self.tls_key is None:
            raise ValueError("tls_key must be set when tls_certificate is set")
        if self.tls_key is not None and self.tls_certificate is None:
            raise ValueError("tls_certificate must be set when tls_key is set")
        if self.tls_port and self.tls_port == self.udp_port:
            raise ValueError(f"tls_port must differ from udp_port ({self.udp_port} is TCP too); 0 disables TLS")
        return self


_H323_HOST_PORT = re.compile(r"[0-9A-Za-z.\-]+(:\d{1,5})?")
_H323_ALIAS = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class H323Settings(_Section):
    enabled: bool = True  # the MCU role answers and places H.323 calls
    host: str = "127.0.0.1"  # signalling and media address
    signalling_port: int = Field(1720, ge=1, le=65535)
    ras_port: int = Field(1719, ge=0, le=65535, description="RAS (UDP); 0 = any free port")
    gatekeeper: Literal["none", "client", "server"] = Field(
        "none", description="none: direct calls only; client: register to gatekeeper_address; "
                            "server: answer RAS on ras_port and register local terminals")
    gatekeeper_address: str = Field("", validate_default=True,
                                    description="host[:port] of the gatekeeper (client mode; port 1719 by default)")
    aliases: list[str] = Field(default_factory=lambda: ["commandcenter-mcu"],
                               description="H.323 IDs / E.164 numbers the MCU registers; the conference ids "
                                           "are always added as E.164 numbers")
    time_to_live_seconds: int = Field(300, ge=10, le=86400, description="RAS registration time to live")
    gatekeeper_accounts: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="server mode: H.235.1 passwords of room systems (alias -> password, at least 8 characters). "
                    "Such an alias registers only with a valid HMAC-SHA1-96 token, and its calls may then enter "
                    "conferences that admit no guests (CC_H323__GATEKEEPER_ACCOUNTS='{\"room\": \"...\"}')")

    @field_validator("gatekeeper_address")
    @classmethod
    def _gatekeeper_address(cls, v: str, info: ValidationInfo) -> str:
        v = v.strip()
        if info.data.get("gatekeeper") == "client" and not v:
            raise ValueError("required when gatekeeper = \"client\" (host or host:port of the gatekeeper)")
        if v:
            if not _H323_HOST_PORT.fullmatch(v):
                raise ValueError("must be host or host:port")
            port = v.rpartition(":")[2] if ":" in v else "1719"
            if not 0 < int(port) < 65536:
                raise ValueError("port must be 1..65535")
        return v

    @field_validator("gatekeeper_accounts")
    @classmethod
    def _gatekeeper_accounts(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for alias, password in v.items():
            if not _H323_ALIAS.fullmatch(alias) or alias != alias.strip():
                raise ValueError(f"alias {alias!r} must be 1-128 printable characters without surrounding spaces")
            if len(password.get_secret_value()) < 8:
                raise ValueError(f"password of {alias!r} must have at least 8 characters")
        return v

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: list[str]) -> list[str]:
        for alias in v:
            if not _H323_ALIAS.fullmatch(alias) or alias != alias.strip():
                raise ValueError(f"alias {alias!r} must be 1-128 printable characters without surrounding spaces")
        if len(set(v)) != len(v):
            raise ValueError("aliases must be distinct")
        return v


class RtpSettings(_Section):
    port_min: int = Field(20000, ge=1024, le=65535)
    port_max: int = Field(29999, ge=1024, le=65535)
    dscp_audio: int = Field(46, ge=0, le=63, description="DSCP of audio RTP/RTCP (46 = EF); 0 = unmarked")
    dscp_video: int = Field(34, ge=0, le=63, description="DSCP of video RTP/RTCP (34 = AF41); 0 = unmarked")
    pace_video: bool = Field(True, description="pace each SIP site's video to its rate budget (a leaky bucket, "
                                               "key frames spread over time; sip_gateway/rtp/pacing.py)")

    @model_validator(mode="after")
    def _range(self) -> RtpSettings:
        if self.port_min >= self.port_max:
            raise ValueError("port_min must be below port_max")
        return self


class TrunkPeerSettings(_Section):
    """One source allowed to deliver emergency calls (the operator's SBC, an internal PBX)."""
    address: str = Field(description="IP address or CIDR network the INVITEs come from, e.g. 10.20.0.5 or 10.20.0.0/28")
    tls_identity: str = Field(
        "", max_length=253,
        description="when set, the INVITE must arrive over SIP TLS with a client certificate whose subjectAltName "
                    "(DNS or URI) or subject CN equals this name (see emergency.trunk.tls_ca)")
    trust_identity: bool = Field(
        True, description="true: P-Asserted-Identity, From and PIDF-LO from this peer are trusted (RFC 3325 trust "
                          "domain); false: calls are taken but the desk shows the number as unverified")
    name: str = Field("", max_length=100, description="label in logs and the audit log")

    @field_validator("address")
    @classmethod
    def _network(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address or CIDR network (host names are not accepted)") from None


def _loopback_peers() -> list[TrunkPeerSettings]:
    return [TrunkPeerSettings(address="127.0.0.1", name="loopback"), TrunkPeerSettings(address="::1", name="loopback")]


class EmergencyTrunkSettings(_Section):
    """The operator's trunk delivering emergency calls: a registration (registrar + aor) or a static peer.

    Only ``peers`` may deliver emergency INVITEs; any other source gets 403 and an audit entry. The default
    is this host only (loopback: the demo and local test callers); ``peers = []`` refuses every emergency
    INVITE. List the operator's SBC addresses (and its TLS identity where TLS is used) in production.
    """
    peers: list[TrunkPeerSettings] = Field(
        default_factory=_loopback_peers,
        description="sources allowed to send emergency INVITEs: [{address, tls_identity, trust_identity, name}] "
                    "or plain address strings; default loopback only; empty = refuse all")
    tls_ca: Path | None = Field(
        None, description="PEM CA bundle that signs the trunk peers' client certificates; when set, the SIP TLS "
                          "listener asks every client for a certificate (needed for tls_identity)")
    registrar: str = Field("", description="sip:host[:port] to register with (digest auth)")
    aor: str = Field("", description="address of record registered, e.g. sip:110@operator.example")
    username: str = ""
    password: SecretStr | None = Field(None, description="set by CC_EMERGENCY__TRUNK__PASSWORD, never logged")
    peer: str = Field("", description="host[:port] of a static peer that sends calls without registration "
                                      "(OPTIONS keep-alive only: list its address in peers to accept its calls)")

    @field_validator("peers", mode="before")
    @classmethod
    def _plain_addresses(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"address": item} if isinstance(item, str) else item for item in v]
        return v

    @model_validator(mode="after")
    def _registration(self) -> EmergencyTrunkSettings:
        if any(p.tls_identity for p in self.peers) and self.tls_ca is None:
            raise ValueError("tls_ca must be set when a peer has a tls_identity (the CA that signs its certificate)")
        if bool(self.registrar) != bool(self.aor):
            raise ValueError("registrar and aor must be set together")
        if self.registrar and not self.registrar.startswith(("sip:", "sips:")):
            raise ValueError(f"registrar must be a sip: URI, got {self.registrar!r}")
        return self


class EmergencySettings(_Section):
    numbers: list[str] = Field(default_factory=lambda: ["110", "119", "120", "122"])
    desk_sip: bool = Field(True, description="the call-taking desk answers the emergency numbers over SIP")
    remote_desk: bool = Field(
        False, description="a `--role web` node runs no desk of its own: its desk console reaches the "
                           "`--role desk` node that holds the desk lease over node RPC (docs/nodes.md)")
    recording_retention_days: float | None = Field(
        365.0, gt=0, description="call recordings older than this (after the call ended) are deleted, audited; "
                                 "their transparency-log leaf stays; unset = keep forever")
    trunk: EmergencyTrunkSettings = Field(default_factory=lambda: EmergencyTrunkSettings())

    @field_validator("numbers")
    @classmethod
    def _digits(cls, v: list[str]) -> list[str]:
        for n in v:
            if not n.isdigit():
                raise ValueError(f"emergency number {n!r} must be digits only")
        return v


class DispatchSettings(_Section):
    """Dispatch options. Unset files are looked up beside the site plan, else built-in defaults."""
    training: bool | None = Field(
        None, description="training mode (演练) at start; unset: on with the demo data, off under tests")
    response_plans: Path | None = Field(None, description="run cards TOML (default: response_plans.toml beside the plan)")
    roads: Path | None = Field(None, description="road network GeoJSON for ETAs (default: roads.geojson beside the plan)")
    mbtiles: Path | None = Field(None, description="offline map tiles (default: <var_dir>/tiles.mbtiles)")
    report_chromium: Path = Field(Path("/usr/bin/chromium"), description="Chromium that prints situation reports to PDF")
    report_pdf_timeout_seconds: float = Field(30.0, gt=0, le=600, description="a PDF taking longer is abandoned (503)")
    report_pdf_concurrency: int = Field(2, ge=1, le=16, description="PDFs printed at once; more wait, then 503")


class DemoSettings(_Section):
    enabled: bool = True
    demo_sites: bool = Field(True, description="synthetic sites in the standing demo conference")
    seed_users: bool = True


class DeckSettings(_Section):
    """The chair's slide deck (mcu/content/deck*.py): PDF/PNG/JPEG rendered by poppler in limited processes."""
    max_mb: int = Field(50, ge=1, le=1024, description="largest deck file accepted (MiB)")
    max_pages: int = Field(300, ge=1, le=5000, description="a PDF with more pages is refused")
    render_seconds: float = Field(120.0, gt=0, le=1800, description="wall-clock limit for rendering one deck")
    render_memory_mb: int = Field(1024, ge=64, le=16384, description="address space of one renderer process (MiB)")
    concurrency: int = Field(2, ge=1, le=16, description="decks rendered at once on one node; more are refused")


class IceServerSettings(_Section):
    urls: str = Field(description="stun:host:port or turn:host:port?transport=udp|tcp")
    username: str | None = None
    credential: str | None = None


class WebRtcSettings(_Section):
    """WebRTC legs (mcu/legs/webrtc.py). No STUN/TURN is needed on loopback or a flat LAN."""
    host_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="addresses offered as ICE host candidates; empty = every non-loopback address")
    ice_servers: list[IceServerSettings] = Field(default_factory=list)
    video_codecs: list[Literal["h264", "vp8"]] = Field(default_factory=lambda: ["h264", "vp8"])  # type: ignore[arg-type]
    media_timeout_seconds: float = Field(5.0, ge=1.0, le=60.0)


_RECORDER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class RecorderS3Settings(_Section):
    """An S3-compatible object store for the segments (unset: the directory tree)."""
    endpoint_url: str = Field(description="e.g. https://minio.example.gov:9000")
    bucket: str = Field(pattern=_BUCKET, description="an existing bucket (3-63 chars: a-z 0-9 . -)")
    prefix: str = Field("", pattern=r"^([A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]*$", description="key prefix, e.g. recorder/")
    region: str = Field("us-east-1", pattern=r"^[a-z0-9-]{1,32}$")
    credentials: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="name of <keys_dir>/s3-<name>.json holding access_key_id/secret_access_key;"
                    " unset: boto3's default chain (environment, instance role)")
    cache_max_bytes: int = Field(2 << 30, ge=0, description="local read cache of segments")

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint_url must be http(s)://host[:port], got {v!r}")
        if parts.username or parts.password:
            raise ValueError("endpoint_url must not contain credentials; name a key file in `credentials`")
        return v


class RetentionOverride(_Section):
    """Retention for one hall or camera: days and/or bytes (a hall's bytes are its cameras' total)."""
    days: float | None = Field(None, gt=0)
    max_bytes: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _something(self) -> RetentionOverride:
        if self.days is None and self.max_bytes is None:
            raise ValueError("set days and/or max_bytes")
        return self


class RecorderSettings(_Section):
    """Hall recording (recorder/). Unset paths default to var/recordings and var/keys."""
    enabled: bool = True
    recordings_dir: Path | None = None
    keys_dir: Path | None = None
    segment_seconds: float = Field(6.0, ge=2.0, le=10.0)
    head_interval_seconds: float = Field(120.0, ge=1.0)
    retention_days: float | None = Field(30.0, gt=0)
    retention_max_bytes: int | None = Field(None, gt=0)
    min_free_bytes: int = Field(1 << 30, ge=0)
    demo_cameras: bool | None = Field(None, description="synthetic hall cameras; default: demo.enabled")
    s3: RecorderS3Settings | None = Field(None, description="segments in an S3-compatible store")
    hall_retention: dict[str, RetentionOverride] = Field(
        default_factory=dict, description='per hall id, e.g. {"hall-city" = {days = 90, max_bytes = 2e12}}')
    camera_retention: dict[str, RetentionOverride] = Field(default_factory=dict, description="per camera id")

    @field_validator("hall_retention", "camera_retention")
    @classmethod
    def _ids(cls, v: dict[str, RetentionOverride]) -> dict[str, RetentionOverride]:
        for key in v:
            if not re.match(_RECORDER_ID, key):
                raise ValueError(f"{key!r} is not a hall/camera id (letters, digits, '_', '-', '.')")
        return v


class CascadeSettings(_Section):
    """Cascade links between nodes (mcu/cascade/): the control-channel secret and failover thresholds.

    The thresholds mirror `mcu.cascade.failover.FailoverConfig` (see docs/cascade.md for the rules).
    """
    token: SecretStr | None = Field(
        None, description="shared secret of the node-to-node control channel (set CC_CASCADE__TOKEN); "
                          "required when this node cascades")
    rtp_timeout_seconds: float = Field(3.0, gt=0, le=60, description="no RTP this long fails a route")
    options_interval_seconds: float = Field(1.0, gt=0, le=60, description="OPTIONS probe period")
    dial_timeout_seconds: float = Field(5.0, gt=0, le=120)
    control_timeout_seconds: float = Field(3.0, gt=0, le=120)
    hold_seconds: float = Field(30.0, gt=0, description="primary healthy this long before switching back")
    max_hold_seconds: float = Field(600.0, gt=0)
    flap_window_seconds: float = Field(120.0, gt=0)
    retry_interval_seconds: float = Field(2.0, gt=0, le=60)
    # TLS of the control channel (mcu/cascade/control_tls.py; docs/cascade.md "TLS"). The HMAC token
    # handshake runs inside the TLS channel either way.
    tls: Literal["off", "on"] = Field(
        "off", description="on: a parent serves wss:// and a child connects with wss://, verifying the "
                           "parent's certificate for its control host")
    tls_certificate: Path | None = Field(
        None, description="this node's PEM certificate (chain): served to children, presented to the parent")
    tls_key: Path | None = Field(None, description="PEM private key of tls_certificate (set both or neither)")
    tls_ca: Path | None = Field(
        None, description="PEM bundle of the CA(s) that sign the nodes' certificates: a child verifies its "
                          "parent with it (unset = the system trust store); set on a parent, it also "
                          "requires and verifies client certificates (mutual TLS)")

    @model_validator(mode="after")
    def _holds(self) -> CascadeSettings:
        if self.max_hold_seconds < self.hold_seconds:
            raise ValueError("max_hold_seconds must be at least hold_seconds")
        if self.tls_certificate is not None and self.tls_key is None:
            raise ValueError("tls_key must be set when tls_certificate is set")
        if self.tls_key is not None and self.tls_certificate is None:
            raise ValueError("tls_certificate must be set when tls_key is set")
        return self


class MonitoringSettings(_Section):
    """Monitoring (监测): gauge readings over MQTT and HTTP (the gauges are in the site plan)."""
    enabled: bool = True
    broker: Literal["managed", "external", "none"] | None = Field(
        None, description="managed: run mosquitto on mqtt_host:mqtt_port; external: connect to that broker; "
                          "none: HTTP push only. Unset: managed, except under the test suite (CC_TESTING): none")
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_username: str = ""
    mqtt_password: str = Field("", description="for an external broker (prefer CC_MONITORING__MQTT_PASSWORD)")
    topic_prefix: str = Field("cc/gauges", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    push_tokens: dict[str, str] = Field(
        default_factory=dict, description="HTTP push: system name -> SHA-256 (hex) of its token, sent as "
                                          "X-Monitoring-Token; never the token itself")
    demo_publisher: bool | None = Field(
        None, description="the synthetic flood scenario over MQTT; unset: on with the demo data, off under tests")
    demo_rise_minutes: float = Field(
        3.0, gt=0, le=600, description="demo: minutes of the river's rise (警戒水位 is crossed at three quarters of it)")

    @field_validator("push_tokens")
    @classmethod
    def _hashes(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"push_tokens.{name}: must be the SHA-256 of the token, 64 lowercase hex digits")
        return v
class WarningPushSettings(_Section):
    """One endpoint the CAP push channel POSTs every sent CAP message to (alerts/http_push_channel.py)."""
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="shown as the delivery's recipient")
    url: str = Field(description="http(s) URL receiving application/cap+xml by POST")
    bearer_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer; never logged")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v


class WarningsSettings(_Section):
    """Public warnings (alerts/, docs/warnings.md): the CAP Atom feed's machine readers and the CAP push."""
    feed_tokens: dict[str, str] = Field(
        default_factory=dict, description="Atom feed readers: system name -> SHA-256 (hex) of its token, sent as "
                                          "X-Warning-Feed-Token; never the token itself")
    push: list[WarningPushSettings] = Field(default_factory=list, max_length=20,
                                            description="endpoints receiving each sent CAP message by HTTP POST")
    push_timeout_seconds: float = Field(10.0, gt=0, le=120, description="bound of one POST")
    push_retries: int = Field(5, ge=0, le=20, description="retries of a 5xx/408/429, timeout or connection error")
    push_retry_base_seconds: float = Field(2.0, gt=0, le=600, description="first retry delay; doubled each time")
    push_retry_max_seconds: float = Field(60.0, gt=0, le=3600)

    @field_validator("feed_tokens")
    @classmethod
    def _hashes(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"feed_tokens.{name}: must be the SHA-256 of the token, 64 lowercase hex digits")
        return v

    @field_validator("push")
    @classmethod
    def _names(cls, v: list[WarningPushSettings]) -> list[WarningPushSettings]:
        names = [e.name for e in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"push endpoint names must be distinct: {', '.join(dup)}")
        return v


class NodesSettings(_Section):
    """Split roles (noderpc/): heartbeats, room pinning and node-to-node calls over PostgreSQL.

    `secret` signs every node-to-node request and reply (HMAC-SHA256); every node of one cluster
    has the same one. Unset: this node heartbeats and pins, but neither serves nor sends requests
    (a web node then answers 503 for rooms hosted elsewhere).
    """
    secret: SecretStr | None = Field(
        None, description="shared node secret, at least 32 characters (set CC_NODES__SECRET); never logged")
    heartbeat_seconds: float = Field(2.0, gt=0, le=60)
    dead_after_seconds: float = Field(10.0, gt=0, le=600, description="no heartbeat this long: the node is dead")
    rpc_timeout_seconds: float = Field(5.0, gt=0, le=120, description="deadline of one node-to-node call")
    tap_host: str = Field("127.0.0.1", description="address an MCU node's recording tap streams listen on for "
                                                   "recorder nodes (one TCP port per stream, kernel-chosen)")

    @model_validator(mode="after")
    def _bounds(self) -> NodesSettings:
        if self.dead_after_seconds <= self.heartbeat_seconds:
            raise ValueError("dead_after_seconds must exceed heartbeat_seconds")
        if self.secret is not None and len(self.secret.get_secret_value()) < 32:
            raise ValueError("secret must be at least 32 characters")
        return self


class SmsSettings(_Section):
    """SMS through Kannel (sms/, docs/sms.md): we start bearerbox + smsbox with a generated config,
    submit over smsbox's sendsms HTTP interface and hear delivery reports on a dlr-url; Kannel speaks
    SMPP to the operator. ``smsc = "fake"`` connects Kannel's ``fakesmsc`` (demo and tests)."""
    enabled: bool = Field(False, description="start Kannel and send SMS (capability 'sms')")
    smsc: Literal["fake", "smpp"] = Field("fake", description="the operator: fakesmsc (demo/tests) or an SMPP SMSC")
    smpp_host: str = Field("", description="SMPP SMSC host (smsc = smpp)")
    smpp_port: int = Field(2775, ge=1, le=65535)
    smpp_system_id: str = Field("", max_length=16)
    smpp_password: SecretStr | None = Field(None, description="set by CC_SMS__SMPP_PASSWORD, never logged")
    smpp_system_type: str = Field("", max_length=13)
    sender: str = Field("12110", pattern=r"^[0-9A-Za-z]{1,16}$", description="source address (made-up short code)")
    throughput: float = Field(10.0, gt=0, le=1000, description="messages (parts) per second to the SMSC")
    queue_limit: int = Field(10000, ge=1, le=1_000_000, description="recipients waiting; more are refused (429)")
    max_parts: int = Field(10, ge=1, le=16, description="longest message in SMS parts")
    retry_max: int = Field(5, ge=0, le=50, description="retries of a temporary failure before it fails")
    retry_base_seconds: float = Field(2.0, gt=0, le=600)
    kannel_bin: Path = Field(Path("/usr/sbin"), description="where bearerbox and smsbox are")
    fakesmsc: Path = Field(Path("/usr/lib/kannel/test/fakesmsc"), description="Debian kannel-extras")
    base_port: int = Field(0, ge=0, le=65530, description="Kannel's 4 local ports from here; 0 = free ports")
    dlr_port: int = Field(0, ge=0, le=65535, description="our delivery-report listener on 127.0.0.1; 0 = free")

    @model_validator(mode="after")
    def _smpp(self) -> SmsSettings:
        if self.smsc == "smpp":
            missing = [n for n in ("smpp_host", "smpp_system_id") if not getattr(self, n)]
            if self.smpp_password is None:
                missing.append("smpp_password")
            if missing:
                raise ValueError(f"smsc = smpp needs {', '.join(missing)}")
        return self


class Settings(BaseSettings):
    """Everything configurable. Sections mirror the TOML tables."""

    model_config = SettingsConfigDict(env_prefix="CC_", env_nested_delimiter="__", extra="forbid")

    var_dir: Path = Path("var")
    site_plan: Path = DEMO_DIR / "yunfu.toml"
    node_name: str = "city"
    http: HttpSettings = Field(default_factory=lambda: HttpSettings())
    database: DatabaseSettings = Field(default_factory=lambda: DatabaseSettings())
    backup: BackupSettings = Field(default_factory=lambda: BackupSettings())
    security: SecuritySettings = Field(default_factory=lambda: SecuritySettings())
    sip: SipSettings = Field(default_factory=lambda: SipSettings())
    h323: H323Settings = Field(default_factory=lambda: H323Settings())
    rtp: RtpSettings = Field(default_factory=lambda: RtpSettings())
    emergency: EmergencySettings = Field(default_factory=lambda: EmergencySettings())
    dispatch: DispatchSettings = Field(default_factory=lambda: DispatchSettings())
    demo: DemoSettings = Field(default_factory=lambda: DemoSettings())
    recorder: RecorderSettings = Field(default_factory=lambda: RecorderSettings())
    webrtc: WebRtcSettings = Field(default_factory=lambda: WebRtcSettings())
    cascade: CascadeSettings = Field(default_factory=lambda: CascadeSettings())
    monitoring: MonitoringSettings = Field(default_factory=lambda: MonitoringSettings())
    nodes: NodesSettings = Field(default_factory=lambda: NodesSettings())
    sms: SmsSettings = Field(default_factory=lambda: SmsSettings())
    warnings: WarningsSettings = Field(default_factory=lambda: WarningsSettings())
    deck: DeckSettings = Field(default_factory=lambda: DeckSettings())

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (the file's values arrive as init kwargs).
        return (env_settings, init_settings)

    @property
    def database_url(self) -> str | None:
        return self.database.url or os.environ.get("DATABASE_URL") or None

    @property
    def base_url(self) -> str:
        return f"{self.http.scheme}://{self.http.host}:{self.http.port}"


def load_settings(path: Path | str | None = None) -> Settings:
    """Settings from `path` (or `CC_CONFIG`) plus the environment; ConfigError names file/line/field."""
    path = path or os.environ.get("CC_CONFIG")
    data: dict[str, Any] = {}
    text = ""
    if path:
        path = Path(path)
        data, text = load_toml(path)
    try:
        settings = Settings(**data)
    except ValidationError as err:
        raise ConfigError(path or "<environment>", describe_validation_error(err, text)) from None
    if path and not settings.site_plan.is_absolute():
        settings.site_plan = (Path(path).parent / settings.site_plan).resolve()
    return settings
