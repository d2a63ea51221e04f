"""Numbered SQL migrations per package.

Each package that owns tables has `<package>/migrations/NNNN_description.sql`. They are applied
in package order (dependencies first), then by number; each in its own transaction, recorded in
`schema_migrations` with a checksum. Applying twice changes nothing. A landed migration must never
be edited: a checksum mismatch is an error, not a silent re-run.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass

import asyncpg

# Dependency order: lower layers first. A package without a migrations folder is skipped.
MIGRATION_PACKAGES: tuple[str, ...] = ("core", "gis", "dispatch", "mcu", "recorder", "sip_gateway", "web_console",
                                       "noderpc", "alerts", "monitoring", "sms")

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# One advisory-lock key so two processes starting together don't race the same migration.
_LOCK_KEY = 0x636F6D6D


class MigrationError(RuntimeError):
    """A migration folder or the recorded history is inconsistent."""


@dataclass(frozen=True)
class Migration:
    package: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(packages: tuple[str, ...] = MIGRATION_PACKAGES) -> list[Migration]:
    """All migrations shipped in `packages`, in the order they must be applied."""
    found: list[Migration] = []
    for package in packages:
        try:
            folder = importlib.resources.files(package) / "migrations"
        except ModuleNotFoundError:
            continue
        if not folder.is_dir():
            continue
        versions: set[int] = set()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            match = _NAME.match(entry.name)
            if not match:
                raise MigrationError(f"{package}/migrations/{entry.name}: name must be NNNN_description.sql")
            version = int(match.group(1))
            if version in versions:
                raise MigrationError(f"{package}/migrations: version {version:04d} appears twice")
            versions.add(version)
            found.append(Migration(package, version, match.group(2), entry.read_text(encoding="utf-8")))
    return found


_HISTORY_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    package    text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, version)
)"""


async def _applied(conn: asyncpg.Connection) -> dict[tuple[str, int], str]:
    rows = await conn.fetch("SELECT package, version, checksum FROM schema_migrations")
    return {(r["package"], r["version"]): r["checksum"] for r in rows}


async def pending_migrations(conn: asyncpg.Connection, packages: tuple[str, ...] = MIGRATION_PACKAGES) -> list[Migration]:
    """Migrations not yet applied (empty when the schema is current)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = await _applied(conn) if exists else {}
    return [m for m in discover(packages) if (m.package, m.version) not in applied]


async def apply_migrations(conn: asyncpg.Connection, packages: tuple[str, ...] = MIGRATION_PACKAGES) -> list[Migration]:
    """Apply every pending migration; return the ones applied (empty on a current schema)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_HISTORY_TABLE)
        applied = await _applied(conn)
        done: list[Migration] = []
        for migration in discover(packages):
            key = (migration.package, migration.version)
            if key in applied:
                if applied[key] != migration.checksum:
                    raise MigrationError(
                        f"{migration.package}/migrations/{migration.version:04d}_{migration.name}.sql "
                        "was edited after it was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (package, version, name, checksum) VALUES ($1, $2, $3, $4)",
                    migration.package, migration.version, migration.name, migration.checksum,
                )
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
