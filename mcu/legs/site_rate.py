"""A SIP site's rate budget at work: fed by its SDP and its leg's RTCP, choosing the site's video.

:class:`SiteRate` owns the site's :class:`~mcu.legs.rate_budget.RateBudget` (the pure machine)
and is the leg's :class:`~sip_gateway.aio.rtp_leg.RateListener`: TMMBR, REMB, receiver reports
and key-frame requests (PLI/FIR: a sign of loss from a peer that sends no NACK) about our *video*
go into the budget (audio reports are the audio's business). The peer's SDP
``b=`` lines go in with :meth:`SiteRate.apply_streams` (at join and after every re-INVITE).

Its ``video_kbps()`` is the contract with the pacer and the encoder ladder (they declare their
own Protocols with that one method); ``budget_is_firm()`` tells the ladder the budget is no
REMB sample that can dip (:class:`mcu.tiers.FirmBudget`), so a cut moves the site at once. Until the ladder chooses tiers, :meth:`SiteRate.fit` picks
the site's shared-encoder size from the budget: the largest size the site's H.264 level allows
whose encoder rate (:data:`mcu.encoder.DEFAULT_BITRATE`) fits, else the smallest one; and
``on_change`` is called whenever the budget moved, so the owner can move the site.

The same receiver reports feed a :class:`~mcu.legs.loss_switch.LossSwitch`: ``on_lossy(True)`` is
called when the site's line has been lossy for a while (the owner switches the site's encoder to
periodic intra refresh), ``on_lossy(False)`` when it has been clean for a while.

:func:`with_line` puts the site's line into our SDP (session ``b=AS`` for the whole line; video
``b=TIAS``/``b=AS`` for what the line leaves for video), so the endpoint caps its upstream too.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from mcu.encoder import DEFAULT_BITRATE
from mcu.legs.loss_switch import LossSwitch
from mcu.legs.rate_budget import BudgetChange, RateBudget, Signal
from mcu.legs.site_media import SIZES, VideoFormat
from sip_gateway.rtp.media_description import LocalMedia, MediaStream
from sip_gateway.rtp.session import (
    KeyframeRequest,
    RateEstimate,
    RateFeedback,
    RateLimitRequest,
    ReceptionReport,
)

log = logging.getLogger(__name__)


def with_line(local: LocalMedia, line_kbps: int) -> LocalMedia:
    """Our media for a call on a line of ``line_kbps``: the SDP's b= values (RFC 3890)."""
    return replace(local, session_kbps=RateBudget(line_kbps).line_kbps,
                   video_kbps=RateBudget(line_kbps).video_kbps() if local.video_port else None)


def size_for_rate(video_kbps: int, ceiling: tuple[int, int]) -> tuple[int, int]:
    """The largest shared-encoder size no larger than ``ceiling`` whose rate fits ``video_kbps``."""
    allowed = [s for s in SIZES if s[0] * s[1] <= ceiling[0] * ceiling[1]] or [SIZES[-1]]
    fitting = [s for s in allowed if DEFAULT_BITRATE[s] <= video_kbps * 1000]
    return fitting[0] if fitting else allowed[-1]


class SiteRate:
    """The rate budget of one SIP site (see the module docstring)."""

    def __init__(self, line_kbps: int, clock: Callable[[], float] = time.monotonic, name: str = "", *,
                 line_known: bool = True) -> None:
        """``line_known``: False when ``line_kbps`` is only the protocol's default (the plan names no
        line for the site): its video starts low and probes up (:mod:`mcu.legs.rate_budget`)."""
        self._clock = clock
        self.name = name
        self.budget = RateBudget(line_kbps, now=clock(), line_known=line_known)
        self.on_change: Callable[[BudgetChange], None] | None = None
        self.lossy = LossSwitch()
        self.on_lossy: Callable[[bool], None] | None = None
        self.feedback = {"tmmbr": 0, "remb": 0, "reports": 0, "keyframe_requests": 0}

    def video_kbps(self) -> int:
        """The video rate the site's leg may send now (kbit/s)."""
        return self.budget.video_kbps()

    def budget_is_firm(self) -> bool:
        """The tier machine's :class:`~mcu.tiers.FirmBudget`: every move of this budget was judged
        (stated caps, the loss controller over reports and key-frame bursts), so a shortfall moves
        the site at once; only a REMB-limited budget is a sample that can dip after a key frame."""
        return self.budget.limited_by is not Signal.REMB

    def fit(self, ceiling: VideoFormat) -> VideoFormat:
        """``ceiling`` (codec, packetization, the largest size the site decodes) at the size the
        budget carries now."""
        width, height = size_for_rate(self.video_kbps(), (ceiling.width, ceiling.height))
        return replace(ceiling, width=width, height=height)

    def apply_streams(self, streams: list[MediaStream]) -> None:
        """The peer's b= lines of the negotiated video stream (absent ones are forgotten)."""
        video = next((s for s in streams if s.kind == "video"), None)
        session = video or next(iter(streams), None)
        self._changed(self.budget.on_sdp(
            session_as_kbps=session.remote_session_kbps if session else None,
            video_as_kbps=video.remote_as_kbps if video else None,
            video_tias_bps=video.remote_tias_bps if video else None, now=self._clock()))

    def on_rate_feedback(self, kind: str, feedback: RateFeedback) -> None:
        """The leg's RateListener: TMMBR, REMB and receiver reports about our video."""
        if kind != "video":
            return
        now = self._clock()
        if isinstance(feedback, RateLimitRequest):
            self.feedback["tmmbr"] += 1
            self._changed(self.budget.on_tmmbr(feedback.bitrate_bps, feedback.overhead, now))
        elif isinstance(feedback, RateEstimate):
            self.feedback["remb"] += 1
            self._changed(self.budget.on_remb(feedback.bitrate_bps, now))
        elif isinstance(feedback, KeyframeRequest):
            self.feedback["keyframe_requests"] += 1
            self._changed(self.budget.on_keyframe_request(now))
        elif isinstance(feedback, ReceptionReport):
            self.feedback["reports"] += 1
            self._changed(self.budget.on_receiver_report(feedback.fraction_lost, now))
            lossy = self.lossy.report(feedback.fraction_lost, now)
            if lossy is not None:
                log.info("site %s: line %s", self.name, "lossy" if lossy else "clean again")
                if self.on_lossy is not None:
                    self.on_lossy(lossy)

    def statistics(self) -> dict[str, object]:
        """The console's figures: the budget, what limits it, every cap, feedback counts."""
        return {**self.budget.snapshot(), "feedback": dict(self.feedback), "lossy": self.lossy.on}

    def _changed(self, change: BudgetChange | None) -> None:
        if change is None:
            return
        log.info("site %s: video budget %d -> %d kbit/s (%s)", self.name, change.previous_kbps, change.video_kbps,
                 change.limited_by.value)
        if self.on_change is not None:
            self.on_change(change)


__all__ = ["SiteRate", "size_for_rate", "with_line"]
