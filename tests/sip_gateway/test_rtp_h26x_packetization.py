"""RFC 2190/4629 (H.263) and RFC 4587 (H.261) packetisation, checked by PyAV decoding."""
from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.rtp.bits import join_bit_pieces, join_framed_pieces
from sip_gateway.rtp.h261 import (
    depacketize_rfc4587,
    gob_starts,
    packetize_rfc4587,
    parse_rfc4587_header,
    strip_rfc4587,
)
from sip_gateway.rtp.h263 import (
    depacketize_rfc2190,
    depacketize_rfc4629,
    packetize_rfc2190,
    packetize_rfc4629,
    parse_picture_header,
    parse_rfc2190_header,
    strip_rfc2190,
    strip_rfc4629,
)

W, H = 352, 288


def _frames(count: int) -> list[av.VideoFrame]:
    """A moving test pattern: left half red, right half blue, a white square sliding."""
    out = []
    for i in range(count):
        rgb = np.zeros((H, W, 3), dtype=np.uint8)
        rgb[:, : W // 2] = (200, 30, 30)
        rgb[:, W // 2 :] = (30, 30, 200)
        x = (i * 8) % (W - 40)
        rgb[100:140, x : x + 40] = 255
        out.append(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p"))
    return out


def _encode(codec: str, count: int = 12, options: dict[str, str] | None = None) -> list[bytes]:
    ctx: Any = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 25)
    ctx.bit_rate = 384_000
    ctx.options = options or {}
    pictures = []
    for n, frame in enumerate(_frames(count)):
        frame.pts = n
        pictures += [bytes(p) for p in ctx.encode(frame)]
    pictures += [bytes(p) for p in ctx.encode(None)]
    return pictures


def _decode(codec: str, pictures: list[bytes]) -> list[np.ndarray]:
    ctx: Any = av.CodecContext.create(codec, "r")
    out = []
    for data in pictures:
        for frame in ctx.decode(av.Packet(data)):
            out.append(frame.to_ndarray(format="rgb24"))
    return out


def _check_colours(frames: list[np.ndarray]) -> None:
    assert frames
    last = frames[-1].astype(int)
    left, right = last[200:280, 20:150].mean(axis=(0, 1)), last[200:280, 200:330].mean(axis=(0, 1))
    assert left[0] > 150 and left[2] < 80, left
    assert right[2] > 150 and right[0] < 80, right


@pytest.mark.parametrize("mtu", [1200, 300])
def test_h263_rfc2190_round_trip_decodes(mtu: int) -> None:
    pictures = _encode("h263", options={"ps": str(mtu - 100)})
    rebuilt = []
    for picture in pictures:
        payloads = packetize_rfc2190(picture, mtu)
        assert all(len(p) <= mtu for p in payloads)
        info = parse_picture_header(picture)
        for payload in payloads:
            header = parse_rfc2190_header(payload)
            assert header.mode == "A" and header.source_format == 3 == info.source_format
            assert header.temporal_reference == info.temporal_reference
        # Every packet but the oversize-GOB fragments starts at a start code.
        assert payloads[0][4:7].startswith(b"\x00\x00")
        rebuilt.append(depacketize_rfc2190(payloads))
        assert join_framed_pieces(b"".join(strip_rfc2190(p) for p in payloads)) == picture
    assert rebuilt == pictures
    _check_colours(_decode("h263", rebuilt))
    assert parse_picture_header(pictures[0]).inter is False
    assert parse_picture_header(pictures[1]).inter is True


def test_h263_rfc4629_round_trip_decodes() -> None:
    pictures = _encode("h263", options={"ps": "800"})
    rebuilt = []
    for picture in pictures:
        payloads = packetize_rfc4629(picture, 1000)
        assert payloads[0][0] & 0x04  # P bit on the picture start
        assert all(len(p) <= 1000 for p in payloads)
        rebuilt.append(depacketize_rfc4629(payloads))
        assert b"".join(strip_rfc4629(p) for p in payloads) == picture
    assert rebuilt == pictures
    _check_colours(_decode("h263", rebuilt))


@pytest.mark.parametrize("mtu", [1200, 200])
def test_h261_rfc4587_round_trip_decodes(mtu: int) -> None:
    pictures = _encode("h261")
    rebuilt = []
    for picture in pictures:
        starts = gob_starts(picture)
        assert starts[0] == (0, 0)  # the picture start code
        assert [gn for _, gn in starts[1:]] == list(range(1, 13))  # CIF: 12 GOBs
        payloads = packetize_rfc4587(picture, mtu)
        assert all(len(p) <= mtu for p in payloads)
        headers = [parse_rfc4587_header(p) for p in payloads]
        assert headers[0].sbit == 0 and headers[0].gobn == 0
        assert any(h.sbit for h in headers) or len(payloads) == 1  # GOB starts are not octet aligned
        rebuilt.append(depacketize_rfc4587(payloads))
        # Packet-by-packet joining (the RTP session path) is exact for our own packets too.
        assert join_framed_pieces(b"".join(strip_rfc4587(p) for p in payloads)) == picture
    assert rebuilt == pictures
    _check_colours(_decode("h261", rebuilt))


def test_bad_payloads_raise_value_error() -> None:
    with pytest.raises(ValueError):
        parse_rfc2190_header(b"\x00\x60")
    with pytest.raises(ValueError):
        parse_rfc2190_header(b"\x80\x60\x00\x00\x00")  # mode B needs 8 octets
    with pytest.raises(ValueError):
        parse_rfc4587_header(b"\x00")
    with pytest.raises(ValueError):
        strip_rfc4629(b"\x01\xf8")  # PLEN 63 without the extra header
    with pytest.raises(ValueError):
        parse_picture_header(b"\x01\x02\x03\x04\x05\x06")
    with pytest.raises(ValueError):
        join_bit_pieces([(b"\x00", 5, 4)])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_depacketizers_never_raise_other_errors(data: bytes) -> None:
    for parse in (strip_rfc2190, strip_rfc4629, strip_rfc4587, lambda d: depacketize_rfc2190([d]),
                  lambda d: depacketize_rfc4587([d]), lambda d: packetize_rfc4587(d, 100)):
        try:
            parse(data)
        except ValueError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=2, max_size=8), st.integers(0, 7), st.integers(0, 7)), max_size=6))
def test_join_bit_pieces_matches_bit_strings(pieces: list[tuple[bytes, int, int]]) -> None:
    expected = ""
    for data, sbit, ebit in pieces:
        bits = "".join(f"{b:08b}" for b in data)
        expected += bits[sbit:len(bits) - ebit]
    expected += "0" * ((-len(expected)) % 8)
    got = join_bit_pieces(pieces)
    assert "".join(f"{b:08b}" for b in got) == expected
