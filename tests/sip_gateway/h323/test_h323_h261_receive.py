"""H.261 received with packet boundaries inside octets (RFC 4587 SBIT/EBIT), through the real
receive path: RTP packets → RtpSession (jitter buffer) → VideoDecoder → PyAV frames.

RFC 4587 lets the sender put anything in the bits a packet does not own (the EBIT bits at the
end of one packet, the SBIT bits at the start of the next, both in the octet they share). A
receiver that keeps one packet's copy of that octet decodes garbage; the bit-exact joiner does
not. The pictures are real H.261 CIF pictures (PyAV), cut at every GOB start code.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.rtp.bits import frame_piece, join_bit_pieces, join_framed_pieces
from sip_gateway.rtp.codecs import VideoDecoder
from sip_gateway.rtp.h261 import packetize_rfc4587, parse_rfc4587_header
from sip_gateway.rtp.media_description import Codec, MediaStream
from sip_gateway.rtp.session import EncodedFrame, RtpSession
from tests.sip_gateway.test_rtp_h26x_packetization import _check_colours, _decode, _encode

H261 = Codec("H261", 31, 90000)


def garble_ignored_bits(payload: bytes) -> bytes:
    """Flip the bits the packet does not own (a sender may leave anything there)."""
    header = parse_rfc4587_header(payload)
    data = bytearray(payload[4:])
    if header.sbit:
        data[0] ^= (0xFF << (8 - header.sbit)) & 0xFF
    if header.ebit:
        data[-1] ^= (1 << header.ebit) - 1
    return payload[:4] + bytes(data)


def stream() -> MediaStream:
    return MediaStream(kind="video", index=1, local_port=40000, remote_host="127.0.0.1", remote_port=40002,
                       remote_rtcp_port=40003, codec=H261, direction="sendrecv", rtcp_mux=False)


def receive(pictures: list[bytes], mtu: int, garble: bool) -> tuple[list[np.ndarray], int]:
    """Send the pictures as RTP and decode what the receiving session reassembles."""
    sender, receiver, decoder = RtpSession(stream()), RtpSession(stream()), VideoDecoder(H261)
    frames: list[np.ndarray] = []
    mid_octet = 0
    for n, picture in enumerate(pictures):
        payloads = packetize_rfc4587(picture, mtu)
        mid_octet += sum(1 for p in payloads if parse_rfc4587_header(p).sbit)
        if garble:
            payloads = [garble_ignored_bits(p) for p in payloads]
        for datagram in sender.packetize(payloads, n * 3600):
            for event in receiver.receive(datagram, time.monotonic()):
                if isinstance(event, EncodedFrame):
                    frames += [f.to_ndarray(format="rgb24") for f in decoder.decode(event.data, event.timestamp)]
    return frames, mid_octet


@pytest.mark.parametrize("mtu", [1200, 160])
def test_h261_split_mid_octet_decodes_to_the_right_pixels(mtu: int) -> None:
    pictures = _encode("h261", count=10)
    reference = _decode("h261", pictures)
    frames, mid_octet = receive(pictures, mtu, garble=True)
    assert mid_octet >= (len(pictures) if mtu < 500 else 1)  # packets really start inside octets
    # The jitter buffer hands a picture over when the next one starts: all but the last.
    assert len(frames) >= len(pictures) - 2
    for got, want in zip(frames, reference, strict=False):
        assert np.array_equal(got, want)  # bit-exact stream: identical pixels
    _check_colours(frames)


def test_h261_clean_senders_still_decode() -> None:
    pictures = _encode("h261", count=6)
    frames, _ = receive(pictures, 200, garble=False)
    assert len(frames) >= len(pictures) - 2
    assert all(np.array_equal(a, b) for a, b in zip(frames, _decode("h261", pictures), strict=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=20), st.integers(0, 7), st.integers(0, 7)), max_size=8))
def test_framed_pieces_join_like_the_bit_joiner(pieces: list[tuple[bytes, int, int]]) -> None:
    usable = [(d, s, e) for d, s, e in pieces if len(d) * 8 - s - e >= 0]
    blob = b"".join(frame_piece(d, s, e) for d, s, e in usable)
    assert join_framed_pieces(blob) == join_bit_pieces(usable)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_framed_pieces_reject_garbage_with_value_error_only(blob: bytes) -> None:
    try:
        join_framed_pieces(blob)
    except ValueError:
        pass


def test_truncated_and_bad_pieces() -> None:
    piece = frame_piece(b"\x12\x34", 3, 2)
    for bad in (piece[:2], piece[:-1], b"\x80\x00\x01\x00"):  # short header, short data, SBIT 8
        with pytest.raises(ValueError):
            join_framed_pieces(bad)
    with pytest.raises(ValueError):
        frame_piece(b"\x00", 8, 0)
    assert VideoDecoder(H261).decode(piece[:-1], 0) == []  # a damaged picture: no frame, no exception
