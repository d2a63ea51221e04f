"""The video pacer (sip_gateway.rtp.pacing): a leaky bucket driven with explicit times."""
from __future__ import annotations

import fractions
from typing import cast

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.rtp.pacing import (
    MAX_KBPS,
    MIN_KBPS,
    FixedBudget,
    SendBudget,
    VideoPacer,
    is_keyframe,
    wire_bytes,
)

PAYLOAD = 1172  # a typical full H.264 FU-A payload: 1172 + 12 + 28 = 1212 bytes on the wire


def frame(packets: int, size: int = PAYLOAD) -> list[bytes]:
    return [bytes(size + 12)] * packets  # RTP packets (header included), as the leg enqueues them


def drain(pacer: VideoPacer, budget: SendBudget | None, start: float, until: float) -> list[tuple[float, int]]:
    """Run the pacer's own wake-ups from ``start`` to ``until``: (time, bytes) per packet sent."""
    sent: list[tuple[float, int]] = []
    now = start
    while now <= until:
        sent += [(now, wire_bytes(len(p))) for p in pacer.release(now, budget)]
        due = pacer.next_release(budget)
        if due is None:
            break
        now = max(due, now + 1e-9)
    return sent


def test_no_budget_is_todays_behaviour_everything_at_once() -> None:
    pacer = VideoPacer()
    assert pacer.admit([PAYLOAD] * 50, keyframe=True, now=0.0, budget=None)
    pacer.enqueue(frame(50))
    assert len(pacer.release(0.0, None)) == 50
    assert pacer.next_release(None) is None


def test_key_frame_is_spread_at_the_budget_rate_not_burst() -> None:
    budget = FixedBudget(600)
    pacer = VideoPacer()
    assert pacer.admit([PAYLOAD] * 50, keyframe=True, now=10.0, budget=budget)  # ~60 kB: 0.8 s at 600k
    pacer.enqueue(frame(50))
    sent = drain(pacer, budget, 10.0, 20.0)
    assert len(sent) == 50
    duration = sent[-1][0] - sent[0][0]
    total = sum(b for _, b in sent)
    assert abs((total - sent[-1][1]) * 8 / 600_000 - duration) < 0.001, (duration, total)  # the rate exactly
    # No 100 ms window carries more than the rate allows (plus one packet of bucket).
    for t0, _ in sent:
        window = sum(b for t, b in sent if t0 <= t < t0 + 0.1)
        assert window <= 600_000 / 8 * 0.1 + 1212 + 1, window


def test_queue_bound_drops_whole_frames_until_a_key_frame_and_asks_for_one() -> None:
    budget = FixedBudget(400)  # 50 kB/s: the queue holds at most 25 kB (0.5 s)
    pacer = VideoPacer(max_queue_s=0.5)
    assert pacer.admit([PAYLOAD] * 15, keyframe=True, now=0.0, budget=budget)  # 18 kB
    pacer.enqueue(frame(15))
    assert pacer.admit([PAYLOAD] * 4, keyframe=False, now=0.0, budget=budget)  # 23 kB: still fits
    pacer.enqueue(frame(4))
    assert not pacer.keyframe_wanted
    assert not pacer.admit([PAYLOAD] * 4, keyframe=False, now=0.01, budget=budget)  # would hold 0.58 s
    assert pacer.keyframe_wanted
    pacer.keyframe_wanted = False
    drain(pacer, budget, 0.0, 5.0)  # the queue empties...
    assert not pacer.queue
    # ...but a delta frame still refers to the dropped one: refused until a key frame comes.
    assert not pacer.admit([PAYLOAD], keyframe=False, now=5.0, budget=budget)
    assert pacer.admit([PAYLOAD] * 30, keyframe=True, now=5.0, budget=budget)  # bigger than the bound: admitted
    pacer.enqueue(frame(30))
    assert pacer.admit([PAYLOAD], keyframe=False, now=5.0, budget=budget) is False  # queue full behind it
    assert pacer.counters.frames_dropped == 3 and pacer.counters.frames_admitted == 3


def test_a_key_frame_behind_a_full_queue_is_dropped_too() -> None:
    budget = FixedBudget(400)
    pacer = VideoPacer(max_queue_s=0.5)
    assert pacer.admit([PAYLOAD] * 20, keyframe=False, now=0.0, budget=budget)
    pacer.enqueue(frame(20))
    assert not pacer.admit([PAYLOAD] * 20, keyframe=True, now=0.0, budget=budget)


def test_rate_follows_the_budget_on_every_call() -> None:
    class Changing:
        kbps = 2000

        def video_kbps(self) -> int:
            return self.kbps

    budget = Changing()
    pacer = VideoPacer(max_queue_s=10)
    pacer.admit([PAYLOAD] * 200, keyframe=True, now=0.0, budget=budget)
    pacer.enqueue(frame(200))
    fast = drain(pacer, budget, 0.0, 0.5)
    budget.kbps = 500
    slow = drain(pacer, budget, fast[-1][0] + 0.001, fast[-1][0] + 0.501)
    assert 95 <= len(fast) <= 110  # 2 Mbit/s for 0.5 s: ~103 packets of 1212 bytes
    assert 22 <= len(slow) <= 28  # 500 kbit/s: ~26


@pytest.mark.parametrize("kbps", [0, -1, 10_000_000_000])
def test_nonsense_budgets_are_clamped(kbps: int) -> None:
    budget = FixedBudget(kbps)
    pacer = VideoPacer(max_queue_s=100)
    pacer.admit([PAYLOAD] * 100, keyframe=True, now=0.0, budget=budget)
    pacer.enqueue(frame(100))
    sent = drain(pacer, budget, 0.0, 1000.0)
    assert len(sent) == 100
    duration = sent[-1][0] - sent[0][0]
    expected = MIN_KBPS if kbps <= 0 else MAX_KBPS
    assert abs(duration - 99 * 1212 * 8 / (expected * 1000)) < 0.01


def test_retransmissions_are_charged_so_video_waits_for_them() -> None:
    budget = FixedBudget(800)  # 100 kB/s
    pacer = VideoPacer()
    pacer.admit([PAYLOAD], keyframe=True, now=0.0, budget=budget)
    pacer.enqueue(frame(1))
    assert len(pacer.release(0.0, budget)) == 1
    for _ in range(10):  # ten NACKed packets resent
        pacer.charge(PAYLOAD + 12, 0.0, budget)
    pacer.admit([PAYLOAD], keyframe=False, now=0.0, budget=budget)
    pacer.enqueue(frame(1))
    assert pacer.release(0.05, budget) == []
    due = pacer.next_release(budget)
    assert due is not None and abs(due - 11 * 1212 / 100_000) < 1e-6


def test_order_is_kept() -> None:
    budget = FixedBudget(1000)
    pacer = VideoPacer(max_queue_s=5)
    everything: list[bytes] = []
    now = 0.0
    for n in range(10):  # frames keep arriving while earlier ones are still being paced out
        assert pacer.admit([PAYLOAD] * 3, keyframe=n == 0, now=now, budget=budget)
        pacer.enqueue([bytes([n, k]) + bytes(PAYLOAD + 10) for k in range(3)])
        everything += pacer.release(now, budget)
        now += 0.01
    while pacer.queue:
        now = max(now, pacer.next_release(budget) or now)
        everything += pacer.release(now, budget)
    assert [p[:2] for p in everything] == [bytes([n, k]) for n in range(10) for k in range(3)]


def _encoded(codec: str, pictures: int) -> list[bytes]:
    ctx = cast(av.VideoCodecContext, av.CodecContext.create(codec, "w"))
    ctx.width, ctx.height, ctx.pix_fmt = 176, 144, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 15)
    ctx.gop_size = 100
    if codec == "libx264":
        ctx.options = {"tune": "zerolatency", "preset": "ultrafast"}
    out = []
    for i in range(pictures):
        img = np.full((144, 176, 3), 90, dtype=np.uint8)
        img[i * 8: i * 8 + 4, :] = 255  # a small moving line: inter pictures
        f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        f.pts = i
        out += [bytes(p) for p in ctx.encode(f)]
    out += [bytes(p) for p in ctx.encode(None)]
    return out


@pytest.mark.parametrize(("codec", "name"), [("libx264", "H264"), ("h263", "H263")])
def test_key_frames_are_recognised(codec: str, name: str) -> None:
    pictures = _encoded(codec, 5)
    assert [is_keyframe(name, p) for p in pictures] == [True] + [False] * (len(pictures) - 1)
    assert is_keyframe("H261", b"anything") and not is_keyframe("H264", b"") and not is_keyframe("H263", b"\x00")


@given(st.lists(st.tuples(st.floats(0, 0.2), st.integers(1, 60), st.booleans()), min_size=1, max_size=40),
       st.integers(-5, 5000))
@settings(max_examples=150, deadline=None)
def test_property_order_rate_and_progress(frames: list[tuple[float, int, bool]], kbps: int) -> None:
    """Whatever arrives: packets leave in order, never faster than the rate allows (plus the bucket and
    one packet), every admitted packet leaves, and each wake-up moves time forward."""
    budget = FixedBudget(kbps)
    rate = max(MIN_KBPS, min(MAX_KBPS, kbps)) * 1000 / 8
    pacer = VideoPacer()
    now, counter = 0.0, 0
    admitted: list[int] = []
    sent: list[tuple[float, int, int]] = []

    def release(at: float) -> None:
        sent.extend((at, int.from_bytes(p[:4], "big"), wire_bytes(len(p))) for p in pacer.release(at, budget))

    for gap, packets, key in frames:
        now += gap
        release(now)
        if pacer.admit([PAYLOAD] * packets, key, now, budget):
            batch = [counter + i for i in range(packets)]
            counter += packets
            admitted += batch
            pacer.enqueue([n.to_bytes(4, "big") + bytes(PAYLOAD + 8) for n in batch])
        else:
            counter += packets
        release(now)
    for _ in range(100_000):
        due = pacer.next_release(budget)
        if due is None:
            break
        assert due > now - 1e-9
        now = max(now, due)
        release(now)
    assert not pacer.queue
    assert [n for _, n, _ in sent] == admitted
    burst = max(1500, rate * 0.005) + 1212
    for i, (t0, _, _) in enumerate(sent):
        window = sum(b for t, _, b in sent[i:] if t <= t0 + 0.25)
        assert window <= rate * 0.25 + burst + 1212 + 1, (window, rate)
