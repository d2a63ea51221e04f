"""A real Patroni cluster on 127.0.0.1 for tests: etcd + PostgreSQL 15 nodes run by Patroni.

`start_cluster(nodes=2)` starts one etcd member and `nodes` PostgreSQL servers, each run by its
own Patroni process, with `synchronous_mode: true` (an acknowledged commit is on two nodes). Every
port is free on 127.0.0.1, every file lives in one temp directory, and the start is bounded: a
missing program or a cluster that does not form in time fails naming what is missing, with the
tail of the logs. `HaCluster.stop()` kills every process it started and removes the directory.

As root, PostgreSQL refuses to run, so Patroni (and the postgres it starts) and etcd run as the
system user `postgres` (created by Debian's postgresql-common), which owns the temp directory.

`kill_node(name)` is the machine dying: SIGKILL of Patroni and of every postgres process of that
node at once. The surviving Patroni promotes its standby when the leader key expires (ttl).
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_AS = "postgres"
SUPERUSER, SUPERUSER_PASSWORD = "postgres", "ha-test-super"
REPLICATOR, REPLICATOR_PASSWORD = "replicator", "ha-test-repl"
APP_DATABASE = "commandcenter"
STANZA = "commandcenter"  # pgBackRest's name for this cluster's backups
# The documented example configuration; the test cluster runs it (see HaCluster.patroni_config).
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "ha" / "patroni" / "db1.yml"


class ClusterError(RuntimeError):
    """The cluster could not be started (the message names what is missing)."""


async def wait_primary(url: str, tries: int, every: float) -> bool:
    """Poll PostgreSQL at ``url`` until it answers out of recovery (a restore promoted), at most
    ``tries`` times ``every`` seconds apart; False when it never did."""
    import asyncio

    import asyncpg
    for _ in range(tries):
        try:
            conn = await asyncpg.connect(url, timeout=2)
            try:
                if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                    return True
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError):
            pass
        await asyncio.sleep(every)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_parts() -> list[str]:
    """The programs this fixture needs that are not installed (Debian package in brackets)."""
    missing = []
    if shutil.which("patroni") is None:
        missing.append("patroni (Debian package patroni)")
    if shutil.which("etcd") is None:
        missing.append("etcd (Debian package etcd-server)")
    if not (PG_BIN / "postgres").exists():
        missing.append(f"{PG_BIN}/postgres (Debian package postgresql-15)")
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        missing.append(f"system user {RUN_AS} (created by Debian's postgresql-common)")
    return missing


@dataclass
class PatroniNode:
    name: str
    pg_port: int
    rest_port: int
    dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "patroni.log"

    def status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """Patroni's view of this node (role, state), or None when its REST API does not answer."""
        try:
            r = httpx.get(f"http://127.0.0.1:{self.rest_port}/patroni", timeout=timeout)
            return dict(r.json())
        except (httpx.HTTPError, ValueError):
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class HaCluster:
    root: Path
    scope: str
    etcd_client_port: int
    etcd_peer_port: int
    nodes: list[PatroniNode]
    uid: int
    gid: int
    etcd: subprocess.Popen[bytes] | None = None
    killed: list[str] = field(default_factory=list)
    backups: bool = False  # WAL archived by pgBackRest into root/repo (pgbackrest_conf)
    repository: list[str] = field(default_factory=list)  # repo1 lines (S3); empty: root/repo

    @property
    def pgbackrest_conf(self) -> Path:
        return self.root / "pgbackrest.conf"

    def write_pgbackrest_conf(self) -> None:
        """pgBackRest's stanza `commandcenter`: every node's data directory, one repository."""
        repo = self.repository or [f"repo1-path={self.root / 'repo'}"]
        lines = ["[global]", *repo, "repo1-retention-full=4",
                 f"log-path={self.root / 'pgbackrest-log'}", f"lock-path={self.root / 'pgbackrest-lock'}",
                 f"spool-path={self.root / 'pgbackrest-spool'}", "start-fast=y", "log-level-console=warn",
                 "log-level-file=info", "", f"[{STANZA}]"]
        for i, n in enumerate(self.nodes, start=1):
            lines += [f"pg{i}-path={n.data_dir}", f"pg{i}-port={n.pg_port}", f"pg{i}-socket-path={n.dir}",
                      f"pg{i}-user={SUPERUSER}"]
        self.pgbackrest_conf.write_text("\n".join(lines) + "\n")
        self.pgbackrest_conf.chmod(0o600)  # may hold the S3 secret
        os.chown(self.pgbackrest_conf, self.uid, self.gid)
        for d in ("repo", "pgbackrest-log", "pgbackrest-lock", "pgbackrest-spool"):
            (self.root / d).mkdir(exist_ok=True)
            os.chown(self.root / d, self.uid, self.gid)

    # -- addresses ----------------------------------------------------------------------------
    def url(self, database: str = APP_DATABASE, *, nodes: list[PatroniNode] | None = None) -> str:
        """The multi-host URL the application uses: it connects to whichever node takes writes."""
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in (nodes or self.nodes))
        return (f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{hosts}/{database}"
                "?target_session_attrs=read-write")

    def node_url(self, name: str, database: str = APP_DATABASE) -> str:
        """A URL to one node only (reads on a standby, checks after a failover)."""
        n = self.node(name)
        return f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{n.pg_port}/{database}"

    def node(self, name: str) -> PatroniNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    # -- state --------------------------------------------------------------------------------
    def members(self) -> list[dict[str, Any]]:
        """Patroni's `/cluster` member list, asked of any node that answers."""
        for n in self.nodes:
            if n.name in self.killed:
                continue
            try:
                r = httpx.get(f"http://127.0.0.1:{n.rest_port}/cluster", timeout=2.0)
                return list(r.json().get("members", []))
            except (httpx.HTTPError, ValueError):
                continue
        return []

    def primary(self) -> str | None:
        """The node that is running as primary (None during a failover)."""
        for m in self.members():
            if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running":
                return str(m["name"])
        return None

    def sync_standby(self) -> str | None:
        for m in self.members():
            if m.get("role") == "sync_standby" and m.get("state") in ("running", "streaming"):
                return str(m["name"])
        return None

    def wait_for(self, what: str, predicate: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise ClusterError(f"HA cluster: timed out after {timeout:.0f} s waiting for {what}\n{self.log_tail()}")

    def wait_for_primary(self, timeout: float = 60.0, exclude: str | None = None) -> str:
        return str(self.wait_for(
            "a primary" + (f" other than {exclude}" if exclude else ""),
            lambda: (p := self.primary()) and p != exclude and p, timeout))

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for path in [self.root / "etcd.log"] + [n.log_file for n in self.nodes]:
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name} ({path.parent.name})\n" + "\n".join(tail))
        return "\n".join(out)

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            os.chown(log, self.uid, self.gid)
            return subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
                env={"PATH": f"{PG_BIN}:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8",
                     "PYTHONUNBUFFERED": "1"},
                user=self.uid if os.geteuid() == 0 else None, group=self.gid if os.geteuid() == 0 else None,
                extra_groups=[] if os.geteuid() == 0 else None, start_new_session=True)

    def start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_client_port}"
        self.etcd = self._spawn([
            "etcd", "--name", "e1", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"e1={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", self.scope, "--log-level", "warn",
        ], self.root / "etcd.log")

    def etcd_healthy(self) -> bool:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.etcd_client_port}/health", timeout=1.0).json()
            return bool(answer.get("health") == "true")
        except (httpx.HTTPError, ValueError):
            return False

    def patroni_config(self, n: PatroniNode) -> dict[str, Any]:
        """deploy/ha/patroni/db1.yml, moved onto 127.0.0.1, free ports and this temp directory.

        Everything else (synchronous mode, timing, initdb, parameters, the shape of pg_hba) is
        the example's own, so this cluster is a run of the documented configuration."""
        config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        config.update(scope=self.scope, namespace="/cc-ha-test/", name=n.name, log={"level": "INFO"})
        config["restapi"] = {"listen": f"127.0.0.1:{n.rest_port}", "connect_address": f"127.0.0.1:{n.rest_port}"}
        config["etcd3"] = {"hosts": [f"127.0.0.1:{self.etcd_client_port}"]}
        pg = config["postgresql"]
        pg.update(listen=f"127.0.0.1:{n.pg_port}", connect_address=f"127.0.0.1:{n.pg_port}",
                  data_dir=str(n.data_dir), pgpass=str(n.dir / "pgpass"))
        pg["authentication"] = {
            "superuser": {"username": SUPERUSER, "password": SUPERUSER_PASSWORD},
            "replication": {"username": REPLICATOR, "password": REPLICATOR_PASSWORD},
            "rewind": {"username": SUPERUSER, "password": SUPERUSER_PASSWORD},
        }
        pg["parameters"] = {**pg.get("parameters", {}), "unix_socket_directories": str(n.dir),
                            "shared_buffers": "16MB", "logging_collector": "off"}
        # the example's rules, on loopback; local connections trusted (only the postgres user can reach the socket)
        pg["pg_hba"] = ["local all all trust"] + [
            rule.replace("10.10.0.0/24", "127.0.0.1/32") for rule in pg["pg_hba"] if not rule.startswith("local")]
        dcs = config["bootstrap"]["dcs"]
        dcs["postgresql"]["parameters"].update(max_connections=60, wal_keep_size="64MB")
        dcs["postgresql"]["parameters"].pop("archive_mode", None)  # the example archives to its S3 repository
        dcs["postgresql"]["parameters"].pop("archive_command", None)
        if self.backups:  # ... this cluster to a repository in its temp directory
            dcs["postgresql"]["parameters"].update(
                archive_mode="on",
                archive_command=f"pgbackrest --config={self.pgbackrest_conf} --stanza={STANZA} archive-push %p")
        return config

    def start_node(self, n: PatroniNode) -> None:
        n.dir.mkdir(exist_ok=True)
        os.chown(n.dir, self.uid, self.gid)
        config = n.dir / "patroni.yml"
        config.write_text(json.dumps(self.patroni_config(n), indent=1))  # JSON is YAML
        os.chown(config, self.uid, self.gid)
        n.process = self._spawn(["patroni", str(config)], n.log_file)
        if n.name in self.killed:
            self.killed.remove(n.name)

    def kill_node(self, name: str) -> float:
        """The node's machine dies: SIGKILL Patroni and its postgres processes at once. Returns when."""
        n = self.node(name)
        victims = _tree(n.process.pid) if n.process is not None else []
        victims += _postmaster_tree(n.data_dir)
        at = time.monotonic()
        for p in victims:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=5)
        if n.process is not None:
            n.process.wait(5)
        self.killed.append(name)
        return at

    def stop(self) -> None:
        """Stop every process this cluster started (SIGTERM, then SIGKILL) and remove its files."""
        procs: list[psutil.Process] = []
        for n in self.nodes:
            if n.process is not None:
                procs += _tree(n.process.pid)
            procs += _postmaster_tree(n.data_dir)
        if self.etcd is not None:
            procs += _tree(self.etcd.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in procs:
                try:
                    p.send_signal(sig)
                except psutil.Error:
                    pass
            _gone, procs = psutil.wait_procs(procs, timeout=8 if sig == signal.SIGTERM else 5)
            if not procs:
                break
        for popen in [n.process for n in self.nodes] + [self.etcd]:
            if popen is not None and popen.poll() is None:
                popen.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


def _postmaster_tree(data_dir: Path) -> list[psutil.Process]:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    procs = _tree(pid)
    # only postgres processes: a stale pid file could name an unrelated process
    return [p for p in procs if _is_postgres(p)]


def _is_postgres(p: psutil.Process) -> bool:
    try:
        return "postgres" in p.name()
    except psutil.Error:
        return False


def start_cluster(nodes: int = 2, timeout: float = 120.0, *, backups: bool = False,
                  repository: list[str] | None = None) -> HaCluster:
    """etcd + `nodes` Patroni/PostgreSQL 15 nodes, a primary with a synchronous standby, and the
    application database `commandcenter` created. Fails (ClusterError) naming what is missing.
    With `backups`, WAL goes to `repository` (pgbackrest.conf repo1 lines) or a local directory."""
    missing = missing_parts()
    if missing:
        raise ClusterError("HA cluster needs: " + "; ".join(missing))
    account = pwd.getpwnam(RUN_AS)
    root = Path(tempfile.mkdtemp(prefix="cc-ha-"))
    os.chown(root, account.pw_uid, account.pw_gid)
    root.chmod(0o700)
    cluster = HaCluster(
        root=root, scope="cc-ha-" + uuid.uuid4().hex[:8], etcd_client_port=free_port(),
        etcd_peer_port=free_port(),
        nodes=[PatroniNode(f"pg{i + 1}", free_port(), free_port(), root / f"pg{i + 1}") for i in range(nodes)],
        uid=account.pw_uid, gid=account.pw_gid, backups=backups, repository=list(repository or []))
    if backups:
        if shutil.which("pgbackrest") is None:
            shutil.rmtree(root, ignore_errors=True)
            raise ClusterError("HA cluster needs: pgbackrest (Debian package pgbackrest)")
        cluster.write_pgbackrest_conf()
    deadline = time.monotonic() + timeout
    try:
        cluster.start_etcd()
        cluster.wait_for("etcd to answer /health", cluster.etcd_healthy, max(1.0, deadline - time.monotonic()))
        cluster.start_node(cluster.nodes[0])
        cluster.wait_for_primary(max(1.0, deadline - time.monotonic()))
        for n in cluster.nodes[1:]:
            cluster.start_node(n)
        if nodes > 1:
            cluster.wait_for("a synchronous standby", cluster.sync_standby, max(1.0, deadline - time.monotonic()))
        _create_database(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _create_database(cluster: HaCluster) -> None:
    primary = cluster.primary()
    assert primary is not None
    n = cluster.node(primary)
    subprocess.run(
        [str(PG_BIN / "psql"), "-h", str(n.dir), "-p", str(n.pg_port), "-U", SUPERUSER, "-d", "postgres",
         "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {APP_DATABASE}"],
        check=True, capture_output=True, timeout=30,
        user=cluster.uid if os.geteuid() == 0 else None)


# -- the remote ("different-city") site: a one-node Patroni standby cluster behind a delayed link --
REMOTE_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "ha" / "remote-site" / "patroni.yml"


class PrimaryRelay:
    """What HAProxy's primary address (:5000) is in the example: a TCP listener on the city side of
    the link that forwards each connection to whichever city node is primary *at connect time*.
    The city nodes listen on 127.0.0.1 only; the remote site reaches this relay over the line."""

    def __init__(self, cluster: HaCluster, address: str) -> None:
        self.cluster = cluster
        self.listener = socket.create_server((address, 0))
        self.port = int(self.listener.getsockname()[1])
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="standby-relay").start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            primary = self.cluster.primary()
            if primary is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.cluster.node(primary).pg_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True, name="standby-relay-pump").start()

    def close(self) -> None:
        self.closed = True
        for s in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@dataclass
class RemoteSite:
    """One Patroni node with its own etcd and scope, run inside the line's network namespace
    (`tests/linesim/line.py`: a veth pair with a userspace delay stage, since this kernel has no
    sch_netem), configured from deploy/ha/remote-site/patroni.yml as a standby cluster of `city`."""

    city: HaCluster
    namespace: str
    address: str        # the remote site's address (inside the namespace)
    city_address: str   # the city side of the link (the relay listens there)
    root: Path
    scope: str
    etcd_port: int
    node: PatroniNode
    uid: int
    gid: int
    relay: PrimaryRelay | None = None
    etcd: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.node.dir / "patroni.yml"

    def url(self, database: str = APP_DATABASE) -> str:
        """The URL the application uses after promotion (it takes writes only once promoted)."""
        return (f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{self.address}:{self.node.pg_port}/{database}"
                "?target_session_attrs=read-write")

    def read_url(self, database: str = APP_DATABASE) -> str:
        return f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{self.address}:{self.node.pg_port}/{database}"

    @property
    def rest(self) -> str:
        return f"http://{self.address}:{self.node.rest_port}"

    def member(self) -> dict[str, Any]:
        """This node's entry in its own cluster's `/cluster` list ({} when the REST API is silent)."""
        try:
            members = httpx.get(f"{self.rest}/cluster", timeout=2.0).json().get("members", [])
        except (httpx.HTTPError, ValueError):
            return {}
        return dict(members[0]) if members else {}

    def role(self) -> str | None:
        m = self.member()
        return f"{m.get('role')}/{m.get('state')}" if m else None

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            os.chown(log, self.uid, self.gid)
            return subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                 "--clear-groups", "--", *argv],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
                env={"PATH": f"{PG_BIN}:/usr/sbin:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8",
                     "PYTHONUNBUFFERED": "1"},
                start_new_session=True)

    def patroni_config(self) -> dict[str, Any]:
        """deploy/ha/remote-site/patroni.yml moved into the namespace, onto free ports and this temp
        directory; the standby_cluster points at the relay (the example's HAProxy :5000)."""
        n = self.node
        config: dict[str, Any] = yaml.safe_load(REMOTE_EXAMPLE.read_text(encoding="utf-8"))
        config.update(scope=self.scope, namespace="/cc-ha-test/", name=n.name, log={"level": "INFO"})
        config["restapi"] = {"listen": f"{self.address}:{n.rest_port}", "connect_address": f"{self.address}:{n.rest_port}"}
        config["etcd3"] = {"hosts": [f"{self.address}:{self.etcd_port}"]}
        pg = config["postgresql"]
        pg.update(listen=f"{self.address},127.0.0.1:{n.pg_port}", connect_address=f"{self.address}:{n.pg_port}",
                  data_dir=str(n.data_dir), pgpass=str(n.dir / "pgpass"))
        pg["authentication"] = {
            "superuser": {"username": SUPERUSER, "password": SUPERUSER_PASSWORD},
            "replication": {"username": REPLICATOR, "password": REPLICATOR_PASSWORD},
            "rewind": {"username": SUPERUSER, "password": SUPERUSER_PASSWORD},
        }
        pg["parameters"] = {**pg.get("parameters", {}), "unix_socket_directories": str(n.dir),
                            "shared_buffers": "16MB", "logging_collector": "off"}
        pg["pg_hba"] = ["local all all trust"] + [
            rule.replace("10.20.0.0/24", f"{self.address}/32").replace("10.10.0.0/24", f"{self.city_address}/32")
            for rule in pg["pg_hba"] if not rule.startswith("local")]
        dcs = config["bootstrap"]["dcs"]
        # a hot standby needs at least the primary's max_connections (the city test cluster: 60)
        dcs["postgresql"]["parameters"].update(max_connections=60, wal_keep_size="64MB")
        assert self.relay is not None
        dcs["standby_cluster"].update(host=self.city_address, port=self.relay.port)
        return config

    def start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.relay = PrimaryRelay(self.city, self.city_address)
        client = f"http://{self.address}:{self.etcd_port}"
        peer = f"http://127.0.0.1:{free_port()}"
        self.etcd = self._spawn([
            "etcd", "--name", "dr1", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"dr1={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", self.scope, "--log-level", "warn",
        ], self.root / "etcd.log")
        self._wait("the remote etcd to answer /health", self._etcd_healthy, deadline)
        n = self.node
        n.dir.mkdir(exist_ok=True)
        os.chown(n.dir, self.uid, self.gid)
        self.config_file.write_text(json.dumps(self.patroni_config(), indent=1))
        os.chown(self.config_file, self.uid, self.gid)
        n.process = self._spawn(["patroni", str(self.config_file)], n.log_file)
        self._wait("the remote standby leader streaming from the city",
                   lambda: self.member().get("role") == "standby_leader"
                   and self.member().get("state") in ("running", "streaming"), deadline)

    def _etcd_healthy(self) -> bool:
        try:
            return bool(httpx.get(f"http://{self.address}:{self.etcd_port}/health", timeout=1.0).json()
                        .get("health") == "true")
        except (httpx.HTTPError, ValueError):
            return False

    def _wait(self, what: str, predicate: Any, deadline: float) -> None:
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.3)
        raise ClusterError(f"remote site: timed out waiting for {what}\n{self.log_tail()}")

    def wait_for(self, what: str, predicate: Any, timeout: float) -> None:
        self._wait(what, predicate, time.monotonic() + timeout)

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for path in (self.root / "etcd.log", self.node.log_file):
            if path.exists():
                out.append(f"--- remote {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        """Stop the remote Patroni, its postgres and etcd (SIGTERM, then SIGKILL), the relay, the files."""
        procs: list[psutil.Process] = []
        if self.node.process is not None:
            procs += _tree(self.node.process.pid)
        procs += _postmaster_tree(self.node.data_dir)
        if self.etcd is not None:
            procs += _tree(self.etcd.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(sig)
            _gone, procs = psutil.wait_procs(procs, timeout=8 if sig == signal.SIGTERM else 5)
            if not procs:
                break
        for popen in (self.node.process, self.etcd):
            if popen is not None and popen.poll() is None:
                popen.wait(5)
        if self.relay is not None:
            self.relay.close()
        shutil.rmtree(self.root, ignore_errors=True)


def start_remote_standby(city: HaCluster, namespace: str, address: str, city_address: str,
                         timeout: float = 120.0) -> RemoteSite:
    """A one-node standby cluster (own etcd, own scope) in `namespace` at `address`, cloned with
    pg_basebackup from `city`'s primary through a relay on `city_address`, then streaming
    asynchronously. Stopped (and its files removed) on failure; the caller stops it otherwise."""
    account = pwd.getpwnam(RUN_AS)
    root = Path(tempfile.mkdtemp(prefix="cc-standby-"))
    os.chown(root, account.pw_uid, account.pw_gid)
    root.chmod(0o700)
    site = RemoteSite(city=city, namespace=namespace, address=address, city_address=city_address, root=root,
                      scope="cc-standby-" + uuid.uuid4().hex[:8], etcd_port=free_port(),
                      node=PatroniNode("remote1", free_port(), free_port(), root / "remote1"),
                      uid=account.pw_uid, gid=account.pw_gid)
    try:
        site.start(timeout)
    except BaseException:
        site.stop()
        raise
    return site
