"""H.239 content out to a room system that takes H.261 only as content (issue 18).

Real H.225/H.245 over TCP and RTP over UDP on 127.0.0.1: room A presents a blue picture (H.264 on
its extended video channel); room B announced H.239 with H.261 (QCIF/CIF) as its only
presentation codec. The MCU opens B's content channel with H.261 at CIF (RTP payload type 31,
RFC 4587) from the room's shared H.261 content encoder; B depacketises and decodes it with
libavcodec (PyAV) and sees the blue slide at 352x288. A second H.261-only room shares that encoder.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from core.runtime import CoreServices
from mcu.legs.h323_content_media import content_send_format
from mcu.room import CONTENT_VIEW
from sip_gateway.h323.capabilities import Codec, MediaFormat
from sip_gateway.h323.events import MediaAddress
from sip_gateway.h323.h239 import H239Message, SubMessage
from tests.mcu.h239_kit import H239Terminal, close_to, mean_rgb, start_content_mcu, stop_content_mcu
from tests.sip_gateway.h323.h323_conference_kit import free_port

CONFERENCE = "80000001"
BLUE = (30, 40, 210)
REQUEST = H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=0, terminal_label=0, symmetry_breaking=9)
H261_CONTENT = (MediaFormat(Codec.H261, max_bitrate=3840, mpi=(("qcifMPI", 1), ("cifMPI", 2))),)


async def eventually(predicate: Callable[[], object], seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(0.05)


def test_content_format_falls_back_to_h261_at_cif() -> None:
    chosen = content_send_format(list(H261_CONTENT))
    assert chosen is not None
    fmt, codec, size, single_nal = chosen
    assert (fmt.codec, fmt.mpi, fmt.max_bitrate, codec, size, single_nal) == (
        Codec.H261, (("cifMPI", 2),), 3840, "h261", (352, 288), False)
    # QCIF only: no shared QCIF encoder, no content channel.
    assert content_send_format([MediaFormat(Codec.H261, max_bitrate=640, mpi=(("qcifMPI", 1),))]) is None
    # H.263 (CIF) still wins over H.261.
    h263 = MediaFormat(Codec.H263, max_bitrate=3840, mpi=(("cifMPI", 1),))
    chosen = content_send_format([*H261_CONTENT, h263])
    assert chosen is not None and chosen[1] == "h263"


async def test_h261_only_room_gets_content_from_shared_h261_encoder(services: CoreServices) -> None:
    port = free_port()
    mcu = await start_content_mcu(services, port)
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    room_a = H239Terminal(alias="room-a", name="甲会议室")
    rooms_h261 = [H239Terminal(alias=f"room-{n}", name=f"{n}会议室", content_formats=H261_CONTENT) for n in "bc"]
    try:
        for n, room in enumerate((room_a, *rooms_h261)):
            await room.dial(MediaAddress("127.0.0.1", port), CONFERENCE)
            await eventually(lambda: len(conf.room.participants) == n + 1, 20)  # noqa: B023 - awaited here
        await eventually(lambda: len(mcu.bridge.sites) == 3
                         and all(s.content_link is not None for s in mcu.bridge.sites), 10)
        content = mcu.content.of(conf)
        assert room_a.handle is not None
        room_a.handle.send_h239(REQUEST)
        await room_a.until(lambda: room_a.h239_messages(), 10)
        assert room_a.h239_messages()[0].acknowledge is True
        room_a.present(BLUE)

        for room in rooms_h261:
            await room.until(lambda: len(room.content_frames) > 3, 25)  # noqa: B023 - awaited here
            assert room.media is not None and room.media.incoming_content is not None
            channel = room.media.incoming_content
            assert channel.content and channel.format.codec is Codec.H261 and channel.payload_type == 31
            assert dict(channel.format.mpi) == {"cifMPI": 2}
            last = room.content_frames[-1]
            assert (last.width, last.height) == (352, 288)
            assert close_to(mean_rgb(last), BLUE), mean_rgb(last)
        # Our content channel is paced within its maxBitRate (384 kbit/s).
        for site in mcu.bridge.sites:
            if site.content_link is not None and site.content_link.subscription is not None:
                assert site.content_link.send_rate is not None
                assert 370 <= site.content_link.send_rate.video_kbps() <= 384
                assert site.media.content is not None and site.media.content.send_budget is site.content_link.send_rate
        # One shared H.261 content encoder for both rooms.
        keys = [k for k in conf.room._encoders if k.view_id == CONTENT_VIEW and k.codec == "h261"]
        assert len(keys) == 1 and (keys[0].width, keys[0].height) == (352, 288)
        assert len(conf.room._encoders[keys[0]].subscribers) == 2
        assert content.token.holder is not None
    finally:
        for room in (room_a, *rooms_h261):
            await room.close()
        await stop_content_mcu(mcu)
