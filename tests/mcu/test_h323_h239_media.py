"""H.239 media through the H.323 leg, between two of our own H.323 room systems and the MCU.

Real H.225/H.245 over TCP and RTP over UDP on 127.0.0.1: room A asks for the presentation token,
opens its extended video channel (session 3, the MCU's port from the one port manager) and sends
a blue picture; the conference's content source shows it, the broadcast view (what single-stream
receivers get) carries it, and room B, which announced H.239, gets the MCU's own content channel
from the shared content encoder and decodes blue. Room B asking for the token meanwhile is
refused with presentationTokenResponse reject. When A's stream stops, the token is released after
the media timeout, A is told (presentationTokenRelease) and B's content channel is closed; B then
gets the token, and the chair's revoke sends it presentationTokenRelease.
(The same with H323Plus as the room system: tests/sip_gateway/h323/test_h323_h239_h323plus.py.)
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import av

from core.runtime import CoreServices
from mcu.room import BROADCAST
from sip_gateway.h323.events import MediaAddress
from sip_gateway.h323.h239 import H239Message, SubMessage
from sip_gateway.rtp.codecs import VideoDecoder
from sip_gateway.rtp.media_description import Codec as SdpCodec
from tests.mcu.h239_kit import H239Terminal, close_to, mean_rgb, start_content_mcu, stop_content_mcu
from tests.sip_gateway.h323.h323_conference_kit import OtherSite, free_port

CONFERENCE = "80000001"
BLUE = (30, 40, 210)
REQUEST = H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=0, terminal_label=0, symmetry_breaking=9)


async def eventually(predicate: Callable[[], object], seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(0.05)


async def test_h239_content_in_and_out_second_presenter_refused_stream_timeout(services: CoreServices) -> None:
    port = free_port()
    mcu = await start_content_mcu(services, port)
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    other = await OtherSite.join(conf)
    room_a = H239Terminal(alias="room-a", name="甲会议室")
    room_b = H239Terminal(alias="room-b", name="乙会议室")
    broadcast: list[bytes] = []
    sub = conf.room.subscribe_view(BROADCAST, lambda p: broadcast.append(p.data), "h264", 640, 360)
    try:
        joined: list[str] = []
        for room in (room_a, room_b):
            await room.dial(MediaAddress("127.0.0.1", port), CONFERENCE)
            wanted = 2 + len(joined)
            await eventually(lambda: len(conf.room.participants) == wanted, 20)  # noqa: B023 - awaited here
            joined += [p for p in conf.room.participants if p not in joined and p != "city-main"]
        site_a, site_b = joined
        content = mcu.content.of(conf)
        content.token.media_timeout = 2.0
        h323_sites = {s.site_id: s for s in mcu.bridge.sites}
        await eventually(lambda: all(s.content_link is not None for s in h323_sites.values()), 10)
        # Every call got its session-3 pair from the one port manager.
        for site in h323_sites.values():
            assert site.media.content is not None and site.media.content.video is not None
            assert site.handle.call.media_ports[3] == site.media.content.video.port

        # Room A asks for the token and is granted it; then it opens its content channel.
        assert room_a.handle is not None and room_b.handle is not None
        room_a.handle.send_h239(REQUEST)
        await room_a.until(lambda: room_a.h239_messages(), 10)
        assert room_a.h239_messages()[0] == H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=0,
                                                        terminal_label=0, acknowledge=True)
        assert content.token.holder == site_a
        room_a.present(BLUE)
        await eventually(lambda: content.source.sample() is not None, 15)
        sample = content.source.sample()
        assert sample is not None
        assert close_to(mean_rgb(sample.frame), BLUE), mean_rgb(sample.frame)
        assert h323_sites[site_a].media.incoming_content is not None

        # Room B meanwhile: refused, nothing changes.
        room_b.handle.send_h239(REQUEST)
        await room_b.until(lambda: any(m.kind is SubMessage.PRESENTATION_TOKEN_RESPONSE for m in room_b.h239_messages()), 10)
        refusal = next(m for m in room_b.h239_messages() if m.kind is SubMessage.PRESENTATION_TOKEN_RESPONSE)
        assert refusal.acknowledge is False
        assert content.token.holder == site_a and content.source.presenter == site_a
        # Both rooms were told A owns the token (H.239 §7 presentationTokenIndicateOwner), A after its answer.
        owner = [m for m in room_b.h239_messages() if m.kind is SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER]
        assert len(owner) == 1 and owner[0].terminal_label is not None and owner[0].terminal_label >> 8 == 1
        assert [m.kind for m in room_a.h239_messages()][:2] == [SubMessage.PRESENTATION_TOKEN_RESPONSE,
                                                                SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER]
        assert room_a.h239_messages()[1].terminal_label == owner[0].terminal_label

        # Room B gets the content on the MCU's extended video channel and decodes blue.
        await room_b.until(lambda: len(room_b.content_frames) > 3, 20)
        assert room_b.media is not None and room_b.media.incoming_content is not None
        assert room_b.media.incoming_content.content and room_b.media.incoming_content.session_id == 3
        last = room_b.content_frames[-1]
        assert close_to(mean_rgb(last), BLUE), mean_rgb(last)
        assert site_b in conf.room.content_receivers
        # Room A (the presenter) is not sent its own content.
        assert room_a.media is not None and room_a.media.incoming_content is None

        # Single-stream receivers: the broadcast view shows the content (content+speakers: on top).
        seen = len(broadcast)
        await eventually(lambda: len(broadcast) > seen + 5, 10)  # decoded from the first (key) frame on
        decoder = VideoDecoder(SdpCodec("H264", 96, 90000))
        frames: list[av.VideoFrame] = [f for i, data in enumerate(broadcast) for f in decoder.decode(data, i * 9000)]
        assert frames and close_to(mean_rgb(frames[-1], (0.3, 0.1, 0.7, 0.5)), BLUE), mean_rgb(frames[-1])

        # Room A's stream stops: after the media timeout the token is released, A is told, B's channel closes.
        await room_a.stop_presenting()
        await room_a.until(lambda: any(m.kind is SubMessage.PRESENTATION_TOKEN_RELEASE for m in room_a.h239_messages()),
                           15)
        assert content.token.holder is None
        await room_b.until(lambda: room_b.media is not None and room_b.media.incoming_content is None, 10)
        assert site_b not in conf.room.content_receivers

        # Room B may now present; the chair revokes its token: B is sent presentationTokenRelease.
        await asyncio.sleep(1.1)  # one share request per second and site
        before = len(room_b.h239_messages())
        room_b.handle.send_h239(REQUEST)
        await room_b.until(lambda: any(m.kind is SubMessage.PRESENTATION_TOKEN_RESPONSE
                                       for m in room_b.h239_messages()[before:]), 10)
        answer = next(m for m in room_b.h239_messages()[before:] if m.kind is SubMessage.PRESENTATION_TOKEN_RESPONSE)
        assert answer.acknowledge is True and content.token.holder == site_b
        await room_a.until(lambda: room_a.h239_messages()[-1].kind is SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER, 10)
        assert room_a.h239_messages()[-1].terminal_label not in (None, owner[0].terminal_label)  # B's label
        content.revoke()
        await room_b.until(lambda: room_b.h239_messages()[-1].kind is SubMessage.PRESENTATION_TOKEN_RELEASE, 10)
        assert content.token.holder is None
    finally:
        sub.close()
        other.stop()
        for room in (room_a, room_b):
            await room.close()
        await stop_content_mcu(mcu)
