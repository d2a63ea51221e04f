"""A standby for the city MCU: the city node dies, county A re-forms the conference on the standby.

Real processes in network namespaces (tests/cascade/cluster.py `city_standby`): the city node,
a standby city node (a child of the city while the city lives), county A listing
``standby_parents = ["city-standby"]``, and the telecom bridge; a township meeting room (our SIP
test endpoint sending 700 Hz) on county A and a receiver on the standby. The city's process
group is SIGKILLed (no BYE, no clean-up, as when its machine dies); the takeover time is from
the kill until the receiver on the standby hears the township again (tone amplitude over 0.3 s
windows, sampled every 0.1 s). The issue's goal: ≤ 10 s. Thresholds are the test ones of the
other cascade scenarios (RTP timeout 1.5 s, OPTIONS every 0.5 s), so the parent counts as gone
after 1.5 s without an OPTIONS answer. The city and the standby share one database, as the city's
web nodes do; the chair console follows the conference by its room pin (noderpc), which moves to
the standby once the city's heartbeat is stale. Then county A's line to the standby is cut too:
county A dials its telecom bridge conference, and the standby (which watches the bridge of the
counties cascading into it while the city is gone, issue 17) meets it there: the township is
heard at the standby again.

The city's return (`test_the_county_goes_back_to_the_restarted_city_while_on_its_bridge`, heavy):
after the scenario above the city is started again while county A is on its bridge; the standby,
hearing the city, stops acting as the root and releases the root lease, the city takes it; county A
goes back to the city after the switch-back hold, the city announces it and the standby disarms
county A; the township is heard at the standby through the city, and the bridge's attendance shows
the two city nodes never in county A's bridge at the same time.

The partition (`test_a_partition_between_the_city_and_the_standby_makes_no_second_root`): county A's
line to the city fails, so it cascades into the standby (armed there); then only the line between
the city and the standby is cut (both still reach their shared database: the root lease stays the
city's), and then county A's line to the standby: county A dials its telecom bridge conference.
The standby, which hears no city any more, must stay out of it: exactly one city node (the city)
meets county A there, county A is in no other conference of the bridge, the township is heard at
the city, and the city never hears itself back (two roots in the bridge would loop the sound).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cascade.cluster import (
    CONFERENCE,
    TONES,
    Cluster,
    audit_rows,
    city_standby,
    read_samples,
    room_host,
    takeover_after_kill,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("netns_required")

HEARD, SILENT = 1500.0, 300.0
TAKEOVER_GOAL = 10.0


def hears_town(sample: dict[str, Any]) -> bool:
    return float(sample["audio"].get(str(TONES["town-a"]), 0.0)) > HEARD


@pytest.fixture
def standby_cluster(work_dir: Path, node_databases: Callable[[str], str]) -> Iterator[Cluster]:
    cluster = city_standby(work_dir, node_databases)
    try:
        cluster.create_network()
        cluster.start_nodes(timeout=150.0)  # the standby starts after the city (one database)
        yield cluster
    except BaseException:
        print(cluster.logs()[-8000:])
        raise
    finally:
        cluster.stop()


@pytest.mark.slow
def test_the_city_node_dies_and_the_township_is_heard_at_the_standby(standby_cluster: Cluster) -> None:
    city_dies_and_county_a_ends_on_its_bridge(standby_cluster)


@pytest.mark.heavy
def test_the_county_goes_back_to_the_restarted_city_while_on_its_bridge(standby_cluster: Cluster) -> None:
    """The scenario above, then the city restarts (heavy: ~3 min on the loaded machine, the city's
    second start alone 20-30 s)."""
    cluster = standby_cluster
    listener = city_dies_and_county_a_ends_on_its_bridge(cluster)

    # The city comes back (restarted) while county A is on its bridge: the standby hears it, stops
    # acting as the root and releases the lease; the city takes it; county A goes back to the city
    # over its private line after the switch-back hold, the city announces it, the standby disarms it.
    restarted = cluster.restart_node("city")
    deadline = time.monotonic() + 60
    while len(audit_rows(cluster.db_urls["county-a"], "cascade.parent")) < 2:
        assert time.monotonic() < deadline, "county A never went back to the restarted city"
        time.sleep(0.5)
    moves = audit_rows(cluster.db_urls["county-a"], "cascade.parent")
    assert [(m["detail"]["previous"], m["detail"]["parent"]) for m in moves][1] == ("city-standby", "city")
    deadline = time.monotonic() + 30
    while not [r for r in audit_rows(cluster.db_urls["city"], "cascade.standby_watch") if not r["detail"]["armed"]]:
        assert time.monotonic() < deadline, "the standby never disarmed county A on the city's announcement"
        time.sleep(0.5)
    home = wait_for(listener, hears_town, 60, "township A at the standby through the restarted city",
                    after=time.time())
    print(f"city restarted: township heard at the standby through it {home['t'] - restarted:.2f} s after the "
          f"restart began")
    roots = [(r["actor"], r["detail"]["acting"]) for r in audit_rows(cluster.db_urls["city"], "cascade.root")]
    standby_roots = [acting for actor, acting in roots if actor == "node:city-standby"]
    assert standby_roots == [True, False], f"the standby's root lease: {roots}"
    assert roots[-1] == ("node:city", True), f"the city is not the root again: {roots}"
    # Never the two city nodes in county A's bridge at once (their stays there do not overlap).
    stays = bridge_stays(cluster.db_urls["telecom"])
    county_confs = {conf for conf, who, _, _ in stays if who == "bridge-county-a"}
    city_nodes = [("city-standby" if who.startswith("bridge-city-standby") else "city", since, left)
                  for conf, who, since, left in stays if conf in county_confs and who.startswith("bridge-city")]
    for who, since, left in city_nodes:
        for other, o_since, o_left in city_nodes:
            if (who, other) == ("city", "city-standby"):
                assert left is not None and left <= o_since or o_left is not None and o_left <= since, \
                    f"{who} and {other} both in county A's bridge: {city_nodes}"


def city_dies_and_county_a_ends_on_its_bridge(cluster: Cluster) -> Path:
    """SIGKILL the city: county A moves to the standby; then its line to the standby is cut and the
    standby meets it in its bridge. The listener at the standby (its samples' path)."""
    listener = cluster.start_endpoint("standby-ep", "city-standby", CONFERENCE, "city", "city", ["town-a"], [])
    cluster.start_endpoint("town-a", "county-a", CONFERENCE, "town-a", "town-a", [], [])
    # Before: county A is on the city (its primary parent), the standby hears the township through the city;
    # the conference's room is pinned to the city node.
    wait_for(listener, hears_town, 60, "township A at the standby through the city")
    # (the standby may have claimed it before its own link to the city was up: it gives it back)
    deadline = time.monotonic() + 15
    while not room_host(cluster.db_urls["city"]).startswith("city/"):
        assert time.monotonic() < deadline, f"room pinned to {room_host(cluster.db_urls['city'])!r}, not the city"
        time.sleep(0.5)
    assert audit_rows(cluster.db_urls["county-a"], "cascade.parent") == []

    takeover, dropped = takeover_after_kill(cluster, listener, "city", "town-a", HEARD)
    assert takeover <= TAKEOVER_GOAL, f"township heard at the standby {takeover:.1f} s after the kill " \
                                      f"(goal {TAKEOVER_GOAL} s)"
    print(f"city killed: township lost at the standby after {dropped:.2f} s, heard again after {takeover:.2f} s")

    # County A says why it moved, and its up-link now runs to the standby over the private line. (A dip
    # in the sound under load can end the measurement above before the move: wait for it, bounded.)
    deadline = time.monotonic() + 15
    while not (moves := audit_rows(cluster.db_urls["county-a"], "cascade.parent")):
        assert time.monotonic() < deadline, "county A never moved to the standby"
        time.sleep(0.5)
    assert [(m["detail"]["previous"], m["detail"]["parent"]) for m in moves] == [("city", "city-standby")]
    assert "city" in moves[0]["detail"]["reason"]
    # The standby admitted county A's link as an authenticated cascade call.
    joined = [r for r in audit_rows(cluster.db_urls["city-standby"], "cascade.path")
              if r["detail"].get("node") == "city"]
    assert joined, "the standby never recorded its own up-link to the city"
    # The chair console follows: the room's pin (what a web node routes the console by) moves from
    # the dead city to the standby once the city's heartbeat is stale (noderpc dead_after, 10 s).
    deadline = time.monotonic() + 30
    while not room_host(cluster.db_urls["city"]).startswith("city-standby/"):
        assert time.monotonic() < deadline, f"room still pinned to {room_host(cluster.db_urls['city'])!r}"
        time.sleep(0.5)
    # It keeps hearing the township (not a one-off burst before a second failure).
    time.sleep(3.0)
    steady = wait_for(listener, hears_town, 5, "township A still heard at the standby", after=time.time())
    assert steady["t"] > 0

    # Issue 17, the standby's bridge watch: county A's link call arrived at the standby, which armed
    # it; the city is gone. Now county A's private line to the standby fails too: county A dials its
    # telecom bridge conference, and the standby (not the dead city) meets it there.
    armed = audit_rows(cluster.db_urls["city-standby"], "cascade.standby_watch")
    assert [(r["actor"], r["detail"]["county"], r["detail"]["armed"]) for r in armed] \
        == [("node:city-standby", "county-a", True)]
    cut = time.time()
    cluster.line_down("standby-a")
    lost = wait_for(listener, lambda s: not hears_town(s), 15, "township A to drop at the standby", after=cut)
    back = wait_for(listener, hears_town, 30, "township A at the standby through the telecom bridge",
                    after=lost["t"])
    print(f"standby–county line cut: township heard again at the standby after {back['t'] - cut:.2f} s")
    bridged = [r for r in audit_rows(cluster.db_urls["city-standby"], "cascade.path")
               if r["detail"].get("node") == "county-a" and r["detail"].get("state") == "backup"]
    assert bridged, "the standby never recorded county A on the bridge"
    return listener


def bridge_attendance(db_url: str) -> list[tuple[str, str, bool]]:
    """The telecom bridge's attendance: (conference, participant, still in), oldest first."""
    import asyncpg

    async def fetch() -> list[tuple[str, str, bool]]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT conference_id, participant_id, left_at IS NULL AS present "
                                    "FROM conference_attendance ORDER BY id")
        finally:
            await conn.close()
        return [(r["conference_id"], r["participant_id"], r["present"]) for r in rows]

    return asyncio.run(fetch())


def bridge_stays(db_url: str) -> list[tuple[str, str, float, float | None]]:
    """The telecom bridge's attendance: (conference, participant, joined, left or None), the
    bridge's database clock."""
    import asyncpg

    async def fetch() -> list[tuple[str, str, float, float | None]]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT conference_id, participant_id, extract(epoch FROM joined_at) AS j, "
                                    "extract(epoch FROM left_at) AS l FROM conference_attendance ORDER BY id")
        finally:
            await conn.close()
        return [(r["conference_id"], r["participant_id"], float(r["j"]),
                 None if r["l"] is None else float(r["l"])) for r in rows]

    return asyncio.run(fetch())


def hears_own(sample: dict[str, Any]) -> bool:
    return float(sample["audio"].get(str(TONES["city"]), 0.0)) > SILENT


@pytest.mark.slow
def test_a_partition_between_the_city_and_the_standby_makes_no_second_root(standby_cluster: Cluster) -> None:
    cluster = standby_cluster
    city_db, bridge_db = cluster.db_urls["city"], cluster.db_urls["telecom"]
    listener = cluster.start_endpoint("city-ep", "city", CONFERENCE, "city", "city", ["town-a", "city"], [])
    cluster.start_endpoint("town-a", "county-a", CONFERENCE, "town-a", "town-a", [], [])
    wait_for(listener, hears_town, 60, "township A at the city")
    began = time.monotonic()

    # County A's line to the city fails: it cascades into the standby, which arms it.
    cluster.line_down("city-a")
    deadline = time.monotonic() + 20
    while not [r for r in audit_rows(city_db, "cascade.standby_watch") if r["detail"]["armed"]]:
        assert time.monotonic() < deadline, "county A never armed at the standby"
        time.sleep(0.5)
    moves = audit_rows(cluster.db_urls["county-a"], "cascade.parent")
    assert [(m["detail"]["previous"], m["detail"]["parent"]) for m in moves] == [("city", "city-standby")]
    wait_for(listener, hears_town, 20, "township A at the city through the standby", after=time.time())

    # The partition: only the line between the city and the standby. Both still reach the database.
    partition = time.time()
    cluster.line_down("city-standby")
    time.sleep(3.0)   # > the standby's dead_after (1.5 s): it counts the city gone now
    wait_for(listener, hears_town, 20, "township A at the city through the standby's bridge", after=time.time())

    # County A's line to the standby fails too: county A is on its bridge.
    cut = time.time()
    cluster.line_down("standby-a")
    back = wait_for(listener, hears_town, 30, "township A at the city through county A's bridge",
                    after=cut + 2.0)   # after county A's switch (RTP timeout 1.5 s)
    time.sleep(5.0)   # the standby had time to join, were it to
    steady = wait_for(listener, hears_town, 5, "township A still heard at the city", after=time.time())
    print(f"partition: township heard at the city through county A's bridge {back['t'] - cut:.2f} s after "
          f"the cut; scenario {time.monotonic() - began:.1f} s")

    rows = bridge_attendance(bridge_db)
    county_in = {conf for conf, who, present in rows if who == "bridge-county-a" and present}
    assert len(county_in) == 1, f"county A in {len(county_in)} bridge conferences: {rows}"
    bridge = county_in.pop()
    present = {who for conf, who, here in rows if conf == bridge and here}
    assert present == {"bridge-county-a", "bridge-city"}, f"county A's bridge conference holds {present}"
    assert not [r for r in rows if r[0] == bridge and r[1].startswith("bridge-city-standby")], \
        f"the standby joined county A's bridge: {rows}"
    loud = [s for s in read_samples(listener) if s["t"] >= partition and hears_own(s)]
    assert not loud, f"the city hears itself back ({len(loud)} samples, first {loud[0]}): a loop"
    assert [r for r in audit_rows(city_db, "cascade.root") if r["actor"] == "node:city-standby"
            and r["detail"]["acting"]] == [], "the standby acted as the root"
    assert steady["t"] > 0
