"""A SIP room system whose line drops from 2 Mbit/s to 768 kbit/s mid-call is moved down (issue 16).

baresip sends no REMB and no TMMBR: only RTCP receiver reports (and PLI when its decoder breaks).
It dials in over an emulated 2 Mbit/s line (the site plan says 2 Mbit/s, so it starts on 720p at
1.5 Mbit/s) with a busy picture, so the composite really costs the 720p encoder its rate. Mid-call
the line's tbf rate becomes 768 kbit/s (both ways, like a leased line falling back): the MCU must
move the site to a tier whose rate fits a 768 kbit/s line's budget, from the loss in baresip's
receiver reports and key-frame requests (baresip reports every 5 s, and asks for a key frame every
0.5 s once it loses packets). The goal is 3 s; the test asserts :data:`BOUND` (generous, the machine
is shared) and prints the measured time, the reports and requests that arrived and the budget's
changes. Afterwards the site stops asking for key frames, and baresip keeps decoding: its status
line at the end of the call shows received video and decoded frames/s, and its H.264 decoder's
errors (after the drop) stop within a few seconds of the move. baresip 1.0.0 logs "receiving with
resolution" only for the first picture, so the new size is not read from its log.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from config.site_plan import LineDefaults
from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.legs.rate_budget import RateBudget
from mcu.legs.sip import SipSite
from mcu.legs.site_rate import SiteRate
from mcu.tiers import TierRules
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.rtp.media_description import MediaPolicy
from sip_gateway.rtp.session import KeyframeRequest, NackRequest, ReceptionReport
from tests.linesim.conftest import OpenLine
from tests.linesim.peers import LineBaresip, busy_video, start_line_bridge, state_the_line
from tests.sip_gateway.conference_helpers import DEMO, joined, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150),
              pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing")]

FROM_KBPS, TO_KBPS = 2000, 768
BOUND = 6.0  # seconds from the drop to the move; the goal is 3 s
AFTER_MOVE = 8.0  # seconds of the call after the move
BEFORE_DROP = 6.0
OVERFLOW = 1.2  # the video we send before the drop, relative to the line after it  # seconds on the 2 Mbit/s line first (receiver reports flowing, 720p decoded)


async def test_a_line_drop_moves_a_baresip_site_down_within_seconds(
        services: CoreServices, conferences: ConferenceService, linesim: OpenLine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.plan, "lines", LineDefaults(sip=FROM_KBPS))
    state_the_line(monkeypatch, services.plan, FROM_KBPS)  # 720p first, as on a stated 2M line
    line = linesim("2M_20ms")
    video = busy_video(tmp_path / "busy.mp4", seconds=90)
    reports: list[tuple[float, float]] = []
    feedback = SiteRate.on_rate_feedback

    def recording(rate: SiteRate, kind: str, fb: object) -> None:
        if kind == "video" and isinstance(fb, ReceptionReport):
            reports.append((time.monotonic(), fb.fraction_lost))
        feedback(rate, kind, fb)  # type: ignore[arg-type]

    monkeypatch.setattr(SiteRate, "on_rate_feedback", recording)
    asks: list[tuple[float, str]] = []  # the peer's PLI/FIR and NACKs (for the print)
    on_event = MediaLeg._on_event

    def seeing(leg: MediaLeg, channel: object, event: object) -> None:
        if isinstance(event, KeyframeRequest | NackRequest):
            asks.append((time.monotonic(), type(event).__name__))
        on_event(leg, channel, event)  # type: ignore[arg-type]

    monkeypatch.setattr(MediaLeg, "_on_event", seeing)
    bridge = await start_line_bridge(services, conferences, line, MediaPolicy(h264_modes=(1,), video_codecs=("H264",)),
                                     pace_video=True, max_video_size="1280x720")
    conf = conferences.running(DEMO)
    assert conf is not None
    peer = LineBaresip(tmp_path / "site", line=line, video_file=video)
    # The tier a 768 kbit/s line carries: its video budget with the tier machine's headroom.
    fits = RateBudget(TO_KBPS).video_kbps() * TierRules().headroom
    try:
        await peer.start(f"/dial sip:{DEMO}@{line.mcu_address}:{bridge.endpoint.config.port}")
        await until(lambda: len(joined(conf)) == 1, 30, "baresip behind the line to join")
        site = next(iter(bridge.sites.values()))
        await until(lambda: site.media is not None, 10, "the site's media")
        media, rate = site.media, site.rate
        assert media is not None and rate is not None and media.seat is not None
        await peer.wait_log(r"video: receiving with resolution 1280 x 720", 30)
        assert media.seat.tier is not None and media.seat.tier.kbps > fits, media.seat.tier
        await asyncio.sleep(BEFORE_DROP)
        assert reports, "baresip's receiver reports never reached the budget"
        # The drop must really overflow the line: the room's 720p stream must be above what 768 kbit/s
        # carries. On a loaded machine the room composes fewer frames and sends less: wait for a
        # busy moment (bounded) and say so with the numbers if none comes. (A noisier picture does
        # not help: baresip's own upstream then overflows the line and the composite stalls.)
        rates = []
        for _ in range(8):
            rates.append(await wire_kbps(site, 2.0))
            if rates[-1] >= OVERFLOW * TO_KBPS:
                break
        print("video sent before the drop (kbit/s on the wire, 2 s windows):", rates)
        assert rates[-1] >= OVERFLOW * TO_KBPS, (
            f"the room sent only {rates} kbit/s of 720p video (load {os.getloadavg()}): a drop to {TO_KBPS} "
            "kbit/s would not overflow the line, so there is nothing to react to; the machine is too busy")
        line.set_rate(TO_KBPS)
        dropped = time.monotonic()
        moved: float | None = None
        while moved is None and time.monotonic() - dropped < BOUND + 10:  # past the bound, to measure a slow move
            tier = media.seat.tier
            if tier is not None and tier.kbps <= fits:
                moved = time.monotonic() - dropped
            await asyncio.sleep(0.05)
        tier = media.seat.tier
        assert tier is not None
        print(f"\nline {FROM_KBPS} -> {TO_KBPS} kbit/s: site on {tier.width}x{tier.height} ({tier.kbps} kbit/s), "
              f"moved {moved if moved is None else round(moved, 2)} s after the drop (goal 3 s, bound {BOUND:g} s)")
        print("receiver reports (s after the drop, fraction lost):",
              [(round(t - dropped, 2), round(f, 3)) for t, f in reports])
        print("budget:", [{**c.to_json(), "at": round(c.at - dropped, 2)} for c in rate.budget.history])
        print("peer's requests:", [(round(t - dropped, 2), k) for t, k in asks if t > dropped - 6])
        print("router-queue drops:", line.tbf_drops(), "PLI/FIR served/coalesced:", media.seat.coalesced,
              "tier moves:", media.seat.moves)
        assert moved is not None and moved <= BOUND, moved
        # The call goes on at the new size: frames keep leaving for the site, the site stops asking
        # for key frames (its decoder is whole again) and stays.
        frames = media.counters.video_frames_out
        await asyncio.sleep(AFTER_MOVE)
        assert media.counters.video_frames_out > frames + AFTER_MOVE * 5, media.counters
        late = [t - dropped for t, _ in asks if t - dropped > moved + 2.0]
        print("after the move: requests", [round(t - dropped, 2) for t, _ in asks if t > dropped + moved],
              "pacer", site.leg.pacer.counters, "budget", rate.statistics(), "drops", line.tbf_drops())
        assert len(late) <= 2, late
        assert joined(conf) == [site.site_id]
        await peer.stop()  # baresip flushes its log and prints rtp_stats as the call ends
    except BaseException:
        print(peer.text[-3000:])
        raise
    finally:
        await bridge.stop()
        await peer.stop()
    (tmp_path / "baresip.log").write_text(peer.text)
    print("baresip log:", tmp_path / "baresip.log")
    errors, status = decoder_log(peer.text)
    print("baresip's decoder errors at call times (s):", errors, "its last status:", status)
    print("baresip rtp_stats:", "\n".join(peer.text.splitlines()[-6:]))
    # baresip kept decoding to the end of the call (its status line: received video, decoded frames/s)
    # and its decoder was whole again soon after the move: no error in the call's last seconds.
    assert status is not None and status[2] > 100_000 and status[3] >= 5.0, status
    assert not errors or errors[-1] <= status[0] - (AFTER_MOVE - 3.0), (errors, status)


async def wire_kbps(site: SipSite, seconds: float) -> int:
    """The video rate we send the site over ``seconds``, with IP/UDP/RTP headers (kbit/s)."""
    channel = site.leg.video
    assert channel is not None and channel.session is not None
    send = channel.session.send
    t0, octets, packets = time.monotonic(), send.octets, send.packets
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    return int(((send.octets - octets) + 40 * (send.packets - packets)) * 8 / 1000 / elapsed)


def decoder_log(text: str) -> tuple[list[int], tuple[int, int, int, float] | None]:
    """baresip's output read in order (its status line ends with a carriage return, not a newline):
    the call time (s) of each H.264 decoder error, and its last status line as (call time, video bit/s
    sent, video bit/s received, frames/s decoded)."""
    now, errors, status = 0, [], None
    for piece in re.split(r"[\r\n]", text):
        line = re.match(r"\[(\d+):(\d\d):(\d\d)\].*?video=(\d+)/(\d+) \(bit/s\) efps=[\d.]+/([\d.]+)", piece)
        if line:
            h, m, sec, sent, received, fps = line.groups()
            now = int(h) * 3600 + int(m) * 60 + int(sec)
            status = (now, int(sent), int(received), float(fps))
        elif re.match(r"\[h264 @ ", piece.strip()):
            errors.append(now)
    return errors, status
