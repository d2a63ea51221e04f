"""The SMS channel: an approved public warning goes by SMS to its notification list.

Recipients: the people on the duty posts ``leader_on_duty`` and ``duty_officer`` (whoever holds them
now, resolved by the SMS service through the duty roster), plus the members of the site plan's SMS
groups tied to the warning's areas (``GroupAreas``, ``groups_for_areas``): a group whose ``areas``
hold a code the warning lists, or the county of one of its townships, or any group with areas when
the warning lists the city code (the meeting rooms' rule, ``alerts.channels.rooms_for_areas``). A
township's warning so reaches that township's group and not another township's; a county's reaches
its own and its townships' groups. Groups may name duty posts (``post:<post>``) among their members.
The older naming rule still works: a group named ``warning:<code>`` is reached by a warning listing
exactly that code. Numbers are distinct.

Text: ``【预警】headline（area）instruction`` (``【解除预警】`` for a Cancel, ``【预警更新】`` for an
Update), controls and characters outside the Basic Multilingual Plane dropped (UCS-2 cannot carry
them), shortened with "…" to ``max_chars`` (335 = five concatenated UCS-2 parts of 67). An Expired
warning sends nothing by SMS (no one is told twice about an end nobody announced).

Delivery: every number is reported ``sent`` once the SMS service has queued the message, then the
channel polls ``statuses()`` and reports each change: ``delivered`` or ``failed`` (the SMS service's
``queued``/``submitted``/``buffered`` stay ``sent``). Polling stops when every number is final or after
``watch_seconds``. The SMS service is reached only through the ``WarningSms`` Protocol declared here
(``sms.service.SmsService`` satisfies it; ``commandcenter/node.py`` hands it in): alerts does not
import sms.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from alerts.channels import Delivery, DeliverySink, DeliveryStatus, Outgoing

log = logging.getLogger(__name__)

DUTY_POSTS = ("leader_on_duty", "duty_officer")
MAX_CHARS = 5 * 67
PREFIX = {"Alert": "【预警】", "Update": "【预警更新】", "Cancel": "【解除预警】"}


class SmsRecipient(Protocol):
    @property
    def number(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def via(self) -> str: ...


class WarningSms(Protocol):
    """What the SMS channel needs from the SMS service (implemented in ``sms/``)."""

    async def resolve(self, *, posts: Sequence[str] = (), groups: Sequence[str] = ()) -> Sequence[SmsRecipient]:
        """Distinct numbers of the people on ``posts`` now and the members of ``groups``."""
        ...

    async def send_numbers(self, reference: str, text: str, numbers: Sequence[str], actor: str,
                           kind: str = "other") -> int:
        """Queue ``text`` to ``numbers``; the message id. Raises (``ValueError`` for bad input, the SMS
        service's ``QueueFull`` when its queue has no room) and then queues nothing."""
        ...

    async def statuses(self, message_id: int) -> Mapping[str, str]:
        """number -> queued | submitted | buffered | delivered | failed."""
        ...


def sms_text(message: Outgoing, max_chars: int = MAX_CHARS) -> str:
    """The SMS text of a warning message (see the module docstring)."""
    def clean(s: str) -> str:
        return "".join(ch for ch in " ".join(s.split()) if ch.isprintable() and ord(ch) <= 0xFFFF)

    text = PREFIX.get(message.msg_type, "【预警】") + clean(message.headline)
    if message.area_desc.strip():
        text += f"（{clean(message.area_desc)}）"
    if message.instruction.strip():
        text += clean(message.instruction)
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


def area_groups(area_codes: Collection[str], group_names: Collection[str]) -> list[str]:
    """The plan's SMS groups named ``warning:<code>`` for the warning's area codes (the older rule)."""
    names = set(group_names)
    return [f"warning:{c}" for c in sorted(set(area_codes)) if f"warning:{c}" in names]


@dataclass(frozen=True)
class GroupAreas:
    """The site plan's SMS groups tied to areas, and what the rule needs to know of the places."""

    groups: Mapping[str, tuple[str, ...]]  # group name -> its division codes
    township_county: Mapping[str, str]  # township id -> county adcode
    city_code: str


def groups_for_areas(area_codes: Collection[str], areas: GroupAreas) -> list[str]:
    """The groups a warning for ``area_codes`` reaches (the rule in the module docstring), by name."""
    codes = set(area_codes)
    out = []
    for name, group_areas in areas.groups.items():
        if any(a in codes or areas.township_county.get(a) in codes or (areas.city_code in codes)
               for a in group_areas):
            out.append(name)
    return sorted(out)


def delivery_status(sms_status: str) -> DeliveryStatus:
    if sms_status == "delivered":
        return DeliveryStatus.DELIVERED
    if sms_status == "failed":
        return DeliveryStatus.FAILED
    return DeliveryStatus.SENT


class SmsChannel:
    name = "sms"

    def __init__(self, sms: WarningSms, group_names: Collection[str], posts: Sequence[str] = DUTY_POSTS,
                 max_chars: int = MAX_CHARS, poll_every: float = 1.0, watch_seconds: float = 3600.0,
                 areas: GroupAreas | None = None) -> None:
        self.sms = sms
        self.group_names = frozenset(group_names)
        self.areas = areas
        self.posts = tuple(posts)
        self.max_chars = max_chars
        self.poll_every = poll_every
        self.watch_seconds = watch_seconds

    async def send(self, message: Outgoing, report: DeliverySink) -> None:
        if message.msg_type not in PREFIX:
            return  # Expired: nothing goes out by SMS
        groups = area_groups(message.area_codes, self.group_names)
        if self.areas is not None:
            groups += [g for g in groups_for_areas(message.area_codes, self.areas) if g not in groups]
        try:
            recipients = await self.sms.resolve(posts=self.posts, groups=groups)
        except ValueError as exc:
            log.warning("warning %s: SMS recipients not resolved: %s", message.identifier, exc)
            await report(message, self.name, Delivery("sms", DeliveryStatus.FAILED, str(exc)[:300]))
            return
        if not recipients:
            log.warning("warning %s: no one to send an SMS to", message.identifier)
            return
        numbers = [r.number for r in recipients]
        detail = {r.number: " ".join(x for x in (r.name, r.via) if x)[:300] for r in recipients}
        try:
            message_id = await self.sms.send_numbers(f"warning:{message.identifier}", sms_text(message, self.max_chars),
                                                     numbers, "alerts", kind="warning")
        except Exception as exc:  # noqa: BLE001 - bad input, a full queue (QueueFull), the database: nothing queued
            log.warning("warning %s: SMS not queued: %s", message.identifier, exc)
            for n in numbers:
                await report(message, self.name, Delivery(n, DeliveryStatus.FAILED, str(exc)[:300]))
            return
        for n in numbers:
            await report(message, self.name, Delivery(n, DeliveryStatus.SENT, detail[n]))
        await self._watch(message, message_id, detail, report)

    async def _watch(self, message: Outgoing, message_id: int, detail: Mapping[str, str],
                     report: DeliverySink) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.watch_seconds
        last = dict.fromkeys(detail, DeliveryStatus.SENT)
        while any(s is DeliveryStatus.SENT for s in last.values()) and loop.time() < end:
            await asyncio.sleep(self.poll_every)
            for number, raw in (await self.sms.statuses(message_id)).items():
                status = delivery_status(raw)
                if number in last and status is not last[number]:
                    last[number] = status
                    await report(message, self.name, Delivery(number, status, detail[number]))
