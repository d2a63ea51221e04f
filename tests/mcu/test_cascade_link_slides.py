"""A cascade link call's slides stream (``a=content:slides``, mcu.cascade.link_content) across
re-INVITEs: the pane-size re-INVITE (imageattr) either node sends, the other node's, and glare
(both at once → 491 → both retry). Two real user agents on a virtual clock carry the SIP; each
node's ``LinkContent`` binds its slides stream on a real media leg. The stream keeps its port,
payload type and direction in every offer and answer, and both legs stay started on the first
negotiation (issue 18: a link's slides stream was never started, or the far end's slides went to
the county's people-video port, after the city's re-INVITE).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import cast

import pytest

from mcu.cascade.link_content import LinkContent
from mcu.legs.sip_bridge import SipBridge
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.bfcp.sdp import slides_index
from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
from sip_gateway.sip import events as ev
from sip_gateway.sip.actions import Flow
from sip_gateway.sip.dialog import Call, CallState
from sip_gateway.sip.message import Response, parse_message
from sip_gateway.sip.sdp import Media, SessionDescription, placed_extra
from sip_gateway.sip.useragent import UserAgent, UserAgentConfig
from tests.sip_gateway.sip_testlib import Harness

CONF = "80000079"
COUNTY_MAIN = LocalMedia("127.0.0.1", 40000, 40002, h224_port=40004)  # the link call's own leg (SDP only)
CITY_MAIN = LocalMedia("127.0.0.1", 42000, 42002, h224_port=42004)


@dataclass
class _Endpoint:
    listeners: list = field(default_factory=list)  # type: ignore[type-arg]


@dataclass
class _Conferences:
    def running(self, conference_id: str) -> None:
        return None


@dataclass
class _Sip:
    """What LinkContent uses of the node's SIP bridge."""

    endpoint: _Endpoint = field(default_factory=_Endpoint)
    media_host: str = "127.0.0.1"
    port_range: tuple[int, int] = RTP_PORT_RANGE
    sites: dict = field(default_factory=dict)  # type: ignore[type-arg]
    conferences: _Conferences = field(default_factory=_Conferences)


@dataclass
class Node:
    """One node's user agent (virtual clock) and its links' slides streams."""

    harness: Harness
    sip: _Sip
    content: LinkContent
    seen: int = 0
    wire: list[bytes] = field(default_factory=list)  # everything it sent

    def statuses(self) -> list[int]:
        return [m.status for m in map(parse_message, self.wire) if isinstance(m, Response)]

    def deliver(self) -> None:
        """New SIP events to the listeners, as the endpoint does."""
        for event in self.harness.events[self.seen:]:
            for listener in list(self.sip.endpoint.listeners):
                listener(event)
        self.seen = len(self.harness.events)


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Node, Node]]:
    made = []
    for port, user in ((5070, "luoding"), (5080, "city")):
        sip = _Sip()
        content = LinkContent(cast(SipBridge, sip), policy=MediaPolicy(), interval=0.05)
        content.start()
        made.append(Node(Harness(UserAgent(UserAgentConfig(port=port, user=user))), sip, content))
    try:
        yield made[0], made[1]
    finally:
        for node in made:
            await node.content.stop()


def pump(county: Node, city: Node) -> None:
    for _ in range(20):
        moved = False
        for src, dst in ((county, city), (city, county)):
            for _flow, data in src.harness.take():
                moved = True
                src.wire.append(data)
                dst.harness.receive(data, Flow("udp", "127.0.0.1", src.harness.ua.config.port))
        county.deliver()
        city.deliver()
        if not moved:
            return


def advance(county: Node, city: Node, seconds: float) -> None:
    for _ in range(int(seconds / 0.25)):
        county.harness.advance(0.25)
        city.harness.advance(0.25)
        pump(county, city)


def slides_line(sdp: SessionDescription | None) -> Media:
    assert sdp is not None
    index = slides_index(sdp.media)
    assert index == 3, sdp.serialize()  # audio, video, H.224, slides: always the same place
    return sdp.media[index]


def video_streams(call: Call, main: LocalMedia) -> list[int]:
    """The local ports of the call's negotiated video streams that the main leg would take."""
    extra = {e.port for e in call.local_media.extra} if call.local_media is not None else set()
    return [s.local_port for s in call.streams if s.kind == "video" and s.local_port not in extra]


async def link(county: Node, city: Node) -> tuple[Call, Call, int, int]:
    """The county dials the city as the uplink does: its slides m-line beside its own."""
    offered = await county.content.offer(CONF, "cascade-city", "city")
    local = placed_extra(MediaPolicy(), replace(COUNTY_MAIN, extra=offered))
    call, out = county.harness.ua.invite(f"sip:{CONF}@127.0.0.1:5080", local, from_user="luoding")
    county.harness.run(out)
    pump(county, city)
    incoming = city.harness.events_of(ev.IncomingCall)[-1].call
    answered = await city.content.answer(CONF, "cascade-luoding", "luoding", incoming.offer)
    city.harness.run(city.harness.ua.answer(incoming, replace(CITY_MAIN, extra=answered)))
    pump(county, city)
    assert call.state == CallState.CONFIRMED and incoming.state == CallState.CONFIRMED
    county_port = next(iter(county.content.links))
    city_port = next(iter(city.content.links))
    return call, incoming, county_port, city_port


def check(county: Node, city: Node, call: Call, incoming: Call, county_port: int, city_port: int,
          pt: str, first: bool = False) -> None:
    """Both slides streams started and pointed at each other's slides port with the one payload
    type; every SDP on the wire has the slides m-line in place; the people video is not disturbed."""
    (county_link,), (city_link,) = county.content.links.values(), city.content.links.values()
    assert county_link.leg.video is not None and county_link.leg.video.port == county_port
    assert city_link.leg.video is not None and city_link.leg.video.port == city_port
    assert county_link.started and city_link.started
    for leg, far in ((county_link.leg, city_port), (city_link.leg, county_port)):
        assert leg.video is not None and leg.video.session is not None
        assert leg.video.remote_rtp == ("127.0.0.1", far)
        assert str(leg.video.session.codec.payload_type) == pt
    for sdp, port in ((call.local_sdp, county_port), (incoming.local_sdp, city_port)):
        line = slides_line(sdp)
        formats = line.formats if first and sdp is call.local_sdp else [pt]  # the first offer: all we can
        assert (line.port, line.formats, line.direction) == (port, formats, "sendrecv"), line
        assert pt in line.formats
        assert line.attr("imageattr") is None  # the pane size is asked on the people video only
    for seen, port in ((call.remote_answer, city_port), (incoming.remote_answer, county_port)):
        if seen is not None:
            assert slides_line(seen).port == port
    assert video_streams(call, COUNTY_MAIN) in ([], [COUNTY_MAIN.video_port])
    assert video_streams(incoming, CITY_MAIN) in ([], [CITY_MAIN.video_port])


async def test_the_slides_stream_keeps_its_port_and_format_across_re_invites(nodes: tuple[Node, Node]) -> None:
    county, city = nodes
    call, incoming, county_port, city_port = await link(county, city)
    (county_link,), (city_link,) = county.content.links.values(), city.content.links.values()
    # started on the answer itself (not at a later poll), on the one negotiated payload type
    assert county_link.started and city_link.started
    assert county_link.leg.video is not None and county_link.leg.video.session is not None
    pt = str(county_link.leg.video.session.codec.payload_type)
    assert call.local_media is not None and [e.formats for e in call.local_media.extra] == [(pt,)]
    check(county, city, call, incoming, county_port, city_port, pt, first=True)

    # 1. The city asks the county's picture at its pane size (the re-INVITE the county used to answer
    #    with its slides m-line missing: the city's slides then went to the county's people video)
    city.harness.run(city.harness.ua.reinvite(incoming, "sendrecv", (320, 180)))
    offer = SessionDescription.parse(city.harness.sent[-1][1].split(b"\r\n\r\n", 1)[1])
    assert offer.media[1].attr("imageattr") is not None and offer.media[3].attr("imageattr") is None
    pump(county, city)
    assert not incoming.reinvite_pending
    check(county, city, call, incoming, county_port, city_port, pt)
    assert slides_line(incoming.remote_answer).port == county_port

    # 2. The county asks the city's picture at its pane size
    county.harness.run(county.harness.ua.reinvite(call, "sendrecv", (160, 90)))
    pump(county, city)
    assert not call.reinvite_pending
    check(county, city, call, incoming, county_port, city_port, pt)

    # 3. Glare: both at once. Both are refused 491, both retry after a random 2.1-4.1 s (one of them
    #    is again refused if the two land together, and retries once more)
    county.harness.run(county.harness.ua.reinvite(call, "sendrecv", (320, 180)))
    city.harness.run(city.harness.ua.reinvite(incoming, "sendrecv", (320, 180)))
    pump(county, city)
    for node in (county, city):
        assert 491 in node.statuses()
    advance(county, city, 10)
    assert not call.reinvite_pending and not incoming.reinvite_pending
    assert call.state == CallState.CONFIRMED and incoming.state == CallState.CONFIRMED
    check(county, city, call, incoming, county_port, city_port, pt)
    # still one slides leg per node: no re-offer allocated another
    assert list(county.content.links) == [county_port] and list(city.content.links) == [city_port]
