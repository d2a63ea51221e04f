"""Meeting notices (会议通知): what the schedule tells whoever notifies a conference's rooms.

The scheduled-conference code (``mcu.conferences.ConferenceService``) declares the ``MeetingNotifier``
it calls when a conference is created, its time changes (extended) or it is cancelled (ended before
it started). The SMS side implements it (``sms.meeting.MeetingSms``: the rooms' contacts of the site
plan get a Chinese SMS); the composition root (``commandcenter/node.py``) hands it in. mcu imports no
SMS code. ``notify`` on a ``created`` notice is the conference's opt-in (the scheduling form's
checkbox); the notifier remembers it and sends the later notices only for conferences that opted in.
A notifier that fails never fails the scheduling: the service logs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Change = Literal["created", "changed", "cancelled"]


@dataclass(frozen=True)
class MeetingNotice:
    change: Change
    conference_id: str
    name: str
    starts_at: datetime | None
    ends_at: datetime | None
    rooms: tuple[str, ...]  # meeting-room ids of the site plan
    actor: str
    notify: bool = False  # created: the conference opted in


class MeetingNotifier(Protocol):
    async def meeting_notice(self, notice: MeetingNotice) -> None: ...
