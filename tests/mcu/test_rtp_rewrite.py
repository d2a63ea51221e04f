"""One receiver's stream across shared-encoder switches (mcu.legs.rtp_rewrite), with synthetic packets."""
from __future__ import annotations

import pytest

from mcu.legs.rtp_rewrite import Rewritten, StreamRewriter, h264_nal_types, is_switch_point

FRAME = 3600  # 90 kHz at 25 fps
SPS, PPS, IDR, P = b"\x00\x00\x00\x01\x67\x42", b"\x00\x00\x00\x01\x68\xce", b"\x00\x00\x01\x65\x88", b"\x00\x00\x01\x41\x9a"


def _send(rw: StreamRewriter, source: str, ts: int, key: bool, now: float, seq: int | None = None) -> Rewritten | None:
    return rw.rewrite(source, ts, key, now, seq)


def test_switch_points() -> None:
    assert h264_nal_types(SPS + PPS + IDR) == {7, 8, 5}
    assert is_switch_point("h264", SPS + PPS + IDR, True)
    assert not is_switch_point("h264", IDR, True)  # an IDR without its parameter sets
    assert not is_switch_point("h264", SPS + PPS + IDR, False)
    assert not is_switch_point("h264", b"", True) and h264_nal_types(b"\x00\x00\x01") == set()
    assert is_switch_point("vp8", b"\x10", True) and not is_switch_point("vp8", b"\x11", False)


def test_nothing_goes_out_before_the_first_key_frame() -> None:
    rw = StreamRewriter()
    assert _send(rw, "a", 1000, False, 0.0) is None
    out = _send(rw, "a", 1000 + FRAME, True, 0.04)
    assert out is not None and out.timestamp == 1000 + FRAME
    assert rw.withheld == 1 and rw.switches == 0


def test_jump_back_is_rewritten_to_a_continuous_clock() -> None:
    """Tier 1 started 30 s before tier 4: switching to it must not jump the timestamp back 30 s."""
    rw = StreamRewriter()
    old_ts = 30 * 90_000  # the old encoder is 30 s old ...
    new_ts = 0  # ... the new one just started
    now = 100.0
    out = []
    seq_old, seq_new = 40_000, 7
    for i in range(10):  # the old source flows
        r = _send(rw, "t1", old_ts + i * FRAME, i == 0, now + i * 0.04, seq_old + i)
        assert r is not None
        out.append(r)
    now += 10 * 0.04
    rw.switch_to("t4", now)
    assert rw.switching
    # The decision: the new source's P frames are withheld; the old one keeps flowing meanwhile.
    assert _send(rw, "t4", new_ts, False, now, seq_new) is None
    r = _send(rw, "t1", old_ts + 10 * FRAME, False, now, seq_old + 10)
    assert r is not None
    out.append(r)
    # The IDR of the new tier arrives 0.12 s after the last old frame went out.
    r = _send(rw, "t4", new_ts + 3 * FRAME, True, now + 0.12, seq_new + 1)
    assert r is not None and r.switched
    out.append(r)
    for i in range(4, 10):  # then the new source flows; late old units are dropped
        assert _send(rw, "t1", old_ts + (7 + i) * FRAME, False, now + 0.04 * i, seq_old + 7 + i) is None
        r = _send(rw, "t4", new_ts + i * FRAME, False, now + 0.04 * i, seq_new + i - 2)
        assert r is not None
        out.append(r)
    stamps = [r.timestamp for r in out]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # never back
    # The gap at the switch is the wall-clock gap (0.12 s at 90 kHz), not 30 s.
    assert stamps[11] - stamps[10] == round(0.12 * 90_000)
    assert max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) <= round(0.12 * 90_000)
    seqs = [r.seq for r in out]
    assert seqs == list(range(seq_old, seq_old + len(out)))  # no gap, same numbering
    assert rw.switches == 1 and rw.current == "t4" and not rw.switching


def test_wraparound_of_timestamps_and_sequence_numbers() -> None:
    rw = StreamRewriter()
    r = _send(rw, "a", 2**32 - FRAME, True, 0.0, 65_535)
    assert r is not None and (r.timestamp, r.seq) == (2**32 - FRAME, 65_535)
    r = _send(rw, "a", 2**32, False, 0.04, 65_536)
    assert r is not None and (r.timestamp, r.seq) == (0, 0)
    rw.switch_to("b", 0.05)
    r = _send(rw, "b", 123_456_789, True, 0.08, 3)
    assert r is not None and (r.timestamp, r.seq) == (round(0.04 * 90_000), 1)


def test_an_unannounced_source_switches_on_its_key_frame() -> None:
    """A view change moves the subscription without telling the rewriter."""
    rw = StreamRewriter()
    assert _send(rw, "a", 500_000, True, 0.0) is not None
    assert _send(rw, "b", 10, False, 0.04) is None
    r = _send(rw, "b", 10 + FRAME, True, 0.08)
    assert r is not None and r.switched and r.timestamp == 500_000 + round(0.08 * 90_000)
    # Going back to "a" later (the chair undid the change) works the same way.
    assert _send(rw, "a", 900_000, True, 1.0) is None  # retired for 2 s: a late unit of the old source
    r = _send(rw, "a", 900_000 + FRAME, True, 3.0)
    assert r is not None and r.switched


def test_several_packets_of_one_frame_share_the_timestamp() -> None:
    rw = StreamRewriter()
    for seq in range(3):
        r = _send(rw, "a", 9000, seq == 0, 0.0, 100 + seq)
        assert r is not None and r.timestamp == 9000
    rw.switch_to("b", 0.01)
    first = _send(rw, "b", 50, True, 0.05, 9)
    second = _send(rw, "b", 50, False, 0.051, 10)
    assert first is not None and second is not None
    assert first.timestamp == second.timestamp and (first.seq, second.seq) == (103, 104)


def test_switching_to_the_current_source_changes_nothing_and_bad_arguments_are_refused() -> None:
    rw = StreamRewriter()
    _send(rw, "a", 0, True, 0.0)
    rw.switch_to("a", 1.0)
    assert not rw.switching
    with pytest.raises(ValueError):
        StreamRewriter(clock_rate=0)
