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

1. County A's link call arrives at the standby while the city answers: armed, but no watcher
   (the living city's own watcher meets the county in its bridge; never both city nodes there).
2. The city stops answering: the standby watches county A's bridge; the line to the standby dies
   (no more RTP): the standby dials county A's bridge conference.
3. The city answers again: the standby leaves the bridge at once (still armed); silent again: back in.
4. County A's link call arrives at the city (the county went back while on the bridge, its line to
   the standby dead): the city announces it, the standby leaves the bridge and stays out while the
   city is gone.
"""
from __future__ import annotations

import asyncio
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
from mcu.cascade.service import CHILD_HOME, CascadeService
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


async def make_node(name: str, plan: SitePlan, db_url: str, sip: Any) -> Node:
    db = Database(db_url)
    await db.connect()
    bus = Bus(node_id=name)
    await bus.attach(db, replay_every=0.3)
    audit = Audit()
    me = plan.node(name)
    assert me is not None
    service = CascadeService(cast(Any, SimpleNamespace(bus=bus, audit=audit)), sip, me, plan, SETTINGS)
    service.start_standby_watch()
    return Node(service, bus, db, audit)


@pytest.fixture
async def city_and_standby(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node, FakeSip]]:
    migrator = Database(fresh_db_url)
    await migrator.connect()
    async with migrator.pool.acquire() as conn:
        await apply_migrations(conn)
    await migrator.close()
    plan = load_site_plan(city_standby(tmp_path, lambda n: "postgresql:///unused").write_plan())
    county = plan.node("county-a")
    assert county is not None and county.backup_uri(CONFERENCE) == BRIDGE_URI, "the cluster's plan changed"
    sip = FakeSip()
    city = await make_node("city", plan, fresh_db_url, cast(Any, SimpleNamespace()))
    standby = await make_node("city-standby", plan, fresh_db_url, sip)
    standby.service.uplinks[CONFERENCE] = cast(Any, StubUplink())
    city_sip = plan.node("city")
    assert city_sip is not None
    standby.service._qualify_targets = {f"sip:{city_sip.sip}": "city"}  # what start() registers
    try:
        yield city, standby, sip
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


async def test_the_standby_meets_a_county_in_its_bridge_only_while_it_is_the_countys_city(
        city_and_standby: tuple[Node, Node, FakeSip]) -> None:
    city, standby, sip = city_and_standby
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
    assert service.standby.armed == {"county-a"}
    for _ in range(10):
        await city_answers()
        await service.reconcile()
        await asyncio.sleep(0.1)
    assert service.watchers == {}, "the city answers: its own watcher meets the county, not the standby"

    # 2. the city is gone: the standby watches county A's bridge; the county's line to it dies
    await eventually(lambda: (CONFERENCE, "county-a") in service.watchers, service, within=5.0)
    assert sip.invites == [], "the county's link to the standby flows: no bridge call"
    sip.sites[(CONFERENCE, "cascade-county-a")].stop_media()
    await eventually(lambda: sip.in_bridge(), service, within=8.0)
    assert sip.invites[-1] == ("cascade-county-a-backup", BRIDGE_URI)

    # 3. the city answers again: the standby leaves the bridge (the city's watcher will be there)
    await eventually(lambda: not sip.in_bridge() and not service.watchers, service, within=5.0, also=city_answers)
    assert service.standby.armed == {"county-a"}, "answering OPTIONS is no sign the county went back"
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
        city_and_standby: tuple[Node, Node, FakeSip]) -> None:
    _, standby, _ = city_and_standby
    service = standby.service
    assert service.standby is not None
    service._child_arrived("county-a", "control")
    for payload in ({"node": "county-a", "parent": "elsewhere"}, {"node": "nobody", "parent": "city"},
                    {"node": 7, "parent": "city"}, {"parent": "city"}):
        await standby.bus.publish(CHILD_HOME, payload)
    await asyncio.sleep(0.5)
    assert service.standby.armed == {"county-a"}
    await standby.bus.publish(CHILD_HOME, {"node": "county-a", "parent": "city", "via": "control"})
    watch = service.standby
    await eventually(lambda: not watch.armed, service, within=5.0)  # the same loop hears the valid one
