"""The WebRTC leg's decode gate (hidden sources not decoded) and its small helpers, without a browser.

The gate on a real aiortc receiver with Chromium is in test_webrtc_pane_size_chromium.py.
"""
from __future__ import annotations

import datetime
import queue
from dataclasses import dataclass
from typing import Any

import pytest

from mcu.legs.webrtc_aiortc import DecodeGate, is_keyframe, media_ssrc

SPS_IDR = b"\x00\x00\x00\x01\x67\x42\xc0\x1f" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88\x84"
P_SLICE = b"\x00\x00\x00\x01\x41\x9a\x02"
VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a])
VP8_DELTA = bytes([0x11, 0x02, 0x00])


@dataclass
class _Codec:
    name: str


@dataclass
class _Frame:
    data: bytes


class _Receiver:
    def __init__(self) -> None:
        self._RTCRtpReceiver__decoder_queue: queue.Queue[Any] = queue.Queue()


def test_keyframes_are_recognised() -> None:
    assert is_keyframe("H264", SPS_IDR) and is_keyframe("h264", b"\x00\x00\x01\x65\x00")
    assert not is_keyframe("H264", P_SLICE) and not is_keyframe("H264", b"") and not is_keyframe("H264", b"\x00\x00")
    assert is_keyframe("VP8", VP8_KEY) and not is_keyframe("VP8", VP8_DELTA) and not is_keyframe("VP8", b"")


def test_gate_skips_while_off_and_resumes_on_a_key_frame() -> None:
    receiver = _Receiver()
    gate = DecodeGate()
    gate.install(receiver)
    q = receiver._RTCRtpReceiver__decoder_queue
    h264 = _Codec("H264")
    q.put((h264, _Frame(P_SLICE)))
    assert q.qsize() == 1  # full: everything goes to the decoder
    gate.set_mode("off")
    for _ in range(5):
        q.put((h264, _Frame(SPS_IDR)))  # even key frames: nothing is decoded while hidden
    assert q.qsize() == 1 and gate.frames_skipped == 5
    gate.set_mode("full")
    q.put((h264, _Frame(P_SLICE)))  # no reference: waits for the key frame
    assert q.qsize() == 1 and gate.frames_skipped == 6
    q.put((h264, _Frame(SPS_IDR)))
    q.put((h264, _Frame(P_SLICE)))
    assert q.qsize() == 3 and gate.frames_skipped == 6
    gate.set_mode("fast")  # decoded like full (the browser sends the pane's size): no resync needed
    q.put((h264, _Frame(P_SLICE)))
    assert q.qsize() == 4
    q.put(None)  # aiortc's end-of-stream sentinel always passes
    assert q.qsize() == 5


def test_gate_refuses_bad_modes_and_changed_internals() -> None:
    gate = DecodeGate()
    with pytest.raises(ValueError):
        gate.set_mode("sideways")
    assert gate.mode == "full"
    with pytest.raises(RuntimeError, match="aiortc internals changed"):
        gate.install(object())


def test_media_ssrc_is_the_latest_active_non_rtx_ssrc() -> None:
    class Receiver:
        pass

    r: Any = Receiver()
    assert media_ssrc(r) is None
    t0 = datetime.datetime(2026, 1, 1)
    r._RTCRtpReceiver__active_ssrc = {111: t0, 222: t0 + datetime.timedelta(seconds=1),
                                      333: t0 + datetime.timedelta(seconds=2)}
    r._RTCRtpReceiver__rtx_ssrc = {333: 222}  # 333 is 222's RTX stream
    assert media_ssrc(r) == 222
