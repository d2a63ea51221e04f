"""The control channel follows the parent a county's cascade chose (issue 17, a standby city MCU).

Three real nodes on 127.0.0.1, each with its own CoreServices and database and its real
`cascade_control` capability: the city, a standby city node (a child of the city with its own
control address) and county A, whose plan lists ``standby_parents = ["city-standby"]``. County A's
`CascadeService` is the real one, with its real `ParentChoice`, but without SIP (no conference is
cascaded over it here): the choice is driven by OPTIONS answers as the SIP probes would report them,
and its `_follow_choice` re-forms the (empty) set of links and moves the control channel.

* the city dies (its control service stops): county A's choice moves it to the standby, its control
  channel follows: the standby sees county A's sites and its chair's command is executed at the county;
* the city returns: the standby's own channel to the city carries county A's sites up meanwhile; when
  the county's choice goes back to the city, the standby forgets its sites, so the city sees each of
  them once, directly behind county A (never also `unknown` behind the standby).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mcu.cascade.parent_choice import ParentChoice, ParentChoiceConfig
from mcu.cascade.service import CascadeService
from tests.cascade.test_control_nodes import (
    CONF,
    TOKEN,
    FailoverProbe,
    NodeUnderTest,
    create_databases,
    eventually,
    plan_with_nodes,
    start_node,
    stop_nodes,
)
from tests.conftest import free_port, with_database

pytestmark = pytest.mark.timeout(120)

SITES = {
    "city": [("city-main", "云浮市主会场", "webrtc")],
    "city-standby": [("standby-room", "市备用节点会场", "webrtc")],
    "county-a": [("county-room", "罗定市会议室", "sip"), ("county-extra", "罗定应急指挥", "webrtc")],
}
COUNTY_SITES = {"county-room", "county-extra"}


def write_plan(tmp_path: Path, ports: dict[str, int]) -> Path:
    return plan_with_nodes(tmp_path, f'''
[[nodes]]
name = "city"
area = "445300"
sip = "127.0.0.1:15160"
control = "127.0.0.1:{ports["city"]}"

[[nodes]]
name = "city-standby"
parent = "city"
area = "445300"
sip = "127.0.0.1:15161"
control = "127.0.0.1:{ports["city-standby"]}"

[[nodes]]
name = "county-a"
parent = "city"
standby_parents = ["city-standby"]
area = "445381"
sip = "127.0.0.1:15162"
''')


async def _start(name: str, db_url: str, tmp_path: Path, plan: Path) -> NodeUnderTest:
    node, _ = await start_node(name, db_url, tmp_path, plan, {"token": TOKEN}, "备用节点测试会议",
                               layout=([], SITES[name]))
    return node


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[dict[str, NodeUnderTest]]:
    names = list(SITES)
    dbs = await create_databases(pg_url, names, "cf_")
    plan = write_plan(tmp_path, {n: free_port() for n in names})
    started: dict[str, NodeUnderTest] = {}
    try:
        for name in names:
            started[name] = await _start(name, with_database(pg_url, dbs[name]), tmp_path, plan)
        for name in names:
            await started[name].start_control()
        yield started
    finally:
        await stop_nodes(started, dbs, pg_url)


def sites_of(node: NodeUnderTest) -> list[dict[str, Any]]:
    return list(node.conf.remote_site_list())


def county_sites(node: NodeUnderTest) -> dict[str, list[tuple[str, ...]]]:
    """County A's sites as `node` sees them: site id -> every `via` it is listed with."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for s in sites_of(node):
        if s["site_id"] in COUNTY_SITES:
            out.setdefault(s["site_id"], []).append(tuple(s["via"]))
    return out


def county_cascade(county: NodeUnderTest, follower: Any) -> CascadeService:
    """County A's real cascade service and parent choice, without SIP: no conference is cascaded here,
    so re-forming its links is empty, and the choice is told what the OPTIONS probes would answer."""
    core = county.core
    me = core.plan.node("county-a")
    assert me is not None
    no_sip = cast(Any, SimpleNamespace(conferences=SimpleNamespace(running_conferences=lambda: [])))
    service = CascadeService(core, no_sip, me, core.plan, core.settings.cascade)
    service.choice = ParentChoice(ParentChoiceConfig(("city", "city-standby"), dead_after=3.0, probe_gap=3.0,
                                                     hold=1.0, startup_grace=1.0), started=0.0)
    service.attach_control(follower)
    return service


async def test_the_control_channel_follows_the_county_to_the_standby_and_back(
        nodes: dict[str, NodeUnderTest]) -> None:
    city, standby, county = nodes["city"], nodes["city-standby"], nodes["county-a"]
    assert county.control is not None and standby.control is not None
    assert standby.control.standby_children == frozenset({"county-a"})
    probe = FailoverProbe()
    county.control.failover = probe
    cascade = county_cascade(county, county.control)
    choice = cascade.choice
    assert choice is not None

    # while the city lives the county is its child: the city sees its sites, the standby does not
    await eventually(lambda: county_sites(city) == {s: [("county-a",)] for s in COUNTY_SITES}, within=10)
    await eventually(lambda: {s["site_id"] for s in sites_of(city)} >= {"standby-room"}, within=10)
    assert county_sites(standby) == {}
    assert county.control.channels() == {"city": True}
    assert standby.control.channels() == {"city": True}  # a standby child is no neighbour while away

    # the city dies; the probes: the city answered last at 0.5, the standby keeps answering
    await city.stop_control()
    await eventually(lambda: county.control is not None and county.control.channels() == {"city": False})
    choice.answered("city", 0.5)
    switch = choice.answered("city-standby", 3.9)  # the city's last answer is 3.4 s old: gone
    assert switch is not None and switch.parent == "city-standby"
    await cascade._follow_choice()
    assert cascade.parent is not None and cascade.parent.name == "city-standby"
    await eventually(lambda: county_sites(standby) == {s: [("county-a",)] for s in COUNTY_SITES}, within=10)
    assert county.control.channels() == {"city-standby": True}
    assert standby.control.channels() == {"city": False, "county-a": True}
    assert ("city-standby", True) in probe.calls  # the failover hears of its new parent's channel

    # the standby's chair (it holds the room now) commands a county site over the followed channel
    await standby.control.command(CONF, "county-extra", "mute", {})
    assert county.conf.room.participants["county-extra"].muted is True
    await eventually(lambda: next(s for s in sites_of(standby) if s["site_id"] == "county-extra")["muted"] is True)

    # the city returns; the standby's channel to it carries the county's sites up meanwhile
    await city.start_control()
    await eventually(lambda: county_sites(city) == {s: [("city-standby", "county-a")] for s in COUNTY_SITES},
                     within=15)

    # the city answers continuously for the hold: the choice goes back, so does the channel
    choice.answered("city-standby", 5.0)
    assert choice.answered("city", 5.0) is None
    switch = choice.answered("city", 6.1)
    assert switch is not None and switch.parent == "city"
    await cascade._follow_choice()
    # each county site once at the city, directly behind the county; the standby forgot them
    await eventually(lambda: county_sites(city) == {s: [("county-a",)] for s in COUNTY_SITES}, within=15)
    await eventually(lambda: county_sites(standby) == {})
    assert county.control.channels() == {"city": True}
    await eventually(lambda: standby.control is not None and standby.control.channels() == {"city": True})
    await asyncio.sleep(0.5)  # nothing stale arrives later from the standby
    assert county_sites(city) == {s: [("county-a",)] for s in COUNTY_SITES}
    await city.control.command(CONF, "county-extra", "unmute", {})  # type: ignore[union-attr]
    assert county.conf.room.participants["county-extra"].muted is False

    rows = await county.core.db.fetch("SELECT target, detail FROM audit_log WHERE action = 'cascade.control.parent' "
                                      "ORDER BY id")
    assert [r["target"] for r in rows] == ["city-standby", "city"]
    await asyncio.gather(*cascade._tasks, return_exceptions=True)  # the cascade.parent announcements


async def test_following_an_unknown_parent_changes_nothing(nodes: dict[str, NodeUnderTest]) -> None:
    county = nodes["county-a"]
    assert county.control is not None
    await eventually(lambda: county.control is not None and county.control.channels() == {"city": True}, within=10)
    with pytest.raises(ValueError, match="no MCU node"):
        await county.control.follow_parent("nowhere")
    await county.control.follow_parent("city")  # already there: nothing to do
    assert county.control.channels() == {"city": True}
    rows = await county.core.db.fetch("SELECT 1 FROM audit_log WHERE action = 'cascade.control.parent'")
    assert rows == []
