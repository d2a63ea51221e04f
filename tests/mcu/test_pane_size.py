"""The wanted-size machine: rungs, debounce, minimum step, hidden sources (pure, no clock)."""
from __future__ import annotations

import pytest

from mcu.layout import pane_rects
from mcu.pane_size import PaneSizer, SizeRequest, decode_mode, largest_panes, rung_for


def test_rung_rounds_up_and_caps() -> None:
    assert rung_for(256, 144) == (256, 144)
    assert rung_for(426, 240) == (480, 270)  # a 3x3 pane of 720p: never ask for less than shown
    assert rung_for(640, 360) == (640, 360)
    assert rung_for(1920, 1080) == (1280, 720)
    with pytest.raises(ValueError):
        rung_for(0, 10)


def test_largest_pane_over_views() -> None:
    grid = [("a", r.w, r.h) for r in pane_rects("5x5", 1280, 720)[:1]] + [("b", 256, 144), (None, 256, 144)]
    select = [("a", 1280, 720)]
    assert largest_panes([grid, select]) == {"a": (1280, 720), "b": (256, 144)}
    assert largest_panes([]) == {}


def test_new_sources_are_asked_once_and_hidden_ones_not() -> None:
    sizer = PaneSizer()
    reqs = sizer.update({"a": (256, 144)}, ["a", "b"], now=0.0)
    assert reqs == [SizeRequest("a", (256, 144), None)]
    assert sizer.wanted("a") == (256, 144) and sizer.wanted("b") is None
    assert sizer.update({"a": (256, 144)}, ["a", "b"], now=10.0) == []


def test_small_changes_within_a_rung_ask_nothing() -> None:
    sizer = PaneSizer()
    sizer.update({"a": (250, 140)}, ["a"], now=0.0)
    assert sizer.update({"a": (256, 144)}, ["a"], now=5.0) == []


def test_growth_is_immediate_after_min_interval() -> None:
    sizer = PaneSizer(settle=2.0, min_interval=2.0)
    sizer.update({"a": (256, 144)}, ["a"], now=0.0)
    assert sizer.update({"a": (1280, 720)}, ["a"], now=1.0) == []  # within the interval: waits
    assert sizer.update({"a": (1280, 720)}, ["a"], now=2.0) == [SizeRequest("a", (1280, 720), (256, 144))]


def test_shrink_waits_to_settle_and_flip_flop_costs_nothing() -> None:
    sizer = PaneSizer(settle=2.0, min_interval=2.0)
    sizer.update({"a": (1280, 720)}, ["a"], now=0.0)
    asked = []
    t = 10.0
    for i in range(40):  # the chair flips 1 <-> 5x5 every 0.5 s for 20 s
        pane = (256, 144) if i % 2 == 0 else (1280, 720)
        asked += sizer.update({"a": pane}, ["a"], now=t)
        t += 0.5
    assert asked == []
    assert sizer.update({"a": (256, 144)}, ["a"], now=t) == []
    assert sizer.update({"a": (256, 144)}, ["a"], now=t + 1.9) == []
    assert sizer.update({"a": (256, 144)}, ["a"], now=t + 2.0) == [SizeRequest("a", (256, 144), (1280, 720))]


def test_hiding_settles_and_showing_is_never_delayed() -> None:
    sizer = PaneSizer(settle=2.0, min_interval=2.0)
    sizer.update({"a": (256, 144)}, ["a"], now=0.0)
    assert sizer.update({}, ["a"], now=5.0) == []
    assert sizer.update({}, ["a"], now=7.0) == [SizeRequest("a", None, (256, 144))]
    assert sizer.wanted("a") is None
    # Shown again just after: immediate although the last request was 0.1 s ago.
    assert sizer.update({"a": (256, 144)}, ["a"], now=7.1) == [SizeRequest("a", (256, 144), None)]


def test_sources_that_leave_are_forgotten() -> None:
    sizer = PaneSizer()
    sizer.update({"a": (256, 144)}, ["a"], now=0.0)
    assert sizer.update({}, [], now=1.0) == []
    assert sizer.wanted("a") is None
    assert sizer.update({"a": (256, 144)}, ["a"], now=1.5) == [SizeRequest("a", (256, 144), None)]


def test_decode_mode() -> None:
    assert decode_mode(None, (1280, 720)) == "off"
    assert decode_mode((256, 144), (1280, 720)) == "fast"
    assert decode_mode((426, 240), (1280, 720)) == "fast"
    assert decode_mode((640, 360), (1280, 720)) == "full"
    assert decode_mode((256, 144), None) == "full"  # source size unknown yet: decode fully


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        PaneSizer(settle=-1)
    with pytest.raises(ValueError):
        PaneSizer(rungs=((1280, 720), (320, 180)))


def test_imageattr_value_and_rate() -> None:
    from mcu.pane_size import rate_for
    from sip_gateway.sip.imageattr import has_imageattr, recv_imageattr
    from sip_gateway.sip.sdp import SessionDescription

    assert recv_imageattr(96, 480, 270) == "96 send * recv [x=480,y=270]"
    for bad in ((96, 0, 270), (96, 99999, 270), ("9a", 480, 270), (200, 480, 270)):
        with pytest.raises(ValueError):
            recv_imageattr(*bad)
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
    assert not has_imageattr(SessionDescription.parse(sdp.encode()))
    assert has_imageattr(SessionDescription.parse((sdp + "a=imageattr:96 send * recv *\r\n").encode()))
    assert not has_imageattr(None)
    assert rate_for((1280, 720)) == 1_500_000 and rate_for((256, 144)) == 96_000
    assert 300_000 < rate_for((640, 360)) < 400_000
