"""Opus in-band FEC towards browsers (mcu.legs.audio_fec): SDP, loss window, switch, encoder."""
from __future__ import annotations

import ctypes
import fractions
import glob
import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from mcu.legs.audio_fec import AudioFec, LossWindow, OpusFecEncoder, loss_percentage, peer_decodes_opus_fec

CHROMIUM_AUDIO = """v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
m=video 9 UDP/TLS/RTP/SAVPF 96
a=rtpmap:96 VP8/90000
a=fmtp:96 useinbandfec=1
"""


def test_fec_only_when_the_peer_says_its_opus_decoder_uses_it() -> None:
    assert peer_decodes_opus_fec(CHROMIUM_AUDIO)
    assert not peer_decodes_opus_fec(CHROMIUM_AUDIO.replace("useinbandfec=1\na=rtpmap:63", "useinbandfec=0\na=rtpmap:63"))
    assert not peer_decodes_opus_fec(CHROMIUM_AUDIO.replace("a=fmtp:111 minptime=10;useinbandfec=1\n", ""))
    # Not Opus: G.711/G.722 have no in-band FEC, whatever a (bogus) fmtp says; nor does video.
    g711 = "v=0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=fmtp:0 useinbandfec=1\r\n"
    assert not peer_decodes_opus_fec(g711)
    video_only = "v=0\nm=video 9 RTP/AVP 96\na=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1\n"
    assert not peer_decodes_opus_fec(video_only)
    assert not peer_decodes_opus_fec("")
    assert peer_decodes_opus_fec("m=audio 1 RTP/AVP 100\r\na=rtpmap:100 OPUS/48000/2\r\na=fmtp:100 USEINBANDFEC = 1\r\n")


def test_loss_window_measures_over_seconds_not_single_reports() -> None:
    window = LossWindow(window=5.0)
    assert window.report(0.0, 0, 1000) is None  # nothing to compare with yet
    # 1 % loss, one report a second: single reports would say 0, 0, 2 %, 0 ...
    lost = 0
    fractions_seen = []
    for second in range(1, 11):
        lost += second % 2  # one lost every other second out of 50
        fractions_seen.append(window.report(float(second), lost, 1000 + 50 * second))
    assert fractions_seen[-1] == pytest.approx(0.01, abs=0.005)
    assert window.report(9.0, lost, 2000) is None  # time going backwards: ignored
    assert window.report(11.0, lost, 1400) is None  # sequence going backwards: ignored


def test_switch_turns_fec_on_from_loss_and_off_when_clean() -> None:
    fec = AudioFec()
    fec.peer_decodes = True
    seq, lost = 0, 0
    for second in range(0, 8):  # 2 % loss
        seq += 50
        lost += 1
        fec.on_report(lost, seq, float(second))
    assert fec.switch.on and fec.encoder.wanted == loss_percentage(fec.loss) == 10
    for second in range(8, 50):  # clean line
        seq += 50
        fec.on_report(lost, seq, float(second))
    assert not fec.switch.on and fec.encoder.wanted == 0
    # A peer that cannot decode FEC never gets it, whatever the loss.
    deaf = AudioFec()
    for second in range(0, 8):
        deaf.on_report(10 * second, 50 * (second + 1), float(second))
    assert not deaf.switch.on and deaf.encoder.wanted == 0
    assert loss_percentage(0.5) == 30 and loss_percentage(0.135) == 14 and loss_percentage(0.0) == 10


def _lbrr_counter() -> ctypes.CDLL | None:
    """PyAV's own libopus (1.5+ has ``opus_packet_has_lbrr``)."""
    libs = glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libopus-*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        if hasattr(lib, "opus_packet_has_lbrr"):
            return lib
    return None


def test_encoder_adds_the_copy_when_on_and_keeps_the_timestamps_running(tmp_path: Path) -> None:
    lib = _lbrr_counter()
    if lib is None:
        pytest.skip("not applicable: this PyAV's libopus has no opus_packet_has_lbrr to count FEC with")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is missing: install Debian package 'espeak-ng'")
    wav = tmp_path / "s.wav"
    subprocess.run([espeak, "-v", "cmn", "-w", str(wav), "指挥中心呼叫各个站点，请报告位置"], check=True, timeout=30)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    with av.open(str(wav)) as container:
        pcm = np.concatenate([o.to_ndarray().reshape(-1) for f in container.decode(audio=0)
                              for o in resampler.resample(f)]).astype(np.int16)
    encoder = OpusFecEncoder()
    stamps: list[int] = []
    with_copy = {False: 0, True: 0}
    for i in range(len(pcm) // 960):
        if i == 60:
            encoder.set_fec(10)
        frame = av.AudioFrame.from_ndarray(pcm[i * 960:(i + 1) * 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = i * 960
        frame.time_base = fractions.Fraction(1, 48000)
        packets, stamp = encoder.encode(frame)
        for packet in packets:
            with_copy[i >= 60] += lib.opus_packet_has_lbrr(packet, len(packet)) == 1
        if stamp is not None:
            stamps.append(stamp)
    assert with_copy[False] == 0, with_copy
    assert with_copy[True] > 0.5 * (len(pcm) // 960 - 60), with_copy
    assert all(b - a == 960 for a, b in zip(stamps, stamps[1:], strict=False)), "timestamps jump at the switch"
