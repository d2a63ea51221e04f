"""Two nodes starting together on one empty database (a city MCU and its standby) seed its users once."""
from __future__ import annotations

import asyncio
from pathlib import Path

from core.runtime import CoreServices
from tests.conftest import make_settings


async def test_two_nodes_starting_together_seed_the_users_once(fresh_db_url: str, tmp_path: Path) -> None:
    a, b = await asyncio.gather(CoreServices.start(make_settings(fresh_db_url, tmp_path / "a")),
                                CoreServices.start(make_settings(fresh_db_url, tmp_path / "b")))
    try:
        assert sorted([bool(a.seeded), bool(b.seeded)]) == [False, True]  # one seeded, the other found them
        seeded = a.seeded or b.seeded
        assert await a.identity.count_users() == len(seeded) == len(a.plan.users)
        rows = await a.db.fetch("SELECT target FROM audit_log WHERE action = 'user.seeded'")
        assert sorted(r["target"] for r in rows) == sorted(s.username for s in seeded)
    finally:
        await a.stop()
        await b.stop()
