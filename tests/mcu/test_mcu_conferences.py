"""The conference service on the real database: schedule, start/extend/end, admission, site list, events."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mcu.admission import Caller
from mcu.conferences import ConferenceError, ConferenceService, JoinRefused, PinGuard
from mcu.room import RoomSettings


# The shared `conferences` fixture (tests/conftest.py) with small, slow rooms and a stricter PIN guard.
@pytest.fixture
def room_settings() -> RoomSettings:
    return RoomSettings(width=320, height=180, fps=5)


@pytest.fixture
def pin_guard() -> PinGuard:
    return PinGuard(max_failures=3, base_delay=30.0)


async def test_standing_demo_conference_runs_at_start(conferences: ConferenceService) -> None:
    demo = conferences.running("80000001")
    assert demo is not None and demo.record.name == "全市视频会议（演示）"
    assert {s["site_id"] for s in demo.site_list()} >= {"city-main", "luoding-room"}
    assert all(s["status"] == "idle" for s in demo.site_list())


async def test_bad_schedule_requests_change_nothing(conferences: ConferenceService) -> None:
    before = len(await conferences.list_conferences())
    for kwargs, field in [
        ({"name": ""}, "name"),
        ({"name": "x", "pin": "12a4"}, "pin"),
        ({"name": "x", "sites": ["no-such-room"]}, "sites"),
        ({"name": "x", "starts_at": datetime(2030, 1, 1, tzinfo=UTC), "ends_at": datetime(2029, 1, 1, tzinfo=UTC)},
         "ends_at"),
        ({"name": "x", "conference_id": "80000001"}, "id"),
    ]:
        with pytest.raises(ConferenceError, match=f"^{field}:"):
            await conferences.create(actor="chair", **kwargs)  # type: ignore[arg-type]
    assert len(await conferences.list_conferences()) == before


async def test_schedule_start_join_leave_end_with_history(conferences: ConferenceService) -> None:
    sub = conferences.core.bus.subscribe("conference.*")
    record = await conferences.create(name="防汛工作调度会", actor="chair", pin="2468",
                                      sites=["city-main", "luoding-room"])
    assert record.status == "scheduled" and len(record.id) == 8
    conf = await conferences.start_conference(record.id, actor="chair")
    assert (await conferences.get(record.id)).status == "running"  # type: ignore[union-attr]
    participant = await conf.join("luoding-room", "罗定市视频会议室", "webrtc")
    participant.push_audio(np.zeros(960, dtype=np.int16))
    sites = {s["site_id"]: s for s in conf.site_list()}
    assert sites["luoding-room"]["status"] == "joined" and sites["city-main"]["status"] == "idle"
    await conf.set_site_status("city-main", "calling", "sip:city-main@127.0.0.1")
    assert {s["site_id"]: s["status"] for s in conf.site_list()}["city-main"] == "calling"
    conf.room.remove("luoding-room")  # the chair removes the site directly on the room
    await asyncio.sleep(0.1)
    assert {s["site_id"]: s["status"] for s in conf.site_list()}["luoding-room"] == "left"
    rows = await conferences.core.db.fetch(
        "SELECT participant_id, protocol, left_at, reason FROM conference_attendance WHERE conference_id = $1",
        record.id)
    assert [(r["participant_id"], r["protocol"], r["left_at"] is not None) for r in rows] == [
        ("luoding-room", "webrtc", True)]
    extended = await conferences.extend(record.id, 30, actor="chair")
    assert extended.ends_at is not None and extended.ends_at > datetime.now(UTC) + timedelta(minutes=29)
    await conferences.end(record.id, actor="chair")
    assert conferences.running(record.id) is None
    assert (await conferences.get(record.id)).status == "ended"  # type: ignore[union-attr]
    seen = []
    while not sub._queue.empty():
        seen.append((await sub.get()).topic)
    for topic in ["conference.scheduled", "conference.started", "conference.participant_joined",
                  "conference.site_status", "conference.participant_left", "conference.extended",
                  "conference.ended"]:
        assert topic in seen, (topic, seen)


async def test_admission_rules(conferences: ConferenceService) -> None:
    record = await conferences.create(name="区县视频会", actor="chair", pin="135790")

    def member(source: str, pin: str | None = "135790", **kw: object) -> Caller:
        return Caller("webrtc", source, identity="console:clerk", pin=pin, **kw)  # type: ignore[arg-type]

    with pytest.raises(JoinRefused) as refused:
        await conferences.admit(record.id, member("10.0.0.1"))
    assert refused.value.code == "not_started"
    conf = await conferences.start_conference(record.id, actor="chair")
    assert await conferences.admit(record.id, member("10.0.0.1")) is conf
    for _ in range(3):
        with pytest.raises(JoinRefused, match="密码错误") as wrong:
            await conferences.admit(record.id, member("10.0.0.2", "000000"))
        assert wrong.value.code == "wrong_pin"
    with pytest.raises(JoinRefused) as blocked:  # even the right PIN waits out the back-off
        await conferences.admit(record.id, member("10.0.0.2"))
    assert blocked.value.code == "too_many_attempts" and blocked.value.retry_after > 20
    assert await conferences.admit(record.id, member("10.0.0.3")) is conf  # other sources unaffected
    assert await conferences.admit(record.id, member("10.0.0.2", None, host=True)) is conf  # chair roles
    # No guests: without an identity the PIN alone does not open it (H.323 excepted, see mcu.admission).
    with pytest.raises(JoinRefused) as anonymous:
        await conferences.admit(record.id, Caller("sip", "10.0.0.4", pin="135790"))
    assert anonymous.value.code == "auth_required"
    assert await conferences.admit(record.id, Caller("h323", "10.0.0.4", pin="135790")) is conf
    conf.room.lock()
    with pytest.raises(JoinRefused) as locked:
        await conferences.admit(record.id, member("10.0.0.1"))
    assert locked.value.code == "locked"
    await conferences.end(record.id, actor="chair")
    with pytest.raises(JoinRefused) as ended:
        await conferences.admit(record.id, member("10.0.0.1"))
    assert ended.value.code == "ended"
    with pytest.raises(JoinRefused) as unknown:
        await conferences.admit("99999999", member("10.0.0.1"))
    assert unknown.value.code == "unknown"


async def test_emergency_call_room_takes_no_dial_in(conferences: ConferenceService) -> None:
    record = await conferences.create(name="接警 x", actor="desk", kind="emergency_call")
    conf = await conferences.start_conference(record.id, "desk")
    assert record.kind == "emergency_call" and not record.dial_in and record.to_json()["kind"] == "emergency_call"
    for caller in (Caller("sip", "10.0.0.9", identity="sip:alice"), Caller("h323", "10.0.0.9", site="luoding-room"),
                   Caller("webrtc", "10.0.0.9", identity="console:admin", host=True),
                   Caller("cascade", "10.0.0.9", identity="cascade:yunan", host=True)):
        with pytest.raises(JoinRefused) as refused:
            await conferences.admit(record.id, caller)
        assert refused.value.code == "protected", caller
    assert conf.room.participants == {}
    with pytest.raises(ConferenceError, match="kind"):
        await conferences.create(name="x", actor="desk", kind="party")  # type: ignore[arg-type]


async def test_scheduler_starts_and_ends_on_time(conferences: ConferenceService) -> None:
    now = datetime.now(UTC)
    record = await conferences.create(name="乡镇早会", actor="chair", starts_at=now + timedelta(minutes=5),
                                      ends_at=now + timedelta(minutes=35))
    await conferences.run_schedule(now)
    assert conferences.running(record.id) is None
    await conferences.run_schedule(now + timedelta(minutes=6))
    assert conferences.running(record.id) is not None
    await conferences.run_schedule(now + timedelta(minutes=36))
    assert conferences.running(record.id) is None
    assert (await conferences.get(record.id)).status == "ended"  # type: ignore[union-attr]


async def test_extending_an_open_ended_conference_that_starts_tomorrow(conferences: ConferenceService) -> None:
    """Its end is set after its start (the database refuses an end before the start: that was a 500)."""
    start = datetime.now(UTC) + timedelta(days=1)
    record = await conferences.create(name="明日防汛会商", actor="chair", starts_at=start)
    extended = await conferences.extend(record.id, 60, actor="chair")
    assert extended.ends_at is not None
    assert abs((extended.ends_at - start) - timedelta(minutes=60)) < timedelta(seconds=1)
    await conferences.end(record.id, actor="chair")
