"""Fixtures of the multi-host cascade tests: a database per node and a clean-up that always runs."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.cascade.cluster import can_run
from tests.conftest import private_tmp_dir, run_async, with_database

SKIP_REASON = can_run()


@pytest.fixture
def netns_required() -> None:
    if SKIP_REASON:
        pytest.skip(f"multi-host cascade tests need network namespaces: {SKIP_REASON}")


@pytest.fixture
def node_databases(pg_url: str) -> Iterator[Callable[[str], str]]:
    """``url_for(node)``: a fresh database per node on the session's PostgreSQL (dropped afterwards)."""
    made: list[str] = []

    async def create(name: str) -> None:
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    def url_for(node: str) -> str:
        name = f"c_{node.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        run_async(create(name))
        made.append(name)
        return with_database(pg_url, name)

    yield url_for

    async def drop() -> None:
        admin = await asyncpg.connect(pg_url)
        try:
            for name in made:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_async(drop())


@pytest.fixture
def work_dir() -> Path:
    return private_tmp_dir("cc-cascade-")
