"""Database access: embedded PostgreSQL, the asyncpg pool and per-package migrations.

- `embedded.EmbeddedPostgres` runs PostgreSQL 16 from the `pgserver` wheel under `var/pg`
  when no `DATABASE_URL` is configured.
- `pool.Database` wraps an asyncpg pool; the URL may name several hosts (a Patroni cluster).
- `failover` holds the pure rules for retrying a command across a failover, or giving up (503).
- `migrations.apply_migrations` applies numbered `.sql` files per package, in order, once each.
"""
from core.db.embedded import EmbeddedPostgres
from core.db.failover import DatabaseUnavailable, RetryPolicy
from core.db.migrations import MIGRATION_PACKAGES, MigrationError, apply_migrations, pending_migrations
from core.db.pool import Database

__all__ = [
    "Database",
    "DatabaseUnavailable",
    "EmbeddedPostgres",
    "MIGRATION_PACKAGES",
    "MigrationError",
    "RetryPolicy",
    "apply_migrations",
    "pending_migrations",
]
