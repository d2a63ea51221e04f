"""deploy/ha: the example configuration is consistent, and the parts that can be checked by their
own tools are (HAProxy's `-c`). The Patroni settings themselves run in every tests/ha cluster
(tests/ha/cluster.py derives its configuration from deploy/ha/patroni/db1.yml)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from config.settings import load_settings

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
    apps = sorted((HA / "app").glob("app*.env"))
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
