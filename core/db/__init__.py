"""Database access: embedded PostgreSQL, the asyncpg pool and per-package migrations.

- `embedded.EmbeddedPostgres` runs PostgreSQL 16 from the `pgserver` wheel under `var/pg`
  when no `DATABASE_URL` is configured.
- `pool.Database` wraps an asyncpg pool.
- `migrations.apply_migrations` applies numbered `.sql` files per package, in order, once each.
"""
from core.db.embedded import EmbeddedPostgres
from core.db.migrations import MIGRATION_PACKAGES, MigrationError, apply_migrations, pending_migrations
from core.db.pool import Database

__all__ = [
    "Database",
    "EmbeddedPostgres",
    "MIGRATION_PACKAGES",
    "MigrationError",
    "apply_migrations",
    "pending_migrations",
]
