"""The HA test cluster itself: Patroni runs a primary and a synchronous standby as a non-root user,
a commit on the primary is on the standby when acknowledged, and nothing is left behind."""
from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import psutil

from tests.ha.cluster import RUN_AS, HaCluster, start_cluster


async def test_primary_and_synchronous_standby(ha_cluster: HaCluster) -> None:
    primary = ha_cluster.primary()
    standby = ha_cluster.sync_standby()
    assert primary and standby and primary != standby
    conn = await asyncpg.connect(ha_cluster.url())  # multi-host URL lands on the primary
    try:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
        names = await conn.fetchval("SHOW synchronous_standby_names")
        assert standby in names, names
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
    finally:
        await conn.close()
    # synchronous_commit=on with a synchronous standby: the row was flushed there before the ack;
    # hot standby replays it at once (allow a moment for the apply: even the application database
    # created at start-up may not be applied there yet).
    replica = await connect_when_applied(ha_cluster.node_url(standby))
    try:
        assert await replica.fetchval("SELECT pg_is_in_recovery()") is True
        for _ in range(50):
            if await replica.fetchval("SELECT to_regclass('t') IS NOT NULL") and await replica.fetchval(
                    "SELECT count(*) FROM t") == 1:
                break
            await asyncio.sleep(0.1)
        assert await replica.fetchval("SELECT count(*) FROM t") == 1
    finally:
        await replica.close()
    # PostgreSQL refuses root: every postgres process runs as the unprivileged user
    pid = int((ha_cluster.node(primary).data_dir / "postmaster.pid").read_text().split()[0])
    assert psutil.Process(pid).username() == RUN_AS


async def connect_when_applied(url: str, within_s: float = 10.0) -> asyncpg.Connection:
    """Connect to a standby, waiting while it has not yet replayed the creation of the database."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_stop_leaves_nothing_behind() -> None:
    cluster = start_cluster(nodes=1)
    pids = [n.process.pid for n in cluster.nodes if n.process] + ([cluster.etcd.pid] if cluster.etcd else [])
    postmaster = int((cluster.nodes[0].data_dir / "postmaster.pid").read_text().split()[0])
    root = Path(cluster.root)
    cluster.stop()
    assert not root.exists()
    for pid in pids + [postmaster]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
