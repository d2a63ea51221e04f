"""Real `commandcenter up --role R` processes on one PostgreSQL, for the split-role tests."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port, new_database, private_tmp_dir

SECRET = "split-roles-test-node-secret-0123456789"


@dataclass
class RoleProcess:
    role: str
    process: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    def passwords(self) -> dict[str, str]:
        found = {}
        for line in self.output:
            m = re.match(r"^\s+(\w+)\s+(\S+)\s+\((\w+)\)$", line)
            if m:
                found[m.group(1)] = m.group(2)
        return found

    def login(self, username: str, password: str) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=20.0)
        page = client.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token, "login page has no CSRF token"
        response = client.post("/login", data={"username": username, "password": password,
                                               "login_csrf": token.group(1), "next": "/"})
        assert response.status_code == 303, response.text
        client.headers["X-CSRF-Token"] = client.get("/api/me").json()["csrf_token"]
        return client

    def kill(self) -> None:
        """SIGKILL: a crash, nothing runs on the way out."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def role_env(db_url: str, var: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": db_url, "CC_VAR_DIR": str(var), "PYTHONUNBUFFERED": "1",
            "CC_NODES__SECRET": SECRET, "CC_NODES__HEARTBEAT_SECONDS": "0.5", "CC_NODES__DEAD_AFTER_SECONDS": "3",
            "CC_NODES__RPC_TIMEOUT_SECONDS": "4", "CC_RECORDER__DEMO_CAMERAS": "false",
            "CC_DEMO__DEMO_SITES": "false", "CC_SIP__UDP_PORT": "0", "CC_SIP__TCP_PORT": "0", "CC_SIP__TLS_PORT": "0",
            "CC_H323__ENABLED": "false", **extra}


def start_role(role: str, env: dict[str, str], timeout: float = 90.0, port: int | None = None) -> RoleProcess:
    """Start `commandcenter up --role ROLE`; ready when it printed its banner (and, with HTTP, /readyz).
    ``port``: its HTTP port (default a free one)."""
    port = port or free_port()
    env = {**env, "CC_HTTP__PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "commandcenter", "up", "--role", role], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = RoleProcess(role, process, f"http://127.0.0.1:{port}")

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            running.output.append(line.rstrip("\n"))

    threading.Thread(target=collect, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            time.sleep(0.2)
            raise RuntimeError(f"{role} node exited:\n" + "\n".join(running.output[-80:]))
        if any("Stop with Ctrl-C" in line for line in running.output):
            if role in ("mcu", "recorder", "desk"):
                return running
            try:
                if httpx.get(running.url + "/readyz", timeout=1.0).status_code == 200:
                    return running
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"{role} node not ready:\n" + "\n".join(running.output[-80:]))


@contextlib.contextmanager
def mcu_and_web(pg_url: str, prefix: str, mcu_env: dict[str, str] | None = None,
                web_env: dict[str, str] | None = None) -> Iterator[tuple[RoleProcess, RoleProcess, str, Path]]:
    """A `--role mcu` node and a `--role web` node on one new database: (mcu, web, db_url, work dir).
    The MCU node starts first: it creates the schema and the users. Both are stopped on exit."""
    db_url = new_database(pg_url, prefix + "_")
    work = private_tmp_dir(f"cc-{prefix}-")
    mcu = start_role("mcu", role_env(db_url, work / "mcu", **(mcu_env or {})))
    web = None
    try:
        web = start_role("web", role_env(db_url, work / "web", **(web_env or {})))
        yield mcu, web, db_url, work
    finally:
        if web is not None:
            web.stop()
        mcu.stop()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def desk_and_web(pg_url: str, prefix: str) -> Iterator[tuple[RoleProcess, RoleProcess, str, Path, int]]:
    """A `--role desk` node (`desk-1`, SIP on a free port) and a `--role web` node (`web-1`) with the
    remote desk, on one new database: (desk, web, db_url, work dir, desk SIP port). The desk node
    starts first: it creates the schema and the users. Both are stopped on exit."""
    db_url = new_database(pg_url, prefix + "_")
    work = private_tmp_dir(f"cc-{prefix}-")
    sip_port = free_port()
    desk = start_role("desk", role_env(db_url, work / "desk", CC_SIP__UDP_PORT=str(sip_port),
                                       CC_SIP__TCP_PORT=str(sip_port), CC_NODE_NAME="desk-1"))
    web = None
    try:
        web = start_role("web", role_env(db_url, work / "web", CC_EMERGENCY__REMOTE_DESK="true", CC_NODE_NAME="web-1"))
        yield desk, web, db_url, work, sip_port
    finally:
        if web is not None:
            web.stop()
        desk.stop()
        shutil.rmtree(work, ignore_errors=True)
