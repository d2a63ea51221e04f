"""ULPFEC (RFC 5109) and RED (RFC 2198): recovery of any one lost packet, refusals, a known vector."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.rtp.ulpfec import FecError, encode_fec, parse_fec, recover, red_unwrap, red_wrap

SSRC = 0x11223344


def rtp(seq: int, ts: int, payload: bytes, marker: bool = False, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, SSRC) + payload


def test_a_lost_packet_comes_back_bit_exact() -> None:
    packets = [rtp(65534 + i, 9000 * (i // 2), bytes([i]) * (100 + 37 * i), marker=i % 2 == 1) for i in range(5)]
    fec = parse_fec(encode_fec(packets))
    assert fec.protected == tuple((65534 + i) & 0xFFFF for i in range(5)) and not fec.long_mask
    for lost in range(5):
        held = {int.from_bytes(p[2:4], "big"): p for i, p in enumerate(packets) if i != lost}
        assert recover(fec, held, SSRC) == packets[lost]
    assert recover(fec, {int.from_bytes(p[2:4], "big"): p for p in packets}, SSRC) is None  # nothing missing
    assert recover(fec, {}, SSRC) is None  # too much missing


def test_the_fec_header_is_rfc_5109s() -> None:
    a, b = rtp(10, 1000, b"\x01\x02", marker=True), rtp(12, 2000, b"\x04")
    out = encode_fec([a, b])
    # E=0 L=0, P/X/CC xor = 0; M|PT xor = 0x80 (only a has M; PT cancels); SN base 10; TS 1000^2000; length 2^1
    assert out[:10] == bytes([0x00, 0x80]) + struct.pack("!HIH", 10, 1000 ^ 2000, 3)
    assert out[10:14] == struct.pack("!H", 2) + bytes([0b10100000, 0])  # protection length, mask 10 and 12
    assert out[14:] == bytes([0x01 ^ 0x04, 0x02])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=20), st.integers(0, 65535),
       st.data())
def test_any_one_of_up_to_48_packets_is_recovered(payloads: list[bytes], start: int, data: st.DataObject) -> None:
    gaps = data.draw(st.lists(st.integers(1, 2), min_size=len(payloads), max_size=len(payloads)))
    seqs = [start]
    for gap in gaps[1:]:
        seqs.append(seqs[-1] + gap)
    packets = [rtp(s, s * 3000, p, marker=bool(s % 3)) for s, p in zip(seqs, payloads, strict=True)]
    fec = parse_fec(encode_fec(packets))
    lost = data.draw(st.integers(0, len(packets) - 1))
    held = {s & 0xFFFF: p for i, (s, p) in enumerate(zip(seqs, packets, strict=True)) if i != lost}
    assert recover(fec, held, SSRC) == packets[lost]


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    try:
        fec = parse_fec(data)
    except FecError:
        return
    assert fec.protected and len(fec.payload) <= len(data)
    recover(fec, {}, SSRC)  # never raises


def test_bad_sets_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_fec([])
    with pytest.raises(ValueError):
        encode_fec([rtp(1, 0, b"x"), rtp(60, 0, b"y")])  # beyond a 48-bit mask
    with pytest.raises(ValueError):
        encode_fec([b"short"])
    with pytest.raises(FecError):
        parse_fec(bytes(9))
    with pytest.raises(FecError):
        parse_fec(bytes(10) + struct.pack("!H", 500) + bytes(2))  # protection past the end


def test_red_carries_one_primary_block_and_skips_redundant_ones() -> None:
    assert red_unwrap(red_wrap(117, b"fec")) == (117, b"fec")
    redundant = bytes([0x80 | 96, 0, 0, 3]) + bytes([97]) + b"old" + b"new"  # one 3-byte redundant block
    assert red_unwrap(redundant) == (97, b"new")
    with pytest.raises(FecError):
        red_unwrap(b"")
    with pytest.raises(FecError):
        red_unwrap(bytes([0x80, 0, 0, 200, 5]))
