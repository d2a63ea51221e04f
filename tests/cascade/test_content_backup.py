"""Content across a link on backup (issue 18): city ← 罗定 and the telecom bridge stand-in, three real
nodes (`commandcenter.node.start_node`, the bridge with ``kind = "bridge"``) in this process on
127.0.0.1. The county's primary call is hung up and the switch-back hold is long, so the link stays on
the backup path: both ends meet in the bridge's room, each call offering its slides stream, which the
bridge forwards (a second stream, as a telecom MCU's H.239/BFCP content). The control channel stays up
(as over an operator's management route). The city's slide is decoded at the county; the county's
presentation keeps the city's token past its 5 s media timeout while its frames cross the bridge, and
is released at that timeout once the bridge stops forwarding them.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcu.cascade.service import CascadeService
from tests.cascade.content_nodes import (
    CITY_SLIDE,
    CONF,
    TOKEN,
    TOWN_SLIDE,
    Site,
    eventually,
    media_state,
    present,
    running_nodes,
    shows,
    write_plan,
)
from tests.conftest import free_port

pytestmark = pytest.mark.slow

NAMES = ("telecom", "city", "luoding")


def plan_of(tmp_path: Path, sip: dict[str, int], control: dict[str, int]) -> Path:
    return write_plan(tmp_path, f'''
[[nodes]]
name = "city"
area = "445300"
sip = "127.0.0.1:{sip["city"]}"
control = "127.0.0.1:{control["city"]}"

[[nodes]]
name = "luoding"
parent = "city"
area = "445381"
sip = "127.0.0.1:{sip["luoding"]}"
control = "127.0.0.1:{control["luoding"]}"
backup = "sip:91{{conference}}@127.0.0.1:{sip["telecom"]}"

[[nodes]]
name = "telecom"
kind = "bridge"
sip = "127.0.0.1:{sip["telecom"]}"

[[conferences]]
id = "{CONF}"
name = "级联内容共享测试"
guests = true
nodes = ["city", "luoding"]
''')


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Site]]:
    sip = {n: free_port() for n in NAMES}
    plan = plan_of(tmp_path, sip, {n: free_port() for n in NAMES})
    # a long hold: once on backup the link stays there for the test
    cascade = {"token": TOKEN, "rtp_timeout_seconds": 2.0, "options_interval_seconds": 0.5,
               "dial_timeout_seconds": 5.0, "control_timeout_seconds": 3.0, "retry_interval_seconds": 1.0,
               "hold_seconds": 300.0, "max_hold_seconds": 600.0}
    async with running_nodes(pg_url, tmp_path, plan, sip, cascade, bridges=frozenset({"telecom"})) as sites:
        yield sites


def cascade_of(site: Site) -> CascadeService:
    assert site.node.cascade is not None
    return site.node.cascade


def slides_of(site: Site) -> dict[str, dict[str, object]]:
    content = cascade_of(site).content
    return {str(s["site_id"]): s for s in content.status()} if content is not None else {}


def on_backup(sites: dict[str, Site]) -> str:
    """'' once the link is on backup at both ends, with started slides streams through the bridge."""
    city, county, telecom = sites["city"], sites["luoding"], sites["telecom"]
    up, down = cascade_of(county).status(CONF), cascade_of(city).status(CONF)
    if [s["state"] for s in up] != ["backup"] or [s["state"] for s in down] != ["backup"]:
        return f"paths: county {up}, city {down}"
    bridge = cascade_of(telecom).bridge_content
    callers = bridge.status() if bridge is not None else []
    if len(callers) != 2:
        return f"bridge slides {callers}"
    for site, stream in ((county, "cascade-city-backup"), (city, "cascade-luoding-backup")):
        if not slides_of(site).get(stream, {}).get("started"):
            return f"{site.name}: slides streams {slides_of(site)}"
    if not all(sites[n].node.cascade_control.channels().values() for n in ("city", "luoding")):  # type: ignore[union-attr]
        return "control channels"
    return ""


async def test_slides_cross_a_link_on_backup_through_the_bridge(nodes: dict[str, Site]) -> None:
    city, county, telecom = nodes["city"], nodes["luoding"], nodes["telecom"]
    await eventually(lambda: [s["state"] for s in cascade_of(county).status(CONF)] == ["primary"]
                     and bool(slides_of(county).get("cascade-city", {}).get("started")), 45,
                     "the link up on its primary path", lambda: str(cascade_of(county).status(CONF)))
    assert county.node.sip is not None
    await county.node.sip.hangup(CONF, "cascade-city")  # the primary path fails: the county goes to the bridge
    await eventually(lambda: not on_backup(nodes), 45, "the link on backup through the bridge, with slides",
                     lambda: on_backup(nodes))
    await city.conf.join("city-main", "云浮市主会场", "webrtc", chair=True)
    await county.conf.join("luoding-room", "罗定市会议室", "webrtc")
    bridge = cascade_of(telecom).bridge_content
    assert bridge is not None
    frames: list[asyncio.Task[None]] = []
    try:
        # (b) the city presents: the county decodes its slide from the backup call's slides stream
        await present(city, "city-main", CITY_SLIDE, frames)
        await eventually(lambda: county.content.holder == "city-main", 5, "the county learnt the holder")
        assert county.content.feed == "cascade:city"
        await eventually(lambda: shows(county.content, CITY_SLIDE), 45,
                         "the city's slide decoded at the county through the bridge",
                         lambda: f"{media_state(nodes)}; bridge {bridge.status()}")
        # the bridge carried it as its room's content (a second stream to its callers, not composed)
        sending = {str(c["site_id"]): c["sending"] for c in bridge.status()}
        assert sending == {"bridge-luoding": True, "bridge-city": False}, bridge.status()
        frames.pop().cancel()
        city.content.stop("city-main")
        await eventually(lambda: county.content.holder is None, 5, "the release reached the county")

        # (a) the county presents: the city, the root, keeps the token alive on the frames that cross the bridge
        await present(county, "luoding-room", TOWN_SLIDE, frames)
        assert city.content.token.holder == "luoding/luoding-room"
        await eventually(lambda: shows(city.content, TOWN_SLIDE), 45,
                         "the county's slide decoded at the city through the bridge",
                         lambda: f"{media_state(nodes)}; bridge {bridge.status()}")
        await asyncio.sleep(7.0)  # past the token's 5 s media timeout
        assert city.content.token.holder == "luoding/luoding-room"
        assert shows(city.content, TOWN_SLIDE)
        # the bridge stops forwarding slides (as before this path carried them): no frames reach the
        # root, which frees the token at its media timeout
        await bridge.stop()
        stopped = asyncio.get_running_loop().time()
        await eventually(lambda: city.content.token.holder is None, 12, "the root released the holder it no longer sees")
        assert asyncio.get_running_loop().time() - stopped >= 4.0
    finally:
        for task in frames:
            task.cancel()
