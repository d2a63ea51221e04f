"""Parser/serialiser tests: RFC 4475 style torture cases and the bad paths."""

from __future__ import annotations

import pytest

from sip_gateway.sip.errors import MessageTooLarge, SipParseError
from sip_gateway.sip.message import (
    BodyPart,
    Headers,
    IncompleteMessage,
    Request,
    Response,
    StreamFramer,
    build_multipart,
    find_body,
    parse_message,
    parse_multipart,
)
from sip_gateway.sip.uri import NameAddr, SipUri, Via
from tests.sip_gateway.sip_testlib import request


def test_round_trip_request() -> None:
    data = request(body="v=0\r\n")
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and msg.cseq == (1, "INVITE")
    assert msg.body == b"v=0\r\n"
    again = parse_message(msg.serialize())
    assert isinstance(again, Request)
    assert list(again.headers) == list(msg.headers) and again.body == msg.body


def test_compact_forms_folding_and_case() -> None:
    data = (
        b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK1,\r\n SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK2\r\n"
        b"f: <sip:x@h>;tag=1\r\nt: sip:a@127.0.0.1\r\ni: cid\r\n"
        b"CSEQ: 7 OPTIONS\r\nsUbJeCt: folded\r\n\tline\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert msg.call_id == "cid"
    assert [v.host for v in msg.vias] == ["127.0.0.1", "10.0.0.1"]
    assert msg.headers.get("Subject") == "folded line"
    assert msg.cseq == (7, "OPTIONS")


def test_bare_lf_and_truncated_body_to_content_length() -> None:
    data = request(body="0123456789").replace(b"\r\n", b"\n").replace(b"Content-Length: 10", b"l: 4")
    msg = parse_message(data)
    assert msg.body == b"0123"


@pytest.mark.parametrize(
    ("mutation", "reason", "status"),
    [
        (lambda d: d.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "CSeq method", 400),
        (lambda d: d.replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"), "Bad CSeq", 400),
        (lambda d: d.replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999 INVITE"), "Bad CSeq", 400),
        (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: abc"), "Content-Length", 400),
        (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: 50"), "shorter", 400),
        (lambda d: d.replace(b"<sip:peer@127.0.0.1:5099>;tag", b"<sip:peer@127.0.0.1:5099;tag"), "'>'", 400),
        (lambda d: d.replace(b"Call-ID: call-1\r\n", b""), "Call-ID", 400),
        (lambda d: d.replace(b"sip:80000001@127.0.0.1 SIP", b"tel:+861234 SIP"), "scheme", 416),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: lots"), "Max-Forwards", 400),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Broken header line"), "Malformed header", 400),
    ],
)
def test_bad_requests_carry_status_and_reason(mutation, reason: str, status: int) -> None:  # type: ignore[no-untyped-def]
    data = mutation(request())
    with pytest.raises(IncompleteMessage) as info:
        parse_message(data)
    assert reason in info.value.reason
    assert info.value.status == status
    assert info.value.partial is not None


def test_bad_start_lines() -> None:
    with pytest.raises(SipParseError, match="Bad start line"):
        parse_message(b"HELLO\r\n\r\n")
    with pytest.raises(SipParseError) as info:
        parse_message(request().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert info.value.status == 505
    with pytest.raises(SipParseError):
        parse_message(b"")
    with pytest.raises(SipParseError):
        parse_message(b"\xff\xfe INVITE\r\n\r\n")


def test_size_limit() -> None:
    with pytest.raises(MessageTooLarge):
        parse_message(request(body="x" * 2000), max_size=1000)


def test_response_parse() -> None:
    raw = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
           b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(raw)
    assert isinstance(msg, Response)
    assert msg.status == 180 and msg.reason == "Ringing" and msg.to.tag == "2"


def test_headers_multimap() -> None:
    h = Headers([("v", "a"), ("Via", "b, c"), ("WWW-Authenticate", 'Digest realm="x", nonce="y"')])
    assert h.get_all("via") == ["a", "b", "c"]
    assert h.get_all("www-authenticate") == ['Digest realm="x", nonce="y"']
    h.set("Via", "z")
    assert h.get_all("Via") == ["z"]
    h.remove("via")
    assert "Via" not in h


def test_uri_and_name_addr() -> None:
    uri = SipUri.parse("sips:alice:pw@[::1]:5061;transport=tls;lr?subject=x")
    assert uri.host == "[::1]" and uri.port == 5061 and uri.transport == "tls" and uri.password == "pw"
    assert str(uri) == "sips:alice:pw@[::1]:5061;transport=tls;lr?subject=x"
    na = NameAddr.parse('"A \\"B\\"" <sip:a@h>;tag=9')
    assert na.display == 'A "B"' and na.tag == "9"
    assert NameAddr.parse(str(na)) == na
    plain = NameAddr.parse("sip:a@h;tag=3")
    assert plain.tag == "3" and plain.uri.params == {}
    assert NameAddr.parse("*").wildcard
    for bad in ("sip:", "sip:a@", "sip:a@h:99999", "<sip:a@h", "http://x", "sip:a@h;=x"):
        with pytest.raises(SipParseError):
            NameAddr.parse(bad)


def test_via_response_address() -> None:
    via = Via.parse("SIP/2.0/UDP 10.1.1.1:5080;branch=z9hG4bK1;rport")
    assert via.response_address(("192.0.2.1", 4000)) == ("192.0.2.1", 4000)
    # Without rport: the source address (never a host the request names), the sent-by port.
    via = Via.parse("SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK1;received=192.0.2.9")
    assert via.response_address(("192.0.2.1", 4000)) == ("192.0.2.1", 5060)
    via = Via.parse("SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK1")
    assert via.response_address(("192.0.2.1", 4000)) == ("192.0.2.1", 5070)
    with pytest.raises(SipParseError):
        Via.parse("SIP/1.0/UDP h")


def test_multipart_round_trip_and_find_body() -> None:
    ctype, body = build_multipart([BodyPart("application/sdp", b"v=0\r\n"), BodyPart("text/plain", b"hi")])
    parts = parse_multipart(ctype, body)
    assert [(p.content_type, p.body) for p in parts] == [("application/sdp", b"v=0\r\n"), ("text/plain", b"hi")]
    msg = parse_message(request(body=body.decode(), content_type=ctype))
    assert find_body(msg, "application/sdp") == b"v=0\r\n"
    with pytest.raises(SipParseError):
        parse_multipart("multipart/mixed", body)


def test_stream_framer() -> None:
    framer = StreamFramer()
    one, two = request(body="abc"), request(call_id="c2")
    frames = framer.feed(b"\r\n\r\n" + one + two[:20])
    assert frames == [one]
    assert framer.feed(two[20:]) == [two]
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"INVITE x SIP/2.0\r\nContent-Length: -1\r\n\r\n")
    with pytest.raises(MessageTooLarge):
        StreamFramer(max_size=100).feed(b"x" * 200)
