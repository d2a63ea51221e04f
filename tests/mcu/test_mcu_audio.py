"""FFT checks of the N-1 mixer, mute/deaf/gain, the limiter, levels and the active speaker."""
from __future__ import annotations

import numpy as np
import pytest
from mcu_helpers import amplitude_at, tone

from mcu import events as ev
from mcu.clock import FakeClock
from mcu.mixer import AudioMixer, MixInput, SpeakerDetector, soft_clip
from mcu.room import Room
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES

FREQS = [400, 700, 1000, 1300, 1900]  # multiples of the 50 Hz bin spacing
AMP = 4000


def feed(room: Room, freqs: dict[str, float], frame_index: int, amp: float = AMP) -> None:
    for pid, f in freqs.items():
        room.participants[pid].push_audio(tone(f, amp, frame_index), arrival=room.clock.monotonic())


def run(room: Room, clock: FakeClock, freqs: dict[str, float], ticks: int, amp: float = AMP) -> dict[str, np.ndarray]:
    last: dict[str, np.ndarray] = {}
    for k in range(ticks):
        feed(room, freqs, k, amp)
        room.audio_tick()
        clock.advance(0.02)
        for pid in room.participants:
            mix = room.participants[pid].pull_audio()
            assert mix is not None and mix.dtype == np.int16 and mix.shape == (FRAME_SAMPLES,)
            last[pid] = mix
    return last


@pytest.fixture
def five(room: Room) -> dict[str, float]:
    freqs: dict[str, float] = {f"s{i}": FREQS[i] for i in range(5)}
    for pid in freqs:
        room.join(pid)
    return freqs


def test_each_listener_hears_every_other_tone_and_not_its_own(room: Room, clock: FakeClock, five: dict[str, float]) -> None:
    mixes = run(room, clock, five, ticks=3)
    for listener in five:
        for pid, f in five.items():
            amp = amplitude_at(mixes[listener], f)
            if pid == listener:
                assert amp < 5, f"{listener} hears itself"
            else:
                assert amp == pytest.approx(AMP, rel=0.05), f"{listener} misses {pid}"


def test_mute_and_deaf(room: Room, clock: FakeClock, five: dict[str, float], events: list[ev.RoomEvent]) -> None:
    room.mute("s1")
    room.deaf("s3")
    mixes = run(room, clock, five, ticks=3)
    for listener in five:
        if listener == "s3":
            assert not mixes[listener].any(), "a deaf site hears nothing"
            continue
        assert amplitude_at(mixes[listener], five["s1"]) < 5, "a muted site is not heard"
    # the deaf site is still heard by the others
    assert amplitude_at(mixes["s0"], five["s3"]) == pytest.approx(AMP, rel=0.05)
    changes = [e for e in events if isinstance(e, ev.MuteChanged | ev.DeafChanged)]
    assert changes == [ev.MuteChanged(room.id, 1000.0, "s1", True), ev.DeafChanged(room.id, 1000.0, "s3", True)]
    room.mute("s1", False)
    room.deaf("s3", False)
    mixes = run(room, clock, five, ticks=2)
    assert amplitude_at(mixes["s0"], five["s1"]) > AMP * 0.9
    assert amplitude_at(mixes["s3"], five["s0"]) > AMP * 0.9


def test_gain_scales_a_source(room: Room, clock: FakeClock, five: dict[str, float]) -> None:
    room.set_gain("s2", 0.5)
    mixes = run(room, clock, five, ticks=3)
    assert amplitude_at(mixes["s0"], five["s2"]) == pytest.approx(AMP / 2, rel=0.05)
    with pytest.raises(ValueError):
        room.set_gain("s2", -1)
    assert room.participants["s2"].gain == 0.5


def test_limiter_does_not_clip_with_50_loud_sources(room: Room, clock: FakeClock) -> None:
    freqs: dict[str, float] = {f"s{i}": 200.0 + 50 * i for i in range(50)}
    for pid in freqs:
        room.join(pid)
    mixes = run(room, clock, freqs, ticks=25, amp=30000)
    for mix in mixes.values():
        peak = np.abs(mix.astype(np.int32)).max()
        assert peak < 32767, "hard clipping"
        # no flat-topped runs at the rail
        assert (np.abs(mix.astype(np.int32)) > 32000).sum() < 5
        assert np.sqrt(np.mean(mix.astype(np.float64) ** 2)) > 3000  # still loud, not squashed to silence
    # after the envelope settles every other tone is still present at equal strength
    amps = [amplitude_at(mixes["s0"], f) for pid, f in freqs.items() if pid != "s0"]
    assert min(amps) > 0.5 * max(amps)
    assert amplitude_at(mixes["s0"], freqs["s0"]) < 0.05 * max(amps)


def test_soft_clip_is_smooth_and_bounded() -> None:
    x = np.linspace(-200000, 200000, 20001).astype(np.float32)
    y = soft_clip(x, 0.7 * 32767)
    assert np.abs(y).max() < 32767
    assert np.all(np.diff(y) >= 0)  # monotonic: no fold-over distortion
    small = np.abs(x) < 0.7 * 32767
    assert np.array_equal(y[small], x[small])  # transparent below the knee


def test_stalled_source_and_late_listener_never_block(room: Room, clock: FakeClock) -> None:
    room.join("a")
    room.join("b")  # never sends audio: a stalled source
    for k in range(3):
        room.participants["a"].push_audio(tone(400, AMP, k))
        room.audio_tick()
    room.join("late")
    room.participants["a"].push_audio(tone(400, AMP, 3))
    room.audio_tick()
    late = room.participants["late"].pull_audio()
    assert late is not None and amplitude_at(late, 400) > AMP * 0.9
    assert room.participants["a"].pull_audio() is not None
    # a listener that never pulls keeps only a bounded backlog
    for _ in range(50):
        room.audio_tick()
    backlog = 0
    while room.participants["b"].pull_audio() is not None:
        backlog += 1
    assert backlog <= 10


def test_bad_audio_frames_are_refused(room: Room) -> None:
    site = room.join("a")
    for bad in (np.zeros(960, np.float32), np.zeros(480, np.int16), [0] * 960):
        with pytest.raises(ValueError):
            site.push_audio(bad)  # type: ignore[arg-type]
    assert site.take_audio() is None


def test_level_events_at_most_10_hz(room: Room, clock: FakeClock, events: list[ev.RoomEvent]) -> None:
    room.join("a")
    room.join("b")
    run(room, clock, {"a": 400, "b": 700}, ticks=100)  # 2 s
    levels = [e for e in events if isinstance(e, ev.AudioLevels)]
    assert 18 <= len(levels) <= 20
    assert all(b.at - a.at >= 0.1 - 1e-9 for a, b in zip(levels, levels[1:], strict=False))
    assert levels[-1].levels["a"] == pytest.approx(20 * np.log10(AMP / np.sqrt(2) / 32767), abs=0.5)


def speak(room: Room, clock: FakeClock, loud: dict[str, float], seconds: float, start: int) -> int:
    freqs = {"a": 400, "b": 700, "c": 1000}
    for k in range(int(round(seconds / 0.02))):
        for pid, f in freqs.items():
            amp = loud.get(pid, 30.0)  # background noise level when not talking
            room.participants[pid].push_audio(tone(f, amp, start + k))
        room.audio_tick()
        clock.advance(0.02)
    return start + int(round(seconds / 0.02))


def test_active_speaker_holds_against_a_short_burst(room: Room, clock: FakeClock, events: list[ev.RoomEvent]) -> None:
    for pid in "abc":
        room.join(pid)
    k = speak(room, clock, {"a": 3000}, 2.0, 0)
    assert room.active_speaker == "a"
    # a cough from b: 300 ms, much louder - no switch
    k = speak(room, clock, {"a": 3000, "b": 12000}, 0.3, k)
    k = speak(room, clock, {"a": 3000}, 1.0, k)
    assert room.active_speaker == "a"
    # b talks for real: switches after the hold time and not before
    start = clock.monotonic()
    k = speak(room, clock, {"b": 3000}, room.settings.speaker_hold * 0.8, k)
    assert room.active_speaker == "a"
    k = speak(room, clock, {"b": 3000}, 0.5, k)
    assert room.active_speaker == "b"
    change = [e for e in events if isinstance(e, ev.SpeakerChanged)][-1]
    assert change.participant_id == "b" and change.previous_id == "a"
    assert room.settings.speaker_hold <= change.at - start <= room.settings.speaker_hold + 0.2


def test_muted_site_never_becomes_speaker(room: Room, clock: FakeClock) -> None:
    for pid in "abc":
        room.join(pid)
    room.mute("c")
    speak(room, clock, {"c": 20000}, 3.0, 0)
    assert room.active_speaker is None


def test_detector_validation() -> None:
    with pytest.raises(ValueError):
        SpeakerDetector(on_dbfs=-50, off_dbfs=-40)
    with pytest.raises(ValueError):
        AudioMixer(ceiling=0.5, knee=0.8)
    out = AudioMixer().mix(MixInput((), (), (), (), ()))
    assert out.mixes.shape == (0, FRAME_SAMPLES)


def test_underrun_refills_before_playing_again(room: Room) -> None:
    site = room.join("a")
    frames = [tone(400, AMP, k) for k in range(4)]
    site.push_audio(frames[0])
    assert site.take_audio() is frames[0]
    assert site.take_audio() is None  # underrun
    site.push_audio(frames[1])
    assert site.take_audio() is None  # waiting for a second frame, not stuttering
    site.push_audio(frames[2])
    assert site.take_audio() is frames[1] and site.take_audio() is frames[2]
