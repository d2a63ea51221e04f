"""The embedded PostgreSQL a benchmark runs on: started in a temp dir, one fresh database, all removed after."""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from core.db import EmbeddedPostgres


@dataclass(frozen=True)
class BenchPostgres:
    """``url``: the fresh database; ``work``: the temp dir (the server's data, room for a var dir)."""

    url: str
    work: Path


@asynccontextmanager
async def embedded_database(prefix: str, name: str | None = None) -> AsyncIterator[BenchPostgres]:
    """Start the real embedded PostgreSQL (the pgserver wheel) in a new temp dir named ``prefix``…,
    create database ``name`` (default ``bench_`` and 8 random hex digits) and yield where it is. The
    server is stopped and the dir removed on the way out, also when the bench failed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    server = EmbeddedPostgres(work)
    base = await asyncio.to_thread(server.start)
    name = name or "bench_" + uuid.uuid4().hex[:8]
    try:
        admin = await asyncpg.connect(base)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        parts = urlsplit(base)
        yield BenchPostgres(urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment)), work)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)
