"""The signed node RPC envelope (noderpc.envelope): forged, late and misaddressed requests are refused."""
from __future__ import annotations

from dataclasses import replace

import pytest

from noderpc.envelope import (
    EnvelopeError,
    Reply,
    check_reply,
    check_request,
    make_request,
    parse_reply,
    parse_request,
    sign,
)

SECRET = b"s" * 32


def request(**kw: object) -> object:
    args = {"request_id": "r1", "key": "k1", "sender": "web/1", "target": "mcu/1", "method": "conference.op",
            "args": {"op": "mute", "site": "a"}, "now": 1000.0, "timeout": 5.0} | kw
    return make_request(**args)  # type: ignore[arg-type]


def test_signed_request_checks_and_round_trips_through_its_row() -> None:
    req = request()
    sig = sign(SECRET, req)  # type: ignore[arg-type]
    row = {"id": "r1", "idempotency_key": "k1", "sender": "web/1", "target": "mcu/1", "method": "conference.op",
           "args": {"op": "mute", "site": "a"}, "deadline": 1005.0}
    parsed = parse_request(row)
    assert parsed == req
    check_request(SECRET, parsed, sig, "mcu/1", 1004.9)


@pytest.mark.parametrize("change", [
    {"args": {"op": "mute", "site": "b"}}, {"method": "conference.dial"}, {"deadline": 9999.0}, {"sender": "x"},
    {"key": "k2"},
])
def test_any_changed_field_is_forged(change: dict[str, object]) -> None:
    req = request()
    sig = sign(SECRET, req)  # type: ignore[arg-type]
    with pytest.raises(EnvelopeError) as err:
        check_request(SECRET, replace(req, **change), sig, "mcu/1", 1000.0)  # type: ignore[type-var,arg-type,unused-ignore]
    assert err.value.code == "forged"


def test_wrong_secret_late_and_misaddressed_are_refused() -> None:
    req = request()
    with pytest.raises(EnvelopeError) as err:
        check_request(SECRET, req, sign(b"t" * 32, req), "mcu/1", 1000.0)  # type: ignore[arg-type]
    assert err.value.code == "forged"
    with pytest.raises(EnvelopeError) as err:
        check_request(SECRET, req, sign(SECRET, req), "mcu/1", 1005.1)  # type: ignore[arg-type]
    assert err.value.code == "deadline"
    with pytest.raises(EnvelopeError) as err:
        check_request(SECRET, req, sign(SECRET, req), "mcu/2", 1000.0)  # type: ignore[arg-type]
    assert err.value.code == "malformed"
    with pytest.raises(EnvelopeError) as err:
        check_request(b"", req, "", "mcu/1", 1000.0)  # type: ignore[arg-type]
    assert err.value.code in ("forged", "unavailable")


@pytest.mark.parametrize("bad", [{"method": "Drop Table"}, {"method": ""}, {"timeout": 0.0}, {"timeout": 1e6},
                                 {"key": ""}, {"args": {"x": "y" * 300_000}}])
def test_malformed_requests_are_not_made(bad: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError) as err:
        request(**bad)
    assert err.value.code == "malformed"


@pytest.mark.parametrize("row", [{}, {"id": "r", "idempotency_key": "k", "sender": "s", "target": "t", "method": "m",
                                      "args": [1], "deadline": 1.0},
                                 {"id": "r", "idempotency_key": "k", "sender": "s", "target": "t", "method": "m",
                                  "args": {}, "deadline": "soon"}])
def test_malformed_rows_are_refused(row: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError) as err:
        parse_request(row)
    assert err.value.code == "malformed"


def test_reply_is_bound_to_its_request() -> None:
    reply = Reply("r1", True, {"layout": "2x2"})
    sig = sign(SECRET, reply)
    check_reply(SECRET, parse_reply("r1", reply.to_json()), sig)
    with pytest.raises(EnvelopeError):
        check_reply(SECRET, parse_reply("r2", reply.to_json()), sig)
    with pytest.raises(EnvelopeError):
        check_reply(SECRET, parse_reply("r1", {**reply.to_json(), "result": {"layout": "1x1"}}), sig)
    with pytest.raises(EnvelopeError):
        parse_reply("r1", ["not", "an", "object"])


def test_non_ascii_signature_is_forged_not_a_crash() -> None:  # found by security/fuzz node_rpc
    req = request()
    with pytest.raises(EnvelopeError) as err:
        check_request(SECRET, req, "签名" * 32, "mcu/1", 1000.0)  # type: ignore[arg-type]
    assert err.value.code == "forged"
    with pytest.raises(EnvelopeError):
        check_reply(SECRET, Reply("r1", True), "\udcff" * 64)
