"""pgBackRest's repository on the S3-compatible store, over verified TLS, through `commandcenter backup`.

moto's S3 server runs on 127.0.0.1 behind HAProxy, which serves TLS with a certificate for 127.0.0.1
signed by a CA this test makes (pgBackRest speaks only HTTPS to S3 and verifies it against
`repo1-storage-ca-file`). A Patroni
cluster archives its WAL into the bucket (its pgbackrest.conf holds the repository, rendered by
`S3Repository.conf_lines()`); `commandcenter backup run|list|restore` reaches the same bucket from
its settings alone (`CC_BACKUP__S3_*`: its own pgbackrest.conf has no repository). Rows written
before a moment T are restored into a fresh directory, none after; the backup and WAL objects are
in the bucket; the key and secret never appear in anything the command prints."""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.server import ThreadedMotoServer

from core.db.backup import S3Repository
from core.runtime import CoreServices
from tests.conftest import ROOT, make_settings
from tests.ha.cluster import (
    RUN_AS,
    STANZA,
    SUPERUSER,
    SUPERUSER_PASSWORD,
    ClusterError,
    HaCluster,
    free_port,
    start_cluster,
)
from tests.ha.test_ha_backup import _audit, _start_restored, _stop, _wait_promoted

KEY, SECRET = "backup-test-key", "s3-backup-secret-never-shown-7c1e"
REGION = "us-east-1"


@dataclass
class TlsStore:
    port: int
    ca_file: Path
    bucket: str

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=f"https://127.0.0.1:{self.port}", region_name=REGION,
                            aws_access_key_id=KEY, aws_secret_access_key=SECRET, verify=str(self.ca_file),
                            config=botocore.config.Config(s3={"addressing_style": "path"}))

    def keys(self) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _certificates(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3backup test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(hours=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=2))
            # pgBackRest 2.45 matches the endpoint against DNS names only (not IP addresses)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("127.0.0.1")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = (d / "ca.pem", d / "server.pem", d / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[0].chmod(0o644)  # pgBackRest reads the CA as the postgres user
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def tls_store() -> Iterator[TlsStore]:
    """moto's S3 server on a loopback port behind HAProxy terminating TLS on another, with one bucket.

    HAProxy is the TLS front a store has in a deployment (MinIO or Ceph behind a proxy). moto's own
    TLS (werkzeug's development server) closes every connection without a TLS close_notify, which
    pgBackRest's OpenSSL 3 refuses as "unexpected eof while reading" on each PUT."""
    if shutil.which("haproxy") is None:
        pytest.fail("the S3 backup test needs haproxy (Debian package haproxy)")
    d = Path(tempfile.mkdtemp(prefix="cc-s3backup-"))
    d.chmod(0o755)
    ca, cert, key = _certificates(d)
    (d / "front.pem").write_bytes(cert.read_bytes() + key.read_bytes())
    (d / "front.pem").chmod(0o600)
    moto_port, port = free_port(), free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    (d / "haproxy.cfg").write_text(
        "global\n  maxconn 200\n"
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n"
        f"frontend s3\n  bind 127.0.0.1:{port} ssl crt {d / 'front.pem'}\n  default_backend moto\n"
        f"backend moto\n  server moto 127.0.0.1:{moto_port}\n")
    log = open(d / "haproxy.log", "wb")  # noqa: SIM115
    store = TlsStore(port, ca, f"cc-backups-{uuid.uuid4().hex[:8]}")
    front: subprocess.Popen[bytes] | None = None
    moto.start()
    try:
        front = subprocess.Popen(["haproxy", "-db", "-f", str(d / "haproxy.cfg")], stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                store.client().create_bucket(Bucket=store.bucket)
                break
            except Exception:
                if time.monotonic() > deadline or front.poll() is not None:
                    pytest.fail("the S3 store did not answer over TLS: "
                                + (d / "haproxy.log").read_text(errors="replace")[-1500:])
                time.sleep(0.3)
        yield store
    finally:
        if front is not None:
            _stop(front)
        log.close()
        moto.stop()
        shutil.rmtree(d, ignore_errors=True)


def _repository(store: TlsStore, **over: Any) -> S3Repository:
    return S3Repository(**{"endpoint": "127.0.0.1", "port": store.port, "bucket": store.bucket, "region": REGION,
                           "key": KEY, "key_secret": SECRET, "ca_file": store.ca_file, **over})


@pytest.fixture
def s3_cluster(tls_store: TlsStore) -> Iterator[HaCluster]:
    try:
        cluster = start_cluster(nodes=2, backups=True, repository=_repository(tls_store).conf_lines())
    except ClusterError as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


def _cli(cluster: HaCluster, store: TlsStore, *args: str, quick: bool = False, node_conf: bool = False,
         **settings: str) -> subprocess.CompletedProcess[str]:
    """`commandcenter backup ...` with the S3 repository in its settings (environment), and a
    pgbackrest.conf without one; or (`node_conf`) the database nodes' file, which has it."""
    cli_conf = cluster.root / "pgbackrest-cli.conf"
    if not cli_conf.exists():  # the cluster's file without its repository lines
        lines = [line for line in cluster.pgbackrest_conf.read_text().splitlines()
                 if not line.startswith("repo1-") or line.startswith("repo1-retention")]
        cli_conf.write_text("\n".join(lines) + "\n")
        os.chown(cli_conf, cluster.uid, cluster.gid)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CC_BACKUP__", "PGBACKREST_"))}
    env.update({"CC_BACKUP__PGBACKREST_CONFIG": str(cluster.pgbackrest_conf if node_conf else cli_conf), "CC_BACKUP__STANZA": STANZA,
                "CC_BACKUP__S3_ENDPOINT": "127.0.0.1", "CC_BACKUP__S3_PORT": str(store.port),
                "CC_BACKUP__S3_BUCKET": store.bucket, "CC_BACKUP__S3_REGION": REGION,
                "CC_BACKUP__S3_KEY": KEY, "CC_BACKUP__S3_KEY_SECRET": SECRET,
                "CC_BACKUP__S3_CA_FILE": str(store.ca_file)})
    env.update({f"CC_BACKUP__{k.upper()}": v for k, v in settings.items()})
    if quick:  # a refused store: pgBackRest retries for io-timeout (60 s) before it gives up
        env["PGBACKREST_IO_TIMEOUT"] = "3"
    env = {k: v for k, v in env.items() if v != ""}
    out = subprocess.run([sys.executable, "-m", "commandcenter", "backup", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert SECRET not in out.stdout + out.stderr and KEY not in out.stdout + out.stderr
    return out


@pytest.mark.slow
def test_point_in_time_recovery_from_the_s3_store_over_tls(
        s3_cluster: HaCluster, tls_store: TlsStore, tmp_path: Path) -> None:
    cluster, store = s3_cluster, tls_store
    from core.db.backup import PgBackRest
    tool = PgBackRest(STANZA, cluster.pgbackrest_conf, RUN_AS)
    tool.run([tool.pgbackrest, f"--config={tool.config}", f"--stanza={STANZA}", "stanza-create"])
    url = cluster.url()

    async def schema() -> None:
        services = await CoreServices.start(make_settings(url, tmp_path / "var-a"))
        await services.stop()
    asyncio.run(schema())

    # verification is on: without the store's CA, pgBackRest refuses the certificate, and says so
    untrusted = _cli(cluster, store, "list", quick=True, s3_ca_file="")
    assert untrusted.returncode == 1 and "certificate" in untrusted.stderr.lower(), untrusted.stderr
    # (a wrong secret is not tried here: moto accepts any signature)

    asyncio.run(_audit(url, "s3.before_full", 3))
    full = _cli(cluster, store, "run", "--type", "full")
    assert full.returncode == 0, full.stderr
    time.sleep(1.1)  # pgBackRest picks the set whose stop time, in whole seconds, is before the target
    target = asyncio.run(_audit(url, "s3.before_target", 3))
    time.sleep(1.5)
    asyncio.run(_audit(url, "s3.after_target", 3))
    tool.run([tool.pgbackrest, f"--config={tool.config}", f"--stanza={STANZA}", "check"])  # WAL archived

    listed = _cli(cluster, store, "list")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.strip().splitlines()) == 1 and " full " in listed.stdout, listed.stdout

    keys = store.keys()  # the backup and the WAL are objects in the bucket
    assert any(k.startswith(f"pgbackrest/backup/{STANZA}/") and k.endswith("backup.manifest") for k in keys), keys
    assert any(k.startswith(f"pgbackrest/archive/{STANZA}/15-1/") and ".gz" in k for k in keys), keys

    # the restore runs where the database nodes' pgbackrest.conf names the repository: the restored
    # PostgreSQL's restore_command fetches WAL with that file (settings reach only our own command)
    restored = cluster.root / "restored"
    out = _cli(cluster, store, "restore", "--to", target.isoformat(), "--pg-path", str(restored), node_conf=True)
    assert out.returncode == 0, out.stderr
    port = free_port()
    postgres = _start_restored(cluster, restored, port)
    try:
        restored_url = f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/commandcenter"
        asyncio.run(_wait_promoted(restored_url, cluster))

        async def check() -> dict[str, int]:
            services = await CoreServices.start(make_settings(restored_url, tmp_path / "var-b"))
            try:
                assert (await services.ready())[0]
                rows = await services.db.fetch(
                    "SELECT action, count(*) AS n FROM audit_log WHERE actor = 'pitr-test' GROUP BY action")
                return {r["action"]: int(r["n"]) for r in rows}
            finally:
                await services.stop()
        counts = asyncio.run(check())
    finally:
        _stop(postgres)
    assert counts == {"s3.before_full": 3, "s3.before_target": 3}, counts


def test_the_s3_repository_is_checked_and_keeps_its_secrets_out_of_argv_and_messages() -> None:
    from core.db.backup import BackupError, parse_backups
    repo = S3Repository(endpoint="s3.example.cn", bucket="cc-backups", region="cn-south-1", key=KEY,
                        key_secret=SECRET)
    opts = repo.options()
    assert opts["repo1-type"] == "s3" and opts["repo1-s3-uri-style"] == "path"
    assert opts["repo1-storage-verify-tls"] == "y" and "repo1-storage-port" not in opts  # verified by default
    assert repo.environment()["PGBACKREST_REPO1_S3_KEY_SECRET"] == SECRET
    assert "repo1-s3-key-secret=" + SECRET in repo.conf_lines()
    assert SECRET not in repr(repo) and KEY not in repr(repo)
    assert repo.redact(f"failed with {KEY}:{SECRET}") == "failed with [key]:[secret]"
    assert S3Repository(endpoint="127.0.0.1", bucket="b-1", region="r", key="k", key_secret="s",
                        verify_tls=False).options()["repo1-storage-verify-tls"] == "n"
    bads: tuple[dict[str, Any], ...] = ({"endpoint": "https://s3.example.cn"}, {"endpoint": ""}, {"bucket": "a\nrepo1-path=/x"},
                {"key_secret": ""}, {"uri_style": "virtual"}, {"port": 70000}, {"path": "relative"})
    for bad in bads:
        with pytest.raises(BackupError):
            S3Repository(**{"endpoint": "h", "bucket": "b-1", "region": "r", "key": "k", "key_secret": "s", **bad})
    # pgBackRest exits 0 when it cannot read the repository; `list` must not print "no backups"
    refused = ('[{"name": "s", "status": {"code": 99, "message": "other"}, "repo": [{"key": 1, "status": '
               '{"code": 99, "message": "[095]: unable to verify certificate"}}], "backup": []}]')
    with pytest.raises(BackupError, match="unable to verify certificate"):
        parse_backups(refused, "s")
    assert parse_backups('[{"name": "s", "status": {"code": 2, "message": "no valid backups"}}]', "s") == []


def test_backup_settings_need_the_key_and_secret_with_an_endpoint() -> None:
    from pydantic import ValidationError

    from config.settings import BackupSettings
    with pytest.raises(ValidationError):
        BackupSettings(s3_endpoint="10.10.0.40")
    b = BackupSettings(s3_endpoint="10.10.0.40", s3_key="k", s3_key_secret=SECRET)
    assert b.s3_verify_tls and b.s3_uri_style == "path" and SECRET not in repr(b)
