"""Hidden sources are not decoded; shown again, their first frame is composed within 1 s.

A real RTP media leg (our SIP/H.323 media path: H.264 over RTP on 127.0.0.1, decoded with
PyAV) feeds a site of a running conference (embedded PostgreSQL). The endpoint is another
media leg that encodes with libx264 and answers key-frame requests with an IDR, as room
systems do.
"""
from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
import pytest

from mcu.conferences import ConferenceService
from mcu.legs.site_media import SiteMedia
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.rtp.media_description import MediaPolicy
from sip_gateway.sip.sdp import SessionDescription, answer, create_offer, streams_from_answer

DEMO = "80000001"


class Endpoint:
    """The far end's sink: counts the MCU's key-frame requests."""

    def __init__(self) -> None:
        self.keyframe_requests = 0

    def on_audio(self, leg: MediaLeg, pcm: np.ndarray) -> None:
        pass

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        pass

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        pass

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        self.keyframe_requests += 1


def picture(i: int) -> av.VideoFrame:
    img = np.zeros((360, 640, 3), dtype=np.uint8)
    img[:, :, 1] = 180
    img[(i * 4) % 360, :] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts = i
    frame.time_base = fractions.Fraction(1, 25)
    return frame


async def test_hidden_source_is_not_decoded_and_shown_again_within_a_second(conferences: ConferenceService) -> None:
    conf = conferences.running(DEMO)
    assert conf is not None
    far = Endpoint()
    policy = MediaPolicy(audio_codecs=("PCMU",), video_codecs=("H264",))
    endpoint = await MediaLeg.allocate("127.0.0.1", video=True, sink=far)
    mcu_leg = await MediaLeg.allocate("127.0.0.1", video=True)
    offer = create_offer(policy, endpoint.local_media)
    reply, mcu_streams = answer(SessionDescription.parse(offer.serialize()), policy, mcu_leg.local_media)
    endpoint.start(streams_from_answer(offer, SessionDescription.parse(reply.serialize())))
    mcu_leg.start(mcu_streams)
    site = await SiteMedia.join(conf, "county", "县会场", "sip", mcu_leg, video=None, stats_interval=0)
    mcu_leg.sink = site
    await conf.join("other", "乡镇", "sip")
    stop = asyncio.Event()
    served = 0

    async def send() -> None:
        nonlocal served
        i = 0
        while not stop.is_set():
            key = i == 0 or far.keyframe_requests > served
            served = far.keyframe_requests
            await endpoint.send_video(picture(i), keyframe=key)
            i += 1
            await asyncio.sleep(0.04)

    sender = asyncio.create_task(send())
    try:
        await asyncio.sleep(1.0)
        assert site.decode_mode == "full" and site.counters.video_frames_in > 5  # shown in the 2-pane layout

        conf.room.broadcast("other")  # the county is now shown in no view
        for _ in range(100):  # the layout settles (2 s) before a source counts as hidden
            if site.decode_mode == "off":
                break
            await asyncio.sleep(0.05)
        assert site.decode_mode == "off"
        await asyncio.sleep(0.2)  # frames already in the decoder's queue
        decoded, skipped = site.counters.video_frames_in, mcu_leg.video_frames_skipped
        await asyncio.sleep(1.0)
        assert site.counters.video_frames_in == decoded  # not one frame decoded while hidden
        assert mcu_leg.video_frames_skipped >= skipped + 15  # ~25 arrived and were skipped
        assert site.statistics()["video_frames_skipped"] == mcu_leg.video_frames_skipped
        requests_before = far.keyframe_requests

        conf.room.broadcast(None)  # shown again
        shown_at = time.monotonic()
        seq_before = conf.room.participants["county"].video
        first: float | None = None
        while time.monotonic() - shown_at < 3:
            plan = conf.room.view_plan("broadcast")
            pane = next(p for p in plan.panes if p.participant_id == "county")
            if pane.sample is not None and pane.sample is not seq_before and pane.sample.arrival > shown_at:
                first = time.monotonic() - shown_at
                break
            await asyncio.sleep(0.02)
        assert first is not None and first < 1.0, f"first frame after being shown: {first}"
        assert far.keyframe_requests > requests_before  # the MCU asked for a key frame
        assert site.decode_mode == "full"
    finally:
        stop.set()
        await sender
        await site.close()
        await endpoint.close()
        await mcu_leg.close()


def _access_units(count: int, key_every: int) -> list[bytes]:
    enc = av.CodecContext.create("libx264", "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt = 640, 360, "yuv420p"
    enc.time_base = fractions.Fraction(1, 25)
    enc.gop_size = key_every
    enc.options = {"tune": "zerolatency", "preset": "ultrafast", "x264-params": f"keyint={key_every}:scenecut=0:bframes=0"}
    out = []
    for i in range(count):
        frame = picture(i).reformat(format="yuv420p")
        out += [bytes(p) for p in enc.encode(frame)]
    out += [bytes(p) for p in enc.encode(None)]
    return out


def test_decoder_modes_skip_and_resync_on_the_next_key_frame() -> None:
    from sip_gateway.rtp.codecs import VideoDecoder
    from sip_gateway.rtp.media_description import Codec

    units = _access_units(30, key_every=10)  # IDRs at 0, 10, 20
    dec = VideoDecoder(Codec("H264", 96, 90_000))
    assert sum(len(dec.decode(u, 0)) for u in units[:5]) == 5
    dec.set_mode("off")
    assert [dec.decode(u, 0) for u in units[5:8]] == [[], [], []] and dec.frames_skipped == 3
    dec.set_mode("fast")  # a new context without the deblocking filter: waits for the IDR at 10
    got = [len(dec.decode(u, 0)) for u in units[8:15]]
    assert got == [0, 0, 1, 1, 1, 1, 1] and dec.frames_skipped == 5
    dec.set_mode("full")
    assert sum(len(dec.decode(u, 0)) for u in units[15:30]) == 10  # resumed at the IDR at 20
    with pytest.raises(ValueError):
        dec.set_mode("sideways")
