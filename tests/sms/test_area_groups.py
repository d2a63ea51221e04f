"""SMS groups tied to areas (site plan ``[[sms_groups]] areas = [...]``): an approved warning for
罗镜镇 reaches 罗镜镇's group (and the people on duty), not 太平镇's group nor the county's; a warning
for 罗定市 reaches the county's group and its townships'. Real Kannel + fakesmsc, the demo plan."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts import capability
from alerts.lifecycle import Area, Content
from alerts.sms_channel import GroupAreas, area_groups, groups_for_areas
from core.runtime import CoreServices
from tests.sms.conftest import operator_lines, received_parts, wait_for

ON_DUTY = {"13800000001", "13800000004"}  # chair (leader_on_duty), dispatcher (duty_officer): the fixture's roster
LUOJING = {"13800005101", "13800005102"}  # 罗镜镇防汛责任人 in config/demo/yunfu.toml
TAIPING = {"13800005201"}  # 太平镇防汛责任人
LUODING = {"13800005001"}  # 罗定市三防办 (its post:duty_officer is the dispatcher, already on duty)


def warning(desc: str, code: str) -> Content:
    return Content(event="暴雨", headline=f"{desc}暴雨红色预警", description="未来3小时将出现特大暴雨。",
                   instruction="请立即转移山洪危险区人员。", severity="Extreme", urgency="Immediate",
                   certainty="Likely", areas=(Area(desc, adcodes=(code,)),),
                   expires=datetime.now(UTC) + timedelta(hours=6))


async def send_and_collect(core: CoreServices, sms: Any, content: Content) -> set[str]:
    alerts = await capability.start(core, sweep_every=0, sms=sms.service)
    try:
        before = len(operator_lines(sms.kannel))
        w = await alerts.service.draft(content, "dispatcher", "dispatcher", "127.0.0.1")
        await alerts.service.submit(w["id"], "dispatcher", "dispatcher")
        await alerts.service.approve(w["id"], "leader", "leader")

        async def all_delivered() -> set[str] | None:
            rows = [d for d in await alerts.service.deliveries(w["id"]) if d["channel"] == "sms"]
            return {d["recipient"] for d in rows} if rows and {d["status"] for d in rows} == {"delivered"} else None

        numbers = await wait_for(all_delivered, 30, "the warning's SMS delivered to everyone it resolved to")
        received = {p[1] for p in received_parts(operator_lines(sms.kannel)[before:])}
        assert received == numbers, (received, numbers)  # what the operator got is what the channel reports
        return set(numbers)
    finally:
        await alerts.stop()


async def test_a_township_warning_reaches_that_townships_group_only(sms_node: tuple[CoreServices, Any]) -> None:
    core, sms = sms_node
    got = await send_and_collect(core, sms, warning("罗镜镇", "445381-05"))
    assert got == ON_DUTY | LUOJING, got  # not 太平镇's group, not the county's
    got = await send_and_collect(core, sms, warning("罗定市", "445381"))
    assert got == ON_DUTY | LUOJING | TAIPING | LUODING, got  # a county's warning: its groups and its townships'


def test_groups_for_areas_rule() -> None:
    areas = GroupAreas({"luojing": ("445381-05",), "taiping": ("445381-06",), "luoding": ("445381",),
                        "city": ("445300",), "lianTan": ("445322-12",)},
                       {"445381-05": "445381", "445381-06": "445381", "445322-12": "445322"}, "445300")
    assert groups_for_areas(["445381-05"], areas) == ["luojing"]
    assert groups_for_areas(["445381"], areas) == ["luoding", "luojing", "taiping"]
    assert groups_for_areas(["445322", "445381-06"], areas) == ["lianTan", "taiping"]
    assert groups_for_areas(["445300"], areas) == sorted(areas.groups)
    assert groups_for_areas([], areas) == [] and groups_for_areas(["999999"], areas) == []
    # the older naming rule keeps working beside it
    assert area_groups(["445381-05"], ["warning:445381-05", "warning:445381"]) == ["warning:445381-05"]


def test_a_group_naming_an_unknown_area_is_refused(tmp_path: Path) -> None:
    from config.site_plan import load_site_plan

    demo = Path(__file__).resolve().parents[2] / "config" / "demo" / "yunfu.toml"
    bad = tmp_path / "plan.toml"
    bad.write_text(demo.read_text().replace('areas = ["445381-06"]', 'areas = ["445381-99"]'))
    with pytest.raises(Exception, match=r"SMS group '太平镇防汛责任人': unknown area '445381-99'"):
        load_site_plan(bad)
