"""The SIP-to-room gateway: IVR state machine, and real peers joining stand-in rooms."""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from mcu.legs.ivr import CheckPin, DigitTimer, Hangup, Ivr, Join, PinVerdict, Prompt, Stage
from mcu.legs.sip import PROMPTS, SipGateway
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.sip import events as ev
from sip_gateway.sip.useragent import UserAgentConfig
from tests.sip_gateway.peers import Baresip, FakeDirectory, FakeRoom

ROOMS = {"80000001": None, "80000002": "1234"}


def lookup(cid: str) -> tuple[bool, bool]:
    return (cid in ROOMS, bool(ROOMS.get(cid)))


def test_ivr_conference_id_then_pin() -> None:
    ivr = Ivr(lookup)
    assert ivr.start() == [Prompt("enter_conference_id"), DigitTimer(6.0)]
    for d in "80000002":
        ivr.digit(d)
    assert ivr.digit("#") == [Prompt("enter_pin"), DigitTimer(6.0)]
    for d in "9999":
        ivr.digit(d)
    # The IVR does not know the PIN: the application checks it (with its back-off).
    assert ivr.digit("#") == [DigitTimer(0), CheckPin("80000002", "9999")]
    assert ivr.stage == Stage.CHECKING and ivr.digit("1") == [] and ivr.timeout() == []
    assert ivr.pin_result("wrong")[0] == Prompt("invalid")
    for d in "12*1234":  # '*' clears
        ivr.digit(d)
    assert ivr.timeout() == [DigitTimer(0), CheckPin("80000002", "1234")]
    assert ivr.pin_result("ok") == [Prompt("joining"), Join("80000002")]
    stage: Stage = ivr.stage  # (mypy narrowed it to CHECKING above)
    assert stage == Stage.JOINED and ivr.digit("5") == [] and ivr.pin_result("ok") == []


def test_ivr_direct_and_failures() -> None:
    assert Ivr(lookup, "80000001").start()[-1] == Join("80000001")
    assert Ivr(lookup, "80000002").start()[0] == Prompt("enter_pin")
    assert Ivr(lookup, "99").start()[-1] == Hangup("unknown conference")
    ivr = Ivr(lookup, max_attempts=2)
    ivr.start()
    ivr.digit("1")
    ivr.digit("#")
    out = ivr.timeout()
    assert out[-1] == Hangup("too many wrong entries") and ivr.stage == Stage.FAILED
    assert set(PROMPTS) == {"enter_conference_id", "enter_pin", "invalid", "joining", "goodbye", "locked_out"}


def test_ivr_pin_verdicts_end_the_call() -> None:
    cases: list[tuple[PinVerdict, str, str]] = [("locked", "locked_out", "too many wrong PINs from this source"),
                                                 ("refused", "invalid", "refused by the conference")]
    for verdict, prompt, reason in cases:
        ivr = Ivr(lookup, "80000002")
        ivr.start()
        ivr.digit("7")
        assert ivr.digit("#")[-1] == CheckPin("80000002", "7")
        assert ivr.pin_result(verdict) == [Prompt(prompt), Hangup(reason)] and ivr.stage == Stage.FAILED
    # Wrong PINs: re-prompt, then goodbye after max_attempts (3) wrong entries.
    ivr = Ivr(lookup, "80000002")
    ivr.start()
    assert ivr.digit("#")[0] == Prompt("invalid")  # an empty entry is wrong without a check
    for _ in range(2):
        ivr.digit("5")
        assert isinstance(ivr.digit("#")[-1], CheckPin)
        outs = ivr.pin_result("wrong")
    assert outs[-1] == Hangup("too many wrong entries") and ivr.stage == Stage.FAILED


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


async def start_gateway(*rooms: FakeRoom, prompts: dict[str, np.ndarray] | None = None
                        ) -> tuple[SipEndpoint, SipGateway]:
    endpoint = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=0, accounts={"pjuser": "Pj-Strong-Pass-42"}))
    gateway = SipGateway(endpoint, FakeDirectory(*rooms), prompts=prompts)
    await endpoint.start()
    return endpoint, gateway


@pytest.mark.slow
async def test_pjsua_through_ivr_with_pin(tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    from tests.sip_gateway.test_sip_pjsua import run_peer

    room = FakeRoom("80000002", pin="1234")
    endpoint, gateway = await start_gateway(room)
    wav = tmp_path / "heard.wav"
    try:
        result = await run_peer({
            "user": "pjuser", "password": "Pj-Strong-Pass-42", "registrar": f"sip:127.0.0.1:{endpoint.config.port}",
            "target": f"sip:ivr@127.0.0.1:{endpoint.config.port}", "digits": ["80000002#", "1234#"],
            "digit_pause": 2.5, "wav": str(wav), "tone_hz": 600, "talk_seconds": 3.0,
        })
        assert result["call_state"] == "CONFIRMED", result
        assert len(room.joined) == 1 and len(room.left) == 1
        site = room.joined[0]
        assert site.audio_only  # type: ignore[attr-defined]
        sink = next(iter(room.sinks.values()))
        assert abs(dominant_frequency(np.concatenate(sink.audio[-50:-5]), 48_000) - 600) < 15
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        # The IVR prompts (660 Hz beeps for the id, 880 Hz for the PIN) came first, then the room.
        first = pcm[int(rate * 0.3) : int(rate * 0.5)]
        assert abs(dominant_frequency(first, rate) - 660) < 20
        assert abs(dominant_frequency(pcm[-rate:], rate) - 1000) < 15
        assert gateway.sites == {}
    finally:
        await endpoint.close()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (make test installs it as root)")
async def test_ivr_caller_hears_the_spoken_prompt_after_its_beeps(tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    from mcu.legs.prompts import PromptLibrary
    from tests.sip_gateway.test_sip_pjsua import run_peer

    endpoint, gateway = await start_gateway(FakeRoom("80000002", pin="1234"),
                                            prompts=PromptLibrary(tmp_path / "prompts").all())
    wav = tmp_path / "heard.wav"
    try:
        result = await run_peer({
            "user": "pjuser", "password": "Pj-Strong-Pass-42", "registrar": f"sip:127.0.0.1:{endpoint.config.port}",
            "target": f"sip:ivr@127.0.0.1:{endpoint.config.port}", "digits": [], "wav": str(wav),
            "tone_hz": 600, "talk_seconds": 3.5,
        })
        assert result["call_state"] == "CONFIRMED", result
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
        assert abs(dominant_frequency(pcm[int(rate * 0.3):int(rate * 0.5)], rate) - 660) < 20  # the beeps first
        # Then the sentence (请输入会议号…): voiced 20 ms frames, not a tone, where beeps alone are silent.
        speech = pcm[int(rate * 1.0):int(rate * 2.6)]
        frames = speech[: len(speech) // 160 * 160].reshape(-1, 160)
        voiced = np.sqrt((frames ** 2).mean(axis=1)) > 300
        assert voiced.mean() > 0.3, voiced.mean()
        assert abs(dominant_frequency(speech, rate) - 660) > 30
    finally:
        await endpoint.close()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing")
async def test_baresip_dial_in_and_dial_out_through_gateway(tmp_path: Path) -> None:
    room = FakeRoom("80000001")
    endpoint, gateway = await start_gateway(room)
    caller = Baresip(tmp_path / "caller")
    callee = Baresip(tmp_path / "callee", auto_answer=True)
    try:
        await caller.start(f"/dial sip:80000001@127.0.0.1:{endpoint.config.port}")
        await callee.start()
        await callee.wait_log("baresip is ready")
        try:
            await endpoint.wait_for(ev.CallEstablished, 20)
        except TimeoutError:
            raise AssertionError("no call from baresip:\n" + caller.text[-3000:]) from None
        site_out = await gateway.dial_out(room, f"sip:baresip@127.0.0.1:{callee.sip_port}")
        await caller.wait_log(r"video: receiving with resolution 320 x 240")
        await callee.wait_log(r"video: receiving with resolution 320 x 240")
        await asyncio.sleep(2.5)
        assert len(room.joined) == 2
        for sink in room.sinks.values():
            assert len(sink.video) >= 5
            img = sink.video[-1].to_ndarray(format="rgb24").astype(int)
            assert img[120, 50][0] > 200 and img[120, 160][1] > 200 and img[120, 270][2] > 200
            assert abs(dominant_frequency(np.concatenate(sink.audio[-25:]), 48_000) - 440) < 15
        stats = site_out.statistics()
        assert {s.kind for s in stats} == {"audio", "video"}
        assert [s.resolution for s in stats if s.kind == "video"] == [(320, 240)]
        site_out.hangup()
        await asyncio.sleep(0.5)
        assert len(room.left) == 1
    finally:
        await caller.stop()
        await callee.stop()
        await endpoint.close()


async def test_cancel_while_allocating_media_leaks_nothing() -> None:
    from sip_gateway.sip.actions import Flow
    from tests.sip_gateway.sip_testlib import SDP_OFFER, request

    endpoint, gateway = await start_gateway(FakeRoom("80000001"))
    try:
        flow = Flow("udp", "127.0.0.1", 5099)
        out = endpoint.ua.receive(request(body=SDP_OFFER), flow, 0.0)
        call = next(e.call for e in out if isinstance(e, ev.IncomingCall))
        endpoint.ua.receive(request("CANCEL"), flow, 0.1)
        assert await gateway.on_invite(call) is None
        assert gateway.sites == {}
    finally:
        await endpoint.close()
