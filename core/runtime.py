"""Core services of a running node, started and stopped together.

`CoreServices.start` resolves the database (external `DATABASE_URL` or the embedded server under
`var/pg`), applies migrations, attaches the event bus and seeds the site plan's demo users.
Every role (`web`, `mcu`, `recorder`, `all`) builds on it: the composition root
(`commandcenter/node.py`) starts the role's capabilities on top and stops them before these.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from config.settings import Settings
from config.site_plan import SitePlan, load_site_plan
from core.audit import AuditLog
from core.bus import Bus
from core.db import Database, EmbeddedPostgres, RetryPolicy, apply_migrations, pending_migrations
from core.identity import Identity, PasswordPolicy, generate_password
from core.login_policy import LoginPolicy, ThrottleRule
from core.passwords import BoundedHasher

log = logging.getLogger(__name__)


# The advisory-lock key that serialises seeding (core/db/migrations.py has the migrations' own).
_SEED_LOCK_KEY = 0x63635344


@dataclass
class SeededAccount:
    username: str
    role: str
    password: str


@dataclass
class CoreServices:
    settings: Settings
    plan: SitePlan
    db: Database
    bus: Bus
    identity: Identity
    audit: AuditLog
    embedded: EmbeddedPostgres | None = None
    seeded: list[SeededAccount] = field(default_factory=list)
    stopped: bool = False

    @classmethod
    async def start(cls, settings: Settings, *, seed: bool = True) -> CoreServices:
        """Bring up the database, schema, bus and identity; seed demo users on an empty database."""
        plan = load_site_plan(settings.site_plan)
        embedded = None
        url = settings.database_url
        if url is None:
            embedded = EmbeddedPostgres(settings.var_dir / "pg")
            url = await asyncio.to_thread(embedded.start)
        dbs = settings.database
        db = Database(url, retry=RetryPolicy(deadline_s=dbs.failover_wait_seconds),
                      connect_timeout=dbs.connect_timeout_seconds, command_timeout=dbs.command_timeout_seconds)
        try:
            await db.connect(max_size=settings.database.pool_size)
            async with db.pool.acquire() as conn:
                applied = await apply_migrations(conn)
            for m in applied:
                log.info("applied migration %s/%04d_%s", m.package, m.version, m.name)
            bus = Bus(node_id=f"{settings.node_name}-{id(db):x}")
            await bus.attach(db, settings.database.events_keep_hours)
        except BaseException:
            await db.close()
            if embedded:
                await asyncio.to_thread(embedded.stop)
            raise
        sec = settings.security
        identity = Identity(
            db,
            PasswordPolicy(min_length=sec.password_min_length),
            LoginPolicy(
                per_source_account=ThrottleRule(sec.login_free_attempts, sec.login_base_delay_seconds,
                                                sec.login_max_delay_seconds, sec.login_forget_seconds),
                per_source=ThrottleRule(sec.login_source_free_attempts, sec.login_base_delay_seconds,
                                        sec.login_source_max_delay_seconds, sec.login_forget_seconds),
            ),
            BoundedHasher(sec.password_hash_workers, sec.password_hash_queue),
        )
        services = cls(settings, plan, db, bus, identity, AuditLog(db), embedded)
        if seed and settings.demo.seed_users:
            services.seeded = await services.seed_users()
        return services

    async def seed_users(self) -> list[SeededAccount]:
        """Create the plan's users with random passwords, only when no user exists yet.

        Nodes that start together on one database (a city MCU and its standby) seed once: each
        holds an advisory lock while it looks and seeds, so the second finds the first's users."""
        async with self.db.pool.acquire() as lock:  # a connection of its own: create_user uses the pool
            await lock.execute("SELECT pg_advisory_lock($1)", _SEED_LOCK_KEY)
            try:
                if await self.identity.count_users() > 0:
                    return []
                accounts = []
                for u in self.plan.users:
                    password = generate_password()
                    await self.identity.create_user(u.username, password, u.role, u.display_name)
                    await self.audit.record("system", "user.seeded", u.username, detail={"role": u.role})
                    accounts.append(SeededAccount(u.username, u.role, password))
                return accounts
            finally:
                await lock.execute("SELECT pg_advisory_unlock($1)", _SEED_LOCK_KEY)

    async def ready(self) -> tuple[bool, str]:
        """Database reachable and schema current."""
        if not await self.db.ping():
            return False, "database unreachable"
        async with self.db.pool.acquire() as conn:
            pending = await pending_migrations(conn)
        if pending:
            return False, f"{len(pending)} migrations pending"
        return True, "ready"

    async def stop(self) -> None:
        """Stop the bus, close the pool and release the embedded server. Safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        await self.bus.detach()
        self.identity.close()
        await self.db.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
