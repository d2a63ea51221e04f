"""baresip (independent SIP stack, libx264/ffmpeg video) against our stack and media layer."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from sip_gateway.rtp.media_description import MediaPolicy
from sip_gateway.sip import events as ev
from tests.sip_gateway.peers import Baresip, MediaUas, dial

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed"),
    pytest.mark.slow,
]


def dominant_frequency(pcm: np.ndarray, rate: int = 48_000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def assert_fakevideo_picture(uas: MediaUas) -> None:
    """baresip's fakevideo draws red, green and blue vertical thirds."""
    sink = next(iter(uas.sinks.values()))
    assert len(sink.video) >= 5, f"decoded {len(sink.video)} frames"
    frame = sink.video[-1]
    assert (frame.width, frame.height) == (320, 240)
    img = frame.to_ndarray(format="rgb24").astype(int)
    red, green, blue = img[120, 50], img[120, 160], img[120, 270]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, red
    assert green[1] > 200 and green[0] < 60 and green[2] < 60, green
    assert blue[2] > 200 and blue[0] < 60 and blue[1] < 60, blue


def assert_tone(uas: MediaUas, hz: float) -> None:
    sink = next(iter(uas.sinks.values()))
    assert len(sink.audio) > 50
    assert abs(dominant_frequency(np.concatenate(sink.audio[-25:])) - hz) < 15


@pytest.mark.parametrize("mode", [0, 1])
async def test_baresip_calls_us_h264(tmp_path: Path, mode: int) -> None:
    uas = MediaUas(MediaPolicy(h264_modes=(mode,), video_codecs=("H264",)))
    await uas.start()
    bs = Baresip(tmp_path / "baresip")
    try:
        await bs.start(f"/dial sip:80000001@127.0.0.1:{uas.endpoint.config.port}")
        await uas.endpoint.wait_for(ev.CallEstablished, 15)
        await bs.wait_log(rf"Set video decoder: H264 packetization-mode={mode}")
        await bs.wait_log(r"video: receiving with resolution 320 x 240")
        await asyncio.sleep(3)
        assert_fakevideo_picture(uas)
        assert_tone(uas, 440)
        call = next(iter(uas.endpoint.ua.calls.values()))
        assert call.streams[1].codec.packetization_mode == mode
        # A key frame request by SIP INFO is accepted by baresip.
        uas.endpoint.request_fast_update(call)
        await asyncio.sleep(0.3)
    finally:
        await bs.stop()
        await uas.close()
    # baresip's own statistics: it received our audio and video without errors.
    stats = bs.text[bs.text.find("audio           Transmit"):]
    received = [int(line.split()[2]) for line in stats.splitlines() if line.startswith("packets:")]
    assert len(received) == 2 and all(n > 20 for n in received), stats


async def test_we_call_baresip(tmp_path: Path) -> None:
    uas = MediaUas()
    await uas.start()
    bs = Baresip(tmp_path / "baresip", auto_answer=True)
    try:
        await bs.start()
        await bs.wait_log("baresip is ready")
        call = await dial(uas, f"sip:baresip@127.0.0.1:{bs.sip_port}")
        await uas.endpoint.wait_for(ev.CallEstablished, 15)
        await bs.wait_log(r"video: receiving with resolution 320 x 240")
        await asyncio.sleep(3)
        assert_fakevideo_picture(uas)
        assert_tone(uas, 440)
        uas.endpoint.hangup(call)
        ended = await uas.endpoint.wait_for(ev.CallEnded, 5)
        assert isinstance(ended, ev.CallEnded)
        await bs.wait_log(r"terminated|closed", 5)
    finally:
        await bs.stop()
        await uas.close()


async def test_baresip_sdes_srtp(tmp_path: Path) -> None:
    uas = MediaUas(MediaPolicy(srtp="required", video_codecs=("H264",)))
    await uas.start()
    bs = Baresip(tmp_path / "baresip", mediaenc="srtp-mand")
    try:
        await bs.start(f"/dial sip:80000001@127.0.0.1:{uas.endpoint.config.port}")
        await uas.endpoint.wait_for(ev.CallEstablished, 15)
        call = next(iter(uas.endpoint.ua.calls.values()))
        assert all(s.srtp is not None for s in call.streams)
        await bs.wait_log(r"video: receiving with resolution 320 x 240")
        await asyncio.sleep(2.5)
        assert_fakevideo_picture(uas)
        assert_tone(uas, 440)
    finally:
        await bs.stop()
        await uas.close()


@pytest.mark.parametrize(("theirs", "ours"), [("G722", "G722"), ("opus", "OPUS"), ("PCMA", "PCMA")])
async def test_baresip_audio_codecs(tmp_path: Path, theirs: str, ours: str) -> None:
    uas = MediaUas(MediaPolicy(audio_codecs=(ours,), video_codecs=()))
    await uas.start()
    bs = Baresip(tmp_path / "baresip", audio_codecs=theirs)
    try:
        await bs.start(f"/dial sip:80000001@127.0.0.1:{uas.endpoint.config.port}")
        await uas.endpoint.wait_for(ev.CallEstablished, 15)
        call = next(iter(uas.endpoint.ua.calls.values()))
        assert [s.codec.name for s in call.streams] == [ours]
        await asyncio.sleep(2.5)
        assert_tone(uas, 440)
    finally:
        await bs.stop()
        await uas.close()
    assert f"audio: Set audio decoder: {theirs}" in bs.text or f"Set audio decoder: {theirs.lower()}" in bs.text.lower()
    stats = bs.text[bs.text.find("audio           Transmit"):]
    received = [int(line.split()[2]) for line in stats.splitlines() if line.startswith("packets:")]
    assert received and received[0] > 50, stats
