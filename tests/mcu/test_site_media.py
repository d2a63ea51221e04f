"""SiteMedia: the protocol-neutral glue between an RTP leg and a conference participant.

Runs on a real ConferenceService (embedded PostgreSQL) and its MediaRunner; the "leg" here is
a small recorder that decodes what the shared encoder sends it with PyAV, so the SIP and H.323
legs' own code is not needed to check the glue.
"""
from __future__ import annotations

import asyncio

import av
import numpy as np

from mcu.conferences import ConferenceService
from mcu.legs.site_media import SiteMedia, VideoFormat, size_for_h264_level
from mcu.legs.site_rate import SiteRate
from mcu.legs.tier_seat import FixedBudget
from sip_gateway.rtp.session import ReceptionReport

DEMO = "80000001"


class RecordingLeg:
    """Keeps the mixes it is sent and decodes the access units (Annex B H.264)."""

    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.decoder = av.CodecContext.create("h264", "r")
        self.frames: list[tuple[int, int]] = []
        self.keyframe_requests = 0
        self.access_units = 0
        self.timestamps: list[int] = []

    def send_audio(self, pcm: np.ndarray) -> None:
        self.audio.append(pcm.copy())

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        self.access_units += 1
        self.timestamps.append(timestamp_90k)
        for packet in self.decoder.parse(access_unit):
            for frame in self.decoder.decode(packet):
                self.frames.append((frame.width, frame.height))

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


def tone(hz: float, i: int) -> np.ndarray:
    t = (np.arange(960) + i * 960) / 48_000
    return (6000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def peak(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / 48_000)[int(np.argmax(spectrum))])


def test_size_for_h264_level() -> None:
    assert size_for_h264_level("42e01f") == (1280, 720)
    assert size_for_h264_level("42e01e") == (640, 360)
    assert size_for_h264_level("42e016") == (640, 360)
    assert size_for_h264_level("42e00d") == (352, 288)
    assert size_for_h264_level(None) == (352, 288)
    assert size_for_h264_level("zz") == (352, 288)
    assert size_for_h264_level("42e01f", (640, 360)) == (640, 360)
    assert size_for_h264_level("42e01f", (352, 288)) == (352, 288)


async def test_site_media_in_a_running_conference(conferences: ConferenceService) -> None:
    conf = conferences.running(DEMO)
    assert conf is not None
    video_leg, phone_leg = RecordingLeg(), RecordingLeg()
    room_system = await SiteMedia.join(conf, "room-system", "县会议室", "sip", video_leg,
                                       video=VideoFormat("h264", 352, 288, single_nal=True), stats_interval=0.5,
                                       leg_statistics=lambda: [{"kind": "audio", "codec": "PCMU", "resolution": None}])
    phone = await SiteMedia.join(conf, "phone", "值班电话", "sip", phone_leg, video=None, stats_interval=0)
    assert conf.runner.audio_sinks == [room_system, phone]  # one timer for the conference
    assert video_leg.keyframe_requests == 1 and phone_leg.keyframe_requests == 0  # asked at join

    # Media in: tones from both, a picture from the room system; 20 ms pacing like a leg.
    red = np.zeros((288, 352, 3), dtype=np.uint8)
    red[:, :, 0] = 220
    for i in range(75):
        room_system.on_audio(video_leg, tone(500, i))
        phone.on_audio(phone_leg, tone(1500, i))
        if i % 5 == 0:
            room_system.on_video(video_leg, av.VideoFrame.from_ndarray(red, format="rgb24"))
        await asyncio.sleep(0.02)

    # N-1 out: each hears the other only.
    assert abs(peak(np.concatenate(video_leg.audio[-25:])) - 1500) < 20
    assert abs(peak(np.concatenate(phone_leg.audio[-25:])) - 500) < 20
    # Video out: the shared encoder at the leg's size, decodable.
    assert video_leg.frames and set(video_leg.frames) == {(352, 288)}
    assert phone_leg.access_units == 0
    assert room_system.subscription is not None and room_system.subscription.key.single_nal
    # The phone is shown with a placeholder tile, the room system with its picture.
    panes = {p.participant_id: p for p in conf.room.view_plan("broadcast").panes if p.participant_id}
    assert panes["phone"].sample is None and panes["room-system"].sample is not None

    # Endpoint key-frame requests are coalesced before they reach the shared encoder.
    sub = room_system.subscription
    forwarded: list[int] = []
    original = sub.request_keyframe

    def counting() -> None:
        forwarded.append(1)
        original()

    sub.request_keyframe = counting  # type: ignore[method-assign]
    for _ in range(5):
        room_system.on_keyframe_request(video_leg)
    assert len(forwarded) == 1 and room_system.counters.keyframes_requested_by_endpoint == 5

    # Statistics reach the site list (and the bus, by the timer).
    await asyncio.sleep(0.6)
    stats = conf.sites["room-system"].stats
    assert stats["audio_frames_in"] == 75 and stats["video_frames_in"] == 15
    assert stats["send_video"] == {"codec": "h264", "width": 352, "height": 288, "packetization_mode": 0}
    assert stats["streams"][0]["codec"] == "PCMU" and stats["input_resolution"] == [352, 288]
    phone.on_dtmf(phone_leg, "5")
    assert phone.statistics()["audio_only"] is True and phone.counters.dtmf == ["5"]

    # The chair removes the phone: SiteMedia tells its owner once (the leg then hangs up).
    removed: list[str] = []
    phone.on_removed = lambda: removed.append("phone")
    conf.room.remove("phone")
    await asyncio.sleep(0.1)
    assert removed == ["phone"]
    await phone.close("removed")
    await phone.close("again")  # idempotent
    assert conf.runner.audio_sinks == [room_system]

    # Hang-up: everything released, the site is left.
    await room_system.close("hangup")
    assert room_system.subscription.closed and not conf.room.encoder_keys
    assert "room-system" not in conf.room.participants and conf.sites["room-system"].status == "left"
    sent = len(video_leg.audio)
    room_system.on_audio(video_leg, tone(500, 0))  # late media after close is ignored
    await asyncio.sleep(0.1)
    assert len(video_leg.audio) == sent


async def _until(predicate, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_an_rtp_site_moves_between_tiers_on_one_continuous_timeline(conferences: ConferenceService) -> None:
    """A SIP/H.323 H.264 site sits on the conference's tier machine: a budget moves it down (never
    above its negotiated size), an outside move (H.245 flow control) is recorded, and the access
    units it is sent keep one increasing 90 kHz timeline across the encoders."""
    conf = conferences.running(DEMO)
    assert conf is not None
    leg = RecordingLeg()
    site = await SiteMedia.join(conf, "room-system", "县会议室", "sip", leg,
                                video=VideoFormat("h264", 1280, 720), stats_interval=0)
    try:
        assert site.seat is not None and conf.tiers.tier_of("room-system").size == (1280, 720)
        await _until(lambda: (1280, 720) in leg.frames)
        await asyncio.sleep(1.0)  # the 720p encoder ages: a naive switch would jump back
        site.seat.budget = FixedBudget(300)  # what the per-site rate budget says on a 384k line
        await _until(lambda: leg.frames[-1] == (352, 288), 8)
        assert conf.tiers.tier_of("room-system").size == (352, 288)
        assert [k.width for k in conf.room.encoder_keys] == [352]  # the 720p encoder stopped
        site.seat.budget = FixedBudget(10_000)  # a generous budget never lifts it above what it negotiated
        assert conf.tiers.fit(10_000, site.seat.limits).size == (1280, 720)
        site.change_video_format(VideoFormat("h264", 320, 180))  # flow control by the leg
        assert conf.tiers.tier_of("room-system").size == (320, 180)
        await _until(lambda: leg.frames[-1] == (320, 180), 8)
        site.set_intra_refresh(True)  # its line turned lossy (SiteRate.on_lossy): intra refresh, same tier
        await _until(lambda: [(k.width, k.intra_refresh) for k in conf.room.encoder_keys] == [(320, True)], 8)
        sent = len(leg.frames)
        await _until(lambda: len(leg.frames) > sent + 10, 8)  # and it keeps getting video from that encoder
        steps = [b - a for a, b in zip(leg.timestamps, leg.timestamps[1:], strict=False)]
        assert min(steps) > 0 and max(steps) < 90_000, steps
    finally:
        await site.close("hangup")
    assert len(conf.tiers) == 0 and not conf.room.encoder_keys


async def test_a_site_on_an_unknown_line_starts_low_and_probes_up(conferences: ConferenceService) -> None:
    """Issue 16, "start low and probe up": a site that decodes 720p but whose line nobody stated
    (no plan line_kbps, no b=, no TMMBR) is sent 640x360 first; clean receiver reports raise its
    budget and the tier machine moves it up a tier (768x432) after its probe wait."""
    conf = conferences.running(DEMO)
    assert conf is not None
    leg = RecordingLeg()
    rate = SiteRate(2048, name="unknown-line", line_known=False)
    site = await SiteMedia.join(conf, "unknown-line", "未知线路会场", "sip", leg,
                                video=VideoFormat("h264", 1280, 720), stats_interval=0, budget=rate)
    try:
        assert conf.tiers.tier_of("unknown-line").size == (640, 360)
        await _until(lambda: (640, 360) in leg.frames, 10)
        assert (1280, 720) not in leg.frames
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20  # up_after is 2 s; generous on a loaded machine
        while conf.tiers.tier_of("unknown-line").size == (640, 360):
            assert loop.time() < deadline, rate.statistics()
            rate.on_rate_feedback("video", ReceptionReport(0.0, 0, 0))  # a clean line
            await asyncio.sleep(0.5)
        assert conf.tiers.tier_of("unknown-line").size == (768, 432)  # one tier, not straight to 720p
        await _until(lambda: leg.frames[-1] == (768, 432), 10)
    finally:
        await site.close("hangup")
