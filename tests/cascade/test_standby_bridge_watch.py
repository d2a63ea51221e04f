"""The standby city node meets a county in its telecom bridge, and leaves when the city takes it back.

Two real `CascadeService`s, the city's and the standby's, each with its own real `Bus` attached to
one embedded PostgreSQL database (the city and its standby share the city's database), so the
city's ``cascade.child_home`` announcement really travels over PostgreSQL (NOTIFY) to the standby.
What is fake is the SIP side (no process, no network): a `FakeSip` holds the calls of the standby's
conference, whose media counter runs while a call "flows", and records the bridge calls the
standby's real `BackupWatcher` makes. The standby's own up-link to the city is a stub (not under
test), and the OPTIONS answers of the city are fed to the standby's real `_on_sip_event` as its
SIP probe would report them. The heavy real-process scenario (four `commandcenter` processes in
network namespaces) is tests/cascade/test_city_standby.py; it does not cover this piece yet.

Both services keep the root lease (`RootLease`) in the real ``rpc_leases`` table, with a short
lease (1.5 s, renewed every 0.3 s). A city node "dies" here by its lease task being cancelled and
its bridge calls ending, without releasing the lease (as a SIGKILLed process).

1. County A's link call arrives at the standby while the city answers: armed (stamped with the
   database's clock), but no watcher (the living city's own watcher meets the county in its bridge;
   never both city nodes there).
2. The city dies: once its lease has expired the standby holds it and watches county A's bridge; the
   line to the standby dies (no more RTP): the standby dials county A's bridge conference.
3. The city answers again: the standby leaves the bridge at once (still armed) and releases the
   lease; silent again: it takes the lease again and is back in the bridge.
4. County A's link call arrives at the city (the county went back while on the bridge, its line to
   the standby dead): the city announces it, the standby leaves the bridge and stays out while the
   city is gone.

The partition (`test_a_partition_between_the_city_and_the_standby_makes_no_second_root`): the
standby stops hearing the city's OPTIONS while both reach the database: the city keeps the lease
and stays in county A's bridge, the standby never joins it; the city dies: the standby takes over;
the city returns: it gets the root back only after the standby has left the bridge.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from config.settings import CascadeSettings
from config.site_plan import SitePlan, load_site_plan
from core.bus import Bus
from core.db import Database, apply_migrations
from mcu.cascade.root_lease import lease_name
from mcu.cascade.service import CHILD_HOME, CascadeService, RootTiming
from sip_gateway.sip import events as ev
from tests.cascade.cluster import CONFERENCE, TOKEN, city_standby

pytestmark = pytest.mark.timeout(90)

BRIDGE_URI = "sip:9281000001@10.0.0.9:5060"


@dataclass
class FakeStream:
    packets_received: int


@dataclass
class FakeCall:
    """One call of the fake SIP bridge: joined while connected; its RTP counter runs while flowing."""

    flowing: bool = True
    connected: bool = True
    end_reason: str = ""
    end_status: int | None = None
    media: Any = field(default_factory=lambda: SimpleNamespace(closed=False))
    _frozen: int = 0
    _since: float = field(default_factory=time.monotonic)

    @property
    def leg(self) -> Any:
        return SimpleNamespace(statistics=lambda: [FakeStream(self.packets())])

    def packets(self) -> int:
        if self.flowing:
            return self._frozen + int((time.monotonic() - self._since) * 50)
        return self._frozen

    def stop_media(self) -> None:
        self._frozen, self.flowing = self.packets(), False


class FakeRoom:
    ended = False
    broadcast_id: str | None = None

    def __init__(self) -> None:
        self.participants: dict[str, object] = {}
        self.selected: dict[str, str] = {}

    def set_loop_free(self, site: str, group: str) -> None:
        pass

    def set_link_active(self, group: str, active: str) -> None:
        pass


class FakeSip:
    """The parts of `SipBridge` the cascade service and its `BackupWatcher` use, for one conference."""

    def __init__(self) -> None:
        self.sites: dict[tuple[str, str], FakeCall] = {}
        self.room = FakeRoom()
        conference = SimpleNamespace(id=CONFERENCE, room=self.room)
        self.conferences = SimpleNamespace(running_conferences=lambda: [conference],
                                           running=lambda cid: conference if cid == CONFERENCE else None)
        self.invites: list[tuple[str, str]] = []
        self.hangups: list[str] = []

    async def invite(self, conference_id: str, site_id: str, *, uri: str, name: str, from_user: str,
                     extra: tuple[object, ...] = ()) -> None:
        self.invites.append((site_id, uri))
        self.sites[(conference_id, site_id)] = FakeCall()

    async def hangup(self, conference_id: str, site_id: str) -> None:
        self.hangups.append(site_id)
        call = self.sites[(conference_id, site_id)]
        call.stop_media()
        call.connected = False

    def in_bridge(self) -> bool:
        call = self.sites.get((CONFERENCE, "cascade-county-a-backup"))
        return call is not None and call.connected

    def bridge_dials(self) -> int:
        return sum(1 for site, _ in self.invites if site == "cascade-county-a-backup")


class StubUplink:
    """The standby's own up-link to the city: not under test here."""

    def observe(self, *args: object, **kwargs: object) -> None:
        pass

    async def stop(self) -> None:
        pass


class Audit:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, Any]]] = []

    async def record(self, actor: str, action: str, target: str, **kwargs: Any) -> None:
        self.rows.append((action, target, kwargs.get("detail") or {}))


@dataclass
class Node:
    service: CascadeService
    bus: Bus
    db: Database
    audit: Audit


SETTINGS = CascadeSettings(token=TOKEN, rtp_timeout_seconds=1.0, options_interval_seconds=0.3,
                           dial_timeout_seconds=1.0, retry_interval_seconds=0.5)
TIMING = RootTiming(ttl=1.5, renew=0.3)


async def make_node(name: str, plan: SitePlan, db_url: str, sip: Any) -> Node:
    db = Database(db_url)
    await db.connect()
    bus = Bus(node_id=name)
    await bus.attach(db, replay_every=0.3)
    audit = Audit()
    me = plan.node(name)
    assert me is not None
    service = CascadeService(cast(Any, SimpleNamespace(bus=bus, audit=audit, db=db)), sip, me, plan, SETTINGS,
                             root_timing=TIMING)
    service.start_standby_watch()
    return Node(service, bus, db, audit)


@pytest.fixture
async def city_and_standby(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node, FakeSip, FakeSip]]:
    migrator = Database(fresh_db_url)
    await migrator.connect()
    async with migrator.pool.acquire() as conn:
        await apply_migrations(conn)
    await migrator.close()
    plan = load_site_plan(city_standby(tmp_path, lambda n: "postgresql:///unused").write_plan())
    county = plan.node("county-a")
    assert county is not None and county.backup_uri(CONFERENCE) == BRIDGE_URI, "the cluster's plan changed"
    sip, city_sip_fake = FakeSip(), FakeSip()
    city = await make_node("city", plan, fresh_db_url, city_sip_fake)
    standby = await make_node("city-standby", plan, fresh_db_url, sip)
    standby.service.uplinks[CONFERENCE] = cast(Any, StubUplink())
    city_sip = plan.node("city")
    assert city_sip is not None
    standby.service._qualify_targets = {f"sip:{city_sip.sip}": "city"}  # what start() registers
    try:
        yield city, standby, sip, city_sip_fake
    finally:
        for node in (standby, city):
            await node.service.stop()
            await node.bus.detach()
            await node.db.close()


async def eventually(check: Callable[[], bool], standby: CascadeService, within: float,
                     also: Callable[[], Awaitable[None]] | None = None) -> None:
    """Reconcile the standby (its reconcile loop's work) until `check` holds, bounded."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if also is not None:
            await also()
        await standby.reconcile()
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within} s: {check.__doc__ or check}")


async def kill_city(city: CascadeService) -> None:
    """The city's process dies: no more renewals, no release; its bridge calls end."""
    assert city._root_task is not None
    city._root_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await city._root_task
    city._root_task = None
    for watcher in list(city.watchers.values()):
        await watcher.stop()
    city.watchers.clear()


async def lease_holder(db: Database) -> str | None:
    return cast(str | None, await db.fetchval("SELECT holder FROM rpc_leases WHERE name = $1 AND expires_at > now()",
                                              lease_name("city")))


async def test_the_standby_meets_a_county_in_its_bridge_only_while_it_is_the_countys_city(
        city_and_standby: tuple[Node, Node, FakeSip, FakeSip]) -> None:
    city, standby, sip, _ = city_and_standby
    service = standby.service
    assert service.standby is not None and service.standby.config.counties == {"county-a"}
    assert city.service.standby is None and city.service._homeward == {"county-a"}
    city_target = next(iter(service._qualify_targets))

    async def city_answers() -> None:
        service._on_sip_event(ev.QualifyResult(city_target, True, 200))

    # 1. county A cascades into the standby (its link call admitted) while the city answers
    sip.sites[(CONFERENCE, "cascade-county-a")] = FakeCall()
    await city_answers()
    service._child_called(CONFERENCE, "county-a")
    watch = service.standby
    await eventually(lambda: watch.armed == {"county-a"}, service, within=5.0)
    for _ in range(10):
        await city_answers()
        await service.reconcile()
        await asyncio.sleep(0.1)
    assert service.watchers == {}, "the city answers: its own watcher meets the county, not the standby"

    # 2. the city dies: the standby takes the lease once the city's has expired, and watches county A's
    # bridge; the county's line to it dies
    await kill_city(city.service)
    await eventually(lambda: (CONFERENCE, "county-a") in service.watchers, service, within=8.0)
    assert await lease_holder(city.db) == "city-standby"
    assert sip.invites == [], "the county's link to the standby flows: no bridge call"
    sip.sites[(CONFERENCE, "cascade-county-a")].stop_media()
    await eventually(lambda: sip.in_bridge(), service, within=8.0)
    assert sip.invites[-1] == ("cascade-county-a-backup", BRIDGE_URI)

    # 3. the city answers again: the standby leaves the bridge (the city's watcher will be there)
    await eventually(lambda: not sip.in_bridge() and not service.watchers, service, within=5.0, also=city_answers)
    assert service.standby.armed == {"county-a"}, "answering OPTIONS is no sign the county went back"
    for _ in range(10):
        await city_answers()
        await asyncio.sleep(0.1)
    assert await lease_holder(city.db) is None, "the standby hearing the city released the lease"
    await eventually(lambda: sip.in_bridge(), service, within=10.0)   # gone again: back in the bridge
    assert len(sip.invites) == 2

    # 4. county A's link call arrives at the city: the city announces it over the shared database
    city.service._child_called(CONFERENCE, "county-a")
    await eventually(lambda: not sip.in_bridge() and not service.watchers, service, within=10.0)
    assert service.standby.armed == frozenset()
    stored = await city.db.fetch("SELECT origin, payload FROM events WHERE topic = $1", CHILD_HOME)
    assert [(r["origin"], r["payload"]["node"], r["payload"]["parent"], r["payload"]["via"]) for r in stored] \
        == [("city", "county-a", "city", "link")]
    for _ in range(15):  # the city stays gone: the standby stays out of the bridge
        await service.reconcile()
        await asyncio.sleep(0.1)
    assert not sip.in_bridge() and len(sip.invites) == 2
    assert [(a, t, d["armed"]) for a, t, d in standby.audit.rows if a == "cascade.standby_watch"] \
        == [("cascade.standby_watch", "county-a", True), ("cascade.standby_watch", "county-a", False)]


async def test_an_announcement_from_another_city_or_for_an_unknown_node_changes_nothing(
        city_and_standby: tuple[Node, Node, FakeSip, FakeSip]) -> None:
    _, standby, _, _ = city_and_standby
    service = standby.service
    assert service.standby is not None
    service._child_arrived("county-a", "control")
    armed = service.standby
    await eventually(lambda: armed.armed == {"county-a"}, service, within=5.0)
    for payload in ({"node": "county-a", "parent": "elsewhere"}, {"node": "nobody", "parent": "city"},
                    {"node": 7, "parent": "city"}, {"parent": "city"}):
        await standby.bus.publish(CHILD_HOME, payload)
    await asyncio.sleep(0.5)
    assert service.standby.armed == {"county-a"}
    await standby.bus.publish(CHILD_HOME, {"node": "county-a", "parent": "city", "via": "control"})
    watch = service.standby
    await eventually(lambda: not watch.armed, service, within=5.0)  # the same loop hears the valid one


async def test_a_partition_between_the_city_and_the_standby_makes_no_second_root(
        city_and_standby: tuple[Node, Node, FakeSip, FakeSip]) -> None:
    city, standby, sip, city_sip = city_and_standby
    service = standby.service
    watch = service.standby
    assert watch is not None and service.root is not None and city.service.root is not None
    # county A cascades into the standby (its line to the city is dead: no call at the city), then its
    # line to the standby dies too: it is on its bridge. The standby hears no OPTIONS from the city
    # (the partition), but both reach the database.
    sip.sites[(CONFERENCE, "cascade-county-a")] = FakeCall()
    service._child_called(CONFERENCE, "county-a")
    await eventually(lambda: watch.armed == {"county-a"}, service, within=5.0)
    sip.sites[(CONFERENCE, "cascade-county-a")].stop_media()

    async def city_reconciles() -> None:
        await city.service.reconcile()

    await eventually(lambda: city_sip.in_bridge(), service, within=10.0, also=city_reconciles)
    assert await lease_holder(city.db) == "city"
    end = time.monotonic() + 5.0   # > the standby's dead_after (1 s) and the lease (1.5 s), several times
    while time.monotonic() < end:
        await city.service.reconcile()
        await service.reconcile()
        assert watch.city_gone(time.time()), "the standby counts the city gone (it hears no OPTIONS)"
        assert not service.root_acting(), "the city renews the lease: the standby is not the root"
        assert not sip.in_bridge() and sip.bridge_dials() == 0, "two city nodes in county A's bridge"
        assert city_sip.in_bridge()
        await asyncio.sleep(0.1)
    assert await lease_holder(city.db) == "city"

    # the city dies: after its lease has expired (by the database's clock) the standby is the root
    await kill_city(city.service)
    assert not city_sip.in_bridge()
    await eventually(lambda: sip.in_bridge(), service, within=8.0)
    assert await lease_holder(city.db) == "city-standby"

    # the city restarts, still partitioned from the standby: refused, it stays out of the bridge
    city.service.start_standby_watch()
    for _ in range(20):
        await city.service.reconcile()
        await service.reconcile()
        assert not city.service.root_acting() and not city_sip.in_bridge()
        await asyncio.sleep(0.1)
    # the partition heals: the standby hears the city, leaves the bridge and releases the lease; the
    # city takes it and meets county A in its bridge, never while the standby is there
    city_target = next(iter(service._qualify_targets))
    deadline = time.monotonic() + 10.0
    while not city_sip.in_bridge():
        assert time.monotonic() < deadline, "the city never got the root back"
        service._on_sip_event(ev.QualifyResult(city_target, True, 200))
        await service.reconcile()
        await city.service.reconcile()
        assert not (sip.in_bridge() and city_sip.in_bridge()), "two city nodes in county A's bridge"
        await asyncio.sleep(0.1)
    assert not sip.in_bridge() and await lease_holder(city.db) == "city"
    roots = [(d["acting"], d["role"]) for a, _, d in standby.audit.rows if a == "cascade.root"]
    assert roots == [(True, "standby"), (False, "standby")]
