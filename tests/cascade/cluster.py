"""Several commandcenter nodes in network namespaces, joined by veth "lines".

Used by tests/cascade and bench/cascade_failover.py. Each node is a real
``commandcenter up --role mcu --node-name …`` process in its own namespace, with its own var
dir, settings and database (one per node on a PostgreSQL reached by its unix socket, which
namespaces do not separate). A node's address sits on its namespace's loopback (10.0.0.N/32);
each line is a veth pair with a /30 and host routes to the far node, so taking a line down
(``ip link set … down``) cuts exactly that path. Endpoints (`tests.cascade.endpoint`) run in a
node's namespace and write JSON lines the tests read.

The kernel here has no sch_netem and no nftables/iptables, so a line fails by link down.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO_PLAN = ROOT / "config" / "demo" / "yunfu.toml"
CONFERENCE = "81000001"
SECOND_CONFERENCE = "81000002"
TOKEN = "cascade-test-token-" + "x" * 16

COLOURS = {"city": (200, 40, 40), "town-a": (40, 190, 40), "town-b": (230, 200, 40)}
TONES = {"city": 1000.0, "town-a": 700.0, "town-b": 1300.0}


def can_run() -> str:
    """'' when namespaces can be used here, else the reason to skip."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = "ccprobe" + secrets.token_hex(2)
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    kind: str           # mcu | bridge
    parent: str
    area: str
    address: str        # 10.0.0.N on the namespace's loopback
    standby_parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Line:
    name: str
    a: str
    b: str
    subnet: int          # 10.1.<subnet>.0/30

    def iface(self, side: str) -> str:
        return f"l{self.subnet}{side}"

    def addr(self, side: str) -> str:
        return f"10.1.{self.subnet}.{1 if side == 'a' else 2}"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """Namespaces, lines, node processes and endpoints of one scenario."""

    work: Path
    db_url_for: Any       # callable(node name) -> database URL
    nodes: list[NodeSpec]
    lines: list[Line]
    conferences: dict[str, list[str]]
    cascade: dict[str, float] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)   # node -> `up --role` (default mcu)
    prefix: str = field(default_factory=lambda: "cc" + secrets.token_hex(2))
    procs: dict[str, Process] = field(default_factory=dict)
    db_urls: dict[str, str] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    # ------------------------------------------------------------------ network
    def create_network(self) -> None:
        for n in self.nodes:
            ip("netns", "add", self.ns(n.name))
            self._made.append(self.ns(n.name))
            ip("-n", self.ns(n.name), "link", "set", "lo", "up")
            ip("-n", self.ns(n.name), "addr", "add", f"{n.address}/32", "dev", "lo")
        for line in self.lines:
            a, b = self.ns(line.a), self.ns(line.b)
            ip("link", "add", line.iface("a"), "netns", a, "type", "veth", "peer", "name", line.iface("b"),
               "netns", b)
            for side, ns in (("a", a), ("b", b)):
                ip("-n", ns, "addr", "add", f"{line.addr(side)}/30", "dev", line.iface(side))
            self.line_up(line.name)

    def _line(self, name: str) -> Line:
        return next(line for line in self.lines if line.name == name)

    def line_down(self, name: str) -> None:
        """The private line fails: both ends lose the link (and their routes over it)."""
        line = self._line(name)
        ip("-n", self.ns(line.a), "link", "set", line.iface("a"), "down")
        ip("-n", self.ns(line.b), "link", "set", line.iface("b"), "down")

    def line_up(self, name: str) -> None:
        """Bring a line up and (re)install the host routes a link-down flushed."""
        line = self._line(name)
        for side, node in (("a", line.a), ("b", line.b)):
            ip("-n", self.ns(node), "link", "set", line.iface(side), "up")
        for side, other, node, far in (("a", "b", line.a, line.b), ("b", "a", line.b, line.a)):
            ip("-n", self.ns(node), "route", "replace", f"{self.node(far).address}/32", "via", line.addr(other),
               "dev", line.iface(side), "src", self.node(node).address)

    def _line_between(self, a: str, b: str) -> tuple[Line, str, str]:
        """The line joining nodes a and b, a's side and b's side of it."""
        for line in self.lines:
            if (line.a, line.b) == (a, b):
                return line, "a", "b"
            if (line.a, line.b) == (b, a):
                return line, "b", "a"
        raise KeyError(f"no line between {a} and {b}")

    def control_fallback(self, a: str, b: str, via: str, port: int = 7443, table: int = 70) -> None:
        """Give the control channel between ``a`` and ``b`` (TCP ``port``) a second route through
        ``via`` (the telecom network, which then forwards IP), used only when the private line's
        routes are gone: a policy rule after the main table, matching the channel's port only, so
        SIP and RTP still have no route when the line is down (the operator's network carries
        management traffic; conference media goes through its bridge) and the media fails over."""
        ip("netns", "exec", self.ns(via), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for here, far in ((a, b), (b, a)):
            line, mine, theirs = self._line_between(here, via)
            ns = self.ns(here)
            ip("-n", ns, "route", "replace", f"{self.node(far).address}/32", "via", line.addr(theirs), "dev",
               line.iface(mine), "src", self.node(here).address, "table", str(table))
            for direction in ("dport", "sport"):
                ip("-n", ns, "rule", "add", "pref", "40000", "to", f"{self.node(far).address}/32", "ipproto", "tcp",
                   direction, str(port), "lookup", str(table))

    def control_fallback_off(self, a: str, b: str, port: int = 7443, table: int = 70) -> None:
        """Withdraw the control channel's second route (no route at all while the line is down)."""
        for here, far in ((a, b), (b, a)):
            for direction in ("dport", "sport"):
                ip("-n", self.ns(here), "rule", "del", "pref", "40000", "to", f"{self.node(far).address}/32",
                   "ipproto", "tcp", direction, str(port), "lookup", str(table))

    def add_user(self, node: str, username: str, password: str, role: str) -> None:
        """Create a console user in ``node``'s database (`commandcenter user add`)."""
        settings = self.work / node / "settings.toml"
        done = subprocess.run([sys.executable, "-m", "commandcenter", "--config", str(settings), "user", "add",
                               username, "--role", role, "--password-stdin"], input=(password + "\n").encode(),
                              capture_output=True, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
                              timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"user add {username} on {node} failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr).decode(errors='replace')[-2000:]}")

    def destroy_network(self) -> None:
        for ns in self._made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()

    # ------------------------------------------------------------------ configuration
    def write_plan(self) -> Path:
        text = DEMO_PLAN.read_text(encoding="utf-8")
        text = text.replace('boundaries = "yunfu_counties.geojson"',
                            f'boundaries = "{DEMO_PLAN.parent / "yunfu_counties.geojson"}"')
        parts = [text]
        for index, n in enumerate(self.nodes):
            parts.append(f'\n[[nodes]]\nname = "{n.name}"\nkind = "{n.kind}"\nparent = "{n.parent}"\n'
                         f'area = "{n.area}"\nsip = "{n.address}:5060"\n')
            if n.standby_parents:
                parts.append("standby_parents = [" + ", ".join(f'"{x}"' for x in n.standby_parents) + "]\n")
            if n.kind == "mcu" and any(c.parent == n.name for c in self.nodes):
                parts.append(f'control = "{n.address}:7443"\n')
            if n.parent:
                bridge = next(b for b in self.nodes if b.kind == "bridge")
                # one bridge number per link: a bridge room is one link's two ends
                parts.append(f'backup = "sip:9{index}{{conference}}@{bridge.address}:5060"\n')
        for conf_id, nodes in self.conferences.items():
            names = ", ".join(f'"{x}"' for x in nodes)
            parts.append(f'\n[[conferences]]\nid = "{conf_id}"\nname = "级联测试 {conf_id}"\nguests = true\n'
                         f'standing = true\nnodes = [{names}]\n')
        path = self.work / "plan.toml"
        path.write_text("".join(parts), encoding="utf-8")
        # The demo's response plans sit beside its site plan; its gauges name them (monitoring
        # refuses a gauge that proposes an unknown plan), so they go beside this one too.
        plans = self.work / "plans"
        if not plans.exists():
            plans.symlink_to(DEMO_PLAN.parent / "plans")
        return path

    def write_settings(self, node: NodeSpec, plan: Path) -> Path:
        var = self.work / node.name
        var.mkdir(parents=True, exist_ok=True)
        self.db_urls.setdefault(node.name, self.db_url_for(node.name))
        cascade = {"rtp_timeout_seconds": 1.5, "options_interval_seconds": 0.5, "dial_timeout_seconds": 5.0,
                   "control_timeout_seconds": 3.0, "hold_seconds": 4.0, "max_hold_seconds": 60.0,
                   "flap_window_seconds": 8.0, "retry_interval_seconds": 1.0, **self.cascade}
        lines = [f'var_dir = "{var}"', f'site_plan = "{plan}"', f'node_name = "{node.name}"',
                 "[database]", f'url = "{self.db_urls[node.name]}"',
                 "[sip]", f'host = "{node.address}"', "udp_port = 5060", "tcp_port = 5060", "tls_port = 5061",
                 'srtp = "off"', 'max_video_size = "640x360"', "stats_interval_seconds = 0",
                 "[h323]", "enabled = false",
                 "[http]", f'host = "{node.address}"', "port = 8080",
                 "[webrtc]", f'host_addresses = ["{node.address}"]',
                 "[recorder]", "enabled = false",
                 "[demo]", "enabled = false", "demo_sites = false",
                 "[cascade]", *[f"{k} = {v}" for k, v in cascade.items()]]
        path = var / "settings.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, ns: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        with log.open("wb") as fh:
            popen = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=fh, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=str(ROOT), start_new_session=True)
        proc = Process(name, popen, log)
        self.procs[name] = proc
        return proc

    def _wait_running(self, name: str, deadline: float) -> None:
        proc = self.procs[name]
        while "is running" not in proc.text():
            if proc.popen.poll() is not None:
                raise RuntimeError(f"node {name} exited:\n{proc.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {name} did not start:\n{proc.text()[-3000:]}")
            time.sleep(0.2)

    def start_nodes(self, timeout: float = 90.0) -> None:
        plan = self.write_plan()
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            self.write_settings(n, plan)
        # A node sharing a database with an earlier one starts once that one is up (the first start
        # seeds the database's users; two seeding at once collide); the others start at once.
        first = [n for i, n in enumerate(self.nodes)
                 if all(self.db_urls[o.name] != self.db_urls[n.name] for o in self.nodes[:i])]
        for n in first + [n for n in self.nodes if n not in first]:
            settings = self.work / n.name / "settings.toml"
            for other in [o for o in self.procs if self.db_urls.get(o) == self.db_urls[n.name]]:
                self._wait_running(other, deadline)
            self._spawn(n.name, self.ns(n.name),
                        [sys.executable, "-m", "commandcenter", "--config", str(settings), "up", "--role",
                         self.roles.get(n.name, "mcu"), "--node-name", n.name],
                        self.work / f"{n.name}.log", {"CC_CASCADE__TOKEN": TOKEN})
        for n in self.nodes:
            self._wait_running(n.name, deadline)

    def restart_node(self, name: str, timeout: float = 120.0) -> float:
        """Start a killed node again with its settings (a machine back after a crash); the wall-clock
        time it was started, once it runs."""
        old = self.procs[name]
        assert old.popen.poll() is not None, f"node {name} still runs"
        at = time.time()
        settings = self.work / name / "settings.toml"
        self._spawn(name, self.ns(name),
                    [sys.executable, "-m", "commandcenter", "--config", str(settings), "up", "--role",
                     self.roles.get(name, "mcu"), "--node-name", name],
                    self.work / f"{name}.restarted.log", {"CC_CASCADE__TOKEN": TOKEN})
        self._wait_running(name, time.monotonic() + timeout)
        return at

    def start_endpoint(self, name: str, node: str, conference: str, colour: str, tone: str,
                       watch_tones: list[str], watch_colours: list[str], *, user: str = "",
                       password: str = "", target_node: str = "", extra: tuple[str, ...] = ()) -> Path:
        spec = self.node(node)
        target = self.node(target_node or node)
        out = self.work / f"{name}.jsonl"
        argv = [sys.executable, "-m", "tests.cascade.endpoint", "--host", spec.address, "--user", user or name,
                "--password", password,
                "--target", f"sip:{conference}@{target.address}:5060", "--tone", str(TONES[tone]),
                "--color", ",".join(map(str, COLOURS[colour])), "--out", str(out)]
        for t in watch_tones:
            argv += ["--watch-tone", str(TONES[t])]
        for c in watch_colours:
            argv += ["--watch-color", f"{c}=" + ",".join(map(str, COLOURS[c]))]
        argv += list(extra)
        self._spawn(name, self.ns(node), argv, self.work / f"{name}.log")
        return out

    def start_webrtc_client(self, name: str, node: str, conference: str, colour: str,
                            watch_colours: list[str]) -> Path:
        """An aiortc client (`tests.cascade.webrtc_endpoint`) joining ``node``'s web console."""
        spec = self.node(node)
        out = self.work / f"{name}.jsonl"
        argv = [sys.executable, "-m", "tests.cascade.webrtc_endpoint",
                f"ws://{spec.address}:8080/ws/conference/{conference}", ",".join(map(str, COLOURS[colour])),
                str(out), *[f"{c}=" + ",".join(map(str, COLOURS[c])) for c in watch_colours]]
        self._spawn(name, self.ns(node), argv, self.work / f"{name}.log")
        return out

    def stop_process(self, name: str) -> None:
        """Stop one process (an endpoint) and wait for it."""
        proc = self.procs.pop(name)
        if proc.popen.poll() is None:
            os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)

    def kill_node(self, name: str) -> float:
        """SIGKILL a node's process group (the machine dies: no BYE, no clean-up); the wall-clock time."""
        proc = self.procs[name]
        at = time.time()
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)
        return at

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and remove the namespaces."""
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        self.destroy_network()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.text()[-4000:]}" for p in self.procs.values())


def path_events(db_url: str, conference_id: str = CONFERENCE) -> list[dict[str, Any]]:
    """A node's ``cascade.path`` audit entries for a conference, oldest first."""
    import asyncio

    import asyncpg

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT detail FROM audit_log WHERE action = 'cascade.path' ORDER BY id")
        finally:
            await conn.close()
        details = [json.loads(r["detail"]) if isinstance(r["detail"], str) else dict(r["detail"]) for r in rows]
        return [d for d in details if d.get("conference_id") == conference_id]

    return asyncio.run(fetch())


def room_host(db_url: str, conference_id: str = CONFERENCE) -> str:
    """The node id the room is pinned to in a database (noderpc `rpc_pins`; '' when unpinned): the
    node a web node sends the chair's console requests to."""
    import asyncio

    import asyncpg

    async def fetch() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            return str(await conn.fetchval("SELECT node_id FROM rpc_pins WHERE kind = 'room' AND key = $1",
                                           conference_id) or "")
        finally:
            await conn.close()

    return asyncio.run(fetch())


def audit_rows(db_url: str, action: str) -> list[dict[str, Any]]:
    """A node's audit entries with this action, oldest first: actor, outcome and detail."""
    import asyncio

    import asyncpg

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT actor, outcome, detail FROM audit_log WHERE action = $1 ORDER BY id",
                                    action)
        finally:
            await conn.close()
        return [{"actor": r["actor"], "outcome": r["outcome"],
                 "detail": json.loads(r["detail"]) if isinstance(r["detail"], str) else dict(r["detail"])}
                for r in rows]

    return asyncio.run(fetch())


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The JSON lines an endpoint wrote so far."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the line being written
    return out


def wait_for(path: Path, predicate: Any, within: float, what: str, after: float = 0.0) -> dict[str, Any]:
    """The first sample (written after ``after``) satisfying ``predicate``; AssertionError naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        for sample in read_samples(path):
            if sample["t"] >= after and predicate(sample):
                return sample
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.1)


def takeover_after_kill(cluster: Cluster, listener: Path, node: str = "city", tone: str = "town-a",
                        heard: float = 1500.0) -> tuple[float, float]:
    """SIGKILL ``node`` while ``listener`` hears ``tone``: (seconds from the kill until the tone is
    heard there again, seconds until it had dropped). AssertionError when either does not happen."""
    def hears(s: dict[str, Any]) -> bool:
        return float(s["audio"].get(str(TONES[tone]), 0.0)) > heard

    wait_for(listener, hears, 30, f"{tone} at {listener.stem} before the kill", after=time.time())
    killed_at = cluster.kill_node(node)
    lost = wait_for(listener, lambda s: not hears(s), 10, f"{tone} to drop at {listener.stem}", after=killed_at)
    back = wait_for(listener, hears, 20, f"{tone} heard again at {listener.stem}", after=lost["t"])
    return back["t"] - killed_at, lost["t"] - killed_at


def one_county(work: Path, db_url_for: Any, **cascade: float) -> Cluster:
    """City, county A (罗定市), telecom bridge; lines city–A (private), A–telecom, city–telecom."""
    nodes = [NodeSpec("city", "mcu", "", "445300", "10.0.0.1"),
             NodeSpec("county-a", "mcu", "city", "445381", "10.0.0.2"),
             NodeSpec("telecom", "bridge", "", "", "10.0.0.9")]
    lines = [Line("city-a", "city", "county-a", 1), Line("a-telecom", "county-a", "telecom", 2),
             Line("city-telecom", "city", "telecom", 9)]
    return Cluster(work, db_url_for, nodes, lines, {CONFERENCE: ["city", "county-a"]}, dict(cascade))


def three_levels(work: Path, db_url_for: Any, **cascade: float) -> Cluster:
    """City ← county A ← a township MCU (罗定 罗城街道), each child with a trunk to the bridge."""
    cluster = one_county(work, db_url_for, **cascade)
    cluster.nodes.append(NodeSpec("town-mcu", "mcu", "county-a", "445381-01", "10.0.0.4"))
    cluster.lines += [Line("a-town", "county-a", "town-mcu", 5), Line("town-telecom", "town-mcu", "telecom", 6)]
    cluster.conferences = {CONFERENCE: ["city", "county-a", "town-mcu"]}
    return cluster


def city_standby(work: Path, db_url_for: Any, **cascade: float) -> Cluster:
    """City, a standby city node (a child of the city that county A lists as its standby parent),
    county A, telecom bridge; private lines city–standby, city–A, standby–A; every MCU node has a
    trunk to the bridge. The city and the standby share a database."""
    nodes = [NodeSpec("city", "mcu", "", "445300", "10.0.0.1"),
             NodeSpec("city-standby", "mcu", "city", "445300", "10.0.0.7"),
             NodeSpec("county-a", "mcu", "city", "445381", "10.0.0.2", ("city-standby",)),
             NodeSpec("telecom", "bridge", "", "", "10.0.0.9")]
    lines = [Line("city-a", "city", "county-a", 1), Line("a-telecom", "county-a", "telecom", 2),
             Line("city-telecom", "city", "telecom", 9), Line("city-standby", "city", "city-standby", 7),
             Line("standby-a", "city-standby", "county-a", 8), Line("standby-telecom", "city-standby", "telecom", 10)]
    cluster = Cluster(work, db_url_for, nodes, lines, {CONFERENCE: ["city", "city-standby", "county-a"]},
                      dict(cascade))
    # The city and its standby share one database, as the city's web nodes do: the room pins
    # (noderpc) tell a web node which of the two hosts the conference now.
    cluster.db_urls["city"] = cluster.db_urls["city-standby"] = db_url_for("city")
    return cluster


def two_counties(work: Path, db_url_for: Any, **cascade: float) -> Cluster:
    """One county plus county B (新兴县) with its own private line and trunk; two conferences."""
    cluster = one_county(work, db_url_for, **cascade)
    cluster.nodes.append(NodeSpec("county-b", "mcu", "city", "445321", "10.0.0.3"))
    cluster.lines += [Line("city-b", "city", "county-b", 3), Line("b-telecom", "county-b", "telecom", 4)]
    cluster.conferences = {CONFERENCE: ["city", "county-a", "county-b"],
                           SECOND_CONFERENCE: ["city", "county-a", "county-b"]}
    return cluster


__all__ = ["CONFERENCE", "audit_rows", "path_events", "COLOURS", "Cluster", "Line", "NodeSpec", "SECOND_CONFERENCE", "TONES", "can_run", "city_standby",
           "one_county", "read_samples", "room_host", "takeover_after_kill", "three_levels", "two_counties", "wait_for"]
