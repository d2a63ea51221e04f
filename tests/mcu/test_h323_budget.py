"""An H.323 site's rate budget: flowControlCommand moves the site between shared-encoder sizes."""
from __future__ import annotations

from types import SimpleNamespace

from mcu.encoder import QCIF
from mcu.legs.h323 import CIF as CIF_SIZE
from mcu.legs.h323 import (
    H323Site,
    UpstreamWatch,
    cif_only_size,
    formats_for_line,
    incoming_video_limit,
    takes_cif,
    takes_qcif,
    upstream_video_bps,
)
from mcu.legs.rate_budget import MAX_KBPS, MIN_KBPS, RateBudget, Signal
from mcu.legs.site_media import VideoFormat
from mcu.legs.site_rate import SiteRate
from sip_gateway.h323.capabilities import DEFAULT_FORMATS, Codec, MediaFormat
from sip_gateway.h323.events import VideoFastUpdateRequested
from sip_gateway.rtp.session import ReceptionReport

HALF = VideoFormat("h264", 640, 360)
CIF = VideoFormat("h264", 352, 288)


class _Media:
    """The part of SiteMedia the flow control touches."""

    def __init__(self) -> None:
        self.video = HALF
        self.subscription = object()

    def change_video_format(self, video: VideoFormat) -> None:
        self.video = video

    def on_keyframe_request(self, leg: object) -> None:
        self.keyframe_requests = getattr(self, "keyframe_requests", 0) + 1


async def test_flow_control_moves_the_site_both_ways_and_bad_values_are_clamped() -> None:
    site = H323Site(owner=None, handle=None, media=None)  # type: ignore[arg-type]
    media = _Media()
    site.site = media  # type: ignore[assignment]
    site.rate, site.video_ceiling = RateBudget(2048), HALF
    site.apply_flow_control(256_000)
    assert media.video == CIF and site.flow_cap_bps == 256_000
    site.apply_flow_control(None)  # noRestriction: back to what the channel carries
    assert media.video == HALF
    site.apply_flow_control(0)
    assert media.video == CIF and site.rate.caps()["h245_flow_control"] == MIN_KBPS
    site.apply_flow_control(10**12)
    assert media.video == HALF and site.rate.caps()["h245_flow_control"] == MAX_KBPS
    assert site.rate.snapshot()["limited_by"] == "line"


async def test_the_line_and_max_bit_rate_choose_the_size() -> None:
    site = H323Site(owner=None, handle=None, media=None)  # type: ignore[arg-type]
    site.rate = RateBudget(768)
    assert site.fit(HALF) == HALF  # 768k leaves 623 kbit/s of video: 640x360 (600k) fits
    site.rate = RateBudget(512)
    assert site.fit(HALF) == CIF
    site.rate = RateBudget(2048)
    assert site.fit(HALF) == HALF
    site.rate.on_h245_max_bitrate(384)
    assert site.fit(HALF) == CIF


# ---------------------------------------------------------------- the terminal's own upstream (issue 16)
def test_the_terminal_is_asked_for_no_more_than_its_line_carries() -> None:
    assert upstream_video_bps(768) == 623_000  # 768 less RTCP (5 %), audio (80k) and headers (4 %)
    assert upstream_video_bps(2048) == 1_790_000
    # A terminal shown full screen on a 768k line whose channel allows 1.92 Mbit/s: the line's cap.
    assert incoming_video_limit((1280, 720), 1_920_000, 768) == 623_000
    # A small pane asks for less still; a 256k line for less than the pane's rate.
    assert incoming_video_limit((320, 180), 1_920_000, 768) == 384_000
    assert incoming_video_limit((320, 180), 1_920_000, 256) == upstream_video_bps(256) == 156_000
    # Its channel already says less: nothing to ask (as before)...
    assert incoming_video_limit((1280, 720), 327_600, 768) is None
    assert incoming_video_limit((1280, 720), 1_500_000, 2048) is None  # the default line: 1.79M
    # ... unless it was seen sending more than the line carries: then it is asked whatever its OLC says.
    assert incoming_video_limit((1280, 720), 327_600, 768, overshoot=True) == 623_000
    # No maxBitRate stated in its channel: ask.
    assert incoming_video_limit((1280, 720), 0, 768) == 623_000
    # Bad lines clamp (RateBudget): never a zero or negative rate asked.
    assert incoming_video_limit(None, 0, 0) == upstream_video_bps(MIN_KBPS) >= 32_000
    assert incoming_video_limit(None, 0, -5) == upstream_video_bps(MIN_KBPS)


def test_a_call_to_a_site_on_a_stated_line_offers_video_capabilities_within_it() -> None:
    formats = formats_for_line(DEFAULT_FORMATS, 768)
    assert [f.max_bitrate for f in formats if f.codec.is_video] == [6230, 6230, 6230]  # 623 kbit/s, not 1.92M
    assert [f for f in formats if not f.codec.is_video] == [f for f in DEFAULT_FORMATS if not f.codec.is_video]
    assert [f.mpi for f in formats] == [f.mpi for f in DEFAULT_FORMATS]  # only the rate changes
    low = formats_for_line((MediaFormat(Codec.H263, max_bitrate=3276), MediaFormat(Codec.H261)), 4096)
    assert [f.max_bitrate for f in low] == [3276, 36580]  # a lower rate of its own stays; none stated: the line's
    assert {f.max_bitrate for f in formats_for_line(DEFAULT_FORMATS, -1) if f.codec.is_video} == {320}  # clamped


def test_a_terminal_sending_above_its_line_for_two_windows_is_seen_overshooting() -> None:
    watch = UpstreamWatch(window=2.0, windows=2)
    cap = 623_000
    assert not watch.sample(10.0, 0, cap)  # the first reading only starts the window
    assert not watch.sample(11.0, 10**6, cap)  # within the window: nothing measured yet
    assert not watch.sample(12.0, 170_000, cap) and watch.received_bps == 680_000  # one window above
    assert not watch.sample(14.0, 170_000 + 100_000, cap) and watch.received_bps == 400_000  # a dip: starts over
    assert not watch.sample(16.0, 270_000 + 170_000, cap)
    assert watch.sample(18.0, 440_000 + 170_000, cap) and watch.overshoot  # two in a row: found
    assert not watch.sample(20.0, 610_000 + 170_000, cap) and watch.overshoot  # reported once, and it stays
    fresh = UpstreamWatch()
    fresh.sample(5.0, 100, None)
    assert not fresh.sample(8.0, 10**9, None) and not fresh.sample(11.0, 2 * 10**9, None)  # no cap: never
    assert not fresh.sample(1.0, 0, cap)  # time going back restarts the window, changes nothing else


# ---------------------------------------------------------------- H.263/H.261: the QCIF rung
H263_CIF = VideoFormat("h263", 352, 288)
H263_QCIF = VideoFormat("h263", 176, 144)


def test_cif_only_size_moves_with_hysteresis_and_only_to_a_size_the_terminal_listed() -> None:
    assert cif_only_size(300, CIF_SIZE, qcif=True) == CIF_SIZE
    assert cif_only_size(204, CIF_SIZE, qcif=True) == QCIF
    assert cif_only_size(230, QCIF, qcif=True) == QCIF  # between the thresholds: stays where it is
    assert cif_only_size(230, CIF_SIZE, qcif=True) == CIF_SIZE
    assert cif_only_size(240, QCIF, qcif=True) == CIF_SIZE
    assert cif_only_size(100, CIF_SIZE, qcif=False) == CIF_SIZE  # no QCIF listed: CIF, the pacer drops frames
    assert cif_only_size(2000, CIF_SIZE, qcif=True, cif=False) == QCIF  # QCIF only listed: QCIF, however fast
    assert takes_cif(MediaFormat(Codec.H263, mpi=(("cifMPI", 1),))) and takes_cif(MediaFormat(Codec.H261))
    assert not takes_cif(MediaFormat(Codec.H263, mpi=(("qcifMPI", 1),)))  # H323Plus's H.263-QCIF
    assert takes_qcif(MediaFormat(Codec.H263, mpi=(("qcifMPI", 1), ("cifMPI", 1))))
    assert takes_qcif(MediaFormat(Codec.H261, mpi=(("qcifMPI", 2),)))
    assert not takes_qcif(MediaFormat(Codec.H263, mpi=(("cifMPI", 1),)))
    assert not takes_qcif(MediaFormat(Codec.H264))


async def test_a_slow_h263_site_moves_to_qcif_and_back_when_the_budget_moves() -> None:
    site = H323Site(owner=None, handle=None, media=None)  # type: ignore[arg-type]
    media = _Media()
    media.video = H263_CIF
    site.site = media  # type: ignore[assignment]
    site.rate, site.video_ceiling, site.qcif = RateBudget(768), H263_CIF, True
    assert site.fit(H263_CIF) == H263_CIF
    site.apply_flow_control(160_000)  # the terminal says its line is slow
    assert media.video == H263_QCIF
    site.apply_flow_control(220_000)  # a little more: within the hysteresis, it stays
    assert media.video == H263_QCIF
    site.apply_flow_control(None)
    assert media.video == H263_CIF
    site.qcif = False  # a terminal that listed CIF only stays at CIF (frames dropped by the pacer)
    site.apply_flow_control(160_000)
    assert media.video == H263_CIF
    site.rate = RateBudget(256)  # a 256k line: 156 kbit/s of video
    site.qcif = True
    assert site.fit(H263_CIF) == H263_QCIF


# ---------------------------------------------------------------- start low, RTCP into the budget
async def test_rtcp_reports_and_fast_updates_move_the_budget_of_an_unstated_line() -> None:
    now = [100.0]
    site = H323Site(owner=None, handle=None, media=SimpleNamespace(outgoing_content=None, leg=None, channels={}))  # type: ignore[arg-type]
    media = _Media()
    media.video = CIF
    site.site = media  # type: ignore[assignment]
    site.site_rate = SiteRate(2048, clock=lambda: now[0], name="h323-room", line_known=False)
    site.rate, site.video_ceiling = site.site_rate.budget, HALF
    site.site_rate.on_change = lambda _change: site.refit()
    assert site.rate.video_kbps() < 600 and site.fit(HALF) == CIF  # starts low: CIF, not 640x360
    assert site.rate.limited_by is Signal.START
    # Clean receiver reports from the terminal: the budget probes up and the site moves up.
    for _ in range(5):
        now[0] += 1.0
        site.site_rate.on_rate_feedback("video", ReceptionReport(0.0, 0, 0))
    assert media.video == HALF and site.rate.video_kbps() > 600
    probed = site.rate.video_kbps()
    # Heavy loss: it backs off (x0.85 a second at 30 %) and moves down again.
    for _ in range(6):
        now[0] += 1.0
        site.site_rate.on_rate_feedback("video", ReceptionReport(0.3, 100, 0))
    assert media.video == CIF and site.rate.snapshot()["limited_by"] == "loss"
    assert site.rate.video_kbps() < probed * 0.85 ** 3
    # videoFastUpdatePicture from the terminal reaches the budget as a key-frame request.
    site.on_event(VideoFastUpdateRequested(channel=1))
    assert site.site_rate.feedback["keyframe_requests"] == 1
    assert site.extra_stats()["budget"]["feedback"]["reports"] == 11
