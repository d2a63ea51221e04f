"""A layout change re-INVITEs a SIP site with the size of its pane (RFC 6236 imageattr; real SIPp).

SIPp plays a room system that offers imageattr. Alone in the room it is shown full screen, so
the MCU asks it for 1280x720; the chair switches to 3x3 and, once the layout has settled, the
MCU re-INVITEs it for the 3x3 pane's rung, 480x270. SIPp's regexes check our SDP on the wire
(the scenario fails, and SIPp exits non-zero, if a re-INVITE lacks the expected imageattr).
"""
from __future__ import annotations

import asyncio
import shutil

import pytest

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from sip_gateway.rtp.media_description import MediaPolicy
from tests.sip_gateway.conference_helpers import DEMO, start_bridge, until
from tests.sip_gateway.sip_testlib import run_sipp

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing (Debian sip-tester)")]


async def test_layout_change_reinvites_with_the_pane_size(services: CoreServices,
                                                          conferences: ConferenceService) -> None:
    bridge = await start_bridge(services, conferences, MediaPolicy(video_codecs=("H264",)))
    conf = conferences.running(DEMO)
    assert conf is not None
    try:
        # -aa: SIPp answers our SIP INFO key-frame requests with 200 OK.
        sipp = asyncio.ensure_future(run_sipp("imageattr_reinvite.xml", bridge.endpoint.config.port, DEMO,
                                              extra=("-aa",)))
        try:
            await until(lambda: any(s.media is not None for s in bridge.sites.values()), 20, "SIPp's call to join")
        except AssertionError:
            code, output = await asyncio.wait_for(sipp, 40)
            raise AssertionError(f"SIPp ({code}): {output[-3000:]}") from None
        site = next(s for s in bridge.sites.values() if s.media is not None)
        await until(lambda: site.pane_reinvites == 1 and not site.call.reinvite_pending, 10,
                    "the first imageattr re-INVITE to be answered")
        assert conf.room.participants[site.site_id].pane == (1280, 720)
        conf.room.set_layout("3x3")
        await until(lambda: site.pane_reinvites == 2, 10, "the re-INVITE after the layout change")
        assert conf.room.participants[site.site_id].pane == (480, 270)
        code, output = await asyncio.wait_for(sipp, 40)
        assert code == 0, output[-3000:]
        assert site._imageattr is True  # its answers carried imageattr: it may be asked again
    finally:
        await bridge.stop()


async def test_a_peer_without_imageattr_is_reinvited_once(services: CoreServices,
                                                          conferences: ConferenceService) -> None:
    bridge = await start_bridge(services, conferences, MediaPolicy(video_codecs=("H264",)))
    conf = conferences.running(DEMO)
    assert conf is not None
    try:
        sipp = asyncio.ensure_future(run_sipp("imageattr_unsupported.xml", bridge.endpoint.config.port, DEMO,
                                              extra=("-aa",)))
        await until(lambda: any(s.media is not None for s in bridge.sites.values()), 20, "SIPp's call to join")
        site = next(s for s in bridge.sites.values() if s.media is not None)
        await until(lambda: site.pane_reinvites == 1 and not site.call.reinvite_pending, 10,
                    "the first imageattr re-INVITE to be answered")
        conf.room.set_layout("3x3")
        await until(lambda: conf.room.participants[site.site_id].pane == (480, 270), 10, "the smaller pane")
        await asyncio.sleep(0.5)
        assert site.pane_reinvites == 1 and site._imageattr is False  # not asked again
        code, output = await asyncio.wait_for(sipp, 40)
        assert code == 0, output[-3000:]
    finally:
        await bridge.stop()
