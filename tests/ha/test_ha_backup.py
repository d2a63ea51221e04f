"""Backups and point-in-time recovery with pgBackRest, through `commandcenter backup`.

A Patroni cluster archives its WAL with pgBackRest. The application writes audit rows before a full
backup, between it and an incremental one, and after it; `commandcenter backup restore --to T`
restores into a fresh data directory; PostgreSQL started on it replays WAL up to T and promotes;
the application starts on it (migrations current, bus attached) and holds exactly the rows of that
moment: everything before T, nothing after."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import psutil
import pytest

from core.db.backup import BackupError, PgBackRest, parse_target_time
from core.runtime import CoreServices
from tests.conftest import ROOT, free_port, make_settings
from tests.ha.cluster import (
    PG_BIN,
    RUN_AS,
    STANZA,
    SUPERUSER,
    SUPERUSER_PASSWORD,
    ClusterError,
    HaCluster,
    start_cluster,
    wait_primary,
)


@pytest.fixture
def backed_up_cluster() -> Iterator[HaCluster]:
    try:
        cluster = start_cluster(nodes=2, backups=True)
    except ClusterError as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


def _cli(cluster: HaCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CC_BACKUP__PGBACKREST_CONFIG": str(cluster.pgbackrest_conf), "CC_BACKUP__STANZA": STANZA}
    return subprocess.run([sys.executable, "-m", "commandcenter", "backup", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


async def _audit(url: str, action: str, n: int) -> datetime:
    """Write `n` audit rows through the application; returns the server's clock after they committed."""
    conn = await asyncpg.connect(url)
    try:
        for i in range(n):
            await conn.execute("INSERT INTO audit_log (actor, action, target) VALUES ('pitr-test', $1, $2)",
                               action, str(i))
        return await conn.fetchval("SELECT clock_timestamp()")  # type: ignore[no-any-return]
    finally:
        await conn.close()


def _start_restored(cluster: HaCluster, data: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={data}", "-c", f"hba_file={data}/pg_hba.conf",
         "-c", f"ident_file={data}/pg_ident.conf", "-c", "archive_mode=off", "-c", "hot_standby=on",
         "-c", "logging_collector=off"],
        stdout=open(cluster.root / "restored.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        user=cluster.uid, group=cluster.gid, extra_groups=[], start_new_session=True, cwd=cluster.root)


@pytest.mark.slow
def test_point_in_time_recovery_into_a_fresh_cluster(backed_up_cluster: HaCluster, tmp_path: Path) -> None:
    cluster = backed_up_cluster
    tool = PgBackRest(STANZA, cluster.pgbackrest_conf, RUN_AS)
    tool.run([*tool_base(tool), "stanza-create"])
    url = cluster.url()

    async def schema() -> None:  # the application creates its schema (and seeds its users)
        services = await CoreServices.start(make_settings(url, tmp_path / "var-a"))
        await services.stop()
    asyncio.run(schema())

    asyncio.run(_audit(url, "pitr.before_full", 3))
    full = _cli(cluster, "run", "--type", "full")
    assert full.returncode == 0, full.stderr
    asyncio.run(_audit(url, "pitr.before_incr", 3))
    incr = _cli(cluster, "run", "--type", "incr")
    assert incr.returncode == 0, incr.stderr
    time.sleep(1.1)  # pgBackRest picks the set whose stop time, in whole seconds, is before the target
    target = asyncio.run(_audit(url, "pitr.before_target", 3))
    time.sleep(1.5)
    asyncio.run(_audit(url, "pitr.after_target", 3))
    tool.run([*tool_base(tool), "check"])  # switches WAL and waits until it is archived

    listed = _cli(cluster, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2 and " full " in lines[0] and " incr " in lines[1], listed.stdout

    # bad input changes nothing and says why
    bad = _cli(cluster, "restore", "--to", "2026-12-07 08:00", "--pg-path", str(cluster.root / "nope"))
    assert bad.returncode == 1 and "UTC offset" in bad.stderr and not (cluster.root / "nope").exists()

    restored = cluster.root / "restored"
    started = time.monotonic()
    out = _cli(cluster, "restore", "--to", target.isoformat(), "--pg-path", str(restored))
    assert out.returncode == 0, out.stderr
    port = free_port()
    postgres = _start_restored(cluster, restored, port)
    try:
        restored_url = f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/commandcenter"
        asyncio.run(_wait_promoted(restored_url, cluster))
        restore_seconds = time.monotonic() - started

        async def check() -> dict[str, int]:
            # the application comes up on the restored cluster ...
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
    # ... with exactly the data of that moment
    assert counts == {"pitr.before_full": 3, "pitr.before_incr": 3, "pitr.before_target": 3}, counts
    print(f"\nPITR: restore + replay to the target took {restore_seconds:.1f} s")


def tool_base(tool: PgBackRest) -> list[str]:
    return [tool.pgbackrest, f"--config={tool.config}", f"--stanza={tool.stanza}"]


async def _wait_promoted(url: str, cluster: HaCluster) -> None:
    if await wait_primary(url, tries=300, every=0.2):
        return
    log = (cluster.root / "restored.log").read_text(errors="replace")[-2000:]
    raise AssertionError(f"the restored cluster did not finish recovery:\n{log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        victims = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.Error:
        victims = []
    for p in victims:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(victims, timeout=10)
    for p in alive:
        p.kill()
    process.wait(5)


def test_restore_target_and_backup_type_are_checked_before_anything_runs() -> None:
    assert parse_target_time("2026-12-07T08:30:00+08:00").utcoffset() is not None
    for bad in ("2026-12-07 08:30", "yesterday", "", "2026-13-01T00:00:00+00:00"):
        with pytest.raises(BackupError):
            parse_target_time(bad)
    from core.db.backup import backup_argv, parse_backups, restore_argv
    with pytest.raises(BackupError):
        backup_argv("pgbackrest", None, "s", "everything")
    argv = restore_argv("pgbackrest", Path("/etc/pgb.conf"), "s", parse_target_time("2026-12-07T08:30:00+08:00"),
                        Path("/data/new"))
    assert "--target=2026-12-07 00:30:00.000000+00" in argv and "--pg1-path=/data/new" in argv
    with pytest.raises(BackupError):
        parse_backups("not json", "s")
    with pytest.raises(BackupError):
        parse_backups('[{"name": "other"}]', "s")
    assert parse_backups('[{"name": "s", "backup": []}]', "s") == []
