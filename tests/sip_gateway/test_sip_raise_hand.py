"""Request to speak from a SIP room system: pjsua2 (PJSIP) presses *1 (RFC 4733) in a conference.

The digits travel the real path (pjsua2's RTP telephone events, our RTP leg, the site's SiteMedia,
the conference's DTMF listeners) into the content service's raise-hand queue; the chair's consoles
hear of it as a ``conference.hands`` bus event; the chair approves and the site is unmuted.
"""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiortc import RTCConfiguration

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.content.service import ContentService
from tests.sip_gateway.conference_helpers import joined, start_bridge, until
from tests.sip_gateway.test_sip_pjsua import run_peer


async def test_pjsua_star_one_raises_a_hand_and_the_chair_approves(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    content = ContentService(conferences, RTCConfiguration())
    await content.start()
    bridge = await start_bridge(services, conferences, max_video_size="352x288")
    port = bridge.endpoint.config.port
    await conferences.create(name="乡镇举手测试", actor="test", guests=True, conference_id="80000078")
    conf = await conferences.start_conference("80000078", actor="test")
    peer: asyncio.Future[dict[str, object]] | None = None
    with services.bus.subscribe("conference.hands") as events:
        try:
            # Noise first ("5"), then *1 with a pause between the two keys; it talks for 6 s after.
            peer = asyncio.ensure_future(run_peer({
                "user": "township", "target": f"sip:80000078@127.0.0.1:{port}", "digits": ["5", "*", "1"],
                "digit_pause": 1.0, "wav": str(tmp_path / "heard.wav"), "tone_hz": 600, "talk_seconds": 6.0,
            }))
            await until(lambda: len(joined(conf)) == 1 or peer.done(), 30, "pjsua to join")
            site_id = joined(conf)[0]
            conf.room.mute(site_id, True)
            state = content.of(conf)
            await until(lambda: site_id in state.hands or peer.done(), 20, "*1 to raise the hand")
            hand = state.hands.entries[0]
            assert hand.participant_id == site_id and hand.via == "dtmf"
            event = await asyncio.wait_for(anext(aiter(events)), 5)
            assert event.topic == "conference.hands" and event.payload["change"] == "raised"
            assert event.payload["subject"] == site_id and event.payload["hands"][0]["via"] == "dtmf"
            state.approve(site_id)
            assert not conf.room.participants[site_id].muted and conf.room.broadcast_id == site_id
            assert state.hands.entries == []
            result = await peer
            assert result["call_state"] == "CONFIRMED", result
        finally:
            if peer is not None:
                with contextlib.suppress(Exception):
                    await peer
            await bridge.stop()
            await content.stop()
