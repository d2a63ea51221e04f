"""N-1 audio mixer, soft limiter and active-speaker detection (NumPy, vectorised).

One tick mixes one 20 ms frame (48 kHz mono int16) for every site at once:

* contributions ``C[i] = frame[i] * gain[i]`` for unmuted, non-stalled sources;
* total ``T = sum(C)``; each listener's mix is ``T - C[i]`` (never its own voice);
* deaf listeners get silence;
* on request (``MixInput.full_mix``) the full mix ``T`` of every unmuted site, with its own
  limiter envelope: what a conference recording hears;
* a soft limiter (per-listener gain envelope with instant attack and slow release, plus a
  smooth tanh knee above ``knee`` of full scale) replaces hard clipping.

Cost is O(N x 960) multiply-adds per tick, independent of how many listeners hear whom.
:class:`SpeakerDetector` turns per-source energies into an active speaker with
hysteresis (on/off thresholds) and a hold time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sip_gateway.rtp.media_primitives import FRAME_SAMPLES

F32 = npt.NDArray[np.float32]
FULL_SCALE = 32767.0
SILENCE_DBFS = -120.0


@dataclass(frozen=True)
class MixInput:
    """One tick's inputs, gathered on the event loop (``frames[i]`` is None when stalled)."""

    ids: tuple[str, ...]
    frames: tuple[npt.NDArray[np.int16] | None, ...]
    gains: tuple[float, ...]
    muted: tuple[bool, ...]
    deaf: tuple[bool, ...]
    full_mix: bool = False  # also mix everyone (unmuted) into one signal: the conference recording
    # Sites sharing a non-zero group hear none of each other (N minus the group): the primary and
    # backup calls of one cascade link, so a make-before-break switch never loops sound back.
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class MixOutput:
    ids: tuple[str, ...]
    mixes: npt.NDArray[np.int16]  # (N, 960): row i is what site i hears
    levels_dbfs: F32  # (N,) input level of each source before gain and mute
    full: npt.NDArray[np.int16] | None = None  # (960,) everyone unmuted, when MixInput.full_mix


def dbfs(rms: F32) -> F32:
    return np.where(rms > 0, 20 * np.log10(np.maximum(rms, 1e-9) / FULL_SCALE), SILENCE_DBFS).astype(np.float32)


class AudioMixer:
    """Stateful (limiter envelopes) N-1 mixer; call :meth:`mix` once per 20 ms tick."""

    def __init__(self, ceiling: float = 0.89, knee: float = 0.7, release: float = 0.05) -> None:
        if not 0 < knee < ceiling <= 1:
            raise ValueError("need 0 < knee < ceiling <= 1")
        self.ceiling = ceiling * FULL_SCALE  # the envelope aims below full scale
        self.knee = knee * FULL_SCALE
        self.release = release  # fraction of the way back to unity gain per tick
        self._env: dict[str, float] = {}
        self._full_env = 1.0  # limiter envelope of the full mix (kept apart from the listeners')
        self._ramp = np.linspace(0.0, 1.0, FRAME_SAMPLES, dtype=np.float32)

    def forget(self, participant_id: str) -> None:
        self._env.pop(participant_id, None)

    def mix(self, inp: MixInput) -> MixOutput:
        n = len(inp.ids)
        if n == 0:
            full = np.zeros(FRAME_SAMPLES, np.int16) if inp.full_mix else None
            return MixOutput((), np.zeros((0, FRAME_SAMPLES), np.int16), np.zeros(0, np.float32), full)
        raw = np.zeros((n, FRAME_SAMPLES), np.float32)
        for i, frame in enumerate(inp.frames):
            if frame is not None:
                raw[i] = frame
        levels = dbfs(np.sqrt(np.mean(raw * raw, axis=1)))
        weight = np.asarray(inp.gains, np.float32) * ~np.asarray(inp.muted, bool)
        contrib = raw * weight[:, None]
        total = contrib.sum(axis=0)
        mixes = total[None, :] - contrib
        for group in set(inp.groups) - {0}:
            members = [i for i, g in enumerate(inp.groups) if g == group]
            mixes[members] = total[None, :] - contrib[members].sum(axis=0)[None, :]
        mixes[np.asarray(inp.deaf, bool)] = 0.0
        full = None
        if inp.full_mix:
            env = np.asarray([self._full_env], np.float32)
            limited, env = self._limit_rows(env, total[None, :])
            self._full_env = float(env[0])
            full = limited[0]
        return MixOutput(inp.ids, self._limit(inp.ids, mixes), levels, full)

    def _limit(self, ids: Sequence[str], mixes: F32) -> npt.NDArray[np.int16]:
        prev = np.asarray([self._env.get(pid, 1.0) for pid in ids], np.float32)
        out, new = self._limit_rows(prev, mixes)
        for pid, g in zip(ids, new.tolist(), strict=True):
            self._env[pid] = g
        return out

    def _limit_rows(self, prev: F32, mixes: F32) -> tuple[npt.NDArray[np.int16], F32]:
        """Limit each row with its envelope ``prev``; returns the limited rows and the new envelopes."""
        peaks = np.abs(mixes).max(axis=1)
        target = np.minimum(1.0, self.ceiling / np.maximum(peaks, 1.0)).astype(np.float32)
        # Instant attack (never exceed the ceiling), slow release (no pumping).
        new = np.where(target < prev, target, prev + (target - prev) * self.release).astype(np.float32)
        # Ramp from the previous gain so gain changes do not click; the ramp may lag an attack by
        # part of a frame, which the knee below absorbs smoothly.
        gains = np.where((target < prev)[:, None], new[:, None], prev[:, None] + (new - prev)[:, None] * self._ramp)
        out = mixes * gains
        return soft_clip(out, self.knee).astype(np.int16), new


def soft_clip(x: F32, knee: float) -> F32:
    """Identity below ``knee``; above it a tanh curve that approaches full scale, never reaches it."""
    mag = np.abs(x)
    room = FULL_SCALE - 1 - knee
    over = mag > knee
    if not over.any():
        return x
    shaped = knee + room * np.tanh((mag - knee) / room)
    return np.where(over, np.sign(x) * shaped, x).astype(np.float32)


@dataclass
class _SourceState:
    speaking: bool = False
    level: float = SILENCE_DBFS


class SpeakerDetector:
    """Energy VAD with hysteresis and a hold time.

    A source *speaks* once its smoothed level rises above ``on_dbfs`` and stops below
    ``off_dbfs``. The loudest speaking source becomes the active speaker only after it has
    been the loudest for ``hold`` seconds, so a cough or a door slam does not switch the
    picture; the current speaker stays until someone else qualifies.
    """

    def __init__(self, on_dbfs: float = -35.0, off_dbfs: float = -45.0, hold: float = 1.0,
                 smoothing: float = 0.5) -> None:
        if off_dbfs >= on_dbfs:
            raise ValueError("off threshold must be below on threshold (hysteresis)")
        if hold < 0:
            raise ValueError("hold must be >= 0")
        self.on_dbfs, self.off_dbfs, self.hold = on_dbfs, off_dbfs, hold
        self.smoothing = smoothing
        self._state: dict[str, _SourceState] = {}
        self.current: str | None = None
        self._candidate: str | None = None
        self._candidate_since = 0.0

    def forget(self, participant_id: str) -> None:
        self._state.pop(participant_id, None)
        if self._candidate == participant_id:
            self._candidate = None
        if self.current == participant_id:
            self.current = None

    def update(self, levels: dict[str, float], now: float) -> str | None:
        """Feed one tick's levels (muted sources excluded); returns the new speaker if it changed."""
        loudest: str | None = None
        loudest_level = SILENCE_DBFS
        for pid, level in levels.items():
            st = self._state.setdefault(pid, _SourceState())
            st.level = self.smoothing * st.level + (1 - self.smoothing) * level
            if st.speaking and st.level < self.off_dbfs:
                st.speaking = False
            elif not st.speaking and st.level > self.on_dbfs:
                st.speaking = True
            if st.speaking and st.level > loudest_level:
                loudest, loudest_level = pid, st.level
        for pid in [p for p in self._state if p not in levels]:
            self._state[pid].speaking = False
        if loudest is None or loudest == self.current:
            self._candidate = None
            return None
        if loudest != self._candidate:
            self._candidate, self._candidate_since = loudest, now
        if now - self._candidate_since >= self.hold:
            self.current = loudest
            self._candidate = None
            return loudest
        return None
