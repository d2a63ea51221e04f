"""The duty roster at the instant of a shift change, on a real PostgreSQL (test_plans_service.py
covers an activation before and a level change after one): a shift is ``[start, end)``, so at
20:00:00 exactly the night shift holds every post; a post nobody is rostered for resolves to
nobody; ``user:`` references never depend on the roster."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.runtime import CoreServices
from dispatch.plans.duty import DutyRoster
from tests.conftest import make_settings

DAY = datetime(2026, 7, 1, 8, tzinfo=UTC)
CHANGE = DAY + timedelta(hours=12)
REFS = ["post:leader_on_duty", "post:duty_officer", "post:vice_mayor", "user:chair", "sms:市三防指挥部成员"]


@pytest.fixture
async def roster(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[DutyRoster]:
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    r = DutyRoster(core)
    await r.add_shift(DAY, CHANGE, {"leader_on_duty": ["chair"], "duty_officer": ["dispatcher"],
                                    "vice_mayor": ["vice_mayor_li"]}, {}, "admin")
    await r.add_shift(CHANGE, CHANGE + timedelta(hours=12),
                      {"leader_on_duty": ["leader_zhao"], "duty_officer": ["dispatcher2", "dispatcher3"]}, {}, "admin")
    yield r
    await core.stop()


async def people(r: DutyRoster, at: datetime) -> dict[str, list[str]]:
    return {p["ref"]: p["people"] for p in await r.people_for(REFS, at)}


async def test_the_night_shift_holds_the_posts_from_the_change_on(roster: DutyRoster) -> None:
    before = await people(roster, CHANGE - timedelta(microseconds=1))
    assert before == {"post:leader_on_duty": ["chair"], "post:duty_officer": ["dispatcher"],
                      "post:vice_mayor": ["vice_mayor_li"], "user:chair": ["chair"], "sms:市三防指挥部成员": []}
    at = await people(roster, CHANGE)
    assert at == {"post:leader_on_duty": ["leader_zhao"], "post:duty_officer": ["dispatcher2", "dispatcher3"],
                  "post:vice_mayor": [], "user:chair": ["chair"], "sms:市三防指挥部成员": []}
    shift_before = (await roster.people_for(REFS[:1], CHANGE - timedelta(microseconds=1)))[0]["shift_id"]
    shift_at = (await roster.people_for(REFS[:1], CHANGE))[0]["shift_id"]
    assert shift_before is not None and shift_at is not None and shift_before != shift_at


async def test_after_the_last_shift_nobody_holds_a_post(roster: DutyRoster) -> None:
    after = await roster.people_for(REFS, CHANGE + timedelta(hours=12))
    assert {p["ref"]: p["people"] for p in after}["post:leader_on_duty"] == []
    assert {p["ref"]: p["people"] for p in after}["user:chair"] == ["chair"]
    assert all(p["shift_id"] is None for p in after)
