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
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from config.settings import Settings
from core.db import EmbeddedPostgres
from core.runtime import CoreServices, SeededAccount

if TYPE_CHECKING:  # mcu and Playwright are imported where a test asks for them, not by every test
    from playwright.sync_api import Browser

    from mcu.admission import PinGuard
    from mcu.conferences import ConferenceService
    from mcu.room import RoomSettings

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


def wait_for(predicate: Any, within: float = 15.0) -> Any:
    """Poll ``predicate()`` every 0.1 s from sync code; its first truthy value (TimeoutError after ``within`` s)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError("condition not met")


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


async def create_database(pg_url: str, name: str, template: str | None = None) -> str:
    """Create the database ``name`` on ``pg_url``'s server, empty or a copy of ``template``; its URL."""
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await admin.close()
    return with_database(pg_url, name)


def new_database(pg_url: str, prefix: str) -> str:
    """From sync code: the URL of a new empty database named ``prefix`` and 12 random hex digits."""
    return run_async(create_database(pg_url, prefix + uuid.uuid4().hex[:12]))


@pytest.fixture
async def fresh_db_url(pg_url: str) -> AsyncIterator[str]:
    """An empty database of its own for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    yield await create_database(pg_url, name)
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def make_settings(db_url: str, var_dir: Path, **overrides: object) -> Settings:
    return Settings(var_dir=var_dir, database={"url": db_url}, **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SeededTemplate:
    """A database that `CoreServices.start` migrated and seeded once, and the accounts it seeded."""
    name: str
    accounts: tuple[SeededAccount, ...]


@pytest.fixture(scope="session")
def seeded_template(pg_url: str) -> SeededTemplate:
    """Migrated and seeded once per run by the real start-up; tests get copies (`seeded_db_url`).

    Seeding hashes the demo plan's users with argon2 (about 2 s of CPU); a copy made with
    CREATE DATABASE ... TEMPLATE takes a fraction of that, for every test that wants a seeded database.
    """
    name = "tmpl_" + uuid.uuid4().hex[:12]
    url = run_async(create_database(pg_url, name))

    async def seed() -> tuple[SeededAccount, ...]:
        started = await CoreServices.start(make_settings(url, private_tmp_dir("cc-template-")))
        try:
            return tuple(started.seeded)
        finally:
            await started.stop()  # no session may stay open on a template database
    return SeededTemplate(name, run_async(seed()))


@pytest.fixture
async def seeded_db_url(pg_url: str, seeded_template: SeededTemplate) -> AsyncIterator[str]:
    """A database of its own for one test: migrated, with the demo users (`seeded_template.accounts`)."""
    name = "t_" + uuid.uuid4().hex[:12]
    yield await create_database(pg_url, name, template=seeded_template.name)
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def services(seeded_db_url: str, seeded_template: SeededTemplate,
                   tmp_path: Path) -> AsyncIterator[CoreServices]:
    """Core services (migrated schema, bus attached, demo users seeded) on a database of their own.

    The database is a copy of `seeded_template`, so `seeded` holds that template's accounts (the
    start-up finds users and seeds none itself)."""
    started = await CoreServices.start(make_settings(seeded_db_url, tmp_path))
    started.seeded = list(seeded_template.accounts)
    yield started
    await started.stop()


@pytest.fixture
def room_settings() -> RoomSettings:
    """The rooms of the ``conferences`` fixture: 10 fps. A module (or folder conftest) that wants
    others overrides this fixture."""
    from mcu.room import RoomSettings
    return RoomSettings(fps=10)


@pytest.fixture
def pin_guard() -> PinGuard | None:
    """The ``conferences`` fixture's PIN guard; None: ConferenceService's default. Override to change."""
    return None


@pytest.fixture
async def conferences(services: CoreServices, room_settings: RoomSettings,
                      pin_guard: PinGuard | None) -> AsyncIterator[ConferenceService]:
    """A started ConferenceService (the standing demo conference runs) on ``services``; stopped after."""
    from mcu.conferences import ConferenceService
    service = ConferenceService(services, room_settings=room_settings, pin_guard=pin_guard)
    await service.start()
    yield service
    await service.stop()


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
                 timeout: float = 60.0, host: str = "127.0.0.1") -> RunningServer:
    """Start `commandcenter up` as a subprocess and wait for /readyz. The web console listens on
    `host` (another local address, e.g. the MCU end of an emulated line, sets ``CC_HTTP__HOST``)."""
    port = free_port()
    # SIP and H.323 on free ports, not 5060/5061/1720: another server (another pytest worker's, or
    # another run's) may be up at the same time. A test that calls in sets the port it dials.
    sip_port = free_port()
    own_ports = {"CC_SIP__UDP_PORT": str(sip_port), "CC_SIP__TCP_PORT": str(sip_port),
                 "CC_SIP__TLS_PORT": str(free_port()), "CC_H323__SIGNALLING_PORT": str(free_port())}
    # Web tests don't need 12 demo cameras recording behind them; tests that do set it back.
    env = {**own_ports, **os.environ, "CC_VAR_DIR": str(var_dir), "CC_HTTP__PORT": str(port),
           "CC_RECORDER__DEMO_CAMERAS": "false", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    if host != "127.0.0.1":
        env["CC_HTTP__HOST"] = host
    if db_url:
        env["DATABASE_URL"] = db_url
    else:
        env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "commandcenter", "up"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = RunningServer(f"http://{host}:{port}", process, {}, db_url)

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
def server(request: pytest.FixtureRequest, pg_url: str, seeded_template: SeededTemplate) -> Iterator[RunningServer]:
    """A running system on its own database (a copy of `seeded_template`), shared by the tests of one module.

    A test module may set `SERVER_ENV = {...}` to start it with extra environment.
    """
    db_url = run_async(create_database(pg_url, "m_" + uuid.uuid4().hex[:12], template=seeded_template.name))
    var = private_tmp_dir("cc-var-")
    running = start_server(db_url, var,
                           extra_env=getattr(request.module, "SERVER_ENV", None))
    running.passwords.update({a.username: a.password for a in seeded_template.accounts})
    yield running
    stop_server(running)
    shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium (tests/browser.py) for the page tests of a module."""
    from tests.browser import chromium
    with chromium() as b:
        yield b


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CC_TESTING", "1")
    if _xdist_loadgroup(config) and not _is_xdist_worker(config):
        # The work queue keeps the order of pytest_collection_modifyitems below (longest units first),
        # not xdist's "most tests first".
        config.option.loadscopereorder = False


# -- running in parallel (pytest-xdist: `-n 2 --dist loadgroup`) ------------------------------------
# Each worker has its own embedded PostgreSQL, template database and free ports. A test file is one
# unit of work: its tests run in order on one worker and share its module fixtures (a `server`, a
# browser). Tests that must not run beside each other are one unit of work together, a group listed
# in GROUPS by path. (Not by xdist_group marks: with pytest 9.2 xdist's loadgroup loses them
# silently, pytest-xdist#1386; the scheduler below still honours them once xdist passes them on.)
# REALTIME_MEDIA: what opens emulated lines (tests/linesim's teardown checks look at every linesim
# namespace on the host), the H.323 tests (fixed RTP port ranges, captured by range) and Chromium's
# media-quality judges: one such test at a time, never two of them side by side on the 2 cores.
REALTIME_MEDIA = "realtime-media"
GROUPS: dict[str, tuple[str, ...]] = {  # group -> test paths (a folder ends in /)
    REALTIME_MEDIA: (
        "tests/linesim/", "tests/ha/test_ha_remote_standby.py", "tests/web_console/test_field_line.py",
        "tests/sip_gateway/h323/", "tests/mcu/test_h323_h239_media.py", "tests/mcu/test_h323_content_rate.py",
        "tests/mcu/test_h323_h239_h261.py", "tests/mcu/test_webrtc_fec_chromium.py",
        "tests/mcu/test_webrtc_pane_size_chromium.py", "tests/mcu/test_webrtc_tiers_chromium.py",
        "tests/mcu/test_webrtc_rtx_chromium.py"),
}


def unit_of_work(nodeid: str) -> str:
    """The unit of work (run in order on one worker) a test belongs to: its group, else its file."""
    if nodeid.rfind("@") > nodeid.rfind("]"):  # an xdist_group mark, where xdist passes it on
        return nodeid.rsplit("@", 1)[1]
    path = nodeid.split("::", 1)[0]
    for group, paths in GROUPS.items():
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in paths):
            return group
    return path


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _xdist_loadgroup(config: pytest.Config) -> bool:
    """`--dist loadgroup`: the controller's option; a worker has it as `loadgroup` (its own dist is "no")."""
    return bool(config.pluginmanager.hasplugin("xdist") and (
        config.getoption("dist", "no") == "loadgroup" or getattr(config.option, "loadgroup", False)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` schedules units of work (unit_of_work), in the collection's order."""
    if config.getoption("dist", "no") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # LoadScopeScheduling with our units of work: a scope is what _split_scope says of a node id.
    scheduling = type("UnitScheduling", (LoadScopeScheduling,),
                      {"_split_scope": lambda self, nodeid: unit_of_work(nodeid)})
    return scheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, the longest units first, so that the last units to run are short:
    the groups, then the files with slow tests, then the rest (in collection order within each)."""
    if not _xdist_loadgroup(config):
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return 0 if unit_of_work(item.nodeid) != path else 1 if item.path in slow_files else 2
    items.sort(key=rank)


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


# -- where the suite's time goes -----------------------------------------------------------------
# Every phase's duration, per test file, written to test-artifacts/durations.json at the end: the
# suite must stay well under 30 minutes on CI's 2 cores, and this says which files to look at.
_DURATIONS: dict[str, dict[str, float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    per_file = _DURATIONS.setdefault(path, {"setup": 0.0, "call": 0.0, "teardown": 0.0, "tests": 0})
    per_file[report.when] += report.duration
    if report.when == "call":
        per_file["tests"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _DURATIONS or _is_xdist_worker(session.config):  # under xdist the controller sees every report
        return
    import json
    ARTIFACTS.mkdir(exist_ok=True)
    ordered = sorted(_DURATIONS.items(), key=lambda kv: -(kv[1]["setup"] + kv[1]["call"] + kv[1]["teardown"]))
    (ARTIFACTS / "durations.json").write_text(json.dumps(
        {path: {k: round(v, 2) for k, v in d.items()} for path, d in ordered}, indent=1))
