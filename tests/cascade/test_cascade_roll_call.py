"""The city chair's roll call of a township behind county A, through the real cascade — media
(SIP links, failover to the telecom bridge) and control channel (websocket between the node
processes) together, in network namespaces.

City (`--role all`: web console, chair login, MCU), county A (`--role mcu`), the telecom bridge;
a township meeting room (our SIP endpoint) on county A, a SIP endpoint at the city that reports
what the city's composite shows. The control channel between city and county A has a second
route through the telecom network (policy-routed, TCP 7443 only, see
`Cluster.control_fallback`), so when the private line goes down the media fails over to the
bridge while the websocket keeps (or regains) a route. One scenario, one cluster:

1. primary: the chair's API lists the township as a remote site (via county A, joined); its
   roll call answers 200 and the city composite fills with the township's colour;
2. line down, control routed through telecom: media on the bridge, the roll call stays on
   screen (it follows the link onto the bridge call), the path view shows county A on `backup`
   with its history, remote sites still joined, roll call 200, township on screen;
3. the second route withdrawn too: remote sites 未知 (`unknown`), roll call 503 with the zh-CN
   reason, county A still heard and seen at the city; then the route through telecom given back
   (line still down): the county's channel reconnects, sites joined, roll call 200 on backup;
4. line restored: switch back to the primary (the roll call follows it), control back, sites
   joined, roll call 200; county A's own path history is primary → down → backup → primary.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cascade.chair import NamespacedChair
from tests.cascade.cluster import (
    CONFERENCE,
    TONES,
    Cluster,
    audit_rows,
    one_county,
    path_events,
    read_samples,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("netns_required")

HEARD = 1500.0
CHAIR, CHAIR_PASSWORD = "chair-e2e", "Yunfu-Zhuxi-7319!"
UNREACHABLE_REASON = "下级节点控制通道中断"


def hears(tone: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s["audio"].get(str(TONES[tone]), 0.0) > HEARD


def share(colour: str, above: float) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s["colours"].get(colour, 0.0) > above


@pytest.fixture
def cluster(work_dir: Path, node_databases: Callable[[str], str]) -> Iterator[Cluster]:
    made = one_county(work_dir, node_databases)
    made.roles["city"] = "all"
    try:
        made.create_network()
        made.control_fallback("city", "county-a", via="telecom")
        made.start_nodes()
        made.add_user("city", CHAIR, CHAIR_PASSWORD, "chair")
        yield made
    finally:
        try:
            made.stop()
        finally:
            made.destroy_network()


def remote_sites(chair: NamespacedChair) -> list[dict[str, Any]]:
    status, body = chair.call("GET", f"/api/conferences/{CONFERENCE}")
    assert status == 200, body
    return [s for s in body["sites"] if s.get("remote")]


def wait_sites(chair: NamespacedChair, predicate: Callable[[list[dict[str, Any]]], bool], within: float,
               what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        sites = remote_sites(chair)
        if predicate(sites):
            return sites
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}; remote sites: {sites}")
        time.sleep(0.3)


def link_of(chair: NamespacedChair, node: str) -> dict[str, Any]:
    status, body = chair.call("GET", f"/api/conferences/{CONFERENCE}/cascade")
    assert status == 200, body
    links = [x for x in body["links"] if x["node"] == node]
    assert links, body
    return {**links[0], "channel": body["channels"].get(node)}


def wait_link(chair: NamespacedChair, node: str, state: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while (link := link_of(chair, node))["state"] != state:
        assert time.monotonic() < deadline, f"county A never reached {state!r} at the city: {link}"
        time.sleep(0.3)
    return link


def roll_call(chair: NamespacedChair, site: str) -> tuple[int, Any]:
    return chair.call("POST", f"/api/conferences/{CONFERENCE}/ops", {"op": "roll_call", "site": site})


def township_full_screen(city: Path, after: float, within: float, what: str) -> None:
    """The city composite is (almost) all the township's colour: its roll call reached the city."""
    wait_for(city, share("town-a", 0.6), within, what, after=after)


def roll_call_on_screen(chair: NamespacedChair, city: Path, site: str, what: str) -> None:
    """The city chair cancels the broadcast (the township drops back to a pane of the composite),
    then rolls the township call: 200, and the city composite fills with its colour again."""
    status, body = chair.call("POST", f"/api/conferences/{CONFERENCE}/ops", {"op": "broadcast"})
    assert status == 200, body
    wait_for(city, lambda s: not share("town-a", 0.4)(s), 10, f"the broadcast cancelled ({what})", after=time.time())
    asked = time.time()
    status, body = roll_call(chair, site)
    assert status == 200, body
    township_full_screen(city, asked, 15, f"township A full screen at the city after the roll call ({what})")


def test_roll_call_of_a_township_on_primary_on_backup_and_without_control(cluster: Cluster) -> None:
    chair = NamespacedChair(cluster.ns("city"), "http://10.0.0.1:8080", CHAIR, CHAIR_PASSWORD)
    try:
        city = cluster.start_endpoint("city-ep", "city", CONFERENCE, "city", "city", ["town-a"], ["town-a", "city"])
        cluster.start_endpoint("town-a", "county-a", CONFERENCE, "town-a", "town-a", ["city"], ["city"])
        wait_for(city, hears("town-a"), 40, "the city hearing township A (700 Hz)")

        # 1. Primary: township A is a remote site of the city conference, via county A, joined.
        sites = wait_sites(chair, lambda ss: any(s["via"] == ["county-a"] and s["status"] == "joined" for s in ss),
                           20, "township A as a joined remote site via county A")
        township = next(s for s in sites if s["via"] == ["county-a"] and s["status"] == "joined")
        assert township["via_names"] == ["罗定市"] and township["link"] == "cascade-county-a", township
        # Its voice activity climbs the channel too: with the city's own room muted by the chair
        # (a local operation), the township's steady tone is county A's loudest, so it speaks.
        status, body = chair.call("GET", f"/api/conferences/{CONFERENCE}")
        city_site = next(s["site_id"] for s in body["sites"] if s["name"] == "city-ep")
        status, body = chair.call("POST", f"/api/conferences/{CONFERENCE}/ops", {"op": "mute", "site": city_site})
        assert status == 200, body
        wait_sites(chair, lambda ss: any(s["site_id"] == township["site_id"] and s["speaking"] for s in ss), 10,
                   "township A shown speaking at the city")
        status, body = chair.call("POST", f"/api/conferences/{CONFERENCE}/ops",
                                  {"op": "mute", "site": city_site, "enabled": False})
        assert status == 200, body
        before = read_samples(city)[-1]["colours"]["town-a"]
        assert before < 0.6, f"township A already fills the city picture before the roll call ({before})"
        asked = time.time()
        status, body = roll_call(chair, township["site_id"])
        assert status == 200, body
        township_full_screen(city, asked, 15, "township A full screen at the city after the roll call (primary)")
        assert link_of(chair, "county-a")["state"] == "primary"

        # 2. County A's private line fails; the control channel keeps a route through telecom.
        down_at = time.time()
        cluster.line_down("city-a")
        link = wait_link(chair, "county-a", "backup", 20)
        states = [h["state"] for h in link["history"]]
        assert states[0] == "primary" and states[-1] == "backup", link
        assert all(h["reason"] and h["at"] for h in link["history"]), link
        assert link["history"][-1]["previous"] in ("primary", "down"), link
        wait_for(city, hears("town-a"), 15, "township A heard via the bridge", after=down_at)
        # The primary's roll call followed the link onto the bridge call (the old call left).
        on_backup = time.time()
        township_full_screen(city, on_backup + 1.0, 10, "the roll call kept on the bridge call after the failover")
        sites = wait_sites(chair, lambda ss: any(s["site_id"] == township["site_id"] and s["status"] == "joined"
                                                 for s in ss), 20, "township A joined again (control via telecom)")
        roll_call_on_screen(chair, city, township["site_id"], "backup, channel rerouted through telecom")
        assert link_of(chair, "county-a")["channel"] is True

        # 3. No route at all for the control channel: remote sites unknown, roll call 503,
        #    while county A stays in the city's picture and sound through the bridge.
        lost_at = time.time()
        cluster.control_fallback_off("city", "county-a")
        wait_sites(chair, lambda ss: bool(ss) and all(s["status"] == "unknown" for s in ss if s["via"] == ["county-a"]),
                   25, "county A's remote sites to show unknown")
        status, body = roll_call(chair, township["site_id"])
        assert status == 503, body
        assert UNREACHABLE_REASON in body["detail"], body
        assert link_of(chair, "county-a")["state"] == "backup"
        wait_for(city, lambda s: hears("town-a")(s) and share("town-a", 0.04)(s), 5,
                 "county A still heard and seen at the city without control", after=time.time())
        silent = [s for s in read_samples(city) if s["t"] >= lost_at and not hears("town-a")(s)]
        assert len(silent) < 10, f"township A lost at the city while only the control channel was down: {silent[:3]}"

        # 3b. A route through telecom again (line still down): the county reconnects (every 2 s).
        cluster.control_fallback("city", "county-a", via="telecom")
        wait_sites(chair, lambda ss: any(s["site_id"] == township["site_id"] and s["status"] == "joined" for s in ss),
                   15, "township A joined after the channel reconnected through telecom")
        link = link_of(chair, "county-a")
        assert (link["state"], link["channel"]) == ("backup", True), link
        roll_call_on_screen(chair, city, township["site_id"], "backup, channel reconnected through telecom")

        # 4. The line returns: media back on the primary after the hold, control back, sites joined.
        cluster.line_up("city-a")
        wait_link(chair, "county-a", "primary", 30)
        back = time.time()
        township_full_screen(city, back + 1.0, 10, "the roll call kept on the primary call after the switch back")
        wait_sites(chair, lambda ss: any(s["site_id"] == township["site_id"] and s["status"] == "joined" for s in ss),
                   20, "township A joined after the line returned")
        assert link_of(chair, "county-a")["channel"] is True
        roll_call_on_screen(chair, city, township["site_id"], "primary again")
        deadline = time.monotonic() + 15
        while (up := [e["state"] for e in path_events(cluster.db_urls["county-a"]) if e["role"] == "up"]) != \
                ["primary", "down", "backup", "primary"]:
            assert time.monotonic() < deadline and len(up) <= 4, f"county A's own path history: {up}"
            time.sleep(0.3)
        # Every chair roll call of the remote site is audited at the city, the refused one with its code.
        calls = [(r["actor"], r["outcome"], r["detail"].get("code")) for r in audit_rows(cluster.db_urls["city"],
                                                                                       "conference.roll_call")]
        assert calls == [(CHAIR, "ok", None)] * 2 + [(CHAIR, "failed", "unreachable")] + [(CHAIR, "ok", None)] * 2, \
            calls
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        chair.close()
