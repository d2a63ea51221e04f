"""An H.239 room system on a lower node of a cascade asks for the presentation token, which the root
owns (issue 18): the real conference content of two nodes (city, the root; 罗定, a county below it),
each with its real cascade content tree (mcu.cascade.content_link.CascadedContent over
mcu.cascade.content_tree), the control link between them an in-memory queue delivering each message
on a later turn of the loop, as a websocket would. The H.239 side is the site's real H239Floor and
the token adapter the H.323 leg uses (mcu.legs.h323_content_media); what it would send on H.245 is
collected.

H.239 has no "pending": the presentationTokenResponse waits for the root's decision, then says
acknowledge (the tree's holder names the site) or reject (someone anywhere in the tree presents)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiortc import RTCConfiguration

from mcu.cascade.content_link import CascadedContent
from mcu.cascade.content_tree import Message
from mcu.conferences import ConferenceService
from mcu.content.service import ConferenceContent
from mcu.legs.h323_content import H239Floor
from mcu.legs.h323_content_media import _Floor as H239TokenPort
from sip_gateway.h323.h239 import H239Message, SubMessage

CITY, COUNTY = "80000071", "80000072"  # one cascaded conference, as it runs on each node


class Wire:
    """The control link city ↔ 罗定: each side's messages reach the other on a later loop turn."""

    def __init__(self) -> None:
        self.ends: dict[str, CascadedContent] = {}
        self.carried: list[tuple[str, str]] = []

    def link(self, node: str) -> Callable[[str, str, Message], None]:
        def send(conference_id: str, to: str, message: Message) -> None:
            self.carried.append((node, type(message).__name__))
            if node == "city":
                asyncio.get_running_loop().call_soon(lambda: self.ends["luoding"].driver.from_parent(message))
            else:
                asyncio.get_running_loop().call_soon(lambda: self.ends["city"].driver.from_child("luoding", message))
        return send


class Links:
    def __init__(self, send: Callable[[str, str, Message], None]) -> None:
        self.send_content = send


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110 - the tree has no event to await
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


@pytest.mark.slow
async def test_an_h239_room_on_a_county_is_refused_while_the_city_presents_and_gets_the_token_when_free(
        conferences: ConferenceService) -> None:
    for cid in (CITY, COUNTY):
        await conferences.create(name=f"级联 H.239 {cid}", actor="test", guests=True, conference_id=cid)
    city_conf = await conferences.start_conference(CITY, actor="test")
    county_conf = await conferences.start_conference(COUNTY, actor="test")
    # the contents' clock is the loop's (as the trees'), stepped ahead where the test skips the
    # one-request-a-second limit of a site
    loop = asyncio.get_running_loop()
    skew = [0.0]

    def clock() -> float:
        return loop.time() + skew[0]

    city = ConferenceContent(city_conf, configuration=RTCConfiguration(), publish=lambda *a: None, clock=clock)
    county = ConferenceContent(county_conf, configuration=RTCConfiguration(), publish=lambda *a: None,
                               clock=clock)
    wire = Wire()
    root = CascadedContent(CITY, "city", None, frozenset({"luoding"}), city, Links(wire.link("city")),
                           request_timeout=5.0)
    lower = CascadedContent(COUNTY, "luoding", "city", frozenset(), county, Links(wire.link("luoding")),
                            request_timeout=5.0)
    wire.ends = {"city": root, "luoding": lower}
    root.start()
    lower.start()
    root.driver.child_up("luoding")
    await city_conf.join("city-main", "云浮市主会场", "webrtc", chair=True)
    await county_conf.join("room", "罗定市会议室", "h323")

    sent: list[H239Message] = []  # what the H.323 leg would send the room on H.245
    floor = H239Floor("room", H239TokenPort(county), content_channel=5)

    def on_token(event: object) -> None:
        sent.extend(floor.on_token_event(event))  # type: ignore[arg-type]

    county.token_listeners.append(on_token)
    request = H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=5, terminal_label=0x0102)

    def responses() -> list[H239Message]:
        return [m for m in sent if m.kind is SubMessage.PRESENTATION_TOKEN_RESPONSE]

    try:
        # 1. The city presents. The county's room asks: no answer at once (the root decides) ...
        await city.present("city-main")
        await until(lambda: county.holder == "city-main", 2, "the county learnt the city presents")
        assert floor.on_message(request, clock()) == []
        assert floor.waiting is not None
        # ... then presentationTokenResponse reject, echoing the request; nothing changed anywhere
        await until(lambda: bool(responses()), 3, "the room's answer")
        (reject,) = responses()
        assert reject.acknowledge is False and reject.channel_id == 5 and reject.terminal_label == 0x0102
        assert floor.last_refusal == "busy" and floor.waiting is None
        assert city.token.holder == "city-main" and county.holder == "city-main"
        assert not county.holds("room") and county.floor_requests == []
        assert ("luoding", "Request") in wire.carried and ("city", "Decision") in wire.carried

        # 2. The city stops; the room asks again (a second later: one request a second per site)
        city.stop("city-main")
        await until(lambda: county.holder is None, 2, "the county learnt nobody presents")
        skew[0] += 2
        sent.clear()
        assert floor.on_message(request, clock()) == []
        assert [who for who, _ in county.floor_requests] == ["room"]  # with the root, not decided yet
        await until(lambda: bool(responses()), 3, "the room's second answer")
        assert responses()[0].acknowledge is True and floor.last_refusal == ""
        assert city.token.holder == "luoding/room" and county.holds("room") and county.feed == "room"
        assert county.floor_holder == "room" and county.floor_requests == []
        # the owner is indicated too, after the response
        kinds = [m.kind for m in sent]
        assert kinds.index(SubMessage.PRESENTATION_TOKEN_RESPONSE) < kinds.index(
            SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER)
        # a re-sent request from the holder is acknowledged at once
        again = floor.on_message(request, clock())
        assert [m.acknowledge for m in again] == [True]

        # 3. Now the city's own site is refused (the token is the root's, held in the county)
        skew[0] += 2
        assert not city.request_floor("city-main").granted
        assert city.token.holder == "luoding/room"

        # 4. The city's chair takes the token: the room is told presentationTokenRelease
        sent.clear()
        city.take("lead")
        await until(lambda: county.holder == "chair:lead", 2, "the county learnt the chair took it")
        assert [m.kind for m in sent if m.kind is SubMessage.PRESENTATION_TOKEN_RELEASE] == [
            SubMessage.PRESENTATION_TOKEN_RELEASE]
        assert not county.holds("room")
        city.revoke()
        await until(lambda: county.holder is None, 2, "the county learnt the chair let it go")

        # 5. The room gets it again and gives it back itself: released at the root, and no
        #    presentationTokenRelease is sent to it (it said so itself)
        skew[0] += 2
        floor.on_message(request, clock())
        await until(lambda: city.token.holder == "luoding/room" and county.holds("room"), 3, "granted again")
        sent.clear()
        assert floor.on_message(H239Message(SubMessage.PRESENTATION_TOKEN_RELEASE, channel_id=5,
                                            terminal_label=0x0102), clock()) == []
        await until(lambda: city.token.holder is None and county.holder is None, 2, "the release reached the root")
        assert not any(m.kind is SubMessage.PRESENTATION_TOKEN_RELEASE for m in sent)

        # 6. Under the city's "chair" policy the room is rejected (awaiting_chair), its request queued at
        #    the city, whose chair grants it: the county's room holds the token, and is told who owns it
        city.set_policy("chair")
        skew[0] += 2
        sent.clear()
        assert floor.on_message(request, clock()) == []
        await until(lambda: bool(responses()), 3, "the answer under the chair policy")
        assert responses()[0].acknowledge is False and floor.last_refusal == "awaiting_chair"
        assert [who for who, _ in city.token.requests] == ["luoding/room"]
        sent.clear()
        city.grant("luoding/room")
        await until(lambda: county.holds("room"), 3, "the chair's grant reached the county")
        assert city.token.holder == "luoding/room" and city.token.requests == []
        owners = [m for m in sent if m.kind is SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER]
        assert [m.terminal_label for m in owners] == [floor.labels.label("room")]
        city.revoke()
        city.set_policy("free")
        await until(lambda: county.holder is None, 2, "the county learnt the chair revoked it")

        # 7. The parent link is down: a request is refused at once with the protocol's reject
        lower.driver.parent_lost()
        skew[0] += 2
        sent.clear()
        assert floor.on_message(request, clock()) == []
        await until(lambda: bool(responses()), 2, "the answer without a parent")
        assert responses()[0].acknowledge is False and floor.last_refusal == "unreachable"
    finally:
        await lower.stop()
        await root.stop()
        await county.close()
        await city.close()
