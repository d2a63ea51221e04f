"""Kannel as a managed service: the bearerbox + smsbox configuration generated from our settings
into the run directory, and the two processes (plus ``fakesmsc`` as the operator in the demo and
tests) started and stopped with bounded waits.

We talk to Kannel over smsbox's sendsms HTTP interface and hear delivery reports on a ``dlr-url``
(docs/sms.md says why): Kannel speaks SMPP (or its ``fake`` protocol) to the operator, splits long
messages into concatenated parts with a UDH, applies the SMSC's throughput and stores queued
messages in its store file across restarts.

``render_config`` is pure; ``Kannel`` does the I/O. Everything listens on 127.0.0.1; a start that
cannot find a binary or reach a port fails naming what is missing.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import httpx

from sms.gateway_status import MAX_STATUS, GatewayStatus, StatusError, down, parse_status

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
STATUS_TIMEOUT = 2.0


class KannelError(RuntimeError):
    """Kannel could not be configured or started; the message names what is missing."""


@dataclass(frozen=True)
class KannelPorts:
    admin: int
    smsbox: int  # bearerbox ← smsbox
    sendsms: int  # smsbox's HTTP interface, our submissions
    fake_smsc: int  # bearerbox's fake SMSC listener (fakesmsc connects here)


@dataclass(frozen=True)
class SmscConfig:
    """The operator: ``fake`` (fakesmsc) or ``smpp`` (host, port, system_id, password)."""

    kind: str = "fake"
    throughput: float = 10.0
    host: str = ""
    port: int = 0
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    sender: str = "12110"


def _quote(value: str) -> str:
    """A Kannel config value: quoted, with no way to end the quote or the line."""
    if any(c in value for c in '"\\\r\n'):
        raise KannelError(f"Kannel setting value {value!r} contains a quote, backslash or newline")
    return f'"{value}"'


def render_config(run_dir: Path, ports: KannelPorts, smsc: SmscConfig, username: str, password: str,
                  queue_limit: int, max_parts: int) -> str:
    """The kannel.conf for bearerbox and smsbox (one file, both read it)."""
    q = _quote
    core = [
        "group = core",
        f"admin-port = {ports.admin}",
        "admin-interface = 127.0.0.1",
        f"admin-password = {q(password)}",
        f"status-password = {q(password)}",
        'admin-deny-ip = "*.*.*.*"',
        "admin-allow-ip = 127.0.0.1",
        f"smsbox-port = {ports.smsbox}",
        "smsbox-interface = 127.0.0.1",
        'box-deny-ip = "*.*.*.*"',
        "box-allow-ip = 127.0.0.1",
        f"log-file = {q(str(run_dir / 'bearerbox.log'))}",
        "log-level = 0",
        "dlr-storage = internal",
        "store-type = file",
        f"store-location = {q(str(run_dir / 'kannel.store'))}",
        f"sms-outgoing-queue-limit = {queue_limit}",
    ]
    if smsc.kind == "fake":
        link = ["group = smsc", "smsc = fake", "smsc-id = operator", "host = 127.0.0.1",
                f"port = {ports.fake_smsc}", "connect-allow-ip = 127.0.0.1"]
    elif smsc.kind == "smpp":
        link = ["group = smsc", "smsc = smpp", "smsc-id = operator", f"host = {q(smsc.host)}",
                f"port = {smsc.port}", "receive-port = 0", "transceiver-mode = true",
                f"smsc-username = {q(smsc.system_id)}", f"smsc-password = {q(smsc.password)}",
                f"system-type = {q(smsc.system_type)}", "source-addr-ton = 0", "source-addr-npi = 1",
                "dest-addr-ton = 1", "dest-addr-npi = 1", "enquire-link-interval = 30",
                "reconnect-delay = 5", "msg-id-type = 0x01", "max-pending-submits = 10"]
    else:
        raise KannelError(f"sms.smsc: unknown operator kind {smsc.kind!r} (fake, smpp)")
    link.append(f"throughput = {smsc.throughput:g}")
    smsbox = [
        "group = smsbox",
        "bearerbox-host = 127.0.0.1",
        f"bearerbox-port = {ports.smsbox}",
        f"sendsms-port = {ports.sendsms}",
        "sendsms-interface = 127.0.0.1",
        f"log-file = {q(str(run_dir / 'smsbox.log'))}",
        "log-level = 0",
        "mo-recode = true",
    ]
    user = [
        "group = sendsms-user",
        f"username = {q(username)}",
        f"password = {q(password)}",
        "concatenation = true",
        f"max-messages = {max_parts}",
        "user-allow-ip = 127.0.0.1",
        f"default-sender = {q(smsc.sender)}",
    ]
    service = ["group = sms-service", "keyword = default", 'text = ""', "max-messages = 0"]
    return "\n\n".join("\n".join(g) for g in (core, link, smsbox, user, service)) + "\n"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def pick_ports(base_port: int) -> KannelPorts:
    ports = list(range(base_port, base_port + 4)) if base_port else _free_ports(4)
    return KannelPorts(*ports)


async def _wait_port(port: int, proc: asyncio.subprocess.Process, what: str, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        if proc.returncode is not None:
            raise KannelError(f"{what} exited with status {proc.returncode} before listening on 127.0.0.1:{port}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            return
        except OSError:
            if loop.time() > deadline:
                raise KannelError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:g} s") from None
            await asyncio.sleep(0.1)


async def _exited(proc: asyncio.subprocess.Process, within: float) -> bool:
    """Wait up to ``within`` seconds for ``proc`` to exit, reaping it ourselves: under some event-loop
    policies (pytest's, a loop in a thread) asyncio's child watcher never reports the exit."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while proc.returncode is None:
        try:
            pid, _ = os.waitpid(proc.pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG never blocks
            if pid:
                return True
        except ChildProcessError:  # already reaped (by the watcher)
            return True
        if loop.time() > end:
            return False
        await asyncio.sleep(0.05)
    return True


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    if not await _exited(proc, STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await _exited(proc, STOP_TIMEOUT)


class Kannel:
    """bearerbox + smsbox (+ fakesmsc when the operator is fake), started from a generated config."""

    def __init__(self, run_dir: Path, smsc: SmscConfig, *, kannel_bin: Path = Path("/usr/sbin"),
                 fakesmsc: Path = Path("/usr/lib/kannel/test/fakesmsc"), base_port: int = 0,
                 queue_limit: int = 10000, max_parts: int = 10, start_operator: bool = True) -> None:
        self.run_dir = run_dir
        self.smsc = smsc
        self.kannel_bin = kannel_bin
        self.fakesmsc_path = fakesmsc
        self.ports = pick_ports(base_port)
        self.username = "commandcenter"
        self.password = secrets.token_urlsafe(18)
        self.queue_limit = queue_limit
        self.max_parts = max_parts
        self.start_operator = start_operator
        self.bearerbox: asyncio.subprocess.Process | None = None
        self.smsbox: asyncio.subprocess.Process | None = None
        self.operator: FakeSmsc | None = None

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.sendsms}/cgi-bin/sendsms"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "kannel.conf"

    def _binary(self, name: str) -> str:
        path = self.kannel_bin / name
        if not os.access(path, os.X_OK):
            raise KannelError(f"{path} is missing: install the Debian package 'kannel' (sms.kannel_bin)")
        return str(path)

    async def start(self) -> None:
        bearerbox, smsbox = self._binary("bearerbox"), self._binary("smsbox")
        if self.smsc.kind == "fake" and self.start_operator and not os.access(self.fakesmsc_path, os.X_OK):
            raise KannelError(f"{self.fakesmsc_path} is missing: install the Debian package 'kannel-extras' "
                              "(sms.fakesmsc), or configure an SMPP SMSC (sms.smsc = smpp)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(self.run_dir, self.ports, self.smsc, self.username,
                                                  self.password, self.queue_limit, self.max_parts))
        self.config_path.chmod(0o600)
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        try:
            self.bearerbox = await asyncio.create_subprocess_exec(
                bearerbox, str(self.config_path), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await _wait_port(self.ports.smsbox, self.bearerbox, "bearerbox", deadline)
            self.smsbox = await asyncio.create_subprocess_exec(
                smsbox, str(self.config_path), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await _wait_port(self.ports.sendsms, self.smsbox, "smsbox", deadline)
            if self.smsc.kind == "fake" and self.start_operator:
                self.operator = FakeSmsc(self.fakesmsc_path, self.ports.fake_smsc, self.run_dir / "fakesmsc.log")
                await self.operator.start()
        except BaseException:
            await self.stop()
            raise
        log.info("sms: Kannel up (sendsms 127.0.0.1:%d, operator %s)", self.ports.sendsms, self.smsc.kind)

    async def status(self) -> GatewayStatus:
        """bearerbox's status (``sms.gateway_status``); down with the reason when it does not answer."""
        if self.bearerbox is None or self.bearerbox.returncode is not None:
            return down("bearerbox not running")
        url = f"http://127.0.0.1:{self.ports.admin}/status.xml"
        try:
            async with httpx.AsyncClient(timeout=STATUS_TIMEOUT) as http:
                r = await http.get(url, params={"password": self.password})
            if r.status_code != 200:
                return down(f"bearerbox answered {r.status_code}")
            return parse_status(r.text[:MAX_STATUS + 1])
        except httpx.HTTPError as e:
            return down(f"bearerbox unreachable: {type(e).__name__}")
        except StatusError as e:
            return down(f"bearerbox status unreadable: {e}")

    async def stop(self) -> None:
        if self.operator is not None:
            await self.operator.stop()
            self.operator = None
        await _stop(self.smsbox)
        await _stop(self.bearerbox)
        self.smsbox = self.bearerbox = None


class FakeSmsc:
    """Kannel's ``fakesmsc``: the operator in the demo and tests. It connects to bearerbox's fake
    SMSC port, answers every message (Kannel then reports it delivered) and prints each one it
    receives (``Got message N: <from to type [udh] text>``) into its log file."""

    def __init__(self, path: Path, port: int, log_path: Path) -> None:
        self.path = path
        self.port = port
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = self.log_path.open("ab")
        try:
            # -m 0: send no mobile-originated messages; just receive.
            self.proc = await asyncio.create_subprocess_exec(
                str(self.path), "-H", "127.0.0.1", "-r", str(self.port), "-m", "0", "0 0 text nop",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        finally:
            out.close()
        await asyncio.sleep(0.2)
        if self.proc.returncode is not None:
            raise KannelError(f"fakesmsc exited with status {self.proc.returncode}; see {self.log_path}")

    async def stop(self) -> None:
        await _stop(self.proc)
        self.proc = None

    def received(self) -> list[str]:
        """The message lines fakesmsc printed so far (``<from to type ...>`` without the brackets)."""
        if not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            _, sep, rest = line.partition("Got message ")
            if sep and ": <" in rest and rest.endswith(">"):
                out.append(rest.split(": <", 1)[1][:-1])
        return out
