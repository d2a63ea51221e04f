"""deploy/ha: the example configuration is consistent, and the parts that can be checked by their
own tools are (HAProxy's `-c`, Kamailio's `-c`). The Patroni settings themselves run in every
tests/ha cluster (tests/ha/cluster.py derives its configuration from deploy/ha/patroni/db1.yml).
Every node's environment file plus the shared commandcenter.toml is loaded by the product's own
settings loader, and its start command by the product's own command-line parser, with its role."""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from commandcenter.cli import build_parser
from commandcenter.node import ROLES
from config.settings import Settings, load_settings

HA = Path(__file__).resolve().parents[2] / "deploy" / "ha"


def _env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_three_etcd_members_agree_on_their_cluster() -> None:
    members = {p.stem: _env(p) for p in sorted((HA / "etcd").glob("*.env"))}
    assert len(members) == 3
    clusters = {m["ETCD_INITIAL_CLUSTER"] for m in members.values()}
    assert len(clusters) == 1
    listed = dict(item.split("=", 1) for item in clusters.pop().split(","))
    for name, m in members.items():
        assert m["ETCD_NAME"] == name
        assert listed[name] == m["ETCD_INITIAL_ADVERTISE_PEER_URLS"]


def test_patroni_nodes_share_a_synchronous_cluster_on_the_etcd_members() -> None:
    etcd_clients = sorted(urlsplit(_env(p)["ETCD_ADVERTISE_CLIENT_URLS"]).netloc for p in (HA / "etcd").glob("*.env"))
    nodes = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((HA / "patroni").glob("*.yml"))}
    assert 2 <= len(nodes) <= 3
    assert len({n["scope"] for n in nodes.values()}) == 1
    for name, n in nodes.items():
        assert n["name"] == name
        assert sorted(n["etcd3"]["hosts"]) == etcd_clients
        dcs = n["bootstrap"]["dcs"]
        assert dcs["synchronous_mode"] is True
        assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]  # Patroni's own rule
        host = n["postgresql"]["connect_address"].split(":")[0]
        assert n["restapi"]["connect_address"].startswith(host + ":")
        assert n["postgresql"]["listen"].startswith(host)
        # the same bootstrap everywhere (whichever node forms the cluster writes it to etcd)
        assert n["bootstrap"] == nodes["db1"]["bootstrap"]


def _role(path: Path) -> str:
    """The role of the node's start command (`# Start: commandcenter ... up --role R`), parsed by the CLI."""
    starts = [line.split(":", 1)[1].split() for line in path.read_text().splitlines() if line.startswith("# Start:")]
    assert len(starts) == 1, f"{path.name}: one '# Start:' line"
    assert starts[0][0] == "commandcenter"
    args = build_parser().parse_args(starts[0][1:])
    assert args.command == "up" and args.config == "/etc/commandcenter/commandcenter.toml"
    assert args.role in ROLES
    return str(args.role)


def _node_settings(path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What `commandcenter up` on that node loads: the shared file plus the node's environment only."""
    with monkeypatch.context() as m:
        for name in [n for n in os.environ if n.startswith("CC_") or n == "DATABASE_URL"]:
            m.delenv(name)
        for name, value in _env(path).items():
            m.setenv(name, value)
        return load_settings(HA / "app" / "commandcenter.toml")


def _desks() -> list[tuple[str, int, int]]:
    """(host, port, priority) of each desk in desk-proxy/desks.list's set 1."""
    out = []
    for line in (HA / "desk-proxy" / "desks.list").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        setid, uri, flags, priority, *_ = line.split()
        assert setid == "1" and flags == "0" and uri.startswith("sip:"), line
        host, port = uri.removeprefix("sip:").split(":")
        out.append((host, int(port), int(priority)))
    return out


def test_every_node_loads_its_settings_for_its_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two web nodes using the remote desk, two `--role desk` nodes behind the desk proxy: each file
    loads with the product's loader, and what the nodes must share or must not share holds."""
    nodes = {p.stem: (_role(p), _node_settings(p, monkeypatch)) for p in sorted((HA / "app").glob("*.env"))}
    roles = sorted(role for role, _ in nodes.values())
    assert roles == ["desk", "desk", "web", "web"], nodes.keys()
    assert len({s.node_name for _, s in nodes.values()}) == len(nodes)
    secrets = {s.nodes.secret.get_secret_value() if s.nodes.secret else None for _, s in nodes.values()}
    assert len(secrets) == 1 and None not in secrets, "every node needs the same nodes.secret (node RPC)"
    assert len({s.database_url for _, s in nodes.values()}) == 1
    webs = {s.http.host: s for role, s in nodes.values() if role == "web"}
    desks = {name: s for name, (role, s) in nodes.items() if role == "desk"}
    for s in webs.values():
        assert s.emergency.remote_desk, "a web node of the example runs no desk of its own"
    listed = _desks()
    assert sorted((s.sip.host, s.sip.udp_port) for s in desks.values()) == sorted((h, p) for h, p, _ in listed)
    assert len({p for _, _, p in listed}) == len(listed), "distinct priorities: one desk is tried first"
    # the proxy runs on the web hosts and owns 5060 there; each desk shares a host with a web node
    proxy_port = 5060
    for name, s in desks.items():
        assert s.sip.host in webs, f"{name}: on a web host"
        assert proxy_port not in (s.sip.udp_port, s.sip.tcp_port, s.sip.tls_port), f"{name}: the proxy owns 5060"
        assert s.var_dir != webs[s.sip.host].var_dir, f"{name}: its own var dir beside the web node's"
        # the desks take calls only from the proxy hosts (and the floating address)
        peers = [ipaddress.ip_network(p.address) for p in s.emergency.trunk.peers]
        for host in webs:
            assert any(ipaddress.ip_address(host) in net for net in peers), f"{name}: proxy {host} is no trunk peer"
        assert not any(ipaddress.ip_address("127.0.0.1") in net for net in peers)
    # the lease: the standby takes over only once it expired, and the holder renews well before
    some = next(iter(desks.values()))
    assert some.nodes.heartbeat_seconds * 3 <= some.nodes.dead_after_seconds


def test_the_desk_proxy_takes_calls_only_from_outside_the_example() -> None:
    """TRUNK_NET (the operator's network, the only source of new calls) holds no host of the example:
    a desk node, web node, database node or the remote site could otherwise inject emergency calls
    with a trusted caller identity through the proxy."""
    cfg = (HA / "desk-proxy" / "kamailio.cfg").read_text()
    trunk = ipaddress.ip_network(next(line.split()[2] for line in cfg.splitlines()
                                      if line.startswith("#!define TRUNK_NET")))
    hosts = [_env(p).get("CC_HTTP__HOST") or _env(p)["CC_SIP__HOST"] for p in (HA / "app").glob("*.env")]
    hosts += [yaml.safe_load(p.read_text())["postgresql"]["connect_address"].split(":")[0]
              for p in [*(HA / "patroni").glob("*.yml"), HA / "remote-site" / "patroni.yml"]]
    assert len(hosts) >= 8
    inside = [h for h in hosts if ipaddress.ip_address(h) in trunk]
    assert not inside, f"TRUNK_NET {trunk} contains example hosts {inside}"


def test_kamailio_accepts_the_desk_proxy() -> None:
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        pytest.fail("kamailio is missing (Debian package kamailio)")
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    desks = HA / "desk-proxy" / "desks.list"
    result = subprocess.run([kamailio, "-c", "-f", str(HA / "desk-proxy" / "kamailio.cfg"),
                             "-A", f'DESK_LIST="{desks}"',
                             "-A", "LISTEN=udp:127.0.0.1:5060"],
                            capture_output=True, text=True, timeout=30, cwd="/tmp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "config file ok" in result.stdout + result.stderr


def test_application_nodes_use_every_database_node_and_haproxy_fronts_both() -> None:
    settings = load_settings(HA / "app" / "commandcenter.toml")
    assert settings.database.url is not None
    url = urlsplit(settings.database.url)
    assert parse_qs(url.query)["target_session_attrs"] == ["read-write"]
    hosts = sorted(url.netloc.split("@", 1)[1].split(","))
    patroni = sorted(yaml.safe_load(p.read_text())["postgresql"]["connect_address"]
                     for p in (HA / "patroni").glob("*.yml"))
    assert hosts == patroni
    cfg = (HA / "haproxy" / "haproxy.cfg").read_text()
    apps = sorted(p for p in (HA / "app").glob("*.env") if _role(p) == "web")
    assert len(apps) == 2
    for app in apps:
        env = _env(app)
        assert f"server {env['CC_NODE_NAME']} {env['CC_HTTP__HOST']}:{settings.http.port} check" in cfg


def test_haproxy_accepts_its_configuration() -> None:
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is missing (Debian package haproxy)")
    result = subprocess.run(["haproxy", "-c", "-f", str(HA / "haproxy" / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
