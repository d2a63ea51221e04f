"""Meeting notices by SMS (会议通知): a scheduled conference tells its rooms' contacts when it is
created, when its time changes and when it is cancelled.

``MeetingSms`` implements the ``MeetingNotifier`` the scheduling code declares
(``mcu/meeting_notice.py``; this package does not import mcu: the notice comes in as the
``Notice`` Protocol below). The rooms' contacts are the site plan's ``[[meeting_rooms]] contacts``
(usernames, ``post:<duty post>`` for whoever is on duty then, or numbers). A conference opts in when
it is created (``notify``); that choice is kept in ``sms_meeting_notices`` (with the rooms, so a
change or a cancellation reaches the same people), and changes and cancellations of conferences that
did not opt in send nothing. Users without a phone number are skipped; a conference whose rooms have
no contacts sends nothing. The message goes through ``SmsService.send`` (kind ``meeting``, reference
``conference:<id>``), so it is queued, audited and shown on the SMS console like any other.

``notice_text`` is pure: 「【会议通知】<name>（会议号 <id>）定于 12月8日 09:30–11:00 召开，参会会场：…。」,
【会议变更】 with the new time, 【会议取消】 with the time it had; times in Beijing time (UTC+8, no DST).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from sms.service import SmsService

log = logging.getLogger(__name__)

BEIJING = timezone(timedelta(hours=8))
MAX_ROOM_NAMES = 6


class Notice(Protocol):
    """A scheduling change (``mcu.meeting_notice.MeetingNotice`` has this shape)."""

    @property
    def change(self) -> str: ...
    @property
    def conference_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def starts_at(self) -> datetime | None: ...
    @property
    def ends_at(self) -> datetime | None: ...
    @property
    def rooms(self) -> tuple[str, ...]: ...
    @property
    def actor(self) -> str: ...
    @property
    def notify(self) -> bool: ...


def _when(starts_at: datetime | None, ends_at: datetime | None) -> str:
    if starts_at is None:
        return "即时" if ends_at is None else f"即时至 {_clock(ends_at)}"
    s = starts_at.astimezone(BEIJING)
    text = f"{s.month}月{s.day}日 {s:%H:%M}"
    if ends_at is not None:
        e = ends_at.astimezone(BEIJING)
        text += f"–{e:%H:%M}" if e.date() == s.date() else f" 至 {e.month}月{e.day}日 {e:%H:%M}"
    return text


def _clock(t: datetime) -> str:
    b = t.astimezone(BEIJING)
    return f"{b.month}月{b.day}日 {b:%H:%M}"


def notice_text(change: str, conference_id: str, name: str, starts_at: datetime | None, ends_at: datetime | None,
                room_names: Sequence[str]) -> str:
    """The SMS text of a notice (see the module docstring)."""
    name = " ".join(name.split())
    rooms = "、".join(room_names[:MAX_ROOM_NAMES]) + (f"等 {len(room_names)} 个会场" if len(room_names) > MAX_ROOM_NAMES
                                                       else "")
    head = f"{name}（会议号 {conference_id}）"
    if change == "cancelled":
        if starts_at is None:
            return f"【会议取消】{head}已取消。"
        return f"【会议取消】{head}原定 {_when(starts_at, None)} 召开，现已取消。"
    if change == "changed":
        return f"【会议变更】{head}时间调整为 {_when(starts_at, ends_at)}，请相关会场做好准备。"
    when = f"定于 {_when(starts_at, ends_at)} 召开" if starts_at is not None else "现即召开" + (
        f"，{_clock(ends_at)} 结束" if ends_at is not None else "")
    return f"【会议通知】{head}{when}" + (f"，参会会场：{rooms}。" if rooms else "。")


class MeetingSms:
    def __init__(self, service: SmsService, rooms: Mapping[str, tuple[str, Sequence[str]]]) -> None:
        """``rooms``: meeting-room id → (its name, its contacts) from the site plan."""
        self.service = service
        self.rooms = rooms
        self.db = service.db

    def has_contacts(self, room_ids: Sequence[str]) -> bool:
        return any(self.rooms.get(r, ("", ()))[1] for r in room_ids)

    async def meeting_notice(self, notice: Notice) -> None:
        rooms: Sequence[str]
        if notice.change == "created":
            if not notice.notify or not self.has_contacts(notice.rooms):
                return
            rooms = notice.rooms
            await self.db.execute(
                "INSERT INTO sms_meeting_notices (conference_id, rooms, created_by) VALUES ($1, $2, $3) "
                "ON CONFLICT (conference_id) DO NOTHING", notice.conference_id, list(rooms), notice.actor)
        else:
            stored = await self.db.fetchval("SELECT rooms FROM sms_meeting_notices WHERE conference_id = $1",
                                            notice.conference_id)
            if stored is None:
                return  # the conference did not opt in
            rooms = list(stored)
        await self._send(notice, rooms)

    async def _send(self, notice: Notice, rooms: Sequence[str]) -> dict[str, Any] | None:
        users: list[str] = []
        posts: list[str] = []
        numbers: list[str] = []
        for room in rooms:
            for c in self.rooms.get(room, ("", ()))[1]:
                if c.startswith("post:"):
                    posts.append(c[5:])
                elif c in self.service.users:
                    if self.service.users[c].phone:
                        users.append(c)
                    else:
                        log.warning("meeting notice %s: user %s has no phone number; skipped", notice.conference_id, c)
                else:
                    numbers.append(c)
        if not (users or posts or numbers):
            return None
        text = notice_text(notice.change, notice.conference_id, notice.name, notice.starts_at, notice.ends_at,
                           [self.rooms[r][0] for r in rooms if r in self.rooms])
        view = await self.service.send(text, kind="meeting", reference=f"conference:{notice.conference_id}",
                                       actor=notice.actor, numbers=numbers, users=users, posts=posts)
        log.info("meeting notice %s (%s): SMS %s to %d numbers", notice.conference_id, notice.change, view["id"],
                 len(view["recipients"]))
        return view
