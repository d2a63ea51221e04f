"""Start the warning service on a node: what it knows from the site plan, its channels, the expiry sweep."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from dataclasses import dataclass, field

from alerts.channels import Channel, LogOnlyChannel, MeetingRoomChannel, WarningRooms
from alerts.http_push_channel import HttpPushChannel, PushEndpoint
from alerts.service import Outline, WarningService
from alerts.sms_channel import GroupAreas, SmsChannel, WarningSms
from config.settings import WarningsSettings
from config.site_plan import SitePlan
from core.runtime import CoreServices
from dispatch.exchange.cap import gbt_sender_code

log = logging.getLogger(__name__)


def known_area_codes(plan: SitePlan) -> set[str]:
    """City and county adcodes (GB/T 2260) and township ids of the site plan: what an area may name."""
    return {plan.city.adcode} | {c.adcode for c in plan.counties} | {t.id for t in plan.townships}


def area_outlines(plan: SitePlan, tolerance_deg: float = 0.005, max_points: int = 300) -> dict[str, Outline]:
    """Per county adcode its simplified boundary rings; per township a 5 km circle around its
    (often approximate) position. Used to give adcode-only warning areas a CAP polygon/circle."""
    from shapely.geometry import MultiPolygon, Polygon, shape

    out: dict[str, Outline] = {}
    for f in plan.boundaries_geojson.get("features", []):
        code = str(f["properties"].get("adcode", ""))
        geom = shape(f["geometry"])
        polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom] if isinstance(geom, Polygon) else []
        rings = []
        for p in polys:
            tol = tolerance_deg
            simple = p.simplify(tol, preserve_topology=True)
            while len(simple.exterior.coords) > max_points:
                tol *= 2
                simple = p.simplify(tol, preserve_topology=True)
            rings.append(tuple((round(x, 5), round(y, 5)) for x, y, *_ in simple.exterior.coords))
        out[code] = (tuple(rings), ())
    for t in plan.townships:
        out[t.id] = ((), ((t.position[0], t.position[1], 5.0),))
    return out


def room_channel(plan: SitePlan, mcu: WarningRooms, repeats: int = 2) -> MeetingRoomChannel:
    return MeetingRoomChannel(mcu, {r.id: r.area for r in plan.meeting_rooms},
                              {t.id: t.county for t in plan.townships}, plan.city.adcode, repeats)


def push_channel(settings: WarningsSettings) -> HttpPushChannel:
    """The HTTP push channel to the configured endpoints (``[[warnings.push]]``). Without any it sends
    nothing, but is still there to mark ``failed`` the pushes a restart left ``pending``."""
    endpoints = [PushEndpoint(e.name, e.url, e.bearer_token.get_secret_value() if e.bearer_token else "",
                              dict(e.headers)) for e in settings.push]
    return HttpPushChannel(endpoints, timeout=settings.push_timeout_seconds, retries=settings.push_retries,
                           retry_base=settings.push_retry_base_seconds, max_delay=settings.push_retry_max_seconds)


@dataclass
class AlertsCapability:
    service: WarningService
    sweep_every: float = 30.0
    feed_tokens: dict[str, str] = field(default_factory=dict, repr=False)  # system name -> SHA-256 of its token
    push: HttpPushChannel | None = None
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)

    def feed_system(self, token: str) -> str | None:
        """The system whose Atom feed token this is (compared as SHA-256, in constant time), or None."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        found = None
        for name, expected in self.feed_tokens.items():
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    def start_sweep(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="warning-expiry")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                for warning_id in await self.service.expire_due():
                    log.info("warning %s expired", warning_id)
            except Exception:  # noqa: BLE001 - the sweep must survive a database hiccup
                log.exception("warning expiry sweep failed")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.service.stop()
        if self.push is not None:
            await self.push.aclose()


async def start(core: CoreServices, rooms: WarningRooms | None = None, sweep_every: float = 30.0,
                sms: WarningSms | None = None) -> AlertsCapability:
    """The warning service; meeting rooms are a channel when an MCU (``rooms``) runs in this process,
    else the log-only channel records what would have gone out; SMS is one more channel when the
    SMS service (``sms``) runs here; the HTTP push is one more (it posts to the ``[[warnings.push]]``
    endpoints, if any)."""
    plan = core.plan
    channels: list[Channel] = [room_channel(plan, rooms)] if rooms is not None else [LogOnlyChannel()]
    if sms is not None:
        channels.append(SmsChannel(sms, [g.name for g in plan.sms_groups], areas=GroupAreas(
            {g.name: tuple(g.areas) for g in plan.sms_groups if g.areas},
            {t.id: t.county for t in plan.townships}, plan.city.adcode)))
    settings = core.settings.warnings
    push = push_channel(settings)
    channels.append(push)
    service = WarningService(
        core.db, core.audit, core.bus, sender=gbt_sender_code(int(plan.city.adcode)),
        sender_name=f"{plan.city.name}突发事件预警信息发布中心", known_adcodes=known_area_codes(plan),
        channels=channels, outlines=area_outlines(plan))
    await service.resume_pending()  # pushes cut off by the last stop go out again, before any new one
    cap = AlertsCapability(service, sweep_every, dict(settings.feed_tokens), push)
    if sweep_every > 0:
        cap.start_sweep()
    return cap
