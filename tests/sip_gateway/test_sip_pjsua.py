"""pjsua2 (PJSIP, an independent SIP stack) registers with digest auth, calls a PIN-protected
test conference, enters the PIN by RFC 4733, and audio flows both ways (tones found by FFT)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from sip_gateway.sip import events as ev
from tests.sip_gateway.peers import MediaUas, dial_registered

if importlib.util.find_spec("pjsua2") is None:  # a test extra (pjsua2-python), run in pjsua_peer.py
    pytest.fail("pjsua2-python is not installed in this venv (pip install -e '.[test]')", pytrace=False)
pytestmark = pytest.mark.slow
PEER = Path(__file__).parent / "pjsua_peer.py"
ACCOUNTS = {"pjuser": "Pj-Strong-Pass-42"}


def tone_in_frames(frames: list[np.ndarray], hz: float) -> bool:
    """True when some 0.5 s window of 48 kHz frames is dominated by ``hz``."""
    return any(
        abs(dominant_frequency(np.concatenate(frames[i : i + 25]), 48_000) - hz) < 15
        for i in range(0, max(1, len(frames) - 25), 10)
    )


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


async def run_peer(config: dict[str, object]) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), json.dumps(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise AssertionError(text[-3000:])


async def test_pjsua_register_call_pin_and_tones(tmp_path: Path) -> None:
    uas = MediaUas(accounts=ACCOUNTS, require_auth=True, tone_hz=1000)
    await uas.start()
    port = uas.endpoint.config.port
    wav = tmp_path / "heard.wav"
    holds: list[bool] = []
    uas.endpoint.listeners.append(
        lambda e: holds.append(e.call.streams[0].on_hold) if isinstance(e, ev.MediaUpdated) else None
    )
    try:
        result = await run_peer({
            "user": "pjuser", "password": ACCOUNTS["pjuser"], "registrar": f"sip:127.0.0.1:{port}",
            "target": f"sip:80000002@127.0.0.1:{port}", "digits": "1234#", "wav": str(wav),
            "tone_hz": 600, "talk_seconds": 3.0, "hold": True,
        })
        # pjsua put us on hold and took us off again with re-INVITEs.
        assert holds == [True, False], holds
        assert result["after_hold_state"] == "CONFIRMED", result
        assert result["register_status"] == 200, result
        assert result["call_state"] == "CONFIRMED", result
        assert result["end_state"] == "DISCONNECTED", result
        sink = next(iter(uas.sinks.values()))
        assert "".join(sink.digits) == "1234#"
        # pjsua's 600 Hz tone reached us ...
        assert tone_in_frames(sink.audio, 600)
        # ... and our 1000 Hz tone reached pjsua (its recorder's WAV).
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert len(pcm) > rate
        assert abs(dominant_frequency(pcm[rate : 2 * rate], rate) - 1000) < 15
        # The challenge happened and the call was authenticated as the registered user.
        established = [c for c in uas.endpoint.ua.calls.values()]
        assert established == []  # pjsua hung up
    finally:
        await uas.close()


async def test_pjsua_wrong_password_is_refused(tmp_path: Path) -> None:
    uas = MediaUas(accounts=ACCOUNTS, require_auth=True)
    await uas.start()
    rejected: list[ev.Event] = []
    uas.endpoint.listeners.append(lambda e: rejected.append(e) if isinstance(e, ev.MessageRejected) else None)
    try:
        result = await run_peer({
            "user": "pjuser", "password": "wrong-guess", "registrar": f"sip:127.0.0.1:{uas.endpoint.config.port}",
            "wav": str(tmp_path / "x.wav"),
        })
        assert result["register_status"] in (401, 403), result
        assert not uas.endpoint.ua.bindings.lookup("pjuser@127.0.0.1", 0.0)
    finally:
        await uas.close()


async def test_we_dial_out_to_registered_pjsua(tmp_path: Path) -> None:
    uas = MediaUas(accounts=ACCOUNTS, tone_hz=1000)
    await uas.start()
    wav = tmp_path / "heard.wav"
    config = {
        "user": "pjuser", "password": ACCOUNTS["pjuser"], "registrar": f"sip:127.0.0.1:{uas.endpoint.config.port}",
        "wait_incoming": 15, "wav": str(wav), "tone_hz": 600, "talk_seconds": 3.0,
    }
    peer = asyncio.ensure_future(run_peer(config))
    try:
        await uas.endpoint.wait_for(ev.RegistrationChanged, 10)
        call = await dial_registered(uas, "pjuser")
        assert call is not None
        await uas.endpoint.wait_for(ev.CallEstablished, 10)
        result = await peer
        assert result["register_status"] == 200 and result["incoming"] is True, result
        assert result["call_state"] == "CONFIRMED", result
        sink = uas.sinks[call.key]
        assert abs(dominant_frequency(np.concatenate(sink.audio[-50:-5]), 48_000) - 600) < 15
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert abs(dominant_frequency(pcm[-rate:], rate) - 1000) < 15
        await uas.endpoint.wait_for(ev.CallEnded, 5)
    finally:
        peer.cancel()
        await uas.close()
