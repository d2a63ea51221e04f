"""bench/lines' capture analysis (bench/video_frames): a sequence-number wrap mid-call is not a freeze."""
from __future__ import annotations

from bench.video_frames import analyse_video


def test_a_sequence_wrap_mid_call_keeps_every_frame_intact() -> None:
    # 100 one-packet frames at 25 fps, an IDR every 50, the sequence number wrapping after frame 49.
    rows = [(1000 + i * 0.04, (65486 + i) & 0xFFFF, i * 3600, True, 1000, bytes([0x65 if i % 50 == 0 else 0x41]))
            for i in range(100)]
    rows.reverse()  # the capture's order does not matter
    out = analyse_video(rows, 1000.0, 1004.0, 100)
    assert out["first_picture_s"] == 0.0 and out["freezes_over_1s"] == 0 and out["intact_fps_after_2s"] == 25.0
