"""Starting the plan service: its collaborators, and the plans and agency desks configured beside
the site plan (both optional):

* ``plans/*.toml`` (or ``.json``): response plans; a plan whose file changed gets a new approved
  version at start (a site's own plans are approved by whoever deploys the file);
* ``agency_desks.toml``: ``[desks]`` username = agency;
* ``duty_roster.toml``: a daily pattern of shifts (``[[shift]] start = "08:00" hours = 12`` with
  post = [usernames] and ``[shift.contacts]``), rostered for today and the next two days where
  nothing is rostered yet.

A bad file stops the start with the file and the field named (``PlanError``).
"""
from __future__ import annotations

import logging
import tomllib
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from core.runtime import CoreServices
from dispatch.model import AGENCIES
from dispatch.plans import format as plan_format
from dispatch.plans.conference import DispatchCommandDesk
from dispatch.plans.duty import DutyRoster
from dispatch.plans.model import EmergencyPlan, PlanConflict, PlanError
from dispatch.plans.service import PlanService, SmsNotifier
from dispatch.service import DispatchService

log = logging.getLogger(__name__)


def load_plan_files(folder: Path, rooms: list[str]) -> list[EmergencyPlan]:
    plans = []
    for path in sorted([*folder.glob("*.toml"), *folder.glob("*.json")]):
        try:
            plans.append(plan_format.loads(path.read_text(encoding="utf-8"), path.suffix[1:], rooms))
        except PlanError as e:
            raise PlanError(f"{path}: {e}") from None
    keys = [p.key for p in plans]
    if len(set(keys)) != len(keys):
        raise PlanError(f"{folder}: key: 两个文件使用了同一个预案 key")
    return plans


def load_desks(path: Path) -> dict[str, str]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    desks = doc.get("desks", {})
    if set(doc) - {"desks"} or not isinstance(desks, dict):
        raise PlanError(f"{path}: desks: 只允许 [desks] 表（用户名 = 部门）")
    for user, agency in desks.items():
        if agency not in AGENCIES:
            raise PlanError(f"{path}: desks.{user}: 未知部门 {agency!r}（可用: {', '.join(AGENCIES)}）")
    return dict(desks)


async def start_plans(core: CoreServices, dispatch: DispatchService, sms: SmsNotifier | None = None) -> PlanService:
    """The plan service over this node's dispatch service, with the configured plans and desks seeded."""
    service = PlanService(core, DispatchCommandDesk(dispatch), clock=dispatch.clock, sms=sms)
    beside = core.settings.site_plan.resolve().parent
    if (beside / "plans").is_dir():
        plans = load_plan_files(beside / "plans", [r.id for r in core.plan.meeting_rooms])
        added = await service.seed(plans)
        log.info("plans: %d response plans from %s (%d new versions)", len(plans), beside / "plans", added)
    if (beside / "agency_desks.toml").is_file():
        for user, agency in load_desks(beside / "agency_desks.toml").items():
            await service.set_desk(user, agency, "system")
    if (beside / "duty_roster.toml").is_file():
        await roster_pattern(service.roster, beside / "duty_roster.toml", service.clock())
    return service


def _read_toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


async def roster_pattern(roster: DutyRoster, path: Path, now: datetime, days: int = 3) -> int:
    """Roster the file's daily pattern from today on, skipping shifts that overlap one already
    rostered (a restart adds nothing). Returns the number of shifts added.

    Yesterday's shifts that have not yet ended are rostered too: a night shift that started
    yesterday evening is the one on duty between midnight and the morning shift."""
    doc = _read_toml(path)
    tz = timezone(timedelta(hours=int(doc.get("timezone_hours", 8))))
    added = 0
    today = now.astimezone(tz).date()
    for d in range(-1, days):
        day = today + timedelta(days=d)
        for i, raw in enumerate(doc.get("shift", [])):
            hh, _, mm = str(raw.get("start", "")).partition(":")
            try:
                start = datetime.combine(day, time(int(hh), int(mm or 0)), tz)
            except ValueError:
                raise PlanError(f"{path}: shift[{i}].start: 需要 HH:MM，得到 {raw.get('start')!r}") from None
            end = start + timedelta(hours=float(raw.get("hours", 12)))
            if end <= now:
                continue  # already over: nobody is on duty in the past
            posts = {k: v for k, v in raw.items() if k not in ("start", "hours", "contacts")}
            try:
                await roster.add_shift(start, end, posts,
                                       raw.get("contacts", {}), "system")
                added += 1
            except PlanConflict:
                continue  # already rostered
            except PlanError as e:
                raise PlanError(f"{path}: shift[{i}].{e}") from None
    return added
