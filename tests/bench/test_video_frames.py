"""bench/video_frames: per-frame verdicts (complete, intra, intact) on packets from a real encode.

Pictures are encoded with PyAV's H.263 / H.261 encoders as the MCU's shared encoder does (H.263 in
RTP mode with GOB headers, mcu/encoder.py), packetized by our packetizers (sip_gateway/rtp), put in
RTP rows with a sequence number that wraps, and packets are dropped as a line would.
"""
from __future__ import annotations

import fractions
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import pytest

from bench.video_frames import RtpRow, analyse_video, frames, h263_picture_intra
from sip_gateway.rtp.h261 import packetize_rfc4587
from sip_gateway.rtp.h263 import packetize_rfc2190, packetize_rfc4629, parse_picture_header

W, H = 352, 288
GOP = 10
MTU = 300
FPS = 25


def _encode(codec: str, count: int) -> list[tuple[bytes, bool]]:
    """(picture, the encoder's key frame flag) for ``count`` busy CIF frames, an I-picture every GOP."""
    ctx: Any = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.bit_rate = 384_000
    ctx.gop_size = GOP
    # Rate-bounded as the MCU's shared encoder is (mcu/encoder.py), scene cuts off: I-pictures every GOP only.
    ctx.options = {"maxrate": "384000", "bufsize": "96000", "qmin": "2", "qmax": "31", "sc_threshold": "1000000000",
                   **({"ps": str(MTU - 50)} if codec == "h263" else {})}
    rng = np.random.default_rng(7)
    out: list[tuple[bytes, bool]] = []
    for n in range(count):
        rgb = np.zeros((H, W, 3), dtype=np.uint8)
        rgb[:, :120] = rng.integers(0, 256, (H, 120, 3), dtype=np.uint8)  # a busy pane: P-pictures of many packets
        rgb[100:140, (n * 8) % 300:(n * 8) % 300 + 40] = 255
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        out += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(frame)]
    out += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None)]
    assert len(out) == count
    return out


def _rows(pictures: list[tuple[bytes, bool]], packetize: Callable[[bytes], list[bytes]],
          first_seq: int = 65_500) -> list[list[RtpRow]]:
    """Per frame, its RTP rows: 25 fps (a frame's packets arrive together), 90 kHz timestamps, the
    marker on the last packet."""
    out, seq = [], first_seq
    for n, (picture, _) in enumerate(pictures):
        payloads = packetize(picture)
        frame = []
        for i, payload in enumerate(payloads):
            frame.append((1000.0 + n / FPS, seq & 0xFFFF, n * 3600, i == len(payloads) - 1,
                          12 + len(payload), payload))
            seq += 1
        out.append(frame)
    return out


def _flatten(per_frame: list[list[RtpRow]], drop: dict[int, list[int]]) -> list[RtpRow]:
    """All rows but the packets ``drop`` names (frame -> packet indexes; [-1] is the last), shuffled."""
    kept = []
    for n, frame in enumerate(per_frame):
        gone = {i % len(frame) for i in drop.get(n, [])}
        kept += [r for i, r in enumerate(frame) if i not in gone]
    return kept[::-1]  # the capture's order does not matter


@pytest.mark.parametrize(("codec", "packetize"), [("H263", packetize_rfc2190), ("H263-1998", packetize_rfc4629)])
def test_h263_frames_after_losses(codec: str, packetize: Callable[[bytes, int], list[bytes]]) -> None:
    pictures = _encode("h263", 30)
    keys = [k for _, k in pictures]
    assert keys == [n % GOP == 0 for n in range(30)]  # the encoder's I-pictures, every GOP
    assert [not parse_picture_header(p).inter for p, _ in pictures] == keys
    per_frame = _rows(pictures, lambda p: packetize(p, MTU))
    assert all(len(f) >= 3 for f in per_frame)  # every picture spans packets: the drops below are mid-picture
    drop = {3: [1],  # a P-picture's middle packet
            9: [-1],  # the marker packet just before an I-picture
            14: [-1],  # a P-picture's marker packet: the next starts with its PSC, complete, not intact
            20: [0],  # an I-picture's first packet (its picture header)
            25: list(range(len(per_frame[25])))}  # a whole P-picture
    got = frames(_flatten(per_frame, drop), codec)
    assert len(got) == 29  # frame 25 never arrived
    by_ts = {f.timestamp // 3600: f for f in got}
    assert [n for n, f in by_ts.items() if not f.complete] == [3, 9, 14, 20]
    for n, f in by_ts.items():
        if codec == "H263" or n != 20:  # RFC 2190: every packet says; RFC 4629: the first packet only
            assert f.intra is keys[n], n
        else:
            assert f.intra is None
    intact = [n for n, f in by_ts.items() if f.intact]
    assert intact == [0, 1, 2, 10, 11, 12, 13]  # 3 breaks the chain to 10; 14 to 30; 20 lost its start


def test_h261_frames_by_ffmpeg_intra_marking() -> None:
    pictures = _encode("h261", 20)
    keys = [k for _, k in pictures]
    assert keys == [n % GOP == 0 for n in range(20)]
    per_frame = _rows(pictures, lambda p: packetize_rfc4587(p, MTU), first_seq=100)
    assert all(len(f) >= 2 for f in per_frame)
    got = frames(_flatten(per_frame, {0: [1], 12: [0]}), "H261")
    assert [f.intra for f in got] == [keys[n] if n != 12 else None for n in range(20)]
    assert [f.complete for f in got] == [n not in (0, 12) for n in range(20)]
    assert [n for n, f in enumerate(got) if f.intact] == [10, 11]


def test_h263_figures_from_a_real_encode() -> None:
    pictures = _encode("h263", 100)  # 4 s at 25 fps, I-pictures at 0, 0.4 s, 0.8 s, ...
    per_frame = _rows(pictures, lambda p: packetize_rfc2190(p, MTU))
    sent = sum(len(f) for f in per_frame)
    # Loss in frame 51 (P): frames 51-59 are lost to the picture; 60 (I) brings it back.
    rows = _flatten(per_frame, {51: [1]})
    assert analyse_video(rows, 1000.0, 1004.0, sent)["first_picture_s"] == -1  # H.264's rules do not read H.263
    fig = analyse_video(rows, 1000.0, 1004.0, sent, "H263")
    assert fig["first_picture_s"] == 0.0
    assert fig["video_loss_capture_pct"] == round(100 / sent, 2)
    assert fig["video_delivered_kbps"] == round(sum(r[4] for r in rows) * 8 / 1000 / 4, 1)
    # After 2 s: frames 50-99 but 51-59 intact (41 frames) over 2 s.
    assert fig["intact_fps_after_2s"] == round(41 / 2, 1)
    assert fig["freezes_over_1s"] == 0 and fig["longest_freeze_s"] == pytest.approx(0.4, abs=0.01)
    # Frames after the window (the call's release) are not counted: frames 50-75 but 51-59 in the last second.
    short = analyse_video(rows, 1000.0, 1003.0, sent, "H263")
    assert short["intact_fps_after_2s"] == 17.0 and short["longest_freeze_s"] == pytest.approx(0.4, abs=0.01)
    # Every I-picture lost too: no picture after the first 0.4 s, one freeze to the end.
    rows = _flatten(per_frame, {n: [0] for n in range(10, 100, GOP)} | {5: [1]})
    fig = analyse_video(rows, 1000.0, 1004.0, sent, "H263")
    assert fig["freezes_over_1s"] == 1 and fig["longest_freeze_s"] == pytest.approx(4.0 - 4 / FPS, abs=0.01)


def test_plusptype_pictures_are_read() -> None:
    # H.263+ (PLUSPTYPE, source format 7): UFEP 001, OPPTYPE (18 bits), MPPTYPE picture type 000 / 001.
    def picture(picture_type: int) -> bytes:
        bits = "0000000000000000100000" + "00000001" + "10000111" + "001" + "011" + "0" * 15 + f"{picture_type:03b}"
        bits += "0" * (-len(bits) % 8 + 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big")

    assert h263_picture_intra(picture(0)) is True and h263_picture_intra(picture(1)) is False
    assert h263_picture_intra(b"\x00\x00\x80") is None  # too short to tell


def test_h264_frame_starts() -> None:
    sps, idr, p_first, p_second = bytes([0x67, 0x42]), bytes([0x65, 0x88]), bytes([0x41, 0x9A]), bytes([0x41, 0x40])
    rows: list[RtpRow] = [
        (0.00, 10, 0, False, 100, sps), (0.00, 11, 0, True, 100, idr),
        (0.04, 12, 3600, True, 100, p_first),
        (0.08, 13, 7200, False, 100, p_first),  # its marker packet 14 is lost
        (0.12, 15, 10800, False, 100, sps), (0.12, 16, 10800, True, 100, idr),  # starts with its SPS: complete
        (0.16, 17, 14400, True, 100, p_first),
        (0.20, 19, 18000, True, 100, p_second),  # a second slice (first_mb_in_slice > 0): 18 is lost
        (0.24, 20, 21600, True, 100, idr),  # right after a marker packet: complete
        (0.28, 22, 25200, True, 100, idr),  # 21 is lost: it may have been this key frame's SPS
    ]
    got = frames(rows, "H264")
    assert [f.complete for f in got] == [True, True, False, True, True, False, True, False]
    assert [f.intact for f in got] == [True, True, False, True, True, False, True, False]
