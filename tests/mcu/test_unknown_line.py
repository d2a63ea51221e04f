"""Start low and probe up (issue 16): a site whose line nobody stated starts at a modest tier and
climbs on clean receiver reports; a stated line places it at once. Pure timelines, time as argument."""
from __future__ import annotations

from mcu.legs.rate_budget import UNKNOWN_START_KBPS, RateBudget, Signal
from mcu.legs.site_rate import SiteRate
from mcu.tiers import ReceiverLimits, TierMachine
from sip_gateway.rtp.session import ReceptionReport

HD = ReceiverLimits(max_area=1280 * 720)


def test_an_unknown_line_starts_at_640x360_never_720p() -> None:
    machine = TierMachine()
    unknown = RateBudget(2048, line_known=False)
    assert not unknown.line_known and unknown.limited_by is Signal.START
    assert machine.fit(unknown.video_kbps(), HD).size == (640, 360)
    known = RateBudget(2048)  # the plan names a 2 Mbit/s line: placed at once
    assert known.line_known and machine.fit(known.video_kbps(), HD).size == (1280, 720)
    assert machine.fit(RateBudget(768).video_kbps(), HD).size == (640, 360)  # the budget it fits
    assert machine.fit(RateBudget(1536).video_kbps(), HD).size == (960, 540)
    small = RateBudget(384, line_known=False)  # a default below the guess: the default is the cap
    assert small.line_known and small.limited_by is Signal.LINE and small.video_kbps() < UNKNOWN_START_KBPS


def test_clean_reports_probe_an_unknown_line_up_to_720p_one_tier_at_a_time() -> None:
    """baresip reports every 5 s: the budget climbs 8 % per second of clean time (47 % a report,
    faster from the third clean report on) and the tier machine moves one tier at a time (up_after
    2 s), from 640x360 to 1280x720 within 20 s (it took two minutes at 8 % a report)."""
    machine = TierMachine()
    budget = RateBudget(2048, line_known=False, now=0.0)
    tier = machine.add("site", 0.0, limits=HD, budget_kbps=budget.video_kbps())
    assert tier.size == (640, 360)
    sizes = [tier.size]
    at = [0.0]
    t = 0.0
    while t < 120:
        t += 0.5
        if t % 5 == 0:
            budget.on_receiver_report(0.0, t)
        moved = machine.update("site", budget.video_kbps(), t)
        if moved is not None:
            assert moved.index == machine.tier_of("site").index
            sizes.append(moved.size)
            at.append(t)
    assert sizes == [(640, 360), (768, 432), (960, 540), (1280, 720)], sizes
    assert at[-1] <= 20.0, at
    assert budget.line_known and budget.limited_by is Signal.LINE  # probed up to the line: known


def test_a_lossy_unknown_line_holds_and_backs_off() -> None:
    budget = RateBudget(2048, line_known=False, now=0.0)
    start = budget.video_kbps()
    budget.on_receiver_report(0.05, 5.0)  # between the marks: hold
    assert budget.video_kbps() == start
    budget.on_receiver_report(0.3, 10.0)  # severe: backed off, a measured estimate now
    assert budget.video_kbps() < start and budget.limited_by is Signal.LOSS and budget.line_known


def test_a_stated_line_drops_the_guess() -> None:
    machine = TierMachine()
    sdp = RateBudget(2048, line_known=False)
    sdp.on_sdp(session_as_kbps=None, video_as_kbps=None, video_tias_bps=None)  # no b=: still unknown
    assert not sdp.line_known
    sdp.on_sdp(session_as_kbps=2048)  # b=AS:2048: the peer says its line
    assert sdp.line_known and machine.fit(sdp.video_kbps(), HD).size == (1280, 720)
    tias = RateBudget(2048, line_known=False)
    tias.on_sdp(video_tias_bps=1_000_000)
    assert tias.limited_by is Signal.SDP_TIAS and machine.fit(tias.video_kbps(), HD).size == (768, 432)
    h245 = RateBudget(2048, line_known=False)
    h245.on_h245_max_bitrate(1920)  # a terminal's capability above the line's headroom: says nothing
    assert not h245.line_known and h245.limited_by is Signal.START
    h245.on_h245_max_bitrate(1200)  # below: its call rate, the line is known
    assert h245.line_known and machine.fit(h245.video_kbps(), HD).size == (960, 540)
    remb = RateBudget(2048, line_known=False)
    remb.on_remb(3_000_000)
    assert remb.line_known and remb.limited_by is Signal.LINE
    configured = RateBudget(2048, line_known=False)
    configured.set_line(2048)
    assert configured.line_known
    bad = RateBudget(2048, line_known=False)
    bad.on_sdp(session_as_kbps=float("nan"))  # says nothing about the line
    assert not bad.line_known


def test_site_rate_carries_the_unknown_line() -> None:
    now = [0.0]
    rate = SiteRate(2048, clock=lambda: now[0], name="site-1", line_known=False)
    assert rate.statistics()["limited_by"] == "start"
    before = rate.video_kbps()
    now[0] = 5.0
    rate.on_rate_feedback("video", ReceptionReport(0.0, 10, 0))
    assert rate.video_kbps() > before
