"""IVR prompts: beeps then a sentence spoken by espeak-ng, cached; beeps alone without espeak-ng."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mcu.legs.prompts import BEEPS, PROMPT_NAMES, PromptLibrary, read_wav_mono, resample_to_48k
from sip_gateway.rtp.media_primitives import SAMPLE_RATE

ESPEAK = shutil.which("espeak-ng")


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed (make test installs it as root)")
def test_spoken_prompts_follow_their_beeps_and_are_cached(tmp_path: Path) -> None:
    library = PromptLibrary(tmp_path / "prompts")
    assert library.spoken
    pcm = library.pcm("enter_conference_id")
    beeps = BEEPS["enter_conference_id"]
    assert np.array_equal(pcm[:len(beeps)], beeps)           # the meaning survives without the words
    speech = pcm[len(beeps):]
    assert len(speech) / SAMPLE_RATE > 1.0                     # a sentence, not a click
    frames = speech[: len(speech) // 960 * 960].reshape(-1, 960).astype(np.float64)
    voiced = np.sqrt((frames ** 2).mean(axis=1)) > 500
    assert voiced.mean() > 0.3                                 # mostly voiced: speech, not silence
    assert 80 < dominant_hz(speech) < 4000                     # energy in the speech band
    cached = sorted((tmp_path / "prompts").glob("enter_conference_id-zh-CN-*.wav"))
    assert len(cached) == 1 and not list((tmp_path / "prompts").glob("*.partial.wav"))
    stamp = cached[0].stat().st_mtime_ns
    again = PromptLibrary(tmp_path / "prompts").pcm("enter_conference_id")
    assert np.array_equal(again, pcm) and cached[0].stat().st_mtime_ns == stamp  # read, not rendered again
    english = PromptLibrary(tmp_path / "prompts", "en").pcm("goodbye")
    assert len(english) > len(BEEPS["goodbye"]) + SAMPLE_RATE // 4


def test_without_espeak_the_prompts_are_the_beeps(tmp_path: Path) -> None:
    library = PromptLibrary(tmp_path, espeak="")
    assert not library.spoken
    prompts = library.all()
    assert set(prompts) == set(PROMPT_NAMES)
    assert all(np.array_equal(prompts[n], BEEPS[n]) for n in PROMPT_NAMES)
    assert abs(dominant_hz(prompts["enter_conference_id"]) - 660) < 20
    assert list(tmp_path.iterdir()) == []


def test_broken_speech_engine_or_cache_falls_back_to_beeps(tmp_path: Path) -> None:
    failing = tmp_path / "espeak-ng"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    assert np.array_equal(PromptLibrary(tmp_path / "c1", espeak=str(failing)).pcm("invalid"), BEEPS["invalid"])
    cache = tmp_path / "c2"
    cache.mkdir()
    library = PromptLibrary(cache, espeak=str(failing))
    for name in PROMPT_NAMES:  # a corrupt cached file (disk trouble): beeps, not a crash
        (cache / f"{name}-zh-CN-0000000000000000.wav").write_bytes(b"RIFF junk")
    assert np.array_equal(library.pcm("joining"), BEEPS["joining"])
    with pytest.raises(KeyError):
        library.pcm("nonsense")
    with pytest.raises(ValueError, match="no IVR sentences"):
        PromptLibrary(cache, "fr")


def test_wav_reading_and_resampling(tmp_path: Path) -> None:
    import wave
    path = tmp_path / "t.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        tone = (8000 * np.sin(2 * np.pi * 500 * np.arange(22050) / 22050)).astype(np.int16)
        w.writeframes(np.repeat(tone, 2).tobytes())
    samples, rate = read_wav_mono(path)
    assert rate == 22050 and len(samples) == 22050
    up = resample_to_48k(samples, rate)
    assert len(up) == SAMPLE_RATE and abs(dominant_hz(up) - 500) < 5
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="not a WAV"):
        read_wav_mono(bad)
