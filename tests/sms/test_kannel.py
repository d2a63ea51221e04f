"""SMS through a real Kannel (bearerbox + smsbox) to Kannel's fakesmsc as the operator, on 127.0.0.1."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.runtime import CoreServices
from sms.kannel import KannelError
from sms.service import SmsError
from sms.text import parse_udh
from tests.sms.conftest import operator_lines, received_parts, wait_for

BULLETIN = ("【云浮市三防指挥部】情况通报：受台风“海鸥”影响，预计未来24小时内西江云浮段将出现超警戒水位洪水，"
            "请各县（市、区）三防指挥部立即启动防汛四级应急响应，做好危险区域人员转移和抢险队伍、物资准备工作，"
            "值班领导在岗带班，重要情况及时报告。")


async def _delivered(core: CoreServices, mid: int, n: int) -> bool:
    async with core.db.pool.acquire() as conn:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM sms_recipients WHERE message_id = $1 AND status = 'delivered'", mid) == n)


def udh_of(part: tuple[str, str, bytes | None, bytes]) -> tuple[int, int, int]:
    """(reference, parts, index) of a received part's UDH."""
    assert part[2] is not None, "a part without a UDH"
    udh = parse_udh(part[2])
    assert udh is not None, part[2]
    return udh


async def test_long_chinese_message_arrives_as_ucs2_parts_and_is_delivered(sms_node: tuple[CoreServices, Any]) -> None:
    core, cap = sms_node
    view = await cap.service.send(BULLETIN, kind="bulletin", reference="bulletin:test", actor="dispatcher",
                                  numbers=["138 0000 9001"], users=["chair"], posts=["duty_officer"])
    n = -(-len(BULLETIN) // 67)
    assert n >= 2 and view["encoding"] == "ucs2" and view["parts"] == n
    assert {r["number"] for r in view["recipients"]} == {"13800009001", "13800000001", "13800000004"}
    await wait_for(lambda: _delivered(core, view["id"], 3), 20, "three delivery reports")
    parts = [p for p in received_parts(operator_lines(cap.kannel)) if p[1] == "13800009001"]
    assert len(parts) == n and all(p[0] == "12110" for p in parts)
    udhs = [udh_of(p) for p in parts]
    assert {u[1] for u in udhs} == {n} and sorted(u[2] for u in udhs) == list(range(1, n + 1))
    assert len({u[0] for u in udhs}) == 1
    text = "".join(p[3].decode("utf-16-be") for p in sorted(parts, key=lambda p: udh_of(p)[2]))
    assert text == BULLETIN
    statuses = await cap.service.statuses(view["id"])
    assert set(statuses.values()) == {"delivered"}
    async with core.db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'sms.send'") == 1


async def test_burst_respects_throughput_and_all_arrive(sms_node: tuple[CoreServices, Any]) -> None:
    core, cap = sms_node
    numbers = [f"1390000{i:04d}" for i in range(200)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    view = await cap.service.send("Drill: check in please", kind="command", actor="dispatcher", numbers=numbers)
    await wait_for(lambda: _delivered(core, view["id"], 200), 60, "200 delivered")
    elapsed = loop.time() - t0
    got = {p[1] for p in received_parts(operator_lines(cap.kannel))}
    assert set(numbers) <= got
    # 200 one-part messages at 50 parts/s with a burst of 10: at least (200 - 10) / 50 s
    assert elapsed >= (200 - 10) / 50 * 0.95, elapsed


async def test_bad_input_is_refused_naming_the_field(sms_node: tuple[CoreServices, Any]) -> None:
    core, cap = sms_node
    cases: list[tuple[dict[str, Any], str]] = [
        ({"text": "", "numbers": ["13800000001"]}, "text"),
        ({"text": "防" * 5000, "numbers": ["13800000001"]}, "text"),
        ({"text": "hi", "numbers": ["13800000001", "not-a-number"]}, r"numbers\[1\]"),
        ({"text": "hi", "groups": ["没有这个群组"]}, r"groups\[0\]"),
        ({"text": "hi", "users": ["nobody"]}, r"users\[0\]"),
        ({"text": "hi"}, "recipients"),
        ({"text": "hi", "numbers": ["13800000001"], "reference": "a\x00b"}, "reference"),
    ]
    for kwargs, field in cases:
        with pytest.raises(SmsError, match=f"^{field}: "):
            await cap.service.send(actor="dispatcher", **kwargs)
    async with core.db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sms_messages") == 0


async def test_group_resolves_members_and_duty_posts(sms_node: tuple[CoreServices, Any]) -> None:
    core, cap = sms_node
    recipients = await cap.service.resolve(groups=["市三防指挥部成员"])
    numbers = {r.number: r.via for r in recipients}
    # post:leader_on_duty → chair (13800000001) first, then the listed users and the plain number
    assert numbers == {"13800000001": "group:市三防指挥部成员", "13800000011": "group:市三防指挥部成员",
                       "13800000012": "group:市三防指挥部成员", "13800000013": "group:市三防指挥部成员",
                       "13800000101": "group:市三防指挥部成员"}


async def test_missing_kannel_fails_naming_the_package(tmp_path: Any) -> None:
    from sms.kannel import Kannel, SmscConfig

    k = Kannel(tmp_path, SmscConfig(), kannel_bin=tmp_path / "nowhere")
    with pytest.raises(KannelError, match="Debian package 'kannel'"):
        await k.start()
