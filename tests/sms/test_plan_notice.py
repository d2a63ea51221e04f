"""A plan activation sends its notice by SMS to the notification list: the people on duty (posts
through the duty roster), the listed users and the ``sms:`` group, through real Kannel + fakesmsc."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.runtime import CoreServices
from dispatch.plans.duty import DutyRoster
from dispatch.plans.setup import start_plans
from dispatch.service import DispatchService
from tests.conftest import make_settings
from tests.sms.conftest import operator_lines, received_parts, require_kannel, wait_for

LUODING = (111.5700, 22.7690)


class RosterPosts:
    def __init__(self, core: CoreServices) -> None:
        self.roster = DutyRoster(core)

    async def on_duty(self, post: str) -> Sequence[str]:
        shift = await self.roster.shift_at()
        return shift.posts.get(post, ()) if shift is not None else ()


async def test_activation_sends_the_notice_to_the_people_on_duty(fresh_db_url: str, tmp_path: Path) -> None:
    require_kannel()
    from sms import capability

    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path, sms={"enabled": True}), seed=False)
    cap = await capability.start(core, RosterPosts(core))
    assert cap is not None
    d = DispatchService(core)
    try:
        await d.start()
        await d.set_training(False, "test")
        plans = await start_plans(core, d, cap.service)
        inc = await d.create_incident(category="flood_control", subtype="flood", priority=1, lon=LUODING[0],
                                      lat=LUODING[1], actor="dispatcher")
        view = await plans.activate(inc.id, "flood", "II", "dispatcher")
        sms = view["proposals"]["sms"]
        assert "error" not in sms, sms
        msg = await cap.service.message(sms["message_id"])
        numbers = {r["number"] for r in msg["recipients"]}
        # leader_on_duty and vice_mayor are 'chair' in the demo roster; the group adds its members
        assert "13800000001" in numbers and {"13800000011", "13800000101"} <= numbers
        assert inc.id in msg["text"] and msg["reference"] == f"plan:{view['id']}"

        async def all_delivered() -> bool:
            return set((await cap.service.statuses(sms["message_id"])).values()) == {"delivered"}

        await wait_for(all_delivered, 20, "the notice delivered to everyone")
        got = {p[1] for p in received_parts(operator_lines(cap.kannel))}
        assert numbers <= got
    finally:
        await d.stop()
        await cap.stop()
        await core.stop()
