"""An H.323 site's rate budget: flowControlCommand moves the site between shared-encoder sizes."""
from __future__ import annotations

from mcu.legs.h323 import H323Site
from mcu.legs.rate_budget import MAX_KBPS, MIN_KBPS, RateBudget
from mcu.legs.site_media import VideoFormat

HALF = VideoFormat("h264", 640, 360)
CIF = VideoFormat("h264", 352, 288)


class _Media:
    """The part of SiteMedia the flow control touches."""

    def __init__(self) -> None:
        self.video = HALF
        self.subscription = object()

    def change_video_format(self, video: VideoFormat) -> None:
        self.video = video


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
