"""Fixtures for the high-availability tests: a real Patroni + etcd + PostgreSQL 15 cluster."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ha.cluster import ClusterError, HaCluster, start_cluster


@pytest.fixture
def ha_cluster() -> Iterator[HaCluster]:
    """A fresh two-node cluster (primary + synchronous standby) for one test; always torn down."""
    try:
        cluster = start_cluster(nodes=2)
    except ClusterError as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
