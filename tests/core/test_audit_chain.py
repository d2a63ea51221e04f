"""The hash-chained audit log: rows chained in the database, `commandcenter audit verify` finds tampering."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

import core.db.migrations as migrations
from core.audit import GENESIS, AuditLog, canonical_entry, entry_hash, verify_chain
from core.db import Database, apply_migrations
from core.runtime import CoreServices
from tests.conftest import ROOT


def audit_cli(db_url: str, var: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "CC_VAR_DIR": str(var)}
    return subprocess.run([sys.executable, "-m", "commandcenter", "audit", "verify"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


async def test_rows_written_before_the_migration_are_chained(fresh_db_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    everything = migrations.discover()
    conn = await asyncpg.connect(fresh_db_url)
    try:
        monkeypatch.setattr(migrations, "discover",
                            lambda packages=(): [m for m in everything if (m.package, m.version) == ("core", 1)])
        await apply_migrations(conn)
        for i in range(3):
            await conn.execute("INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, 'login', $1, $2)",
                               f"user{i}", '{"reason": "old", "n": 1.50}')
        monkeypatch.setattr(migrations, "discover", lambda packages=(): everything)
        await apply_migrations(conn)
    finally:
        await conn.close()
    db = Database(fresh_db_url)
    await db.connect(max_size=2)
    try:
        await AuditLog(db).record("admin", "user.create", "li.na", detail={"role": "viewer", "名字": "李娜"})
        report = await verify_chain(db)
        assert report.ok and report.rows == 4 and report.last_id == 4, report
        first = await db.fetchrow("SELECT prev_hash, row_hash, (extract(epoch FROM at) * 1000000)::bigint AS at_us, "
                                  "detail::text AS d FROM audit_log WHERE id = 1")
        assert first is not None and bytes(first["prev_hash"]) == GENESIS
        # The documented encoding, recomputed here, gives the stored hash.
        expected = entry_hash(GENESIS, canonical_entry(1, first["at_us"], "user0", "login", "user0", "ok", "",
                                                       first["d"]))
        assert bytes(first["row_hash"]) == expected
    finally:
        await db.close()


async def test_concurrent_writers_keep_one_chain(services: CoreServices) -> None:
    audit = AuditLog(services.db)
    ids = await asyncio.gather(*(audit.record(f"writer{i % 7}", "test.write", str(i)) for i in range(60)))
    assert len(set(ids)) == 60
    report = await verify_chain(services.db)
    assert report.ok, report.summary()


async def test_verify_names_the_row_a_superuser_edited_deleted_or_inserted(services: CoreServices,
                                                                           seeded_db_url: str, tmp_path: Path) -> None:
    audit = services.audit
    for i in range(3):
        await audit.record("admin", "user.update", f"user{i}", source="127.0.0.1", detail={"n": i})
    async with services.db.pool.acquire() as conn:  # a rolled-back write leaves a gap in the ids
        tx = conn.transaction()
        await tx.start()
        gap = await conn.fetchval("INSERT INTO audit_log (actor, action) VALUES ('x', 'y') RETURNING id")
        await tx.rollback()
    for i in range(3, 6):
        await audit.record("admin", "user.update", f"user{i}", source="127.0.0.1", detail={"n": i})
    ok = await asyncio.to_thread(audit_cli, seeded_db_url, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "audit log intact" in ok.stdout

    rows = [r["id"] for r in await services.db.fetch("SELECT id FROM audit_log ORDER BY id")]
    victim = rows[-2]
    before_victim, after_victim = rows[rows.index(victim) - 1], rows[-1]
    su = await asyncpg.connect(seeded_db_url)
    try:
        assert await su.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        await su.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        # Edit one row.
        original = await su.fetchval("SELECT target FROM audit_log WHERE id = $1", victim)
        await su.execute("UPDATE audit_log SET target = 'someone-else' WHERE id = $1", victim)
        edited = await asyncio.to_thread(audit_cli, seeded_db_url, tmp_path)
        assert edited.returncode == 1, edited.stdout + edited.stderr
        assert f"BROKEN at row {victim}:" in edited.stderr and "edited" in edited.stderr, edited.stderr
        # Put it back: intact again (the chain is over the contents, nothing else).
        await su.execute("UPDATE audit_log SET target = $2 WHERE id = $1", victim, original)
        assert (await verify_chain(services.db)).ok

        # Delete one row.
        saved = await su.fetchrow("SELECT * FROM audit_log WHERE id = $1", victim)
        assert saved is not None
        await su.execute("DELETE FROM audit_log WHERE id = $1", victim)
        deleted = await asyncio.to_thread(audit_cli, seeded_db_url, tmp_path)
        assert deleted.returncode == 1
        assert f"BROKEN at row {after_victim}:" in deleted.stderr and "deleted" in deleted.stderr, deleted.stderr
        assert f"row {before_victim}" in deleted.stderr
        # Put it back (with the chain trigger off, as it was).
        await su.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_chain")
        columns = list(saved.keys())
        await su.execute(f"INSERT INTO audit_log ({', '.join(columns)}) VALUES "
                         f"({', '.join(f'${i + 1}' for i in range(len(columns)))})", *saved.values())
        assert (await verify_chain(services.db)).ok

        # Insert a forged row, with a hash that is right for its contents, into the gap.
        prev = await su.fetchval("SELECT row_hash FROM audit_log WHERE id = $1", gap - 1)
        await su.execute(
            "INSERT INTO audit_log (id, at, actor, action, target, detail, prev_hash, row_hash) "
            "VALUES ($1, now(), 'admin', 'user.update', 'forged', '{}', $2, "
            "audit_row_hash($2, $1, now(), 'admin', 'user.update', 'forged', 'ok', '', '{}'))", gap, prev)
        inserted = await asyncio.to_thread(audit_cli, seeded_db_url, tmp_path)
        assert inserted.returncode == 1
        assert f"BROKEN at row {gap}:" in inserted.stderr and "inserted" in inserted.stderr, inserted.stderr
        await su.execute("DELETE FROM audit_log WHERE id = $1", gap)
        assert (await verify_chain(services.db)).ok

        # Delete the newest row: the chain head still names it.
        await su.execute("DELETE FROM audit_log WHERE id = $1", after_victim)
        tail = await verify_chain(services.db)
        assert not tail.ok and tail.broken_id == after_victim and "newest rows were deleted" in tail.problem
    finally:
        await su.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        await su.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_chain")
        await su.close()


REHASH_FROM = """
DO $$
DECLARE r record; h bytea;
BEGIN
    SELECT prev_hash INTO h FROM audit_log WHERE id = {first};
    FOR r IN SELECT * FROM audit_log WHERE id >= {first} ORDER BY id LOOP
        UPDATE audit_log SET prev_hash = h,
               row_hash = audit_row_hash(h, r.id, r.at, r.actor, r.action, r.target, r.outcome, r.source, r.detail)
         WHERE id = r.id RETURNING row_hash INTO h;
    END LOOP;
    UPDATE audit_chain_head SET last_hash = h WHERE id = 1;
END $$;
"""


async def test_an_anchor_kept_outside_catches_a_rewritten_tail(services: CoreServices, seeded_db_url: str,
                                                               tmp_path: Path) -> None:
    for i in range(4):
        await services.audit.record("admin", "user.update", f"user{i}")
    first = await asyncio.to_thread(audit_cli, seeded_db_url, tmp_path)
    assert first.returncode == 0, first.stderr
    anchor = first.stdout.split("--anchor ")[1].split()[0]
    anchored_id = int(anchor.split(":")[0])
    victim = anchored_id - 2
    su = await asyncpg.connect(seeded_db_url)
    try:
        # A superuser edits a row and recomputes every hash after it, the head included.
        await su.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await su.execute("UPDATE audit_log SET actor = 'nobody' WHERE id = $1", victim)
        await su.execute(REHASH_FROM.format(first=victim))
        await su.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await su.close()
    assert (await verify_chain(services.db)).ok  # the chain alone cannot tell ...
    env = {**os.environ, "DATABASE_URL": seeded_db_url, "CC_VAR_DIR": str(tmp_path)}

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "commandcenter", "audit", "verify", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env=env)

    caught = await asyncio.to_thread(verify, "--anchor", anchor)  # ... the anchor can
    assert caught.returncode == 1
    assert f"BROKEN at row {anchored_id}:" in caught.stderr and "anchor" in caught.stderr, caught.stderr
    bad = await asyncio.to_thread(verify, "--anchor", "12:not-hex")
    assert bad.returncode == 2 and "not ID:HASH" in bad.stderr and "Traceback" not in bad.stderr


async def test_lock_and_unlock_from_the_command_line(services: CoreServices, seeded_db_url: str,
                                                     tmp_path: Path) -> None:
    await services.identity.create_user("ct.li", "Calltaker-2026", "calltaker")
    env = {**os.environ, "DATABASE_URL": seeded_db_url, "CC_VAR_DIR": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "commandcenter", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env=env)

    assert (await asyncio.to_thread(cli, "user", "lock", "ct.li")).returncode == 0
    listed = await asyncio.to_thread(cli, "user", "list")
    assert any(line.split()[:3] == ["ct.li", "calltaker", "locked"] for line in listed.stdout.splitlines())
    assert (await services.identity.authenticate("ct.li", "Calltaker-2026", "192.0.2.10")).reason == "locked"
    assert (await asyncio.to_thread(cli, "user", "unlock", "ct.li")).returncode == 0
    assert (await services.identity.authenticate("ct.li", "Calltaker-2026", "192.0.2.10")).ok
    unknown = await asyncio.to_thread(cli, "user", "lock", "nobody")
    assert unknown.returncode == 2 and "no such user" in unknown.stderr
    actions = [(r["actor"], r["action"]) for r in await services.db.fetch(
        "SELECT actor, action FROM audit_log WHERE target = 'ct.li' ORDER BY id")]
    assert actions == [("cli", "user.lock"), ("cli", "user.unlock")]
    assert (await verify_chain(services.db)).ok
