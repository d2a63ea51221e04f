"""Migrations apply on an empty database, once, in order; edited migrations are refused."""
from __future__ import annotations

import asyncpg
import pytest

from core.db import MigrationError, apply_migrations, pending_migrations
from core.db.migrations import discover


async def test_apply_on_empty_database_then_reapply_is_a_no_op(fresh_db_url: str) -> None:
    conn = await asyncpg.connect(fresh_db_url)
    try:
        assert await pending_migrations(conn), "an empty database has pending migrations"
        applied = await apply_migrations(conn)
        assert [(m.package, m.version) for m in applied] == [(m.package, m.version) for m in discover()]
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"users", "sessions", "api_tokens", "audit_log", "events", "schema_migrations"} <= tables
        history_before = await conn.fetch("SELECT package, version, applied_at FROM schema_migrations ORDER BY 1, 2")

        assert await apply_migrations(conn) == []
        assert await pending_migrations(conn) == []
        history_after = await conn.fetch("SELECT package, version, applied_at FROM schema_migrations ORDER BY 1, 2")
        assert history_after == history_before
    finally:
        await conn.close()


async def test_a_migration_edited_after_landing_is_refused(fresh_db_url: str) -> None:
    conn = await asyncpg.connect(fresh_db_url)
    try:
        await apply_migrations(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE package = 'core' AND version = 1")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await apply_migrations(conn)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each migration runs in its own transaction: a broken one is not recorded and changes nothing."""
    import core.db.migrations as migrations

    real = migrations.discover()
    broken = migrations.Migration("core", 9999, "broken", "CREATE TABLE half_done (id int); SELECT no_such_column;")
    monkeypatch.setattr(migrations, "discover", lambda packages=(): [*real, broken])
    conn = await asyncpg.connect(fresh_db_url)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await apply_migrations(conn)
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9999") == 0
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(real)
    finally:
        await conn.close()
