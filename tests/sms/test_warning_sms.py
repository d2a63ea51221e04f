"""An approved public warning goes by SMS to the people on duty through real Kannel + fakesmsc:
the concatenated UCS-2 parts reassemble to the warning's text and the warning's deliveries show
each SMS recipient delivered."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts import capability
from alerts.channels import DeliveryStatus, Outgoing
from alerts.lifecycle import Area, Content
from alerts.sms_channel import area_groups, delivery_status, sms_text
from core.runtime import CoreServices
from sms.text import parse_udh
from tests.conftest import make_settings
from tests.sms.conftest import FixedDuty, operator_lines, received_parts, require_kannel, wait_for

SQUARE = ((111.5, 22.6), (111.7, 22.6), (111.7, 22.8), (111.5, 22.8), (111.5, 22.6))
HEADLINE = "罗定市暴雨橙色预警"
INSTRUCTION = "请立即转移低洼地带和山洪危险区人员，停止户外作业，注意防范城乡积涝、山洪和地质灾害。" * 3
ON_DUTY = {"13800000001", "13800000004"}  # chair (leader_on_duty) and dispatcher (duty_officer) in the fixture
# the demo plan's SMS groups tied to 罗定市 (445381) and its townships (tests/sms/test_area_groups.py)
AREA_GROUPS = {"13800005001", "13800005101", "13800005102", "13800005201"}
RECIPIENTS = ON_DUTY | AREA_GROUPS


def content() -> Content:
    return Content(event="暴雨", headline=HEADLINE, description="未来6小时罗定市将出现暴雨。", instruction=INSTRUCTION,
                   severity="Severe", urgency="Expected", certainty="Likely",
                   areas=(Area("罗定市", polygons=(SQUARE,), adcodes=("445381",)),),
                   expires=datetime.now(UTC) + timedelta(hours=6))


def reassembled(parts: list[tuple[str, str, bytes | None, bytes]]) -> str:
    """The text of one concatenated UCS-2 message from its parts (checked: one reference, all indices)."""
    udhs = []
    for p in parts:
        assert p[2] is not None, "a part without a UDH"
        udh = parse_udh(p[2])
        assert udh is not None, p[2]
        udhs.append((udh, p))
    assert len({u[0] for u, _ in udhs}) == 1 and sorted(u[2] for u, _ in udhs) == list(range(1, len(parts) + 1))
    return "".join(p[3].decode("utf-16-be") for _, p in sorted(udhs, key=lambda x: x[0][2]))


async def test_approved_warning_reaches_the_people_on_duty_by_sms(sms_node: tuple[CoreServices, Any]) -> None:
    core, sms = sms_node
    alerts = await capability.start(core, sweep_every=0, sms=sms.service)
    svc = alerts.service
    try:
        w = await svc.draft(content(), "dispatcher", "dispatcher", "127.0.0.1")
        await svc.submit(w["id"], "dispatcher", "dispatcher")
        await svc.drain()
        assert operator_lines(sms.kannel) == []  # nothing goes out before approval
        await svc.approve(w["id"], "leader", "leader")

        async def sms_delivered() -> list[dict[str, Any]] | None:
            rows = [d for d in await svc.deliveries(w["id"]) if d["channel"] == "sms"]
            return rows if {d["recipient"] for d in rows} == RECIPIENTS and {d["status"] for d in rows} == {"delivered"} \
                else None

        rows = await wait_for(sms_delivered, 30, "the warning's SMS deliveries to show everyone delivered")
        assert len(rows) == len(RECIPIENTS) and all(d["identifier"] == rows[0]["identifier"] for d in rows)
        for number in ON_DUTY:
            parts = [p for p in received_parts(operator_lines(sms.kannel)) if p[1] == number]
            assert len(parts) >= 3, parts  # the long instruction takes several UCS-2 parts
            text = reassembled(parts)
            assert text == "【预警】" + HEADLINE + "（罗定市）" + INSTRUCTION
        message = (await sms.service.messages())[0]
        assert message["reference"].startswith("warning:") and message["delivered"] == len(RECIPIENTS)
    finally:
        await alerts.stop()


async def test_a_full_sms_queue_reports_every_number_failed(seeded_db_url: str, tmp_path: Path) -> None:
    require_kannel()
    from sms import capability as sms_capability

    core = await CoreServices.start(make_settings(seeded_db_url, tmp_path, sms={"enabled": True, "queue_limit": 1}))
    sms = await sms_capability.start(core, FixedDuty({"leader_on_duty": ["chair"], "duty_officer": ["dispatcher"]}))
    assert sms is not None
    alerts = await capability.start(core, sweep_every=0, sms=sms.service)
    try:
        w = await alerts.service.draft(content(), "dispatcher", "dispatcher", "127.0.0.1")
        await alerts.service.submit(w["id"], "dispatcher", "dispatcher")
        await alerts.service.approve(w["id"], "leader", "leader")
        await alerts.service.drain()
        rows = [d for d in await alerts.service.deliveries(w["id"]) if d["channel"] == "sms"]
        assert {d["recipient"] for d in rows} == RECIPIENTS and {d["status"] for d in rows} == {"failed"}
        assert all("队列已满" in d["detail"] for d in rows), rows  # the reason, as the SMS service gave it
        assert await core.db.fetchval("SELECT count(*) FROM sms_messages") == 0  # nothing queued
        assert operator_lines(sms.kannel) == []
    finally:
        await alerts.stop()
        await sms.stop()
        await core.stop()


def out(**kw: Any) -> Outgoing:
    base: dict[str, Any] = {"warning_id": "w1", "identifier": "id1", "msg_type": "Alert", "headline": "暴雨\n预警😀",
                            "text": "", "area_codes": ("445381",), "severity": "Severe", "area_desc": "罗定市",
                            "instruction": "注意防范。"}
    return Outgoing(**{**base, **kw})


def test_sms_text_prefix_cleaning_and_shortening() -> None:
    assert sms_text(out()) == "【预警】暴雨 预警（罗定市）注意防范。"  # newline folded, emoji (not UCS-2) dropped
    assert sms_text(out(msg_type="Cancel", instruction="")).startswith("【解除预警】暴雨 预警（罗定市）")
    long = sms_text(out(instruction="雨" * 1000))
    assert len(long) == 5 * 67 and long.endswith("…")


def test_area_groups_and_status_mapping() -> None:
    groups = ["warning:445381", "warning:445300", "市三防指挥部成员"]
    assert area_groups(("445381", "445302"), groups) == ["warning:445381"]
    assert area_groups((), groups) == []
    assert [delivery_status(s) for s in ("queued", "submitted", "buffered", "delivered", "failed")] == [
        DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]
