"""IVR prompts as 48 kHz mono PCM: a short beep pattern, then the spoken sentence.

The sentences are spoken by espeak-ng (Debian package, offline, Mandarin voice ``cmn``) the first
time they are needed and cached as WAV files under ``<var>/prompts``; the cache key includes the
text and voice, so editing a sentence renders it again. Without espeak-ng the prompts are the beep
patterns alone, which keep their meaning (two 660 Hz beeps: conference id; three 880 Hz beeps:
PIN; a low tone: invalid), so the IVR never depends on the speech engine being installed.

Why not recorded files in the repository: a recording per sentence and language is a binary asset
nobody can regenerate or edit; espeak-ng renders any sentence in any of its languages from text.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from sip_gateway.rtp.codecs import Pcm
from sip_gateway.rtp.media_primitives import SAMPLE_RATE

log = logging.getLogger(__name__)

PROMPT_NAMES = ("enter_conference_id", "enter_pin", "invalid", "joining", "goodbye", "locked_out")

SENTENCES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "enter_conference_id": "请输入会议号，以井号键结束。",
        "enter_pin": "请输入会议密码，以井号键结束。",
        "invalid": "输入有误，请重新输入。",
        "joining": "正在加入会议。",
        "goodbye": "再见。",
        "locked_out": "密码错误次数过多，请稍后再试。",
    },
    "en": {
        "enter_conference_id": "Please enter the conference number, followed by the hash key.",
        "enter_pin": "Please enter the conference PIN, followed by the hash key.",
        "invalid": "That entry is not valid. Please try again.",
        "joining": "Joining the conference.",
        "goodbye": "Goodbye.",
        "locked_out": "Too many wrong PINs. Please try again later.",
    },
}
VOICES = {"zh-CN": "cmn", "en": "en"}
SPEECH_LEVEL = 9000  # peak after normalisation: as loud as the beeps (7000) without clipping
_SPEAK_TIMEOUT = 20.0


def tone_pcm(parts: list[tuple[float, float]]) -> Pcm:
    """Concatenate (frequency Hz or 0 for silence, seconds) parts into 48 kHz int16 samples."""
    chunks = []
    for freq, seconds in parts:
        n = int(SAMPLE_RATE * seconds)
        t = np.arange(n) / SAMPLE_RATE
        chunk = (7000 * np.sin(2 * np.pi * freq * t)) if freq else np.zeros(n)
        chunks.append(chunk.astype(np.int16))
    return np.concatenate(chunks).astype(np.int16)


BEEPS: dict[str, Pcm] = {
    "enter_conference_id": tone_pcm([(660, 0.2), (0, 0.1), (660, 0.2), (0, 0.3)]),
    "enter_pin": tone_pcm([(880, 0.15), (0, 0.1), (880, 0.15), (0, 0.1), (880, 0.15), (0, 0.3)]),
    "invalid": tone_pcm([(400, 0.5), (0, 0.2)]),
    "joining": tone_pcm([(523, 0.15), (659, 0.15), (784, 0.3)]),
    "goodbye": tone_pcm([(784, 0.2), (523, 0.4)]),
    "locked_out": tone_pcm([(300, 1.0), (0, 0.2)]),
}


def resample_to_48k(samples: np.ndarray, rate: int) -> Pcm:
    """Linear-interpolation resampling to 48 kHz int16 (speech band only; no filter needed upward)."""
    if rate == SAMPLE_RATE or len(samples) == 0:
        return samples.astype(np.int16)
    n_out = int(round(len(samples) * SAMPLE_RATE / rate))
    x_out = np.arange(n_out) * (rate / SAMPLE_RATE)
    out: Pcm = np.interp(x_out, np.arange(len(samples)), samples.astype(np.float64)).astype(np.int16)
    return out


def read_wav_mono(path: Path) -> tuple[np.ndarray, int]:
    """Samples (first channel, int16) and rate of a 16-bit PCM WAV file; ValueError otherwise."""
    try:
        with wave.open(str(path)) as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV, expected 16-bit")
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            channels, rate = w.getnchannels(), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a WAV file ({exc})") from None
    return (raw.reshape(-1, channels)[:, 0] if channels > 1 else raw), rate


def _normalise(samples: Pcm) -> Pcm:
    peak = int(np.abs(samples.astype(np.int32)).max()) if len(samples) else 0
    if peak == 0:
        return samples
    return (samples.astype(np.float64) * (SPEECH_LEVEL / peak)).astype(np.int16)


class PromptLibrary:
    """The IVR's prompts for one language, rendered once and cached on disk."""

    def __init__(self, cache_dir: Path | None, language: str = "zh-CN", espeak: str | None = None) -> None:
        if language not in SENTENCES:
            raise ValueError(f"no IVR sentences for language {language!r} (have: {', '.join(SENTENCES)})")
        self.cache_dir = cache_dir
        self.language = language
        self.espeak = espeak if espeak is not None else shutil.which("espeak-ng")
        self._rendered: dict[str, Pcm] = {}

    @property
    def spoken(self) -> bool:
        """True when sentences are spoken (espeak-ng available), False for beeps only."""
        return bool(self.espeak)

    def pcm(self, name: str) -> Pcm:
        """The prompt's samples: its beeps, then its sentence when speech is available."""
        if name not in BEEPS:
            raise KeyError(f"unknown IVR prompt {name!r}")
        if name not in self._rendered:
            speech = self._speech(name)
            self._rendered[name] = BEEPS[name] if speech is None else np.concatenate(
                [BEEPS[name], _normalise(speech), np.zeros(SAMPLE_RATE // 5, np.int16)])
        return self._rendered[name]

    def all(self) -> dict[str, Pcm]:
        """Every prompt by name (renders the missing ones)."""
        return {name: self.pcm(name) for name in PROMPT_NAMES}

    def _speech(self, name: str) -> Pcm | None:
        if not self.espeak:
            return None
        text, voice = SENTENCES[self.language][name], VOICES[self.language]
        key = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:16]
        try:
            if self.cache_dir is None:
                with tempfile.TemporaryDirectory(prefix="cc-prompt-") as tmp:
                    samples, rate = read_wav_mono(self._render(text, voice, Path(tmp) / "prompt.wav"))
            else:
                target = self.cache_dir / f"{name}-{self.language}-{key}.wav"
                if not target.is_file():
                    self._render(text, voice, target)
                samples, rate = read_wav_mono(target)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("IVR prompt %s: speech unavailable (%s); beeps only", name, exc)
            return None
        return resample_to_48k(samples, rate)

    def _render(self, text: str, voice: str, target: Path) -> Path:
        assert self.espeak is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial.wav")
        subprocess.run([self.espeak, "-v", voice, "-s", "150", "-w", str(partial), text],
                       check=True, capture_output=True, timeout=_SPEAK_TIMEOUT)
        partial.replace(target)  # atomic: a crash mid-render never leaves a truncated cache file
        return target
