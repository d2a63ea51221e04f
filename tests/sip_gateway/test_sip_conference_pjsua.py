"""pjsua2 (PJSIP) phones in real MCU conferences, and the dial-out bad paths.

* pjsua registers with digest auth, calls a PIN-protected no-guest conference (the INVITE is
  challenged), enters the PIN by RFC 4733 and is a first-class audio-only participant with a
  placeholder tile; a tone from each side is found by FFT on the other through the room's mixer.
* The MCU dials out to the registered pjsua (its binding, not a configured address).
* Dial-out failures show as status failed with the reason; bad requests change nothing;
  cancel before answer, chair remove hangs up the call, redial.
"""
from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.runtime import CoreServices
from mcu.conferences import ConferenceService
from mcu.legs.sip_bridge import DialOutError
from sip_gateway.aio.sip_endpoint import Decision, Reject, SipEndpoint
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call
from sip_gateway.sip.useragent import UserAgentConfig
from tests.sip_gateway.conference_helpers import DEMO, joined, start_bridge, until
from tests.sip_gateway.peers import MediaUas, dial
from tests.sip_gateway.test_sip_pjsua import dominant_frequency, run_peer, tone_in_frames

ACCOUNTS = {"pjuser": "Pj-Strong-Pass-42"}


def wav_samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


@pytest.mark.slow
async def test_pjsua_pin_conference_and_dial_out_to_registered_phone(
        services: CoreServices, conferences: ConferenceService, tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    bridge = await start_bridge(services, conferences, accounts=ACCOUNTS, max_video_size="352x288")
    port = bridge.endpoint.config.port
    await conferences.create(name="镇长碰头会", actor="test", pin="4321", guests=False, conference_id="80000077")
    conf = await conferences.start_conference("80000077", actor="test")
    uas = MediaUas(tone_hz=1000)  # a room system already in the conference, sending a 1 kHz tone
    await uas.start()
    peers: list[asyncio.Future[dict[str, object]]] = []
    try:
        await bridge.invite("80000077", site_id="hall", uri=f"sip:hall@127.0.0.1:{uas.endpoint.config.port}")
        await until(lambda: joined(conf) == ["hall"], 15, "the room system to join")

        wav = tmp_path / "pin.wav"
        phone = asyncio.ensure_future(run_peer({
            "user": "pjuser", "password": ACCOUNTS["pjuser"], "registrar": f"sip:127.0.0.1:{port}",
            "target": f"sip:80000077@127.0.0.1:{port}", "digits": ["4321#"], "digit_pause": 2.0,
            "wav": str(wav), "tone_hz": 600, "talk_seconds": 4.0,
        }))
        peers.append(phone)
        await until(lambda: len(joined(conf)) == 2 or phone.done(), 30, "pjsua to pass the PIN and join")
        site_id = next(s for s in joined(conf) if s != "hall")
        assert site_id == "sip-pjuser"  # the authenticated account names the site
        # Audio-only: a first-class participant with a placeholder tile, no video subscription.
        await until(lambda: any(s.media for s in bridge.sites.values() if s.site_id == site_id), 5, "its media")
        media = next(s.media for s in bridge.sites.values() if s.site_id == site_id)
        assert media is not None and media.video is None and media.subscription is None
        pane = next(p for p in conf.room.view_plan("broadcast").panes if p.participant_id == site_id)
        assert pane.sample is None and pane.name
        result = await phone
        assert result["register_status"] == 200 and result["call_state"] == "CONFIRMED", result
        await until(lambda: conf.sites[site_id].status == "left", 10, "pjsua's hang-up to be seen")
        # Through the mixer both ways: pjsua's 600 Hz reached the room system, its 1 kHz reached pjsua.
        sink = next(iter(uas.sinks.values()))
        assert tone_in_frames(sink.audio, 600)
        pcm, rate = wav_samples(wav)
        assert abs(dominant_frequency(pcm[int(0.2 * rate): int(0.6 * rate)], rate) - 880) < 20  # PIN prompt
        assert abs(dominant_frequency(pcm[-2 * rate: -rate // 2], rate) - 1000) < 15

        # Dial-out to the registered phone (its registration, not a configured address).
        wav2 = tmp_path / "out.wav"
        callee = asyncio.ensure_future(run_peer({
            "user": "pjuser", "password": ACCOUNTS["pjuser"], "registrar": f"sip:127.0.0.1:{port}",
            "wait_incoming": 15, "wav": str(wav2), "tone_hz": 700, "talk_seconds": 3.0,
        }))
        peers.append(callee)
        await until(lambda: bridge.endpoint.ua.bindings.lookup_user("pjuser", bridge.endpoint.now()), 15,
                    "pjsua to register")
        site = await bridge.invite("80000077", uri=f"sip:pjuser@127.0.0.1:{port}")
        assert site.registered_user == "pjuser"
        await until(lambda: site.site_id in joined(conf), 15, "the registered phone to answer")
        result = await callee
        assert result["incoming"] is True, result
        pcm, rate = wav_samples(wav2)
        assert abs(dominant_frequency(pcm[-2 * rate: -rate // 2], rate) - 1000) < 15
        assert tone_in_frames(sink.audio[-150:], 700)
    finally:
        for peer in peers:  # on failure, let the pjsua subprocesses finish (bounded by run_peer)
            with contextlib.suppress(Exception):
                await peer
        await bridge.stop()
        await uas.close()


async def test_dial_out_failures_and_bad_requests(services: CoreServices, conferences: ConferenceService) -> None:
    bridge = await start_bridge(services, conferences, max_video_size="352x288")
    conf = conferences.running(DEMO)
    assert conf is not None

    async def busy(call: Call) -> Decision:
        return Reject(486, "Busy Here")

    async def never_answers(call: Call) -> Decision:
        await asyncio.sleep(30)
        return Reject(480)

    refuser = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=0), busy)
    ringer = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=0), never_answers)
    uas = MediaUas()
    for peer in (refuser, ringer):
        await peer.start()
    await uas.start()
    try:
        before = dict(conf.sites)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"uri": "not a uri"}, "bad_uri"), ({"uri": "sip:@"}, "bad_uri"),
            ({"site_id": "no-such-room"}, "unknown_site"), ({}, "bad_request"),
            ({"site_id": "bad id/../x", "uri": "sip:a@127.0.0.1"}, "bad_site")]
        for kwargs, code in cases:
            with pytest.raises(DialOutError) as err:
                await bridge.invite(DEMO, **kwargs)
            assert err.value.code == code
        with pytest.raises(DialOutError) as err:
            await bridge.invite("99999999", uri="sip:a@127.0.0.1")
        assert err.value.code == "not_running"
        with pytest.raises(DialOutError) as err:
            await bridge.hangup(DEMO, "nobody")
        assert err.value.code == "not_connected"
        assert conf.sites == before and bridge.sites == {}  # refused requests changed nothing

        # A busy site: calling, then failed with the reason.
        await bridge.invite(DEMO, site_id="busy-site", uri=f"sip:x@127.0.0.1:{refuser.config.port}")
        assert conf.sites["busy-site"].status == "calling"
        await until(lambda: conf.sites["busy-site"].status == "failed", 10, "the 486")
        assert "486" in conf.sites["busy-site"].detail and "对方忙" in conf.sites["busy-site"].detail
        # Redial calls the same address again.
        await bridge.redial(DEMO, "busy-site")
        assert conf.sites["busy-site"].status == "calling"
        await until(lambda: conf.sites["busy-site"].status == "failed", 10, "the second 486")

        # Hang up while it rings: the call is cancelled, the site is idle again.
        await bridge.invite(DEMO, site_id="ringing", uri=f"sip:y@127.0.0.1:{ringer.config.port}")
        await asyncio.sleep(0.5)
        await bridge.hangup(DEMO, "ringing")
        await until(lambda: conf.sites["ringing"].status == "idle", 10, "the CANCEL")
        assert conf.sites["ringing"].detail == "已取消呼叫"

        # A connected site cannot be invited twice; the chair's remove hangs up its call.
        await bridge.invite(DEMO, site_id="hall", uri=f"sip:hall@127.0.0.1:{uas.endpoint.config.port}")
        await until(lambda: "hall" in joined(conf), 10, "the join")
        with pytest.raises(DialOutError) as err:
            await bridge.invite(DEMO, site_id="hall", uri=f"sip:hall@127.0.0.1:{uas.endpoint.config.port}")
        assert err.value.code == "busy"
        ended = asyncio.ensure_future(uas.endpoint.wait_for(ev.CallEnded, 10))
        conf.room.remove("hall")
        await ended
        await until(lambda: not bridge.gateway.sites, 5, "the gateway to forget the call")
        assert conf.sites["hall"].status == "left"

        # Dial-in to a locked conference: the call is ended and the site shows why.
        conf.room.lock()
        ended = asyncio.ensure_future(uas.endpoint.wait_for(ev.CallEnded, 10))
        await dial(uas, f"sip:{DEMO}@127.0.0.1:{bridge.endpoint.config.port}")
        await ended
        failed = [s for s in conf.sites.values() if s.status == "failed" and s.detail.startswith("加入失败")]
        assert len(failed) == 1 and failed[0].site_id not in conf.room.participants
        conf.room.unlock()
    finally:
        await bridge.stop()
        await uas.close()
        await refuser.close()
        await ringer.close()
