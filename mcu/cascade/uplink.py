"""A child node's up-link for one conference: the FailoverLink driven over real SIP calls.

The primary route calls the parent's conference over the private line
(`Node.conference_uri`) as site ``cascade-<parent>``, authenticated by digest as this node;
the backup route calls the telecom bridge (`Node.backup_uri` of this node) as site
``cascade-<parent>-backup``. Both are ordinary SIP sites of the local conference, so the
parent receives this conference's view and N-1 mix; both are loop-free (never sent their own
picture back).

Observations fed to the `FailoverDriver`:
* CALL_UP once the call has joined and RTP has flowed for `up_after` s (the link hangs up
  the other route on CALL_UP, so this keeps the switch gap-free); CALL_FAILED when the call
  ends (both polled every 0.1 s from the SIP bridge);
* MEDIA when the call's RTP packet count grew (sampled every `media_sample` s);
* OPTIONS_OK / OPTIONS_TIMEOUT / SIP_ERROR from the qualify of the parent's SIP address
  (`SipEndpoint.qualify` every ``options_interval``), fanned out by the service;
* CONTROL_UP / CONTROL_LOST from the control channel (`CascadeService.control_state`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from mcu.cascade.failover import FailoverConfig, FailoverLink, ObservationKind, PathEvent, PathState, Route
from mcu.cascade.failover_driver import FailoverDriver
from mcu.cascade.link_call import CallSnapshot, snapshot
from mcu.legs.sip_bridge import DialOutError, SipBridge
from sip_gateway.rtp.media_description import ExtraMedia
from sip_gateway.sip.digest import Credentials

log = logging.getLogger(__name__)


@dataclass
class RouteCall:
    """How one route reaches the other node: the local site id and what to present."""

    site_id: str
    name: str
    credentials: Credentials | None = None


class SlidesOffer(Protocol):
    """The links' content streams (``mcu.cascade.link_content.LinkContent``)."""

    def offer(self, conference_id: str, site_id: str, node: str) -> Awaitable[tuple[ExtraMedia, ...]]: ...


@dataclass
class SipPathDialer:
    """`PathDialer` over the SIP bridge: one local site per route."""

    sip: SipBridge
    conference_id: str
    from_user: str
    routes: dict[Route, RouteCall]
    # Whether the primary's address answers OPTIONS lately: an INVITE into a dead line cannot be
    # cancelled (no provisional response) and would hold the site id for the 32 s INVITE timeout.
    primary_reachable: Callable[[], bool] = lambda: True
    line_kbps: int | None = None  # this node's line to its parent (the link's rate budget)
    slides: SlidesOffer | None = None  # each route's call offers a content stream (a=content:slides)
    parent: str = ""  # the parent node's name (the slides stream's other end)

    async def dial(self, route: Route, target: str) -> None:
        call = self.routes[route]
        if route is Route.PRIMARY and not self.primary_reachable():
            raise DialOutError("unreachable", "专线不可达（OPTIONS 无应答）")
        conf = self.sip.conferences.running(self.conference_id)
        if conf is None:
            raise DialOutError("not_running", f"会议未在运行：{self.conference_id}")
        # Before it joins, so its first view is already loop-free; both routes are one link group.
        conf.room.set_loop_free(call.site_id, group=self.routes[Route.PRIMARY].site_id)
        extra: tuple[ExtraMedia, ...] = ()
        if self.slides is not None:  # the backup call too: the bridge forwards it (mcu.cascade.bridge_content)
            extra = await self.slides.offer(self.conference_id, call.site_id, self.parent)
        await self.sip.invite(self.conference_id, call.site_id, uri=target, name=call.name,
                              credentials=call.credentials, from_user=self.from_user, line_kbps=self.line_kbps,
                              extra=extra)

    async def hangup(self, route: Route, reason: str) -> None:
        call = self.routes[route]
        site = self.sip.sites.get((self.conference_id, call.site_id))
        log.info("conference %s: cascade hangs up %s (%s)", self.conference_id, call.site_id, reason)
        if site is not None and site.connected:
            await self.sip.hangup(self.conference_id, call.site_id)


@dataclass
class _Seen:
    attempt: int = 0
    up: bool = False
    failed: bool = False
    packets: int = 0
    media_since: float | None = None


@dataclass
class Uplink:
    """One conference's link to the parent on a child node."""

    sip: SipBridge
    conference_id: str
    config: FailoverConfig
    dialer: SipPathDialer
    on_event: Callable[[PathEvent], None] = lambda e: None
    poll_interval: float = 0.1
    media_sample: float = 0.5
    up_after: float = 0.5
    link: FailoverLink = field(init=False)
    driver: FailoverDriver = field(init=False)
    _seen: dict[Route, _Seen] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _options_ok_at: float | None = None

    def __post_init__(self) -> None:
        self.dialer.primary_reachable = self.primary_reachable
        self.link = FailoverLink(self.config)
        self.driver = FailoverDriver(self.link, self.dialer, self.on_event)
        self._seen = {route: _Seen() for route in Route}

    def start(self) -> None:
        self.driver.start()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"uplink-{self.conference_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.driver.stop()
        for route in Route:
            with contextlib.suppress(DialOutError):
                await self.dialer.hangup(route, "stop")

    def _prefer(self, route: Route) -> None:
        """Only one route's copy of the parent's sound reaches the townships (no comb filtering)."""
        conf = self.sip.conferences.running(self.conference_id)
        if conf is not None:
            group = self.dialer.routes[Route.PRIMARY].site_id
            conf.room.set_link_active(group, self.dialer.routes[route].site_id)

    def observe(self, kind: ObservationKind, route: Route = Route.PRIMARY, detail: str = "") -> None:
        if kind is ObservationKind.OPTIONS_OK and route is Route.PRIMARY:
            self._options_ok_at = asyncio.get_running_loop().time()
        self.driver.observe(kind, route, detail)

    def primary_reachable(self) -> bool:
        """Until the primary first fails: yes. After that: only once OPTIONS over the private line
        were answered again since the failure (a dial into a dead line cannot even be cancelled)."""
        failed_at = next((e.at for e in reversed(self.link.history) if e.previous is PathState.PRIMARY), None)
        if failed_at is None:
            return True
        return self._options_ok_at is not None and self._options_ok_at > failed_at

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_sample = loop.time()
        while True:
            await asyncio.sleep(self.poll_interval)
            sample = loop.time() >= next_sample
            if sample:
                next_sample = loop.time() + self.media_sample
            for route, call in self.dialer.routes.items():
                try:
                    snap = snapshot(self.sip, self.conference_id, call.site_id)
                    if snap is not None:
                        self._update(route, snap, sample)
                except Exception:  # the watch must outlive one bad poll
                    log.exception("conference %s: cascade poll of %s failed", self.conference_id, call.site_id)

    def _update(self, route: Route, snap: CallSnapshot, sample: bool) -> None:
        seen = self._seen[route]
        if snap.attempt != seen.attempt:
            self._seen[route] = seen = _Seen(attempt=snap.attempt)
        now = asyncio.get_running_loop().time()
        if snap.joined and snap.packets_in > 0 and seen.media_since is None:
            seen.media_since = now
        # "Up" once RTP has flowed for a moment: the link hangs up the other route on CALL_UP
        # (make before break), so the new path must already carry the county's sound.
        if snap.joined and not seen.up and seen.media_since is not None and now - seen.media_since >= self.up_after:
            seen.up = True
            self.observe(ObservationKind.CALL_UP, route)
        if snap.ended and not seen.failed:
            seen.failed = True
            self.observe(ObservationKind.CALL_FAILED, route, snap.reason)
        if route is Route.PRIMARY:
            self._prefer(Route.PRIMARY if seen.media_since is not None and not snap.ended else Route.BACKUP)
        if sample and snap.joined and snap.packets_in > seen.packets:
            seen.packets = snap.packets_in
            self.observe(ObservationKind.MEDIA, route)


__all__ = ["RouteCall", "SipPathDialer", "Uplink"]
