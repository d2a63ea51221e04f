"""The ``cascade`` capability: this node's media links, failover and bridge mode.

`start(core)` (after ``mcu`` and ``sip``) reads the site plan's ``[[nodes]]``:

* no nodes: nothing is cascaded, the capability does not run;
* this node is a **bridge** (the telecom stand-in): dial-ins to ``sip:<digits>@bridge`` join
  on-demand rooms (`CascadeAdmission`); nothing else;
* an **MCU** node: its children's calls are authenticated and admitted as ``cascade-<child>``
  (`CascadeAdmission`); for every running conference cascaded over this node and its parent an
  `Uplink` (FailoverLink over SIP) joins the parent's conference; for every child of such a
  conference a `BackupWatcher` joins the bridge while that child is on backup.
* a child listing ``standby_parents`` (the city's standby node) probes every parent with OPTIONS;
  `ParentChoice` decides which one it cascades into, and on a switch its up-links are re-formed on
  the new parent (published as ``cascade.parent`` and audited), and the control channel follows it
  (`attach_control`: its up channel is re-opened to the new parent).
* a **standby city node** (listed in other nodes' ``standby_parents``) watches the telecom bridge of
  a county that cascades into it, while the city is gone (`StandbyWatch`, issue 17): the county's
  link call or control channel arriving here arms it; the city announcing on the shared bus that
  the county is back on it (``cascade.child_home``, published by the city when such a county's link
  call or control channel arrives there) disarms it, and the watcher leaves the county's bridge.
* the city and its standby meet such counties in their bridges only while they hold the root lease
  in the shared database (`RootLease`, `root_lease.py`): never both at once, whatever the network
  between them does (a partition between the city and the standby makes no second root).

`CascadeService.status(conference_id)` lists this node's links with their path state and
history; `control_state(node, up)` is how the control channel reports itself. Every path
change is published on the bus as ``cascade.path`` and written to the audit log.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from config.settings import CascadeSettings
from config.site_plan import Node, SitePlan
from core.bus import Event
from core.runtime import CoreServices
from mcu.cascade.admission import CascadeAdmission
from mcu.cascade.backup_watch import BackupWatcher
from mcu.cascade.bridge_content import BridgeContent
from mcu.cascade.failover import FailoverConfig, ObservationKind, PathEvent, PathState, Route
from mcu.cascade.link_content import ContentTrees, LinkContent
from mcu.cascade.naming import backup_site_id, link_name, link_site_id, sip_password
from mcu.cascade.parent_choice import ParentChoice, ParentChoiceConfig, ParentSwitch
from mcu.cascade.root_lease import Role, RootLease, RootLeaseConfig, Step, lease_name
from mcu.cascade.root_witness import DatabaseWitness
from mcu.cascade.standby_watch import StandbyWatch, StandbyWatchConfig
from mcu.cascade.uplink import RouteCall, SipPathDialer, Uplink
from mcu.legs.sip_bfcp import Contents
from mcu.legs.sip_bridge import SipBridge
from sip_gateway.sip import events as ev
from sip_gateway.sip.digest import Credentials
from sip_gateway.sip.invite_router import with_route, without_route

log = logging.getLogger(__name__)

class ParentFollower(Protocol):
    """The control channel (`ControlService`): its up channel follows the parent chosen here."""

    async def follow_parent(self, name: str) -> None: ...


class EventStream(Protocol):
    async def get(self) -> Event: ...

    def close(self) -> None: ...


class HomeNews(Protocol):
    """Where the city announces that a county is back on it and the standby hears it: the bus,
    which runs over the database the city and the standby share."""

    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> Any: ...

    def subscribe(self, pattern: str = "*", maxsize: int = 1000) -> EventStream: ...


class RootWitness(Protocol):
    """The shared database as the witness of the root lease (`root_witness.DatabaseWitness`); every
    time compared on its clock."""

    async def renew(self, name: str, holder: str, ttl: float) -> bool: ...

    async def release(self, name: str, holder: str) -> None: ...

    async def now_epoch(self) -> float: ...


@dataclass(frozen=True)
class RootTiming:
    ttl: float       # the root lease's time to live (default: nodes.dead_after_seconds)
    renew: float     # its renewal interval (default: nodes.heartbeat_seconds)


CHILD_HOME = "cascade.child_home"
ROOT_INTERVAL = 0.2
ARM_RETRY = 0.5
RECONCILE_INTERVAL = 1.0
CHOICE_INTERVAL = 0.2


def failover_config(settings: CascadeSettings, primary: str, backup: str) -> FailoverConfig:
    """The link thresholds from the ``[cascade]`` settings."""
    return FailoverConfig(
        primary_target=primary, backup_target=backup, rtp_timeout=settings.rtp_timeout_seconds,
        dial_timeout=settings.dial_timeout_seconds, control_timeout=settings.control_timeout_seconds,
        probe_gap=max(3.0, 3 * settings.options_interval_seconds), hold=settings.hold_seconds,
        max_hold=settings.max_hold_seconds, flap_window=settings.flap_window_seconds,
        retry_interval=settings.retry_interval_seconds)


def parent_choice_config(settings: CascadeSettings, parents: tuple[str, ...]) -> ParentChoiceConfig:
    """When a parent counts as gone (the RTP timeout, at least three missed OPTIONS; at start-up a
    dial timeout plus the RTP timeout) and how long an earlier parent must stay healthy to win the
    link back (the switch-back hold)."""
    probe_gap = max(3.0, 3 * settings.options_interval_seconds)
    return ParentChoiceConfig(parents, dead_after=max(settings.rtp_timeout_seconds,
                                                      3 * settings.options_interval_seconds),
                              probe_gap=probe_gap, hold=settings.hold_seconds,
                              startup_grace=settings.dial_timeout_seconds + settings.rtp_timeout_seconds)


def standby_counties(plan: SitePlan, node: Node) -> frozenset[str]:
    """The MCU nodes that list ``node`` as a standby parent (their plan parent is another node)."""
    return frozenset(n.name for n in plan.nodes if node.name in n.standby_parents and n.parent != node.name
                     and n.kind == "mcu")


def homeward_children(plan: SitePlan, node: Node) -> frozenset[str]:
    """``node``'s plan children that may cascade into a standby city node: the city announces when
    one of them is back on it."""
    return frozenset(n.name for n in plan.nodes if n.parent == node.name and n.standby_parents)


def standby_watch_config(settings: CascadeSettings, city: str, counties: frozenset[str]) -> StandbyWatchConfig:
    """The city is gone for the standby as it is for a county choosing its parent (`parent_choice_config`)."""
    return StandbyWatchConfig(city, counties, dead_after=max(settings.rtp_timeout_seconds,
                                                             3 * settings.options_interval_seconds),
                              startup_grace=settings.dial_timeout_seconds + settings.rtp_timeout_seconds)


def root_lease_config(settings: CascadeSettings, role: Role, timing: RootTiming) -> RootLeaseConfig:
    """The root lease's rules; the standby counts the city gone as a county does (`parent_choice_config`)."""
    return RootLeaseConfig(role, ttl=timing.ttl, renew=timing.renew,
                           dead_after=max(settings.rtp_timeout_seconds, 3 * settings.options_interval_seconds),
                           startup_grace=settings.dial_timeout_seconds + settings.rtp_timeout_seconds)


def wall_clock(at: float, loop_now: float, now: float | None = None) -> str:
    """ISO UTC time of a loop-clock instant ``at``."""
    now = time.time() if now is None else now
    return datetime.fromtimestamp(now - (loop_now - at), UTC).isoformat()


@dataclass
class CascadeService:
    core: CoreServices
    sip: SipBridge
    node: Node
    plan: SitePlan
    settings: CascadeSettings
    admission: CascadeAdmission | None = None
    uplinks: dict[str, Uplink] = field(default_factory=dict)                      # conference id
    watchers: dict[tuple[str, str], BackupWatcher] = field(default_factory=dict)  # (conference, child)
    _task: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _qualify_target: str = ""
    choice: ParentChoice | None = None
    _qualify_targets: dict[str, str] = field(default_factory=dict)                # target -> parent
    _choice_task: asyncio.Task[None] | None = None
    _formed_on: str = ""                    # the parent this node's up-links run to
    _switches_published: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    content: LinkContent | None = None  # the links' slides streams (mcu.cascade.link_content)
    contents: Contents | None = None  # the node's content service (a bridge forwards its callers' slides)
    bridge_content: BridgeContent | None = None  # on a bridge node (mcu.cascade.bridge_content)
    control: ParentFollower | None = None  # the control channel, which follows the parent chosen here
    news: HomeNews | None = None  # the shared bus (default: core.bus): cascade.child_home
    standby: StandbyWatch | None = None  # on a standby city node: the counties whose bridge it watches
    _homeward: frozenset[str] = frozenset()
    _news: EventStream | None = None
    _news_task: asyncio.Task[None] | None = None
    witness: RootWitness | None = None  # the root lease's witness (default: the node's database)
    root_timing: RootTiming | None = None  # default: the [nodes] heartbeat and dead-after
    root: RootLease | None = None  # on the city and its standby: whether this node is the root now
    _root_name: str = ""
    _root_task: asyncio.Task[None] | None = None
    _root_acting: bool = False

    @property
    def parent(self) -> Node | None:
        """The parent this node's up-links run to (the plan's parent unless a standby took over)."""
        name = self._formed_on or self.node.parent
        return self.plan.node(name) if name else None

    @property
    def token(self) -> str:
        return self.settings.token.get_secret_value() if self.settings.token else ""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.admission = CascadeAdmission(self.sip, self.plan, self.node, self.token, on_link_call=self._child_called)
        self.sip.endpoint.router = with_route(self.sip.endpoint.router, self.admission.route)
        if self.node.kind == "bridge":
            if self.contents is not None:  # its callers' slides streams (the backup path's content)
                self.bridge_content = BridgeContent(self.sip, self.contents, policy=self.sip.endpoint.ua.config.policy)
                self.bridge_content.start()
                self.admission.bridge_slides = self.bridge_content
            return
        self.content = LinkContent(self.sip, policy=self.sip.endpoint.ua.config.policy)
        self.content.start()
        self.admission.slides = self.content
        self.start_standby_watch()
        parent = self.parent
        if parent is not None:
            self._qualify_target = f"sip:{parent.sip}"
            self._formed_on = parent.name
            parents = (parent.name, *self.node.standby_parents)
            for name in parents:
                found = self.plan.node(name)
                if found is not None:
                    self._qualify_targets[f"sip:{found.sip}"] = name
            self.sip.endpoint.listeners.append(self._on_sip_event)
            for target in self._qualify_targets:
                self.sip.endpoint.qualify(target, self.settings.options_interval_seconds)
            if self.node.standby_parents:
                self.choice = ParentChoice(parent_choice_config(self.settings, parents),
                                           asyncio.get_running_loop().time())
                self._choice_task = asyncio.get_running_loop().create_task(self._choice_loop(),
                                                                          name="cascade-parent")
        await self.reconcile()
        self._task = asyncio.get_running_loop().create_task(self._reconcile_loop(), name="cascade-reconcile")

    async def stop(self) -> None:
        for task in (self._task, self._choice_task, self._news_task, self._root_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._qualify_target:
            for target in self._qualify_targets:
                self.sip.endpoint.process(self.sip.endpoint.ua.stop_qualify(target))
            with contextlib.suppress(ValueError):
                self.sip.endpoint.listeners.remove(self._on_sip_event)
        for uplink in list(self.uplinks.values()):
            await uplink.stop()
        for watcher in list(self.watchers.values()):
            await watcher.stop()
        self.uplinks.clear()
        self.watchers.clear()
        if self._news is not None:
            self._news.close()
        if self.admission is not None:
            self.sip.endpoint.router = without_route(self.sip.endpoint.router, self.admission.route.name)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.content is not None:
            await self.content.stop()
        if self.bridge_content is not None:
            await self.bridge_content.stop()
        await self._release_root()

    def start_standby_watch(self) -> None:
        """The bridge watch of a standby city node, and the city's announcements of the counties that
        come back to it (part of `start`; the SIP-less part, so a test can run it alone)."""
        if self.news is None:
            self.news = self.core.bus
        self._homeward = homeward_children(self.plan, self.node)
        counties = standby_counties(self.plan, self.node)
        parent = self.parent
        loop = asyncio.get_running_loop()
        role: Role | None = None
        if parent is not None and counties:
            self.standby = StandbyWatch(standby_watch_config(self.settings, parent.name, counties), time.time())
            self._news = self.news.subscribe(CHILD_HOME)
            self._news_task = loop.create_task(self._news_loop(), name="cascade-child-home")
            role, self._root_name = Role.STANDBY, lease_name(parent.name)
        elif parent is None and self._homeward:
            role, self._root_name = Role.CITY, lease_name(self.node.name)
        if role is not None:
            if self.witness is None:
                self.witness = DatabaseWitness(self.core.db)
            if self.root_timing is None:
                nodes = self.core.settings.nodes
                self.root_timing = RootTiming(nodes.dead_after_seconds, nodes.heartbeat_seconds)
            self.root = RootLease(root_lease_config(self.settings, role, self.root_timing), loop.time())
            self._root_acting = False
            self._root_task = loop.create_task(self._root_loop(), name="cascade-root-lease")

    def root_acting(self) -> bool:
        """Whether this node may meet the counties with a standby city node in their bridges now (no
        root lease kept here: not a city or standby node, nothing to gate)."""
        return self.root is None or self.root.acting(asyncio.get_running_loop().time())

    async def _root_loop(self) -> None:
        while True:
            try:
                await self.root_step()
            except Exception:
                log.exception("cascade root lease")
            await asyncio.sleep(ROOT_INTERVAL)

    async def root_step(self) -> None:
        """One step of the root lease: renew, release or nothing (`RootLease.due`); on a change of
        whether this node acts as the root, log and audit it and reconcile the bridge watchers."""
        assert self.root is not None and self.witness is not None and self.root_timing is not None
        loop = asyncio.get_running_loop()
        step = self.root.due(loop.time())
        if step is Step.RENEW:
            sent = loop.time()
            self.root.attempting(sent)
            try:
                ok = await self.witness.renew(self._root_name, self.node.name, self.root_timing.ttl)
            except Exception:  # the database is away: the belief runs out by itself
                log.warning("cascade root lease %s: renewal failed", self._root_name, exc_info=True)
                self.root.failed(loop.time())
            else:
                if ok:
                    self.root.renewed(sent)
                else:
                    self.root.refused(loop.time())
        elif step is Step.RELEASE:  # the standby hears the city again (it stopped acting already)
            if self._root_acting:
                self._root_acting = False
                await self._root_changed(False)
            await self._release_root()
        acting = self.root.acting(loop.time())
        if acting != self._root_acting:
            self._root_acting = acting
            await self._root_changed(acting)

    async def _root_changed(self, acting: bool) -> None:
        assert self.root is not None
        role = self.root.config.role.value
        log.warning("cascade: %s %s the root (%s lease %s)", self.node.name, "is now" if acting else "is no longer",
                    role, self._root_name)
        try:
            await self.core.audit.record(f"node:{self.node.name}", "cascade.root", self._root_name,
                                         detail={"acting": acting, "role": role})
        except Exception:
            log.exception("cascade: auditing the root lease")
        self._background(self.reconcile())

    async def _release_root(self) -> None:
        if self.root is None or self.witness is None or not self._root_name:
            return
        held = self.root.holds
        self.root.released(asyncio.get_running_loop().time())
        self._root_acting = False
        if held:
            try:
                await self.witness.release(self._root_name, self.node.name)
            except Exception:  # it expires by itself
                log.warning("cascade root lease %s: release failed", self._root_name, exc_info=True)

    def attach_content(self, trees: ContentTrees) -> None:
        """The control channels run: the links' slides streams follow their conferences' content trees."""
        if self.content is not None:
            self.content.trees = trees

    def attach_control(self, control: ParentFollower) -> None:
        """The control channels run: the up channel follows the parent this node's links run to."""
        self.control = control

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL)
            try:
                await self.reconcile()
            except Exception:
                log.exception("cascade reconcile")

    async def _choice_loop(self) -> None:
        while True:
            await asyncio.sleep(CHOICE_INTERVAL)
            if self.choice is None:
                return
            try:
                self.choice.tick(asyncio.get_running_loop().time())
                await self._follow_choice()
            except Exception:
                log.exception("cascade parent choice")

    async def _follow_choice(self) -> None:
        """Announce the choice's new switches; re-form every up-link on the parent it chose now (the
        old calls are hung up). The only place up-links change parent, so switches never overlap."""
        assert self.choice is not None
        fresh = min(self.choice.switches_total - self._switches_published, len(self.choice.history))
        self._switches_published = self.choice.switches_total
        loop_now = asyncio.get_running_loop().time()
        for switch in list(self.choice.history)[-fresh:] if fresh > 0 else []:
            log.warning("cascade parent %s -> %s (%s)", switch.previous, switch.parent, switch.reason)
            self._background(self._announce_parent(self._switch_payload(switch, loop_now)))
        if self.choice.current == self._formed_on:
            return
        async with self._lock:
            for uplink in list(self.uplinks.values()):
                await uplink.stop()
            self.uplinks.clear()
            self._formed_on = self.choice.current
        await self.reconcile()
        if self.control is not None:  # the chair's commands and the sites' state ride the new parent too
            try:
                await self.control.follow_parent(self._formed_on)
            except Exception:  # the links are re-formed whatever the control channel does
                log.exception("cascade control: following the parent %s", self._formed_on)

    def _switch_payload(self, switch: ParentSwitch, loop_now: float) -> dict[str, Any]:
        return {"node": self.node.name, "parent": switch.parent, "previous": switch.previous,
                "reason": switch.reason, "at": wall_clock(switch.at, loop_now)}

    async def _announce_parent(self, payload: dict[str, Any]) -> None:
        await self.core.bus.publish("cascade.parent", payload)
        await self.core.audit.record(f"node:{self.node.name}", "cascade.parent", payload["parent"], detail=payload)

    async def reconcile(self) -> None:
        """Links for every running cascaded conference; stop those of ended conferences."""
        async with self._lock:
            await self._reconcile()

    async def _reconcile(self) -> None:
        running = {c.id: c for c in self.sip.conferences.running_conferences() if not c.room.ended}
        plans = {c.id: c for c in self.plan.conferences if self.node.name in c.nodes}
        parent = self.parent
        acting = self.root_acting()  # only the root lease's holder meets a county with a standby city node
        wanted = self.standby.wanted(time.time()) if self.standby is not None and acting else frozenset()
        for conf_id in plans.keys() & running.keys():
            nodes = plans[conf_id].nodes
            if parent is not None and parent.name in nodes and conf_id not in self.uplinks:
                self._start_uplink(conf_id, parent)
            for child in self.plan.nodes:
                if child.parent == self.node.name and child.name in nodes and child.backup \
                        and (conf_id, child.name) not in self.watchers and (acting or child.name not in self._homeward):
                    self._start_watcher(conf_id, child)
            for name in wanted:  # a county cascading into this standby city node while the city is gone
                county = self.plan.node(name)
                if county is not None and county.backup and name in nodes and (conf_id, name) not in self.watchers:
                    log.warning("conference %s: watching the bridge of %s (on this standby, the city is gone)",
                                conf_id, name)
                    self._start_watcher(conf_id, county)
        if not acting:  # not the root (the lease lost, or never held): leave such counties' bridges
            for key in [k for k in self.watchers if k[1] in self._homeward]:
                log.warning("conference %s: leaving the bridge of %s (not the root now)", *key)
                await self.watchers.pop(key).stop()
        if self.standby is not None:  # disarmed, or the city is back: leave the county's bridge
            for key in [k for k in self.watchers if k[1] in self.standby.config.counties and k[1] not in wanted]:
                log.warning("conference %s: no longer watching the bridge of %s", *key)
                await self.watchers.pop(key).stop()
        for conf_id in [c for c in self.uplinks if c not in running]:
            await self.uplinks.pop(conf_id).stop()
        for key in [k for k in self.watchers if k[0] not in running]:
            await self.watchers.pop(key).stop()

    def _start_uplink(self, conference_id: str, parent: Node) -> None:
        name = link_name(self.plan, parent)
        routes = {
            Route.PRIMARY: RouteCall(link_site_id(parent.name), name,
                                     Credentials(self.node.name, sip_password(self.token, self.node.name))),
            Route.BACKUP: RouteCall(backup_site_id(parent.name), f"{name}（电信备份）"),
        }
        config = failover_config(self.settings, parent.conference_uri(conference_id),
                                 self.node.backup_uri(conference_id))
        dialer = SipPathDialer(self.sip, conference_id, self.node.name, routes,
                               line_kbps=self.plan.line_kbps("cascade", node=self.node.name),
                               slides=self.content, parent=parent.name)
        uplink = Uplink(self.sip, conference_id, config, dialer,
                        on_event=lambda e: self._publish(conference_id, parent.name, "up", e))
        self.uplinks[conference_id] = uplink
        uplink.start()
        log.info("conference %s: cascade up-link to %s (backup %s)", conference_id, parent.name,
                 config.backup_target)

    def _start_watcher(self, conference_id: str, child: Node) -> None:
        s = self.settings
        watcher = BackupWatcher(
            self.sip, conference_id, link_site_id(child.name), backup_site_id(child.name),
            child.backup_uri(conference_id), f"{link_name(self.plan, child)}（电信备份）", self.node.name,
            rtp_timeout=s.rtp_timeout_seconds, settle=max(1.0, s.rtp_timeout_seconds),
            early=min(s.rtp_timeout_seconds, max(1.0, s.rtp_timeout_seconds / 2)),
            retry_interval=s.retry_interval_seconds,
            startup_grace=s.dial_timeout_seconds + s.rtp_timeout_seconds,
            on_event=lambda e: self._publish(conference_id, child.name, "down", e),
            slides=self.content, child=child.name)
        self.watchers[(conference_id, child.name)] = watcher
        watcher.start()

    # ------------------------------------------------------------------ observations
    def _on_sip_event(self, event: ev.Event) -> None:
        if not isinstance(event, ev.QualifyResult) or event.target not in self._qualify_targets:
            return
        name = self._qualify_targets[event.target]
        if self.choice is not None and event.ok and (event.status is None or event.status < 500):
            self.choice.answered(name, asyncio.get_running_loop().time())  # the choice loop follows
        if self.standby is not None and name == self.standby.config.city and event.ok \
                and (event.status is None or event.status < 500):
            self.standby.city_answered(time.time())
            if self.root is not None:
                self.root.city_answered(asyncio.get_running_loop().time())
        if self.parent is None or name != self.parent.name:
            return  # a standby parent's probe: only the choice uses it
        if not event.ok:
            kind, detail = ObservationKind.OPTIONS_TIMEOUT, "OPTIONS 超时"
        elif event.status is not None and event.status >= 500:
            kind, detail = ObservationKind.SIP_ERROR, f"OPTIONS {event.status}"
        else:
            kind, detail = ObservationKind.OPTIONS_OK, ""
        for uplink in self.uplinks.values():
            uplink.observe(kind, Route.PRIMARY, detail)

    def control_state(self, node: str, up: bool) -> None:
        """The control channel to ``node`` came up or was lost (called by the control capability)."""
        if up:
            self._child_arrived(node, "control")
        kind = ObservationKind.CONTROL_UP if up else ObservationKind.CONTROL_LOST
        if self.parent is not None and node == self.parent.name:
            for uplink in self.uplinks.values():
                uplink.observe(kind, Route.PRIMARY)

    def _child_called(self, conference_id: str, child: str) -> None:
        log.info("conference %s: cascade call from %s admitted", conference_id, child)
        self._child_arrived(child, "link")

    def _child_arrived(self, child: str, how: str) -> None:
        """A child's link call or control channel arrived here: a county that may use the standby
        city node is announced as home (on the city); a county on this standby is armed."""
        if child in self._homeward and self.news is not None:
            self._background(self._announce_home(child, how))
        if self.standby is not None and child in self.standby.config.counties:
            self._background(self._arm(child, how))

    async def _arm(self, child: str, how: str) -> None:
        """Arm a county that arrived here, stamped with the database's clock (the city's announcements
        carry its time too, so the two are compared on one clock); retried while the database is away
        (the standby cannot hold the root lease meanwhile either)."""
        assert self.standby is not None
        while True:
            try:
                at = await self.witness.now_epoch() if self.witness is not None else time.time()
                break
            except Exception:
                log.warning("cascade: arming %s: the database's clock is out of reach; retrying", child)
                await asyncio.sleep(ARM_RETRY)
        if self.standby.arrived(child, at, how):
            log.warning("cascade: %s cascades into this standby city node (%s); its bridge is watched "
                        "while %s is gone and this node holds the root lease", child, how, self.standby.config.city)
            await self._audit_watch(child, True, how)

    async def _audit_watch(self, county: str, armed: bool, reason: str) -> None:
        try:
            await self.core.audit.record(f"node:{self.node.name}", "cascade.standby_watch", county,
                                         detail={"county": county, "armed": armed, "reason": reason})
        except Exception:
            log.exception("cascade: auditing the standby's watch of %s", county)

    async def _announce_home(self, child: str, how: str) -> None:
        assert self.news is not None
        try:
            await self.news.publish(CHILD_HOME, {"node": child, "parent": self.node.name, "via": how,
                                                 "at": datetime.now(UTC).isoformat()})
        except Exception:  # the database being away: the next arrival (reconnect) announces again
            log.exception("cascade: announcing %s back on %s", child, self.node.name)

    async def _news_loop(self) -> None:
        """The city's announcements that a county is back on it: disarm the county here."""
        assert self._news is not None
        while True:
            event = await self._news.get()
            try:
                self.hear_home(event)
            except Exception:
                log.exception("cascade: %s", CHILD_HOME)

    def hear_home(self, event: Event) -> bool:
        """One ``cascade.child_home`` event; True when it disarmed a county (the next reconcile
        stops its watcher, which leaves the county's bridge conference)."""
        if self.standby is None or event.payload.get("parent") != self.standby.config.city:
            return False
        county = event.payload.get("node")
        if not isinstance(county, str):
            return False
        if self.standby.home(county, event.at.timestamp(), time.time()):
            log.warning("cascade: %s is back on %s; leaving its bridge", county, self.standby.config.city)
            self._background(self._audit_watch(county, False, f"{self.standby.config.city}: "
                                                              f"{event.payload.get('via', '')}"))
            self._background(self.reconcile())
            return True
        return False

    # ------------------------------------------------------------------ events and status
    def _publish(self, conference_id: str, peer: str, role: str, event: PathEvent) -> None:
        loop_now = asyncio.get_running_loop().time()
        payload = {"conference_id": conference_id, "node": peer, "role": role, "state": event.state.value,
                   "previous": event.previous.value, "reason": event.reason,
                   "at": wall_clock(event.at, loop_now)}
        log.info("cascade path %s %s: %s -> %s (%s)", conference_id, peer, event.previous.value,
                 event.state.value, event.reason)
        self._background(self._announce(payload))

    async def _announce(self, payload: dict[str, Any]) -> None:
        await self.core.bus.publish("cascade.path", payload)
        await self.core.audit.record(f"node:{self.node.name}", "cascade.path", f"{payload['conference_id']}/"
                                     f"{payload['node']}", detail=payload)

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def joined_up(self, conference_id: str) -> bool:
        """Whether this node's instance of the conference is joined into its parent's over the private
        line now. (Through the telecom bridge it may be joined to no one: the parent may be dead.
        A node on backup claims the room's pin, which moves only when its holder is dead.)"""
        uplink = self.uplinks.get(conference_id)
        return uplink is not None and uplink.link.state is PathState.PRIMARY

    def status(self, conference_id: str) -> list[dict[str, Any]]:
        """This node's cascade links of a conference: state, since, history (wall-clock times)."""
        loop_now, wall_now = asyncio.get_running_loop().time(), time.time()
        out: list[dict[str, Any]] = []

        def item(peer: str, role: str, state: str, history: list[PathEvent]) -> dict[str, Any]:
            return {"node": peer, "role": role, "state": state,
                    "since": wall_clock(history[-1].at, loop_now, wall_now) if history else None,
                    "history": [{"at": wall_clock(e.at, loop_now, wall_now), "state": e.state.value,
                                 "previous": e.previous.value, "reason": e.reason} for e in history]}

        uplink = self.uplinks.get(conference_id)
        if uplink is not None and self.parent is not None:
            out.append(item(self.parent.name, "up", uplink.link.state.value, list(uplink.link.history)))
        for (conf_id, child), watcher in self.watchers.items():
            if conf_id == conference_id:
                out.append(item(child, "down", watcher.state.value, watcher.history))
        return out


__all__ = ["CHILD_HOME", "CascadeService", "RootTiming", "RootWitness", "root_lease_config", "failover_config", "homeward_children", "standby_counties",
           "standby_watch_config", "wall_clock"]
