"""Shared test fixtures: the embedded PostgreSQL, fresh databases, a running server, artifacts.

Package-specific fixtures live in tests/<package>/conftest.py.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from config.settings import Settings
from core.db import EmbeddedPostgres
from core.runtime import CoreServices

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Directory for screenshots, captures and other test artifacts (kept after the run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def private_tmp_dir(prefix: str) -> Path:
    """A temp dir outside pytest's basetemp (which concurrent pytest sessions prune)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even where a loop is running (Playwright)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (keeps host, socket and credentials)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """One embedded PostgreSQL for the whole run (the real server from the pgserver wheel).

    Its data lives in a directory of its own, not under pytest's basetemp: concurrent pytest
    sessions prune each other's old basetemp directories.
    """
    data_dir = private_tmp_dir("cc-pg-")
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    yield url
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def fresh_db_url(pg_url: str) -> AsyncIterator[str]:
    """An empty database of its own for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(pg_url, name)
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def make_settings(db_url: str, var_dir: Path, **overrides: object) -> Settings:
    return Settings(var_dir=var_dir, database={"url": db_url}, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def services(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[CoreServices]:
    """Core services (migrated schema, bus attached, demo users seeded) on a fresh database."""
    started = await CoreServices.start(make_settings(fresh_db_url, tmp_path))
    yield started
    await started.stop()


@dataclass
class RunningServer:
    """A `commandcenter up` process and what it printed at start-up."""

    url: str
    process: subprocess.Popen[str]
    passwords: dict[str, str]
    db_url: str
    output: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def login(self, username: str, password: str | None = None) -> httpx.Client:
        """An httpx client with a session for `username` (CSRF token in `client.headers`)."""
        client = self.client()
        page = client.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token, "login page has no CSRF token"
        response = client.post("/login", data={
            "username": username, "password": password or self.passwords[username],
            "login_csrf": token.group(1), "next": "/"})
        assert response.status_code == 303, response.text
        me = client.get("/api/me").json()
        client.headers["X-CSRF-Token"] = me["csrf_token"]
        return client


def start_server(db_url: str, var_dir: Path, extra_env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> RunningServer:
    """Start `commandcenter up` as a subprocess and wait for /readyz."""
    port = free_port()
    # Web tests don't need 12 demo cameras recording behind them; tests that do set it back.
    env = {**os.environ, "CC_VAR_DIR": str(var_dir), "CC_HTTP__PORT": str(port),
           "CC_RECORDER__DEMO_CAMERAS": "false", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    if db_url:
        env["DATABASE_URL"] = db_url
    else:
        env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "commandcenter", "up"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = RunningServer(f"http://127.0.0.1:{port}", process, {}, db_url)

    def collect() -> None:  # a thread: the pipe must be drained or the server blocks on print
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line.rstrip("\n"))

    threading.Thread(target=collect, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            time.sleep(0.2)
            raise RuntimeError("server exited:\n" + "\n".join(server.output))
        try:
            if httpx.get(server.url + "/readyz", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        raise TimeoutError("server not ready:\n" + "\n".join(server.output))
    for line in server.output:
        m = re.match(r"^\s+(\w+)\s+(\S+)\s+\((\w+)\)$", line)
        if m:
            server.passwords[m.group(1)] = m.group(2)
    return server


def stop_server(server: RunningServer, timeout: float = 20.0) -> int:
    """SIGTERM the server and wait; returns its exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return int(server.process.returncode)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, pg_url: str) -> Iterator[RunningServer]:
    """A running system on its own database, shared by the tests of one module.

    A test module may set `SERVER_ENV = {...}` to start it with extra environment.
    """
    name = "m_" + uuid.uuid4().hex[:12]

    async def create() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_async(create())
    var = private_tmp_dir("cc-var-")
    running = start_server(with_database(pg_url, name), var,
                           extra_env=getattr(request.module, "SERVER_ENV", None))
    yield running
    stop_server(running)
    shutil.rmtree(var, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CC_TESTING", "1")


# -- real parts are never skipped --------------------------------------------------------------
# A test that needs a real part (a peer, tshark, root for a loopback capture, network namespaces)
# fails when the part is missing: a skip would let CI pass with the part never exercised.
# Only a skip whose reason starts with NOT_APPLICABLE stays a skip (it says the test does not apply
# to this data, not that something is missing). `--allow-missing-parts` keeps skips as skips for a
# developer without root, and the summary at the end then lists them loudly.
NOT_APPLICABLE = "not applicable:"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--allow-missing-parts", action="store_true",
                     help="report tests whose real part is missing as skipped instead of failed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if reason.startswith(NOT_APPLICABLE) or item.config.getoption("--allow-missing-parts"):
        return
    report.outcome = "failed"
    report.longrepr = f"a real part is missing, so this test fails instead of skipping: {reason}"


def skip_reason(report: pytest.TestReport) -> str:
    """The reason text of a skipped report (pytest stores it as (file, line, reason))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} TESTS SKIPPED: their real parts were not exercised",
                                   red=True, bold=True)
        for report in skipped:
            terminalreporter.write_line(f"SKIPPED {report.nodeid}: {skip_reason(report)}", red=True)
