"""A SIP site's rate budget at work (mcu.legs.site_rate): SDP in, RTCP in, the size it carries."""
from __future__ import annotations

from mcu.legs.rate_budget import BudgetChange
from mcu.legs.site_media import VideoFormat
from mcu.legs.site_rate import SiteRate, size_for_rate, with_line
from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
from sip_gateway.rtp.session import RateEstimate, RateLimitRequest, ReceptionReport
from sip_gateway.sip.sdp import SessionDescription, answer, create_offer

HD = VideoFormat("h264", 1280, 720)


def limit(rate: SiteRate) -> str:
    return rate.budget.limited_by.value


def test_size_for_rate() -> None:
    assert size_for_rate(1790, (1280, 720)) == (1280, 720)
    assert size_for_rate(1499, (1280, 720)) == (640, 360)
    assert size_for_rate(623, (1280, 720)) == (640, 360)
    assert size_for_rate(599, (1280, 720)) == (352, 288)
    assert size_for_rate(32, (1280, 720)) == (352, 288)  # nothing fits: the smallest
    assert size_for_rate(5000, (640, 360)) == (640, 360)  # the level's ceiling holds
    assert size_for_rate(5000, (100, 100)) == (352, 288)


def test_with_line_puts_the_line_in_our_sdp() -> None:
    local = with_line(LocalMedia("127.0.0.1", 4000, 4002), 768)
    assert (local.session_kbps, local.video_kbps) == (768, 623)
    assert with_line(LocalMedia("127.0.0.1", 4000), 768).video_kbps is None  # audio only
    assert with_line(LocalMedia("127.0.0.1", 4000, 4002), -5).session_kbps == 64  # clamped


def test_sdp_and_rtcp_move_the_budget_and_the_size() -> None:
    now = [0.0]
    rate = SiteRate(2048, clock=lambda: now[0], name="site-1")
    changes: list[BudgetChange] = []
    rate.on_change = changes.append
    assert rate.fit(HD) == HD
    offer = create_offer(MediaPolicy(), LocalMedia("127.0.0.1", 4000, 4002, session_kbps=768, video_kbps=600))
    _, streams = answer(SessionDescription.parse(offer.serialize()), MediaPolicy(), LocalMedia("127.0.0.1", 5000, 5002))
    rate.apply_streams(streams)
    assert limit(rate) == "sdp_tias" and rate.fit(HD) == VideoFormat("h264", 640, 360)
    rate.on_rate_feedback("audio", RateLimitRequest(100_000, 0))  # audio's business
    assert rate.feedback["tmmbr"] == 0
    rate.on_rate_feedback("video", RateLimitRequest(300_000, 0))
    assert rate.fit(HD).width == 352 and changes[-1].limited_by.value == "tmmbr"
    rate.on_rate_feedback("video", RateLimitRequest(10**12, 0))
    rate.on_rate_feedback("video", RateEstimate(250_000))
    assert limit(rate) == "remb"
    now[0] = 1.0
    rate.on_rate_feedback("video", ReceptionReport(0.5, 10, 0))
    assert limit(rate) == "loss"
    stats = rate.statistics()
    assert stats["feedback"] == {"tmmbr": 2, "remb": 1, "reports": 1, "keyframe_requests": 0} and stats["limited_by"] == "loss"
    rate.apply_streams([])  # a re-INVITE without b= (and without streams): forgotten, nothing breaks
    assert "sdp_session" not in rate.budget.caps()


def test_a_lossy_line_turns_intra_refresh_on_and_a_clean_one_off() -> None:
    now = [0.0]
    rate = SiteRate(768, clock=lambda: now[0], name="site-1")
    calls: list[bool] = []
    rate.on_lossy = calls.append
    for t in (0.0, 1.0, 2.0):  # 3 % loss for 2 s
        now[0] = t
        rate.on_rate_feedback("video", ReceptionReport(0.03, 10, 0))
    assert calls == [True] and rate.statistics()["lossy"] is True
    for t in range(3, 15):  # clean for 10 s
        now[0] = float(t)
        rate.on_rate_feedback("video", ReceptionReport(0.0, 10, 0))
    assert calls == [True, False]


def test_the_budget_is_firm_unless_remb_limits_it() -> None:
    """The tier machine moves a site at once on a firm budget (mcu.tiers.FirmBudget): every
    value of the rate budget is judged, except a REMB sample (it dips after key frames)."""
    from mcu.tiers import FirmBudget

    rate = SiteRate(2048, clock=lambda: 0.0)
    assert isinstance(rate, FirmBudget) and rate.budget_is_firm()
    rate.on_rate_feedback("video", RateLimitRequest(600_000, 0))
    assert rate.budget_is_firm()  # a TMMBR is stated
    rate.on_rate_feedback("video", RateEstimate(300_000))
    assert limit(rate) == "remb" and not rate.budget_is_firm()
