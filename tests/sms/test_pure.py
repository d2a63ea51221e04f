"""The pure SMS cores: encoding and parts, throughput, retries, delivery status, reports, numbers."""
from __future__ import annotations

import pytest

from sms import dlr, flow, text


def test_short_ascii_is_one_gsm7_part() -> None:
    p = text.plan("Meeting at 15:00 in room 301")
    assert p.encoding == text.GSM7 and p.coding == 0 and p.parts == ("Meeting at 15:00 in room 301",)


def test_gsm7_boundaries_and_escapes_count_twice() -> None:
    assert len(text.plan("a" * 160).parts) == 1
    p = text.plan("a" * 161)
    assert [len(x) for x in p.parts] == [153, 8]
    # 151 plain + '€' (two septets) fills part one exactly; the second '€' starts part two
    p = text.plan("a" * 151 + "€€" + "b" * 10)
    assert p.parts[0] == "a" * 151 + "€" and p.parts[1].startswith("€")
    # 152 plain: the escape pair does not fit in the one septet left, so it is not split
    p = text.plan("a" * 152 + "€" + "b" * 10)
    assert p.parts[0] == "a" * 152 and p.parts[1].startswith("€")


def test_chinese_goes_ucs2_in_67_character_parts() -> None:
    msg = "各县区三防指挥部：" * 20  # 180 characters
    p = text.plan(msg)
    assert p.encoding == text.UCS2 and p.coding == 2
    assert [len(x) for x in p.parts] == [67, 67, 46]
    assert "".join(p.parts) == msg
    assert len(text.plan("防" * 70).parts) == 1 and len(text.plan("防" * 71).parts) == 2


@pytest.mark.parametrize("bad, field", [("", "text"), ("   ", "text"), ("防" * 5000, "text"),
                                        ("台风😀", "text"), ("a\x00b", "text")])
def test_bad_text_is_refused_naming_the_field(bad: str, field: str) -> None:
    with pytest.raises(text.TextError, match=f"^{field}: "):
        text.plan(bad)


def test_too_many_parts_refused_with_the_limit() -> None:
    with pytest.raises(text.TextError, match="最多 10 条"):
        text.plan("防" * 671)
    assert len(text.plan("防" * 670).parts) == 10


def test_udh_round_trip() -> None:
    assert text.udh(7, 3, 2) == bytes.fromhex("050003070302")
    assert text.parse_udh(text.udh(7, 3, 2)) == (7, 3, 2)
    assert text.parse_udh(b"") is None
    assert text.parse_udh(bytes.fromhex("06080401020302")) == (0x0102, 3, 2)
    assert text.parse_udh(b"\x05\x00\x03") is None
    with pytest.raises(ValueError):
        text.udh(1, 2, 3)


def test_throughput_spaces_messages_at_the_rate() -> None:
    t = flow.Throughput(rate=5, burst=1)
    now, sent = 0.0, []
    for _ in range(20):
        now += t.wait(now, 1)
        t.take(now, 1)
        sent.append(now)
    assert sent[0] == 0.0 and sent[-1] == pytest.approx(19 / 5)
    # a 3-part message costs three tokens: the next waits 3/rate after it
    t = flow.Throughput(rate=10, burst=1)
    t.take(0.0, 3)
    assert t.wait(0.0, 1) == pytest.approx(0.3)


def test_throughput_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        flow.Throughput(rate=0)


def test_backoff_doubles_and_caps() -> None:
    assert [flow.backoff(a, 2, 30) for a in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]


def test_status_only_moves_forward() -> None:
    assert flow.status_of_dlr(8) == flow.SUBMITTED and flow.status_of_dlr(1) == flow.DELIVERED
    assert flow.status_of_dlr(16) == flow.FAILED and flow.status_of_dlr(2) == flow.FAILED
    assert flow.status_of_dlr(4) == flow.BUFFERED and flow.status_of_dlr(64) is None
    assert flow.advance(flow.QUEUED, flow.SUBMITTED) == flow.SUBMITTED
    assert flow.advance(flow.BUFFERED, flow.SUBMITTED) == flow.BUFFERED
    assert flow.advance(flow.DELIVERED, flow.FAILED) == flow.DELIVERED
    assert flow.advance(flow.QUEUED, flow.DELIVERED) == flow.DELIVERED


KEY = b"k" * 32


def test_dlr_request_parses_and_checks_the_tag() -> None:
    url = dlr.dlr_url("http://127.0.0.1:1", KEY, 42).replace("%d", "1").replace("%A", "id%3A1+stat%3ADELIVRD")
    head = f"GET {url.split(':1', 1)[1]} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    r = dlr.parse_request(head, KEY)
    assert (r.recipient_id, r.kind, r.answer) == (42, 1, "id:1 stat:DELIVRD")
    with pytest.raises(dlr.DlrError, match="tag"):
        dlr.parse_request(head.replace(b"r=42", b"r=43"), KEY)


@pytest.mark.parametrize("head", [b"", b"POST /dlr HTTP/1.1\r\n\r\n", b"GET /x?r=1 HTTP/1.1\r\n\r\n",
                                  b"GET /dlr?r=1&t=1 HTTP/1.1\r\n\r\n", b"GET /dlr?r=x&t=1&k=a HTTP/1.1\r\n\r\n",
                                  b"\xff\xfe", b"GET /dlr?r=0&t=1&k=a HTTP/1.1\r\n\r\n", b"G" * 9000])
def test_bad_dlr_requests_are_refused(head: bytes) -> None:
    with pytest.raises(dlr.DlrError):
        dlr.parse_request(head, KEY)


def test_numbers() -> None:
    assert dlr.normalize_number("138 0000 0001") == "13800000001"
    assert dlr.normalize_number("+86-138-0000-0001") == "+8613800000001"
    assert dlr.normalize_number("0766-8000001") == "07668000001"
    for bad in ("abc", "12", "1" * 21, "+1", "138;rm", 5):
        with pytest.raises(dlr.NumberError, match="^numbers: "):
            dlr.normalize_number(bad)


# -- the gateway's state as the console reads it (sms/gateway_status.py) ----------------------------

STATUS_XML = """<?xml version="1.0"?>
<gateway>
<version>Kannel bearerbox version `1.4.5'.</version>
<status>running, uptime 0d 0h 0m 2s</status>
\t<wdp><received><total>0</total><queued>0</queued></received><sent><total>0</total><queued>9</queued></sent></wdp>
\t<sms>
\t\t<received><total>0</total><queued>0</queued></received>
\t\t<sent><total>4</total><queued>3</queued></sent>
\t\t<storesize>5</storesize>
\t</sms>
<boxes><box><type>smsbox</type><status>on-line 0d 0h 0m 1s</status></box></boxes>
<smscs><count>1</count>
\t<smsc><name>FAKE:40893</name><status>{smsc}</status><failed>0</failed><queued>2</queued></smsc>
</smscs>
</gateway>
"""


def test_gateway_status_read_from_kannel() -> None:
    from sms.gateway_status import StatusError, parse_status

    up = parse_status(STATUS_XML.format(smsc="online 12s"))
    assert (up.up, up.bearerbox, up.smsc, up.queued, up.store) == (True, "running, uptime 0d 0h 0m 2s",
                                                                  "online 12s", 5, 5)  # not the WDP queue
    link_down = parse_status(STATUS_XML.format(smsc="re-connecting"))
    assert not link_down.up and link_down.smsc == "re-connecting" and link_down.queued == 5
    assert not parse_status("<gateway></gateway>").up
    for bad in ("", "<html>", "<gateway>" + "x" * 300_000):
        with pytest.raises(StatusError):
            parse_status(bad)
