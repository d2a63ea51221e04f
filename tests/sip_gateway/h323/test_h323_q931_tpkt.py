"""TPKT framing and Q.931 messages: round trips, strict length checks, fuzzing."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.h323.q931 import (
    IE,
    Cause,
    MessageType,
    Q931Error,
    Q931Message,
    decode_cause,
    decode_number,
    encode_bearer_capability,
    encode_cause,
    encode_number,
    user_user_ie,
)
from sip_gateway.h323.tpkt import TpktError, TpktFramer, encode_tpkt


def test_tpkt_round_trip_split_anywhere() -> None:
    stream = encode_tpkt(b"abc") + encode_tpkt(b"") + encode_tpkt(b"x" * 1000)
    for cut in range(len(stream) + 1):
        framer = TpktFramer()
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == [b"abc", b"x" * 1000]  # the empty keep-alive is dropped
        assert framer.pending == 0


@pytest.mark.parametrize("bad", [b"\x02\x00\x00\x05a", b"\x03\x01\x00\x05a", b"\x03\x00\x00\x03"])
def test_tpkt_rejects_bad_headers(bad: bytes) -> None:
    framer = TpktFramer()
    with pytest.raises(TpktError):
        framer.feed(bad)
    with pytest.raises(TpktError):
        framer.feed(encode_tpkt(b"ok"))  # a failed stream stays failed


def test_tpkt_too_long() -> None:
    with pytest.raises(TpktError):
        encode_tpkt(b"x" * 65532)
    assert len(encode_tpkt(b"x" * 65531)) == 65535


def test_q931_round_trip_with_two_octet_user_user() -> None:
    uu = b"\x01" * 300  # longer than 255: needs H.225.0's two-octet length
    message = Q931Message(MessageType.SETUP, 0x1234, False, [
        encode_bearer_capability(), (0xA1, b""), encode_number(IE.CALLING_PARTY_NUMBER, "8001"),
        encode_number(IE.CALLED_PARTY_NUMBER, "80000001"), user_user_ie(uu)])
    data = message.encode()
    assert data[:5] == b"\x08\x02\x12\x34\x05"
    decoded = Q931Message.decode(data)
    assert decoded == message
    assert decoded.user_user == uu
    assert decode_number(decoded.get(IE.CALLED_PARTY_NUMBER) or b"") == "80000001"


def test_q931_call_reference_flag() -> None:
    data = Q931Message(MessageType.CONNECT, 7, True, []).encode()
    assert data[2] & 0x80
    decoded = Q931Message.decode(data)
    assert decoded.call_reference == 7 and decoded.from_destination


def test_cause_ie() -> None:
    ident, content = encode_cause(Cause.NORMAL_CALL_CLEARING)
    assert ident == IE.CAUSE and decode_cause(content) == 16
    assert decode_cause(b"\x00\x80\x91") == 17  # with octet 3a
    with pytest.raises(Q931Error):
        decode_cause(b"\x80")


@pytest.mark.parametrize("bad, why", [
    (b"\x08\x02\x00", "too short"),
    (b"\x09\x02\x00\x01\x05", "protocol discriminator"),
    (b"\x08\x01\x01\x05\x00", "call reference length"),
    (b"\x08\x02\x00\x01\x85", "bit 8"),
    (b"\x08\x02\x00\x01\x05\x04\x05\x88", "overruns"),
    (b"\x08\x02\x00\x01\x05\x04", "truncated length"),
    (b"\x08\x02\x00\x01\x05\x7e\x00", "truncated user-user"),
    (b"\x08\x02\x00\x01\x05\x7e\x00\x05\x05", "overruns"),
])
def test_q931_strict_lengths(bad: bytes, why: str) -> None:
    with pytest.raises(Q931Error, match=why):
        Q931Message.decode(bad)


def test_user_user_needs_discriminator() -> None:
    message = Q931Message.decode(Q931Message(MessageType.SETUP, 1, False, [(IE.USER_USER, b"\x04abc")]).encode())
    with pytest.raises(Q931Error):
        _ = message.user_user


def test_numbers_are_validated() -> None:
    with pytest.raises(Q931Error):
        encode_number(IE.CALLED_PARTY_NUMBER, "12a")
    with pytest.raises(Q931Error):
        decode_number(b"\x81abc")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_q931_decode_fuzz(data: bytes) -> None:
    try:
        message = Q931Message.decode(data)
    except Q931Error:
        return
    # Whatever decodes re-encodes to the same bytes (modulo the call reference flag bit layout).
    assert Q931Message.decode(message.encode()) == message


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_tpkt_framer_fuzz(chunks: list[bytes]) -> None:
    framer = TpktFramer()
    try:
        for chunk in chunks:
            for payload in framer.feed(chunk):
                assert 0 < len(payload) <= 65531
    except TpktError:
        assert framer.failed
