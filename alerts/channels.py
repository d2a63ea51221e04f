"""Distribution channels: one per way a warning reaches people, each reporting per recipient.

A ``Channel`` gets every sent message (Alert, Update, Cancel) as an ``Outgoing`` and reports a
``Delivery`` per recipient through the ``DeliverySink`` it is handed, as often as the status
changes (SMS delivery reports arrive later than the send; a room is first ``pending``, then
``banner_shown``, ``called_answered`` or ``failed``). The service stores the latest status per
(message, channel, recipient). SMS (Kannel/SMPP) plugs in as one more ``Channel``.

``MeetingRoomChannel`` is the meeting-room channel: the rooms of the warning's area (the site
plan's meeting rooms whose area is a listed county/township code, a township of a listed county,
or anywhere for the city code) get the warning as a banner in the conference they are in; an
idle room is called into a warning broadcast conference that speaks the warning. It reaches the
MCU only through the ``WarningRooms`` Protocol declared here (implemented in ``mcu/``, handed in
by ``commandcenter/node.py``).

``LogOnlyChannel`` delivers nowhere: it records each message as ``logged``. It exists so a node
without an MCU (a web-only node, a demo without rooms) still shows what would have gone out.
"""
from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    BANNER_SHOWN = "banner_shown"  # the room's running conference shows the banner
    CALLED_ANSWERED = "called_answered"  # the idle room answered the broadcast call and heard it
    CLEARED = "cleared"  # the banner was removed (Cancel)
    SENT = "sent"  # handed to a gateway (SMS), waiting for its report
    DELIVERED = "delivered"
    LOGGED = "logged"  # LogOnlyChannel
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    recipient: str
    status: DeliveryStatus
    detail: str = ""


@dataclass(frozen=True)
class Outgoing:
    """One sent CAP message, as channels need it."""

    warning_id: str
    identifier: str
    msg_type: str  # Alert | Update | Cancel, or Expired (no CAP message: ``identifier`` is the last one sent)
    headline: str
    text: str  # banner / spoken / SMS text
    area_codes: tuple[str, ...]
    severity: str
    area_desc: str = ""  # the areas' descriptions (SMS text)
    instruction: str = ""  # CAP instruction (SMS text)
    cap_xml: str = ""  # the CAP 1.2 document as sent (empty for Expired; the HTTP push posts it)


class DeliverySink(Protocol):
    async def __call__(self, message: Outgoing, channel: str, delivery: Delivery) -> None: ...


class Channel(Protocol):
    name: str

    async def send(self, message: Outgoing, report: DeliverySink) -> None:
        """Deliver ``message`` to this channel's recipients, reporting each one's status."""
        ...


@runtime_checkable
class ResumableChannel(Protocol):
    """A channel whose ``pending`` deliveries are sent again after a restart (the HTTP push)."""

    name: str

    async def resume(self, pending: Sequence[tuple[Outgoing, str]], report: DeliverySink) -> None:
        """Send again each (message, recipient) still ``pending``, in the order given (first sent
        first). The message carries its identifier, type and stored CAP document only."""
        ...


class WarningRooms(Protocol):
    """What the meeting-room channel needs from the MCU (implemented in ``mcu/``)."""

    async def show_banner(self, room_id: str, key: str, text: str) -> bool:
        """Put ``text`` on the video of the conference that meeting room ``room_id`` is in.
        False when the room is in no running conference (idle)."""
        ...

    async def clear_banner(self, room_id: str, key: str) -> bool:
        """Remove the banner ``key`` put up; False when there was none."""
        ...

    async def broadcast_call(self, room_id: str, text: str, repeats: int) -> str:
        """Call the idle room into a warning broadcast conference and speak ``text`` ``repeats``
        times; returns a short outcome ("answered") or raises ``OSError``/``RuntimeError``."""
        ...


def rooms_for_areas(area_codes: Collection[str], rooms: Mapping[str, str], township_county: Mapping[str, str],
                    city_code: str) -> list[str]:
    """Meeting-room ids in the warning's area. ``rooms``: room id -> its area (city adcode, county
    adcode or township id); ``township_county``: township id -> county adcode."""
    codes = set(area_codes)
    out = []
    for room_id, area in rooms.items():
        county = township_county.get(area, area)
        if city_code in codes or area in codes or county in codes:
            out.append(room_id)
    return sorted(out)


class MeetingRoomChannel:
    name = "rooms"

    def __init__(self, mcu: WarningRooms, rooms: Mapping[str, str], township_county: Mapping[str, str],
                 city_code: str, repeats: int = 2) -> None:
        self.mcu = mcu
        self.rooms = dict(rooms)
        self.township_county = dict(township_county)
        self.city_code = city_code
        self.repeats = repeats

    async def send(self, message: Outgoing, report: DeliverySink) -> None:
        targets = rooms_for_areas(message.area_codes, self.rooms, self.township_county, self.city_code)
        for room_id in targets:
            await report(message, self.name, Delivery(room_id, DeliveryStatus.PENDING))
        await asyncio.gather(*(self._reported(message, room_id, report) for room_id in targets))

    async def _reported(self, message: Outgoing, room_id: str, report: DeliverySink) -> None:
        try:
            delivery = await self._one(message, room_id)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("warning %s to room %s failed: %s", message.identifier, room_id, exc)
            delivery = Delivery(room_id, DeliveryStatus.FAILED, str(exc)[:300])
        await report(message, self.name, delivery)

    async def _one(self, message: Outgoing, room_id: str) -> Delivery:
        key = f"warning:{message.warning_id}"
        if message.msg_type in ("Cancel", "Expired"):
            shown = await self.mcu.clear_banner(room_id, key)
            return Delivery(room_id, DeliveryStatus.CLEARED, "" if shown else "no banner was shown")
        if await self.mcu.show_banner(room_id, key, message.text):
            return Delivery(room_id, DeliveryStatus.BANNER_SHOWN)
        outcome = await self.mcu.broadcast_call(room_id, message.text, self.repeats)
        return Delivery(room_id, DeliveryStatus.CALLED_ANSWERED, outcome)


class LogOnlyChannel:
    """Delivers nowhere; records each message as ``logged`` (for nodes without an MCU, and the demo)."""

    name = "log_only"

    async def send(self, message: Outgoing, report: DeliverySink) -> None:
        log.info("warning %s %s: %s", message.msg_type, message.identifier, message.text)
        await report(message, self.name, Delivery("log", DeliveryStatus.LOGGED))
