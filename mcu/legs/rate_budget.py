"""The rate budget of one site or cascade link: how much video the leg may send now.

Sans-I/O: the owner feeds what the protocols say about the line (each call with its own
monotonic time where time matters) and reads :meth:`RateBudget.video_kbps`; every ``on_*``
call returns a :class:`BudgetChange` when the video budget moved (the owner then re-chooses
the encoder size/tier and its pacer rate), else ``None``. The machine never raises on a value:
bad numbers are clamped or ignored, as the rules say.

Rules (kbit/s throughout; "cap" = an upper bound from one signal):

* **Line caps** bound the whole call (audio + video + packet overhead + RTCP): the configured
  line rate of the site plan (``line_kbps``, or the protocol's default) and the peer's
  session-level SDP ``b=AS`` (RFC 4566; "what I want to receive in total").
* **Video caps** bound the video stream alone, on the wire: the peer's video ``b=AS`` (includes
  IP/UDP/RTP overhead), REMB (bit/s) and RTCP TMMBR (RFC 5104; bit/s incl. the measured
  per-packet overhead: when stated, it replaces the :data:`HEADER_SHARE` estimate). Caps that
  count the bit stream alone are grossed up by the header share first: ``b=TIAS`` (RFC 3890,
  bit/s), H.245 ``maxBitRate`` and ``flowControlCommand`` (H.323; the adapter converts from
  units of 100 bit/s). The newest value of each signal replaces the previous one (a TMMBR
  raising the rate raises it); :meth:`RateBudget.clear` forgets one, and so does an absent
  (``None``) ``b=`` value in :meth:`RateBudget.on_sdp` (a re-INVITE without it).
* **Clamping:** every cap is clamped into [:data:`MIN_KBPS`, :data:`MAX_KBPS`]; 0, negative
  and 10 Gbit/s values become the floor or the ceiling. Anything that is not a finite int or
  float (NaN, inf, strings, bools) is ignored: it says nothing about the line.
* **Headroom:** from the smallest line cap, :data:`RTCP_SHARE` (5 %, RFC 3550's RTCP share)
  and the audio stream (``audio_kbps`` on the wire, default :data:`AUDIO_KBPS` = PCMU/G.722
  with headers) are kept back; what remains is the video budget on the wire.
* **The loss controller** (after libwebrtc's loss-based send-side estimate) reads each RTCP
  receiver report's fraction lost for our video. A report above :data:`LOSS_HIGH` (10 %)
  counts as high; two high reports in a row, or one above :data:`LOSS_SEVERE` (25 %),
  are sustained loss: the estimate drops to ``rate × (1 − loss / 2)`` (never below
  :data:`MIN_VIDEO_KBPS`), at most once per :data:`BACKOFF_INTERVAL`. Between :data:`LOSS_LOW`
  (2 %) and the high mark it holds: steady random loss of a few percent is not congestion (a
  congested line's queue drops far more), so it never ratchets the rate down. A report with a
  time earlier than the last one is ignored. A high report that covers at least
  :data:`SUSTAINED_SPAN` (2 s) since the previous report is sustained by itself: its fraction is
  an average over that span, not a key-frame blip, and a peer that reports every 5 s
  (baresip/libre) would otherwise be heard only 10 s after its line dropped.
* **Probing up** (a report below :data:`LOSS_LOW`, at most once per :data:`PROBE_INTERVAL`):
  the estimate grows by :data:`PROBE_FACTOR` (8 %) per second of clean time (the time since the
  previous report or probe, whichever is later, at most :data:`PROBE_SPAN` = 5 s: a peer that
  reports every 5 s climbs 47 % a report, not 8 %), plus 1 kbit/s. From the
  :data:`FAST_AFTER`-th (3rd) clean report in a row on, the growth is :data:`FAST_PROBE_FACTOR`
  (15 %) per second: a line that stays clean is probed faster, as libwebrtc's does; any report
  that is not clean ends the run. For :data:`CAREFUL_SPAN` (30 s) after a back-off or a
  key-frame cut the line is known to have failed near here: the growth is :data:`PROBE_FACTOR`
  per report (8 % + 1 kbit/s, however long the report's span), so a site moved down from a
  dropped line climbs back slowly instead of overflowing it again within seconds. Once the
  estimate reaches the other caps it is lifted (no loss limit) until the next sustained loss.
* **Key-frame requests as a loss sign** (:meth:`RateBudget.on_keyframe_request`): a peer that
  sends no NACK, no REMB and no TMMBR (baresip) asks for a key frame (PLI/FIR) when it lost
  packets and repeats it every 0.5 s until one decodes; its receiver reports come only every 5 s.
  :data:`KEYFRAME_BURST` (3) requests within :data:`KEYFRAME_SPAN` (2 s), when the last receiver
  report said the line was clean (below :data:`LOSS_LOW`), are news: the line just got
  worse (a report that arrives during the burst does not make it old news). The estimate drops
  to ``rate × KEYFRAME_BACKOFF`` (0.6), at most once per :data:`KEYFRAME_INTERVAL` (0.4 s: the
  second cut lands on the peer's next request, 0.5 s later, whatever their jitter; the requests
  go on until a key frame decodes, so waiting for another one told nothing and cost the 3 s
  goal) and at most :data:`KEYFRAME_CUTS` (2) times in one episode:
  0.36 of the rate at most, enough to go from the top of the customer's 768 kbit/s–2 Mbit/s
  range to its bottom. The receiver reports judge the episode: one below :data:`LOSS_LOW` ends
  it and undoes its cuts (the requests were not the line: a decoder's own trouble); one above
  :data:`LOSS_HIGH` ends it, and its back-off applies to the estimate *before* the cuts (the
  report measured the span before them): the estimate becomes the smaller of the cut one and
  that, so a report does not cut twice for the same loss; one in between (the first report
  after a drop is diluted by the clean part of its span) lets it go on.
  Bursts that begin after a report that already said loss do nothing here (that loss is the
  report rules' business; on a line with random loss every loss brings a request, and the rate
  must not collapse for it), and so do requests before the first report (a peer asks for key
  frames while its call starts).
* **An unknown line starts low** (``RateBudget(..., line_known=False)``: the site plan names no
  ``line_kbps`` for it, the protocol's default stands in): until something says what the line
  carries, the estimate starts at :data:`UNKNOWN_START_KBPS` (640x360's tier with headroom, never
  720p) and the loss controller probes it up on clean receiver reports like any other estimate
  (:attr:`RateBudget.limited_by` says :attr:`Signal.START` while that guess limits). The line becomes
  known, and the guess is dropped (the other caps place the site at once), when the peer states it:
  any SDP ``b=`` line, TMMBR, REMB, an H.245 flow control, an H.245 ``maxBitRate`` that limits
  below the line's headroom (one that does not says nothing about the line), or the configured
  line (:meth:`RateBudget.set_line`). Sustained loss or a key-frame burst makes the estimate a
  measured one: it is no longer a guess.
* **The video budget** is the smallest of: line headroom, the video caps, the loss estimate;
  then the RTP/UDP/IP header share (:data:`HEADER_SHARE`) is taken off, so the result is the
  rate the encoder may produce. It is never below :data:`MIN_VIDEO_KBPS` (the encoder's floor);
  :attr:`RateBudget.carries_video` says whether the line really has room for that.
* Each change is recorded (:class:`BudgetChange`: time, old and new video rate, the signal
  that limits now) in ``history`` (the newest :data:`HISTORY` entries).
"""
from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

MIN_KBPS = 64  # floor of any cap: the smallest line that still carries audio and a trickle of video
MAX_KBPS = 100_000  # ceiling of any cap: 100 Mbit/s; a room system never needs more
MIN_VIDEO_KBPS = 32  # the encoder's floor (mcu.encoder refuses less)
AUDIO_KBPS = 80  # G.711/G.722 at 64 kbit/s + 50 packets/s of IP/UDP/RTP headers
RTCP_SHARE = 0.05
HEADER_SHARE = 0.04  # 40 header bytes per ~1 kB video packet
LOSS_LOW = 0.02
LOSS_HIGH = 0.10
LOSS_SEVERE = 0.25
BACKOFF_INTERVAL = 1.0
PROBE_INTERVAL = 1.0
PROBE_FACTOR = 1.08  # per second of clean time
PROBE_SPAN = 5.0
FAST_PROBE_FACTOR = 1.15
FAST_AFTER = 3
CAREFUL_SPAN = 30.0
SUSTAINED_SPAN = 2.0
KEYFRAME_BURST = 3
KEYFRAME_SPAN = 2.0
KEYFRAME_BACKOFF = 0.6
KEYFRAME_CUTS = 2
KEYFRAME_INTERVAL = 0.4
HISTORY = 50
UNKNOWN_START_KBPS = 600  # on the wire: 576 kbit/s of video, 640x360 (500k) with the tiers' 0.9 headroom


class Signal(enum.Enum):
    """Where a cap comes from."""

    LINE = "line"  # the site plan's line_kbps (or the protocol default)
    SDP_SESSION = "sdp_session"  # session-level b=AS
    SDP_VIDEO = "sdp_video"  # video b=AS
    SDP_TIAS = "sdp_tias"  # video b=TIAS
    H245_MAX_BITRATE = "h245_max_bitrate"
    H245_FLOW_CONTROL = "h245_flow_control"
    TMMBR = "tmmbr"
    REMB = "remb"
    LOSS = "loss"  # the loss controller
    START = "start"  # an unknown line's starting guess (the loss controller probes it up)


LINE_SIGNALS = frozenset({Signal.LINE, Signal.SDP_SESSION})


@dataclass(frozen=True)
class BudgetChange:
    """The video budget moved."""

    at: float
    previous_kbps: int
    video_kbps: int
    limited_by: Signal

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "previous_kbps": self.previous_kbps, "video_kbps": self.video_kbps,
                "limited_by": self.limited_by.value}


def _number(value: object) -> float | None:
    """``value`` as a finite float; None for anything that is not a finite int or float (a huge int
    becomes ±1e300, still finite, so it clamps instead of being dropped)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return float(max(-10**300, min(10**300, value)))
    return value if math.isfinite(value) else None


def clamp_kbps(value: object) -> float | None:
    """A cap clamped into [MIN_KBPS, MAX_KBPS]; None for a value that is not a finite number."""
    number = _number(value)
    if number is None:
        return None
    return min(float(MAX_KBPS), max(float(MIN_KBPS), number))


class RateBudget:
    """The budget of one leg (see the module docstring for the rules)."""

    def __init__(self, line_kbps: float, *, audio_kbps: float = AUDIO_KBPS, now: float = 0.0,
                 line_known: bool = True) -> None:
        audio = _div(audio_kbps, 1)
        self.audio_kbps = float(AUDIO_KBPS) if audio is None else max(0.0, min(float(MAX_KBPS), audio))
        self._caps: dict[Signal, float] = {}
        self._loss_kbps: float | None = None  # the loss controller's estimate; None = no loss limit
        self._high_reports = 0
        self._last_report = -math.inf
        self._last_backoff = -math.inf
        self._last_probe = -math.inf
        self._clean_run = 0  # clean reports in a row
        self.last_fraction_lost = 0.0
        self._requests: deque[tuple[float, bool]] = deque(maxlen=KEYFRAME_BURST)  # (time, clean then)
        self._last_request = -math.inf
        self._keyframe_cuts = 0
        self._before_cuts: float | None = None  # the loss estimate before the first key-frame cut
        self.history: deque[BudgetChange] = deque(maxlen=HISTORY)
        self._set(Signal.LINE, line_kbps)
        if Signal.LINE not in self._caps:
            self._caps[Signal.LINE] = float(MIN_KBPS)
        # an unknown line: the loss estimate starts at a guess until the peer says what it carries
        self._guess = not line_known and self._without_loss() > UNKNOWN_START_KBPS
        if self._guess:
            self._loss_kbps = float(UNKNOWN_START_KBPS)
        self._video, self._limit = self._compute()
        self._now = now

    # ------------------------------------------------------------------ the contract
    def video_kbps(self) -> int:
        """The video rate the leg may send now (after headroom for audio, RTCP and headers)."""
        return self._video

    @property
    def limited_by(self) -> Signal:
        """The signal that sets the budget now."""
        return self._limit

    @property
    def line_known(self) -> bool:
        """False while the estimate is still an unknown line's starting guess."""
        return not self._guess

    @property
    def line_kbps(self) -> int:
        """The smallest line cap (configured line or session b=AS)."""
        return int(min(self._caps[s] for s in LINE_SIGNALS if s in self._caps))

    @property
    def carries_video(self) -> bool:
        """False when the line leaves less than MIN_VIDEO_KBPS beside audio (audio-only line)."""
        return self._line_headroom() * (1 - HEADER_SHARE) >= MIN_VIDEO_KBPS

    def caps(self) -> dict[str, int]:
        """Every signal's current cap (kbit/s), for the console."""
        out = {s.value: int(v) for s, v in self._caps.items()}
        if self._loss_kbps is not None:
            out[Signal.LOSS.value] = int(self._loss_kbps)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The console's view: budget, what limits it, every cap, last loss."""
        return {"video_kbps": self._video, "line_kbps": self.line_kbps, "limited_by": self._limit.value,
                "caps": self.caps(), "fraction_lost": round(self.last_fraction_lost, 4)}

    # ------------------------------------------------------------------ inputs
    def set_line(self, kbps: float, now: float | None = None) -> BudgetChange | None:
        """The configured line rate (the site plan's ``line_kbps``): the line is known."""
        self._set(Signal.LINE, kbps)
        self._known()
        return self._recompute(Signal.LINE, now)

    def on_sdp(self, *, session_as_kbps: float | None = None, video_as_kbps: float | None = None,
               video_tias_bps: float | None = None, now: float | None = None) -> BudgetChange | None:
        """The peer's SDP ``b=`` lines (None: absent, the previous value is forgotten)."""
        tias = None if video_tias_bps is None else _div(video_tias_bps, 1000 * (1 - HEADER_SHARE))
        for signal, value in ((Signal.SDP_SESSION, session_as_kbps), (Signal.SDP_VIDEO, video_as_kbps),
                              (Signal.SDP_TIAS, tias)):
            if value is None:
                self._caps.pop(signal, None)
            else:
                self._set(signal, value)
                if signal in self._caps:
                    self._known()
        return self._recompute(Signal.SDP_SESSION, now)

    def on_h245_max_bitrate(self, kbps: float, now: float | None = None) -> BudgetChange | None:
        """H.245 ``maxBitRate`` of the video channel we send on (the video bit stream, in kbit/s)."""
        self._set(Signal.H245_MAX_BITRATE, _div(kbps, 1 - HEADER_SHARE))
        cap = self._caps.get(Signal.H245_MAX_BITRATE)
        if cap is not None and cap < self._line_headroom():  # it limits: a statement about the line
            self._known()
        return self._recompute(Signal.H245_MAX_BITRATE, now)

    def on_h245_flow_control(self, kbps: float, now: float | None = None) -> BudgetChange | None:
        """H.245 ``flowControlCommand`` restricting our video channel (its bit stream, in kbit/s)."""
        return self._update(Signal.H245_FLOW_CONTROL, _div(kbps, 1 - HEADER_SHARE), now)

    def on_tmmbr(self, bitrate_bps: float, overhead_bytes: int = 0, now: float | None = None) -> BudgetChange | None:
        """RTCP TMMBR for our video SSRC: ``bitrate_bps`` includes ``overhead_bytes`` per packet."""
        kbps = _div(bitrate_bps, 1000)
        if kbps is not None and isinstance(overhead_bytes, int) and 0 < overhead_bytes < 512:
            # The stated per-packet overhead instead of our HEADER_SHARE guess (~1 kB packets).
            kbps *= 1000 / (1000 + overhead_bytes) / (1 - HEADER_SHARE)
        return self._update(Signal.TMMBR, kbps, now)

    def on_remb(self, bitrate_bps: float, now: float | None = None) -> BudgetChange | None:
        """REMB: the receiver's estimate for our video."""
        return self._update(Signal.REMB, _div(bitrate_bps, 1000), now)

    def clear(self, signal: Signal, now: float | None = None) -> BudgetChange | None:
        """Forget one signal's cap (the configured line cannot be forgotten)."""
        if signal in (Signal.LOSS, Signal.START):
            self._loss_kbps = None
            self._guess = False
        elif signal is not Signal.LINE:
            self._caps.pop(signal, None)
        return self._recompute(signal, now)

    def on_receiver_report(self, fraction_lost: float, now: float) -> BudgetChange | None:
        """An RTCP receiver report block about our video: ``fraction_lost`` in 0..1 (RFC 3550's
        8-bit value divided by 256; values outside are clamped, non-numbers ignored)."""
        loss, at = _number(fraction_lost), _number(now)
        if loss is None or at is None or at < self._last_report:
            return None
        loss = min(1.0, max(0.0, loss))
        span = at - self._last_report if self._last_report > -math.inf else 0.0  # the first has none
        self._last_report = at
        self.last_fraction_lost = loss
        episode = self._keyframe_cuts > 0
        before_cuts = self._before_cuts
        if episode and loss < LOSS_LOW:  # the key-frame requests were not the line: undo
            self._loss_kbps = before_cuts
        if loss < LOSS_LOW or loss > LOSS_HIGH:  # the key-frame episode (if any) is over
            self._keyframe_cuts = 0
            self._before_cuts = None
        self._clean_run = self._clean_run + 1 if loss < LOSS_LOW else 0
        others = self._without_loss()
        if loss > LOSS_HIGH:
            self._high_reports += 1
            sustained = self._high_reports >= 2 or loss > LOSS_SEVERE or span >= SUSTAINED_SPAN
            if sustained and at - self._last_backoff >= BACKOFF_INTERVAL:
                current = self._loss_kbps if self._loss_kbps is not None else others
                if episode:  # the report measured the rate before the cuts: back off from that
                    before = before_cuts if before_cuts is not None else others
                    target = min(current, min(before, others) * (1 - loss / 2))
                else:
                    target = min(current, others) * (1 - loss / 2)
                self._loss_kbps = max(float(MIN_VIDEO_KBPS), target)
                self._guess = False
                self._last_backoff = at
                self._last_probe = at
        else:
            self._high_reports = 0
            if loss < LOSS_LOW and self._loss_kbps is not None and at - self._last_probe >= PROBE_INTERVAL:
                clean_for = min(span, at - self._last_probe, PROBE_SPAN)
                factor = FAST_PROBE_FACTOR if self._clean_run >= FAST_AFTER else PROBE_FACTOR
                if at - self._last_backoff < CAREFUL_SPAN:  # the line failed near here lately
                    clean_for, factor = 1.0, PROBE_FACTOR
                self._last_probe = at
                raised = self._loss_kbps * factor ** max(1.0, clean_for) + 1
                self._loss_kbps = None if raised >= others else raised
                if self._loss_kbps is None:
                    self._guess = False  # probed up to the line: nothing left to guess
        return self._recompute(Signal.LOSS, at)

    def on_keyframe_request(self, now: float) -> BudgetChange | None:
        """The peer asked for a key frame of our video (PLI/FIR) at ``now``."""
        at = _number(now)
        if at is None or at < self._last_request:
            return None
        self._last_request = at
        self._requests.append((at, self._last_report > -math.inf and self.last_fraction_lost < LOSS_LOW))
        first, clean_then = self._requests[0]
        burst = len(self._requests) == KEYFRAME_BURST and at - first <= KEYFRAME_SPAN
        # news: the burst began while the last report said clean, or an episode that did goes on
        clean = clean_then or self._keyframe_cuts > 0
        if not (burst and clean and self._keyframe_cuts < KEYFRAME_CUTS and at - self._last_backoff >= KEYFRAME_INTERVAL):
            return None
        if self._keyframe_cuts == 0:
            self._before_cuts = self._loss_kbps
        others = self._without_loss()
        current = self._loss_kbps if self._loss_kbps is not None else others
        self._loss_kbps = max(float(MIN_VIDEO_KBPS), min(current, others) * KEYFRAME_BACKOFF)
        self._guess = False
        self._keyframe_cuts += 1
        self._last_backoff = at
        self._last_probe = at
        return self._recompute(Signal.LOSS, at)

    # ------------------------------------------------------------------ the arithmetic
    def _set(self, signal: Signal, kbps: float | None) -> None:
        if kbps is None:
            return
        clamped = clamp_kbps(kbps)
        if clamped is not None:
            self._caps[signal] = clamped

    def _update(self, signal: Signal, kbps: float | None, now: float | None) -> BudgetChange | None:
        """A cap the peer (or its network) states: the line is known from now on."""
        self._set(signal, kbps)
        if signal in self._caps:
            self._known()
        return self._recompute(signal, now)

    def _known(self) -> None:
        if self._guess:  # drop the starting guess: the stated caps place the site
            self._guess = False
            self._loss_kbps = None

    def _line_headroom(self) -> float:
        line = min(self._caps[s] for s in LINE_SIGNALS if s in self._caps)
        return line * (1 - RTCP_SHARE) - self.audio_kbps

    def _without_loss(self) -> float:
        """The wire video rate every cap but the loss controller allows."""
        wire = self._line_headroom()
        for signal, cap in self._caps.items():
            if signal not in LINE_SIGNALS:
                wire = min(wire, cap)
        return max(float(MIN_VIDEO_KBPS), wire)

    def _compute(self) -> tuple[int, Signal]:
        wire, limit = self._line_headroom(), min(
            (s for s in LINE_SIGNALS if s in self._caps), key=lambda s: (self._caps[s], s.value))
        for signal, cap in sorted(self._caps.items(), key=lambda item: item[0].value):
            if signal not in LINE_SIGNALS and cap < wire:
                wire, limit = cap, signal
        if self._loss_kbps is not None and self._loss_kbps < wire:
            wire, limit = self._loss_kbps, Signal.START if self._guess else Signal.LOSS
        return max(MIN_VIDEO_KBPS, int(wire * (1 - HEADER_SHARE))), limit

    def _recompute(self, cause: Signal, now: float | None) -> BudgetChange | None:
        at = _number(now)
        if at is not None:
            self._now = at
        previous = self._video
        self._video, self._limit = self._compute()
        if self._video == previous:
            return None
        change = BudgetChange(self._now, previous, self._video, self._limit)
        self.history.append(change)
        return change


def _div(value: object, by: float) -> float | None:
    number = _number(value)
    return None if number is None else number / by


__all__ = ["UNKNOWN_START_KBPS", "AUDIO_KBPS", "MAX_KBPS", "MIN_KBPS", "MIN_VIDEO_KBPS", "BudgetChange", "RateBudget", "Signal",
           "clamp_kbps"]
