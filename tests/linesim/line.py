"""An emulated leased line between this host (the MCU) and a peer in its own network namespace.

::

    root namespace (MCU, in-process)                 namespace linesim-XXXX (the site)
    10.253.N.1 on linesimXXXXr ══ veth ══ linesimXXXXp on 10.253.N.2
      egress: tbf (down rate, ~200 ms queue)          egress: NFQUEUE up-stage, then tbf (up rate)
                                                      ingress: NFQUEUE down-stage (delay ± jitter, loss)

* **Rate and the router queue**: ``tc qdisc … tbf`` on each veth end (this kernel has no
  ``sch_netem``). The queue holds ``queue_ms`` of the line rate; what does not fit is dropped
  there, like a leased-line router does, and ``tc -s`` counts it (:meth:`Line.tbf_drops`).
* **Delay, jitter, loss**: a userspace stage (``nfqueue_stage.py``) on two NFQUEUEs inside the
  peer's namespace (``mangle PREROUTING -i`` for MCU→site, ``mangle POSTROUTING -o`` for
  site→MCU), seeded. Delay and loss apply to each direction (the round trip is twice the delay).
* Everything the line makes is named ``linesim…`` and lives in the namespace or on the veth end in
  the root namespace (a private /30 taken from 10.253.0.0/16 that no interface here uses).
  :meth:`Line.close` removes it all (deleting the namespace removes its rules and the veth pair)
  and is always called by :func:`open_line` / the ``linesim`` fixture, also on failure.

A peer runs behind the line with :meth:`Line.exec_args` (``ip netns exec``) and reaches the MCU
at :attr:`Line.mcu_address`; the MCU reaches it at :attr:`Line.peer_address`.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STAGE = Path(__file__).with_name("nfqueue_stage.py")
COMMAND_TIMEOUT = 10.0
STAGE_READY_TIMEOUT = 10.0


class LineUnavailable(RuntimeError):
    """A part the line emulator needs is missing here (the message names it)."""


@dataclass(frozen=True)
class Profile:
    """One line condition. Rates in kbit/s (None = not limited); delay/jitter/loss per direction."""

    name: str
    rate_kbps: int | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    queue_ms: int = 200
    # A live change mid-call: after ``change_after_s`` the rate becomes ``then_kbps`` (both ways).
    then_kbps: int | None = None
    change_after_s: float | None = None

    @property
    def needs_stage(self) -> bool:
        return self.delay_ms > 0 or self.loss > 0

    def describe(self) -> str:
        parts = [f"{self.rate_kbps} kbit/s" if self.rate_kbps else "unlimited"]
        if self.delay_ms:
            parts.append(f"{self.delay_ms:g}±{self.jitter_ms:g} ms" if self.jitter_ms else f"{self.delay_ms:g} ms")
        if self.loss:
            parts.append(f"{self.loss * 100:g} % loss")
        if self.then_kbps:
            parts.append(f"→ {self.then_kbps} kbit/s after {self.change_after_s:g} s")
        if self.rate_kbps:
            parts.append(f"{self.queue_ms} ms queue")
        return ", ".join(parts) + " (each direction)"


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("clean"),
    Profile("2M_20ms", rate_kbps=2000, delay_ms=20),
    Profile("768k_20ms", rate_kbps=768, delay_ms=20),
    Profile("2M_2pct_30ms", rate_kbps=2000, delay_ms=30, jitter_ms=10, loss=0.02),
    Profile("768k_1pct_30ms", rate_kbps=768, delay_ms=30, jitter_ms=10, loss=0.01),
    Profile("drop_2M_to_768k", rate_kbps=2000, delay_ms=20, then_kbps=768, change_after_s=15.0),
    # a responder's phone on a poor mobile link (issue 20, the field page): narrow, late and lossy
    Profile("mobile_384k_2pct_60ms", rate_kbps=384, delay_ms=60, jitter_ms=20, loss=0.02),
)}


def _run(args: list[str], what: str, missing: str) -> subprocess.CompletedProcess[str]:
    """Run a setup command; LineUnavailable naming ``missing`` when it fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except FileNotFoundError as exc:
        raise LineUnavailable(f"{what}: {missing} is not installed ({exc.filename})") from exc
    except subprocess.TimeoutExpired as exc:
        raise LineUnavailable(f"{what}: `{' '.join(args)}` did not finish in {COMMAND_TIMEOUT:g} s") from exc
    if done.returncode != 0:
        raise LineUnavailable(f"{what} failed ({missing}?): `{' '.join(args)}`: {done.stderr.strip()}")
    return done


def check_parts() -> None:
    """LineUnavailable naming the first missing part (root, iproute2, tc, iptables)."""
    if os.geteuid() != 0:
        raise LineUnavailable("the line emulator needs root (network namespaces, tc, iptables)")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            raise LineUnavailable(f"`{tool}` is missing: install the Debian package {package}")


def _free_subnet() -> int:
    """A /30 in 10.253.0.0/16 that overlaps no address on this host (the third octet)."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT).stdout
    pool = ipaddress.ip_network("10.253.0.0/16")
    taken: set[int] = set()
    for word in used.split():
        if "/" not in word:
            continue
        try:
            net = ipaddress.ip_interface(word)
        except ValueError:
            continue
        if net.ip in pool:
            taken.add(int(str(net.ip).split(".")[2]))
        elif net.version == 4 and net.network.prefixlen < 16 and pool.subnet_of(net.network):  # type: ignore[arg-type]
            raise LineUnavailable(f"10.253.0.0/16 is inside {net} on this host: no private test subnet")
    for _ in range(200):
        n = secrets.randbelow(250) + 1
        if n not in taken:
            return n
    raise LineUnavailable("no free /30 left in 10.253.0.0/16")


def _tbf_args(kbps: int, queue_ms: int) -> list[str]:
    # Bucket: ~10 ms of the rate, at least two full-size frames; queue ("latency") queue_ms.
    burst = max(3200, kbps * 1000 // 8 // 100)
    return ["tbf", "rate", f"{kbps}kbit", "burst", str(burst), "latency", f"{queue_ms}ms"]


class Line:
    """One emulated line; use :func:`open_line` (or the ``linesim`` fixture), which always closes it."""

    def __init__(self, profile: Profile, seed: int = 1) -> None:
        self.profile = profile
        self.seed = seed
        tag = secrets.token_hex(2)
        self.namespace = f"linesim-{tag}"
        self.mcu_iface = f"linesim{tag}r"
        self.peer_iface = f"linesim{tag}p"
        self.mcu_address = ""
        self.peer_address = ""
        self.rate_kbps = profile.rate_kbps
        self.queues = (0, 0)
        self.stage: subprocess.Popen[str] | None = None
        self.stage_stats: dict[str, object] = {}
        self._timer: threading.Timer | None = None
        self._made_ns = False
        self._made_link = False

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        check_parts()
        n = _free_subnet()
        self.mcu_address, self.peer_address = f"10.253.{n}.1", f"10.253.{n}.2"
        _run(["ip", "netns", "add", self.namespace], "creating the network namespace", "network namespaces (root)")
        self._made_ns = True
        _run(["ip", "link", "add", self.mcu_iface, "type", "veth", "peer", "name", self.peer_iface,
              "netns", self.namespace], "creating the veth pair", "the veth kernel module")
        self._made_link = True
        _run(["ip", "addr", "add", f"{self.mcu_address}/30", "dev", self.mcu_iface], "addressing", "iproute2")
        _run(["ip", "link", "set", self.mcu_iface, "up"], "addressing", "iproute2")
        for args in (["addr", "add", f"{self.peer_address}/30", "dev", self.peer_iface],
                     ["link", "set", self.peer_iface, "up"], ["link", "set", "lo", "up"]):
            _run(["ip", "-n", self.namespace, *args], "addressing the namespace", "iproute2")
        if self.profile.rate_kbps:
            self._tbf("add", self.profile.rate_kbps)
        if self.profile.needs_stage:
            self._start_stage()
        if self.profile.then_kbps and self.profile.change_after_s is not None:
            self._timer = threading.Timer(self.profile.change_after_s, self.set_rate, (self.profile.then_kbps,))
            self._timer.daemon = True
            self._timer.start()

    def _tbf(self, verb: str, kbps: int) -> None:
        args = _tbf_args(kbps, self.profile.queue_ms)
        _run(["tc", "qdisc", verb, "dev", self.mcu_iface, "root", *args], "shaping MCU→site", "the sch_tbf module")
        _run(["ip", "netns", "exec", self.namespace, "tc", "qdisc", verb, "dev", self.peer_iface, "root", *args],
             "shaping site→MCU", "the sch_tbf module")

    def set_rate(self, kbps: int) -> None:
        """Change the line rate live (both directions); the queue keeps ``queue_ms``."""
        self._tbf("change" if self.rate_kbps else "add", kbps)
        self.rate_kbps = kbps

    def _start_stage(self) -> None:
        base = 1000 + secrets.randbelow(30000)
        self.queues = (base, base + 1)  # (MCU→site, site→MCU)
        down, up = self.queues
        rules = (["-A", "PREROUTING", "-i", self.peer_iface, "-j", "NFQUEUE", "--queue-num", str(down)],
                 ["-A", "POSTROUTING", "-o", self.peer_iface, "-j", "NFQUEUE", "--queue-num", str(up)])
        for rule in rules:
            _run(["ip", "netns", "exec", self.namespace, "iptables", "-w", "5", "-t", "mangle", *rule,
                  "--queue-bypass", "-m", "comment", "--comment", "linesim"],
                 "hooking the NFQUEUE stage", "iptables with the NFQUEUE target (xt_NFQUEUE / nft_queue)")
        p = self.profile
        self.stage = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, str(STAGE), "--queue", str(down), "--queue",
             str(up), "--loss", str(p.loss), "--delay-ms", str(p.delay_ms), "--jitter-ms", str(p.jitter_ms),
             "--seed", str(self.seed)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.stage.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.stage.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(STAGE_READY_TIMEOUT)
        line = ready[0].strip() if ready else ""
        if line != "ready":
            raise LineUnavailable(f"the NFQUEUE stage did not start (kernel module nfnetlink_queue?): {line!r}")

    # ------------------------------------------------------------------ use
    def exec_args(self, *argv: str) -> list[str]:
        """``argv`` run inside the peer's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def wrapper(self, program: str, where: Path) -> Path:
        """An executable in ``where`` that runs ``program`` (with its arguments) inside the peer's
        namespace: for launchers that take one executable path, such as Playwright's Chromium."""
        path = where / f"{Path(program).name}-{self.namespace}"
        path.write_text(f"#!/bin/sh\nexec {' '.join(self.exec_args(program))} \"$@\"\n")
        path.chmod(0o755)
        return path

    def tbf_drops(self) -> dict[str, int]:
        """Packets the router queues dropped so far: {"down": MCU→site, "up": site→MCU}."""
        out = {}
        for key, args in (("down", ["tc", "-s", "-j", "qdisc", "show", "dev", self.mcu_iface]),
                          ("up", ["ip", "netns", "exec", self.namespace, "tc", "-s", "-j", "qdisc", "show", "dev",
                                  self.peer_iface])):
            if not self.rate_kbps:
                out[key] = 0
                continue
            rows = json.loads(_run(args, "reading the queue counters", "tc").stdout or "[]")
            out[key] = sum(int(r.get("drops", 0)) for r in rows if r.get("kind") == "tbf")
        return out

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Remove everything the line made; safe to call twice and after a failed setup."""
        if self._timer is not None:
            self._timer.cancel()
        if self.stage is not None:
            if self.stage.poll() is None:
                self.stage.send_signal(signal.SIGTERM)
                try:
                    out, _ = self.stage.communicate(timeout=5)
                    last = out.strip().splitlines()[-1:] if out else []
                    with contextlib.suppress(ValueError, IndexError):
                        self.stage_stats = json.loads(last[0])
                except subprocess.TimeoutExpired:
                    self.stage.kill()
                    self.stage.communicate()
            self.stage = None
        if self._made_ns:  # the namespace takes its iptables rules, its qdisc and the veth pair with it
            subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=COMMAND_TIMEOUT)
            self._made_ns = False
        if self._made_link:
            subprocess.run(["ip", "link", "del", self.mcu_iface], capture_output=True, timeout=COMMAND_TIMEOUT)
            self._made_link = False

    def loss_counts(self) -> dict[str, tuple[int, int]]:
        """After close(): the stage's (seen, dropped) per direction."""
        queues = self.stage_stats.get("queues", {}) if isinstance(self.stage_stats, dict) else {}
        assert isinstance(queues, dict)
        out = {}
        for key, q in (("down", self.queues[0]), ("up", self.queues[1])):
            row = queues.get(str(q), {})
            out[key] = (int(row.get("seen", 0)), int(row.get("dropped", 0)))
        return out


@contextlib.contextmanager
def open_line(profile: Profile | str, seed: int = 1) -> Iterator[Line]:
    """A line with ``profile``, torn down on exit whatever happened."""
    line = Line(PROFILES[profile] if isinstance(profile, str) else profile, seed)
    try:
        line.setup()
        yield line
    finally:
        line.close()


def leftovers() -> list[str]:
    """Namespaces and interfaces named linesim that still exist (a teardown check)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [n for n in names if n.startswith("linesim")] + [
        w.rstrip(":").split("@")[0] for w in links.split() if w.startswith("linesim")]
