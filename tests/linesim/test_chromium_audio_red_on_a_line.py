"""RED for Opus (RFC 2198) towards a browser on a real lossy line: headless Chromium behind
``2M_2pct_30ms`` and ``768k_1pct_30ms`` (issue 16's two lossy lines).

As in test_chromium_audio_fec_on_a_line.py, Chromium runs inside the line's namespace and one page
holds three audio-only participants of the same room, on the same line, hearing the same spoken
sentence. Their offers differ only in what they let us protect with:

* ``red``: Chromium's offer as it is (``red/48000/2`` after Opus, and ``useinbandfec=1``): the
  leg answers RED and sends each packet with the previous one (or two) inside once the reports
  show loss (mcu.legs.audio_red);
* ``inband``: RED taken out of the offer: Opus in-band FEC only (the leg before RED);
* ``off``: RED taken out and ``useinbandfec=0``: unprotected.

Judged by Chromium's getStats (inbound-rtp audio) over the same 15 s on the three legs, relative to
the unprotected one: all lose packets at the line's rate; ``red``'s losses are played from the next
packet's copy, so it conceals far fewer of them than ``off`` (and the copies of frames it already
has show as ``packetsDiscarded``: NetEq counts only Opus in-band FEC as ``fecPacketsReceived``).
"""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from mcu.conferences import ConferenceService
from mcu.legs.audio_red import offered_audio_red
from mcu.legs.webrtc import WebRtcConfig, WebRtcLeg, WebRtcLegs
from tests.browser import CHROMIUM
from tests.linesim.conftest import OpenLine
from tests.linesim.test_chromium_audio_fec_on_a_line import OFFER_JS, STATS_JS, measure_audio, speak, speech
from tests.linesim.test_chromium_rtx_on_a_line import ARGS
from tests.sip_gateway.conference_helpers import DEMO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ON_WITHIN_S = 40.0

STATS_RED_JS = STATS_JS.replace("concealmentEvents: 0,", "concealmentEvents: 0, fecPacketsReceived: 0, packetsDiscarded: 0,")


@pytest.mark.parametrize("profile", ["2M_2pct_30ms", "768k_1pct_30ms"])
async def test_red_cuts_concealment_behind_a_lossy_line(
        conferences: ConferenceService, linesim: OpenLine, tmp_path: Path, profile: str) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian package 'chromium'")
    from playwright.async_api import async_playwright

    line = linesim(profile)
    conf = conferences.running(DEMO)
    assert conf is not None
    source = await conf.join("voice", "讲话者", "demo")
    stop = asyncio.Event()
    feeder = asyncio.ensure_future(speak(source, speech(tmp_path), stop))
    legs = WebRtcLegs(WebRtcConfig(host_addresses=(line.mcu_address,)))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(line.wrapper(CHROMIUM, tmp_path)),
                                          args=[*ARGS, "--autoplay-policy=no-user-gesture-required"], headless=True)
        try:
            page = await browser.new_page()
            sites: dict[str, WebRtcLeg] = {}
            for name in ("red", "inband", "off"):
                offer = await page.evaluate(OFFER_JS, [name, name])
                # Chromium offers RED for Opus by itself (no field trial); the others had it taken out.
                assert (offered_audio_red(offer) is not None) == (name == "red"), offer
                leg = legs.create(conf, participant_id=f"chromium-{name}", name=name)
                answer = await leg.answer(offer)
                assert ("red/48000/2" in answer) == (name == "red"), answer
                await page.evaluate("async ([name, sdp]) => { await window.pcs[name].setRemoteDescription("
                                    "{type: 'answer', sdp}); }", [name, answer])
                sites[name] = leg
            assert sites["red"].audio_fec.red is not None and sites["inband"].audio_fec.red is None
            deadline = time.monotonic() + ON_WITHIN_S
            while not (sites["red"].audio_fec.switch.on and sites["inband"].audio_fec.switch.on):
                assert time.monotonic() < deadline, f"protection not on within {ON_WITHIN_S} s: " \
                    f"{ {n: s.audio_fec.describe() for n, s in sites.items()} }"
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # the frames encoded before the switch are through
            delta = await measure_audio(page, sites, STATS_RED_JS)
            print(f"chromium audio behind {profile}:", delta, "line", line.tbf_drops())
            red, off = delta["red"], delta["off"]
            assert not sites["off"].audio_fec.switch.on, delta
            assert red["audio_red"] in (1, 2) and red["audio_fec_loss_perc"] == 0, delta  # RED, not in-band FEC
            # The line lost packets on every leg (RED does not stop loss, it repairs it) ...
            assert red["packetsLost"] > 0 and off["packetsLost"] > 0, delta
            # ... Chromium's NetEq split our RED: the copy of a frame it already has is discarded, as
            # a packet (its fecPacketsReceived/fecPacketsDiscarded count Opus in-band FEC only) ...
            assert red["packetsDiscarded"] > 0.5 * red["packetsReceived"] > 0, delta
            assert off["packetsDiscarded"] < 0.1 * off["packetsReceived"], delta
            # ... and played the lost frames from them: the copy of a lost frame is the one copy NetEq
            # keeps (received - discarded), so nearly every loss was repaired ...
            repaired = red["packetsReceived"] - red["packetsDiscarded"]
            assert repaired >= 0.7 * red["packetsLost"], delta
            # ... and heard: without protection nearly every loss is concealed; with RED only a loss
            # of two (three) in a row is. On a loaded machine all three legs also conceal the same
            # late mixes (the MCU's audio clock stalls; measured up to 5 % of samples on every leg),
            # so RED is judged by how many fewer concealment events it has than the unprotected leg.
            assert off["concealmentEvents"] >= 0.5 * off["packetsLost"], delta
            assert red["concealmentEvents"] <= off["concealmentEvents"] - 0.5 * off["packetsLost"], delta
        finally:
            stop.set()
            await feeder
            await browser.close()
            await legs.stop()
            await conf.leave("voice")
