"""Rate policing of an H.239 presenter's content channel (pure rule, time as an argument) and the
content budget we send within (issue 18); one integration test: a room system that opens its
content channel at a tiny maxBitRate and sends far above it is told with flowControlCommand on that
channel, then its excess frames are not passed on."""
from __future__ import annotations

import asyncio
import itertools

from core.runtime import CoreServices
from mcu.legs.h323_content import GRACE_S, RETELL_S, SUSTAIN_S, ContentRatePolice, PoliceVerdict
from mcu.legs.h323_content_media import content_budget, content_size
from sip_gateway.h323.capabilities import Codec, MediaFormat
from sip_gateway.h323.events import FlowControlRequested, MediaAddress
from sip_gateway.h323.h239 import H239Message, SubMessage
from tests.mcu.h239_kit import H239Terminal, start_content_mcu, stop_content_mcu
from tests.sip_gateway.h323.h323_conference_kit import free_port

MAX_BPS = 256_000  # the channel's maxBitRate


def feed(police: ContentRatePolice, start: float, seconds: float, bps: float, octets: int,
         step: float = 0.1) -> tuple[int, list[tuple[float, PoliceVerdict]]]:
    """Send at ``bps`` for ``seconds`` in steps of ``step``, a frame each step; returns the octet
    counter and the verdicts with their times."""
    out = []
    n = round(seconds / step)
    for i in range(1, n + 1):
        now = start + i * step
        octets += round(bps * step / 8)
        out.append((now, police.sample(octets, now, frame=True)))
    return octets, out


def test_within_and_slightly_above_the_rate_is_left_alone() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(0, 0.0)
    octets, verdicts = feed(police, 0.0, 10.0, MAX_BPS * 1.4, 0)
    assert not any(v.tell or v.drop for _, v in verdicts)
    assert police.told == 0 and police.dropped == 0


def test_sustained_excess_is_told_then_dropped_beyond_the_rate_until_it_slows() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(0, 0.0)
    octets, verdicts = feed(police, 0.0, 8.0, MAX_BPS * 3, 0)
    told = [t for t, v in verdicts if v.tell]
    # The first over window is [0, 1); the run has lasted SUSTAIN_S at the close of [1, 2).
    assert len(told) == 1 and SUSTAIN_S - 0.01 <= told[0] <= SUSTAIN_S + 0.11
    drops = [t for t, v in verdicts if v.drop]
    assert drops and min(drops) >= told[0] + GRACE_S
    # In a dropping second, the frames within the channel's rate (1/3 of them at 3x) still pass.
    second = [v.drop for t, v in verdicts if 6.0 < t <= 7.0]
    assert 0 < second.count(False) <= 4 and second.count(True) >= 6
    assert police.dropped == len(drops)
    # The presenter slows to its rate: the next closed window ends the run, nothing is dropped.
    octets, verdicts = feed(police, 8.0, 3.0, MAX_BPS * 0.9, octets)
    assert not any(v.drop for t, v in verdicts if t > 9.05) and not any(v.tell for _, v in verdicts)


def test_the_command_is_repeated_only_every_retell_interval_and_for_a_new_run() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(0, 0.0)
    octets, verdicts = feed(police, 0.0, RETELL_S + 5, MAX_BPS * 2, 0)
    told = [t for t, v in verdicts if v.tell]
    assert len(told) == 2 and told[1] - told[0] >= RETELL_S
    octets, _ = feed(police, RETELL_S + 5, 2.0, 0, octets)  # a pause ends the run
    octets, verdicts = feed(police, RETELL_S + 7, 4.0, MAX_BPS * 2, octets)
    assert sum(v.tell for _, v in verdicts) == 1  # a new run is told again


def test_counter_reset_and_no_rate_police_nothing() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(1_000_000, 0.0)
    assert police.sample(10, 0.5) == PoliceVerdict()  # a restarted stream: a new window, no huge rate
    assert police.sample(20, 1.6) == PoliceVerdict() and police.over_since is None
    unlimited = ContentRatePolice(0)
    _, verdicts = feed(unlimited, 0.0, 6.0, 10_000_000, 0)
    assert not any(v.tell or v.drop for _, v in verdicts)


def test_content_budget_is_the_channel_max_bitrate_and_picks_the_encoder_size() -> None:
    budget = content_budget(MediaFormat(Codec.H264, max_bitrate=19200, h264_level=85))  # 1.92 Mbit/s
    assert 1900 <= budget.video_kbps() <= 1920
    assert content_size("h264", (1920, 1080), budget.video_kbps()) == (1920, 1080)  # 1.2 Mbit/s encoder fits
    budget.on_h245_flow_control(768)  # the terminal's flowControlCommand on the channel
    assert 760 <= budget.video_kbps() <= 768
    assert content_size("h264", (1920, 1080), budget.video_kbps()) == (640, 360)
    assert content_size("h264", (1280, 720), 100) == (352, 288)  # nothing fits: the smallest, paced
    small = content_budget(MediaFormat(Codec.H261, max_bitrate=1280, mpi=(("cifMPI", 1),)))
    assert 120 <= small.video_kbps() <= 128
    assert content_size("h261", (352, 288), small.video_kbps()) == (352, 288)


async def test_presenter_far_above_its_channel_rate_is_told_then_dropped(services: CoreServices) -> None:
    port = free_port()
    mcu = await start_content_mcu(services, port)
    conf = mcu.conferences.running("80000001")
    assert conf is not None
    room = H239Terminal(alias="room-a", name="甲会议室")
    try:
        await room.dial(MediaAddress("127.0.0.1", port), "80000001")
        async with asyncio.timeout(20):
            for _ in itertools.count():
                if mcu.bridge.sites and all(s.content_link is not None for s in mcu.bridge.sites):
                    break
                await asyncio.sleep(0.05)
        link = next(iter(mcu.bridge.sites)).content_link
        assert link is not None and room.handle is not None
        room.handle.send_h239(H239Message(SubMessage.PRESENTATION_TOKEN_REQUEST, channel_id=0, terminal_label=0,
                                          symmetry_breaking=9))
        await room.until(lambda: room.h239_messages(), 10)
        # maxBitRate 1 (100 bit/s): every second of a 704x576 picture is far above it.
        room.present((30, 40, 210), fmt=MediaFormat(Codec.H264, max_bitrate=1, h264_level=85))
        await room.until(lambda: room.media is not None and room.media.outgoing_content is not None, 10)
        assert room.media is not None and room.media.outgoing_content is not None
        number = room.media.outgoing_content.number

        def told() -> list[FlowControlRequested]:  # the people-video channel gets its own commands
            return [e for e in room.of(FlowControlRequested) if isinstance(e, FlowControlRequested) and e.channel == number]

        await room.until(lambda: told(), 20)
        assert told()[0].bitrate_bps == 100
        police = link.police
        assert police is not None and police.told == 1
        await room.until(lambda: police.dropped >= 3, 20)
        assert link.frames_in > police.dropped  # frames before the grace ran out were passed on
    finally:
        await room.close()
        await stop_content_mcu(mcu)
