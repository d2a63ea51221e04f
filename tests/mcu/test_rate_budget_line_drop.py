"""The loss controller against a peer that reports every 5 s and sends only PLI (baresip): a line
that drops from 2 Mbit/s to 768 kbit/s mid-call (mcu.legs.rate_budget, issue 16)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mcu.legs.rate_budget import (
    HEADER_SHARE,
    KEYFRAME_BACKOFF,
    KEYFRAME_INTERVAL,
    MIN_VIDEO_KBPS,
    BudgetChange,
    RateBudget,
    Signal,
)
from mcu.legs.site_rate import SiteRate
from mcu.tiers import TierMachine
from sip_gateway.rtp.session import KeyframeRequest, ReceptionReport


def wire(budget: RateBudget) -> float:
    return budget.video_kbps() / (1 - HEADER_SHARE)


def reported_clean(line: int = 2000) -> RateBudget:
    budget = RateBudget(line)
    assert budget.on_receiver_report(0.0, 0.0) is None  # the peer's first report: a clean line
    return budget


def test_a_single_high_report_covering_a_long_span_is_sustained() -> None:
    budget = reported_clean()
    full = wire(budget)
    change = budget.on_receiver_report(0.137, 5.0)  # libre reports every 5 s: 5 s at 13.7 % is no blip
    assert change is not None and change.limited_by is Signal.LOSS
    assert budget.video_kbps() == int(full * (1 - 0.137 / 2) * (1 - HEADER_SHARE))


def test_a_high_report_after_a_short_span_still_waits_for_a_second() -> None:
    budget = reported_clean()
    assert budget.on_receiver_report(0.15, 1.0) is None  # 1 s after the last: could be a key frame
    assert budget.on_receiver_report(0.15, 2.0) is not None


def test_the_first_report_of_a_call_has_no_span() -> None:
    budget = RateBudget(2000)
    assert budget.on_receiver_report(0.15, 30.0) is None


def test_a_burst_of_keyframe_requests_after_a_clean_report_cuts_twice_then_waits() -> None:
    """The second cut lands on the peer's next request (baresip repeats every 0.5 s): the whole
    drop is taken 1.5 s after the peer first asked, not 2."""
    budget = reported_clean()
    full = wire(budget)
    assert budget.on_keyframe_request(6.0) is None
    assert budget.on_keyframe_request(6.5) is None
    change = budget.on_keyframe_request(7.0)  # three within 2 s
    assert change is not None and change.limited_by is Signal.LOSS
    assert budget.video_kbps() == int(full * KEYFRAME_BACKOFF * (1 - HEADER_SHARE))
    assert budget.on_keyframe_request(7.0 + KEYFRAME_INTERVAL * 0.9) is None  # at most once per KEYFRAME_INTERVAL
    assert budget.on_keyframe_request(7.5) is not None  # the next request, 0.5 s later
    assert budget.video_kbps() == int(full * KEYFRAME_BACKOFF ** 2 * (1 - HEADER_SHARE))
    low = budget.video_kbps()
    for t in (8.0, 8.5, 9.0, 9.5, 10.0, 11.0):  # two cuts before the next report, no more
        assert budget.on_keyframe_request(t) is None
    assert budget.video_kbps() == low


def test_two_cuts_take_a_2m_site_to_the_tier_a_768k_line_carries() -> None:
    tiers = TierMachine()
    budget = reported_clean(2000)
    assert tiers.fit(budget.video_kbps()).kbps == 1500
    for t in (1.0, 1.5, 2.0, 2.45):  # the requests' jitter: the second cut comes at the next one
        budget.on_keyframe_request(t)
    assert tiers.fit(budget.video_kbps()) == tiers.fit(RateBudget(768).video_kbps())


def test_sparse_requests_do_nothing() -> None:
    budget = reported_clean()
    for t in (1.0, 2.5, 4.0, 5.5, 7.0):  # one every 1.5 s: never three within 2 s
        assert budget.on_keyframe_request(t) is None
    assert budget.limited_by is Signal.LINE


def test_requests_before_the_first_report_do_nothing() -> None:
    budget = RateBudget(2000)  # a peer asks for key frames while its call starts
    for t in (0.1, 0.2, 0.3, 0.4, 1.5, 2.5):
        assert budget.on_keyframe_request(t) is None
    assert budget.limited_by is Signal.LINE


def test_requests_after_a_lossy_report_are_the_reports_business() -> None:
    budget = reported_clean()
    budget.on_receiver_report(0.05, 5.0)  # random loss: it holds; every loss brings a PLI
    before = budget.video_kbps()
    for i in range(20):
        assert budget.on_keyframe_request(6.0 + i * 0.5) is None
    assert budget.video_kbps() == before


def test_a_diluted_report_between_the_cuts_lets_the_episode_go_on() -> None:
    budget = reported_clean()
    full = wire(budget)
    budget.on_keyframe_request(1.0)
    budget.on_keyframe_request(1.5)
    budget.on_keyframe_request(2.0)  # the first cut
    assert budget.on_receiver_report(0.086, 2.8) is None  # 8.6 %: its span was mostly clean; holds
    assert budget.on_keyframe_request(3.0) is not None  # the second cut
    assert budget.video_kbps() == int(full * KEYFRAME_BACKOFF ** 2 * (1 - HEADER_SHARE))
    assert budget.on_keyframe_request(4.0) is None  # two per episode


def test_a_report_arriving_during_the_burst_does_not_make_it_old_news() -> None:
    budget = reported_clean()
    budget.on_keyframe_request(0.95)
    budget.on_keyframe_request(1.45)
    budget.on_receiver_report(0.059, 1.76)  # diluted: the drop came 1.8 s before it
    assert budget.on_keyframe_request(1.94) is not None  # the burst began while the line was clean


def test_a_clean_report_after_the_cuts_undoes_them() -> None:
    budget = reported_clean()
    full = budget.video_kbps()
    for t in (1.0, 1.5, 2.0, 2.5, 3.0):
        budget.on_keyframe_request(t)
    assert budget.video_kbps() < full
    change = budget.on_receiver_report(0.0, 5.0)  # the line was fine: a decoder's own trouble
    assert change is not None and budget.video_kbps() == full and budget.limited_by is Signal.LINE


def test_a_lossy_report_after_the_cuts_goes_on_from_them() -> None:
    """The report measured the rate before the cuts: its back-off applies to that, and the estimate
    is the smaller of the two (the same loss is not cut for twice)."""
    budget = reported_clean()
    full = wire(budget)
    for t in (1.0, 1.5, 2.0, 2.5, 3.0):
        budget.on_keyframe_request(t)
    cut = budget.video_kbps()
    budget.on_receiver_report(0.125, 5.0)  # the line did drop: the cuts already took more than 6 %
    assert budget.video_kbps() == cut and budget.limited_by is Signal.LOSS
    budget.on_receiver_report(0.05, 10.0)  # moderate: holds
    assert budget.video_kbps() == cut
    # A heavier loss than the cut took (one cut, ×0.6): back off from the rate before it.
    heavy = reported_clean()
    for t in (1.0, 1.5, 2.0):
        heavy.on_keyframe_request(t)
    heavy.on_receiver_report(0.9, 3.1)
    assert heavy.video_kbps() == int(full * (1 - 0.9 / 2) * (1 - HEADER_SHARE))
    heavy.on_receiver_report(0.5, 4.2)  # no episode any more: from the estimate, as before
    assert heavy.video_kbps() == int(full * (1 - 0.9 / 2) * (1 - 0.5 / 2) * (1 - HEADER_SHARE))


def test_keyframe_requests_never_go_below_the_floor_or_back_in_time() -> None:
    budget = reported_clean(64)
    for t in (1.0, 1.5, 2.0, 3.0):
        budget.on_keyframe_request(t)
    assert budget.video_kbps() >= MIN_VIDEO_KBPS
    assert budget.on_keyframe_request(0.5) is None  # from the past
    assert budget.on_keyframe_request(float("nan")) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["rr", "pli"]), st.floats(0, 1), st.floats(0, 6)), max_size=60))
def test_reports_and_requests_keep_the_budget_in_bounds(steps: list[tuple[str, float, float]]) -> None:
    budget = RateBudget(2000)
    full, t = budget.video_kbps(), 0.0
    for kind, loss, gap in steps:
        t += gap
        if kind == "rr":
            budget.on_receiver_report(loss, t)
        else:
            budget.on_keyframe_request(t)
        assert MIN_VIDEO_KBPS <= budget.video_kbps() <= full


def test_the_site_rate_hands_video_keyframe_requests_to_the_budget() -> None:
    now = [0.0]
    rate = SiteRate(2000, clock=lambda: now[0], name="site-1")
    changes: list[BudgetChange] = []
    rate.on_change = changes.append
    rate.on_rate_feedback("video", ReceptionReport(0.0, 0, 0))
    for t in (1.0, 1.5, 2.0):
        now[0] = t
        rate.on_rate_feedback("audio", KeyframeRequest("pli"))  # not our video: ignored
        rate.on_rate_feedback("video", KeyframeRequest("pli"))
    assert rate.feedback["keyframe_requests"] == 3
    assert len(changes) == 1 and changes[0].limited_by is Signal.LOSS and changes[0].at == 2.0
