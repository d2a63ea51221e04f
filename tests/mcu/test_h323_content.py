"""H.239 token dialogue of an H.323 site against the real content token (mcu.content.token)."""
from __future__ import annotations

from mcu.content.token import ContentToken
from mcu.legs.h323_content import H239Floor, TerminalLabels
from sip_gateway.h323.h239 import H239Message, SubMessage, decode_message, encode_message

REQUEST = H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=7, terminal_label=0, symmetry_breaking=5)


def _wire(message: H239Message) -> H239Message:
    """Through the H.245 codec, as it travels."""
    decoded = decode_message(encode_message(message))
    assert decoded is not None
    return decoded


def test_first_presenter_is_acknowledged_second_rejected_release_frees() -> None:
    token = ContentToken()
    room_a = H239Floor("site-a", token, content_channel=7)
    room_b = H239Floor("site-b", token, content_channel=9)
    [answer] = room_a.on_message(_wire(REQUEST), 0.0)
    assert _wire(answer) == H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=7, terminal_label=0,
                                        acknowledge=True)
    assert token.holder == "site-a"
    [answer_b] = room_b.on_message(_wire(REQUEST), 1.0)
    assert answer_b.acknowledge is False and room_b.last_refusal == "busy"
    assert token.holder == "site-a"  # the refusal changed nothing
    room_b.on_message(H239Message(SubMessage.PRESENTATION_TOKEN_RELEASE, channel_id=9, terminal_label=0), 1.5)
    assert token.holder == "site-a"  # a non-holder's release changes nothing
    release = H239Message(SubMessage.PRESENTATION_TOKEN_RELEASE, channel_id=7, terminal_label=0)
    assert room_a.on_message(_wire(release), 2.0) == []
    assert token.holder is None
    [again] = room_b.on_message(_wire(REQUEST), 3.0)
    assert again.acknowledge is True and token.holder == "site-b"


def test_chair_revoke_and_timeout_send_release_to_the_holder_only() -> None:
    token = ContentToken(start_timeout=10.0)
    room_a = H239Floor("site-a", token, content_channel=7)
    room_b = H239Floor("site-b", token)
    room_a.on_message(REQUEST, 0.0)
    events = token.revoke(1.0).events
    sent = [m for e in events for m in room_a.on_token_event(e)]
    assert sent == [H239Message(SubMessage.PRESENTATION_TOKEN_RELEASE, channel_id=7, terminal_label=0)]
    assert [m for e in events for m in room_b.on_token_event(e)] == []
    # The site's own release gets no release back.
    room_a.on_message(REQUEST, 2.0)
    own = token.release("site-a", 3.0).events
    assert [m for e in own for m in room_a.on_token_event(e)] == []
    # A granted presenter that never sends content loses the token at start_timeout.
    room_a.on_message(REQUEST, 4.0)
    timed_out = token.tick(20.0).events
    assert [m.kind for e in timed_out for m in room_a.on_token_event(e)] == [SubMessage.PRESENTATION_TOKEN_RELEASE]


def test_chair_policy_rejects_until_granted_and_flow_control_is_acknowledged() -> None:
    token = ContentToken(policy="chair")
    room = H239Floor("site-a", token, content_channel=7)
    [answer] = room.on_message(REQUEST, 0.0)
    assert answer.acknowledge is False and room.last_refusal == "awaiting_chair"
    assert token.requests and token.requests[0][0] == "site-a"
    [flow] = room.on_message(H239Message(SubMessage.FLOW_CONTROL_RELEASE_REQUEST, channel_id=7, bit_rate=5000), 1.0)
    assert flow.kind is SubMessage.FLOW_CONTROL_RELEASE_RESPONSE and flow.acknowledge is True
    assert room.on_message(H239Message(SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER, channel_id=7), 1.0) == []


async def test_two_room_systems_over_tcp_token_request_acknowledge_reject_release() -> None:
    """Our own H.323 terminal twice, dialling the MCU endpoint over TCP: both announce H.239; the
    first opens its content channel and asks for the token (acknowledge), the second is refused
    (reject), the first releases and the second gets it."""
    import asyncio

    from sip_gateway.aio.h323_endpoint import CallHandle, H323Endpoint
    from sip_gateway.h323.call import EndpointConfig
    from sip_gateway.h323.capabilities import Codec, MediaFormat
    from sip_gateway.h323.events import CallIncoming, ChannelOpened, MasterSlaveDetermined, MediaAddress
    from sip_gateway.h323.h239 import H239MessageReceived
    from tests.conftest import free_port
    from tests.sip_gateway.h323.test_h323_loopback import Collector

    content = (MediaFormat(Codec.H264, max_bitrate=20000, h264_profile=64, h264_level=71),)
    incoming: asyncio.Queue[CallHandle] = asyncio.Queue()
    mcu = H323Endpoint(EndpointConfig(h323_id="mcu", content_formats=content), on_incoming=incoming.put_nowait)
    rooms = [H323Endpoint(EndpointConfig(h323_id=f"room-{i}", is_mcu=False, content_formats=content))
             for i in (1, 2)]
    port = free_port()
    await mcu.listen("127.0.0.1", port)
    token = ContentToken()
    collectors: list[Collector] = []
    try:
        pairs = []
        for i, room in enumerate(rooms):
            caller = Collector(await room.dial(MediaAddress("127.0.0.1", port), "80000001"))
            callee = Collector(await asyncio.wait_for(incoming.get(), 5))
            collectors += [caller, callee]
            await callee.until(CallIncoming)
            callee.handle.alert()
            await callee.handle.answer()
            for side in (caller, callee):
                await side.until(MasterSlaveDetermined)
                await side.until(ChannelOpened, 4)
            assert caller.handle.call.h245 is not None and caller.handle.call.h245.remote_h239
            assert callee.handle.call.h245 is not None and callee.handle.call.h245.remote_h239
            pairs.append((caller, callee, H239Floor(f"site-{i}", token)))

        async def ask(caller: Collector, callee: Collector, floor: H239Floor, n: int) -> H239Message:
            """The room asks for the token; the MCU side answers through H239Floor."""
            caller.handle.send_h239(REQUEST)
            await callee.until(H239MessageReceived, n)
            received = callee.of(H239MessageReceived)[-1]
            assert isinstance(received, H239MessageReceived)
            for reply in floor.on_message(received.message, 0.0):
                callee.handle.send_h239(reply)
            await caller.until(H239MessageReceived, n)
            answer = caller.of(H239MessageReceived)[-1]
            assert isinstance(answer, H239MessageReceived)
            return answer.message

        (caller1, callee1, floor1), (caller2, callee2, floor2) = pairs
        caller1.handle.open_content_channel(content[0])
        await callee1.until(ChannelOpened, 5)
        opened = [e.channel for e in callee1.of(ChannelOpened) if isinstance(e, ChannelOpened) and e.channel.content]
        assert len(opened) == 1 and opened[0].session_id == 3 and not opened[0].outgoing
        floor1.content_channel = opened[0].number
        assert (await ask(caller1, callee1, floor1, 1)).acknowledge is True
        assert token.holder == "site-0"
        assert (await ask(caller2, callee2, floor2, 1)).acknowledge is False
        assert token.holder == "site-0" and floor2.last_refusal == "busy"
        caller1.handle.send_h239(H239Message(SubMessage.PRESENTATION_TOKEN_RELEASE, channel_id=floor1.content_channel,
                                             terminal_label=0))
        await callee1.until(H239MessageReceived, 2)
        released = callee1.of(H239MessageReceived)[-1]
        assert isinstance(released, H239MessageReceived)
        floor1.on_message(released.message, 1.0)
        assert token.holder is None
        assert (await ask(caller2, callee2, floor2, 2)).acknowledge is True
        assert token.holder == "site-1"
    finally:
        for collector in collectors:
            collector.stop()
        for room in rooms:
            await room.close()
        await mcu.close()


def test_new_owner_is_indicated_to_every_site_once() -> None:
    """H.239 §7: presentationTokenIndicateOwner to all sites when the token changes owner, with the
    owner's H.243-style terminal label (MCU 1, terminal n; the chair's deck is the MCU, terminal 0)."""
    token = ContentToken()
    labels = TerminalLabels()
    room_a = H239Floor("site-a", token, content_channel=7, labels=labels, outgoing_channel=lambda: None)
    room_b = H239Floor("site-b", token, labels=labels, outgoing_channel=lambda: 4)
    granted = token.request("site-a", 0.0).events
    to_a = [m for e in granted for m in room_a.on_token_event(e)]
    to_b = [m for e in granted for m in room_b.on_token_event(e)]
    assert to_a == [H239Message(SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER, channel_id=0, terminal_label=0x101)]
    assert to_b == [H239Message(SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER, channel_id=4, terminal_label=0x101)]
    assert _wire(to_b[0]) == to_b[0]  # a genericIndication through the H.245 codec
    assert [m for e in granted for m in room_b.on_token_event(e)] == []  # the same owner: not again
    taken = token.take("chair:lead", 1.0).events
    to_a = [m for e in taken for m in room_a.on_token_event(e)]
    assert [m.kind for m in to_a] == [SubMessage.PRESENTATION_TOKEN_RELEASE, SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER]
    assert to_a[1].terminal_label == 0x100
    [to_b_chair] = [m for e in taken for m in room_b.on_token_event(e)]
    assert to_b_chair.terminal_label == 0x100
    given = token.revoke(2.0).events + token.request("site-b", 3.0).events
    assert [m.terminal_label for e in given for m in room_a.on_token_event(e)] == [0x102]
