"""Meeting notices by SMS (会议通知) with real Kannel + fakesmsc: scheduling a conference that opted in
sends its rooms' contacts (the demo plan's ``contacts``) a Chinese notice with its name and time;
extending it sends 【会议变更】 with the new time, cancelling it 【会议取消】; a conference that did
not opt in, or whose rooms have no contacts, sends nothing."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from sms.meeting import BEIJING, notice_text
from sms.text import parse_udh
from tests.sms.conftest import operator_lines, received_parts, wait_for
from tests.sms.test_warning_sms import reassembled

LUOJING = "13800005101"  # 罗镜镇视频会议室's contact
LUODING = "13800005001"  # 罗定市视频会议室's contact
DUTY_OFFICER = "13800000004"  # the fixture's duty officer (罗镜镇's room names post:duty_officer)


async def texts_to(sms: Any, number: str, since: int, count: int) -> list[str]:
    """The ``count`` messages fakesmsc received for ``number`` after line ``since``, as text."""
    async def got() -> list[str] | None:
        parts = [p for p in received_parts(operator_lines(sms.kannel)[since:]) if p[1] == number]
        single = [p[3].decode("utf-16-be") for p in parts if p[2] is None]
        by_ref: dict[bytes, list[Any]] = {}
        for p in parts:
            if p[2] is not None:
                by_ref.setdefault(p[2][:-1], []).append(p)  # same reference and total: one message
        complete = [ps for ps in by_ref.values() if (udh := parse_udh(ps[0][2])) and len(ps) == udh[1]]
        texts = single + [reassembled(ps) for ps in complete]  # a message counts once all its parts are in
        return texts if len(texts) >= count else None

    out: list[str] = await wait_for(got, 30, f"{count} notice(s) to {number}")
    return out


async def test_scheduling_notifies_the_rooms_contacts(sms_node: tuple[CoreServices, Any]) -> None:
    core, sms = sms_node
    conferences = ConferenceService(core)
    conferences.notifier = sms.meetings
    day = (datetime.now(BEIJING) + timedelta(days=1)).replace(hour=9, minute=30, second=0, microsecond=0)
    name = "西江防汛视频会商会"

    mark = len(operator_lines(sms.kannel))
    record = await conferences.create(name=name, actor="chair", sites=["445381-05-room", "luoding-room"],
                                      starts_at=day, ends_at=day + timedelta(minutes=90), notify=True)
    created = f"【会议通知】{name}（会议号 {record.id}）定于 {day.month}月{day.day}日 09:30–11:00 召开，" \
              "参会会场：罗镜镇视频会议室、罗定市视频会议室。"
    for number in (LUOJING, LUODING, DUTY_OFFICER):
        assert await texts_to(sms, number, mark, 1) == [created]
    message = (await sms.service.messages(source="meeting"))[0]
    assert message["reference"] == f"conference:{record.id}" and message["kind"] == "meeting"

    mark = len(operator_lines(sms.kannel))
    await conferences.extend(record.id, 30, "chair")
    changed = await texts_to(sms, LUOJING, mark, 1)
    assert changed == [f"【会议变更】{name}（会议号 {record.id}）时间调整为 {day.month}月{day.day}日 09:30–11:30，"
                       "请相关会场做好准备。"]

    mark = len(operator_lines(sms.kannel))
    await conferences.end(record.id, "chair")  # before it started: cancelled
    assert await texts_to(sms, LUODING, mark, 1) == [
        f"【会议取消】{name}（会议号 {record.id}）原定 {day.month}月{day.day}日 09:30 召开，现已取消。"]


async def test_no_opt_in_or_no_contacts_sends_nothing(sms_node: tuple[CoreServices, Any]) -> None:
    core, sms = sms_node
    conferences = ConferenceService(core)
    conferences.notifier = sms.meetings
    start = datetime.now(UTC) + timedelta(hours=3)
    quiet = await conferences.create(name="不通知的会议", actor="chair", sites=["445381-05-room"], starts_at=start,
                                     ends_at=start + timedelta(hours=1), notify=False)
    await conferences.extend(quiet.id, 30, "chair")
    await conferences.end(quiet.id, "chair")
    await conferences.create(name="无联系人的会场", actor="chair", sites=["yuncheng-room"], starts_at=start,
                             notify=True)
    assert await core.db.fetchval("SELECT count(*) FROM sms_messages WHERE kind = 'meeting'") == 0
    assert operator_lines(sms.kannel) == []


def test_notice_text_rules() -> None:
    s = datetime(2026, 12, 8, 1, 30, tzinfo=UTC)  # 09:30 in Beijing
    rooms = [f"会场{i}" for i in range(8)]
    assert notice_text("created", "80001234", "会 商\n会", s, s + timedelta(days=1), rooms) == (
        "【会议通知】会 商 会（会议号 80001234）定于 12月8日 09:30 至 12月9日 09:30 召开，"
        "参会会场：会场0、会场1、会场2、会场3、会场4、会场5等 8 个会场。")
    assert notice_text("created", "1", "x", None, None, []) == "【会议通知】x（会议号 1）现即召开。"
    assert notice_text("created", "1", "x", None, s, ["甲"]) == "【会议通知】x（会议号 1）现即召开，12月8日 09:30 结束，参会会场：甲。"
    assert notice_text("changed", "1", "x", None, s, []) == "【会议变更】x（会议号 1）时间调整为 即时至 12月8日 09:30，请相关会场做好准备。"
    assert notice_text("cancelled", "1", "x", None, None, []) == "【会议取消】x（会议号 1）已取消。"
