"""PIDF-LO and AML parsing: good shapes and formats, bad ones flagged (never fatal), fuzzed."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch.calltaking.aml import AmlFormatError, build_sms, normalize_number, parse_https, parse_sms
from dispatch.calltaking.aml_match import AmlMatcher
from dispatch.calltaking.pidf_lo import location_from_invite, parse_pidf_lo
from tests.dispatch.calltaking_samples import (
    CIVIC,
    ELLIPSE,
    LUODING_LAT,
    LUODING_LON,
    POINT,
    POLYGON,
    circle,
    multipart_body,
    pidf,
)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("doc", "shape", "radius"), [
    (POINT, "Point", None), (circle(), "Circle", 35.0), (ELLIPSE, "Ellipse", 120.0), (POLYGON, "Polygon", None),
])
def test_geodetic_shapes(doc: str, shape: str, radius: float | None) -> None:
    loc = parse_pidf_lo(doc)
    assert loc.valid and loc.shape == shape, loc.reason
    assert loc.lat == pytest.approx(LUODING_LAT, abs=1e-3) and loc.lon == pytest.approx(LUODING_LON, abs=1e-3)
    if radius is not None:
        assert loc.radius_m == radius
    if shape == "Polygon":  # covering circle of a ~200 m square: ~150 m
        assert loc.radius_m is not None and 100 < loc.radius_m < 200


def test_civic_address() -> None:
    loc = parse_pidf_lo(CIVIC)
    assert loc.valid and loc.shape == "civic" and not loc.has_point
    assert loc.civic["A3"] == "罗定市" and loc.civic["RD"] == "兴华路" and loc.civic["HNO"] == "12"


@pytest.mark.parametrize(("doc", "reason"), [
    ("<presence", "XML 格式错误"),
    (circle(lat=95.0), "纬度超出范围"),
    (circle(radius=-3), "非负"),
    (pidf('<gml:Point><gml:pos>22.7 abc</gml:pos></gml:Point>'), "不是数字"),
    (pidf('<gml:Point><gml:pos>22.7</gml:pos></gml:Point>'), "2 或 3 个数值"),
    (pidf('<gs:Sphere><gml:pos>22.7 111.5 3</gml:pos></gs:Sphere>'), "不支持的位置形状"),
    (pidf('<gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>22 111 22 112 23 112</gml:posList>'
          '</gml:LinearRing></gml:exterior></gml:Polygon>'), "至少 4 个点"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><presence>&a;</presence>', "DTD"),
    ("<root/>", "根元素"),
])
def test_bad_pidf_is_flagged_with_reason_and_raw(doc: str, reason: str) -> None:
    loc = parse_pidf_lo(doc)
    assert not loc.valid and reason in loc.reason and loc.raw == doc


def test_location_from_multipart_invite_by_cid() -> None:
    ctype, body = multipart_body(circle(), SDP)
    loc = location_from_invite(ctype, body.encode(), ["<cid:loc-1@caller.example.cn>;inserted-by=caller"])
    assert loc is not None and loc.valid and loc.radius_m == 35.0
    missing = location_from_invite(ctype, body.encode(), ["<cid:other@x>"])
    assert missing is not None and not missing.valid and "不存在" in missing.reason
    by_ref = location_from_invite("application/sdp", SDP.encode(), ["<https://lis.example.cn/loc/1>"])
    assert by_ref is not None and not by_ref.valid
    assert location_from_invite("application/sdp", SDP.encode(), []) is None


def test_aml_sms_round_trip_and_checks() -> None:
    at = datetime(2026, 11, 21, 13, 0, 0, tzinfo=UTC)
    text = build_sms(LUODING_LAT, LUODING_LON, 20, at)
    msg = parse_sms(text, "+86 138 0000 0000")
    assert msg.number == "13800000000" and msg.location.valid, msg.location.reason
    assert msg.location.lat == pytest.approx(LUODING_LAT) and msg.location.radius_m == 20
    assert msg.positioned_at == at and msg.method == "GNSS"
    tampered = parse_sms(text.replace("rd=20", "rd=25"), "13800000000")  # same length: ml still matches
    assert tampered.location.valid
    broken = parse_sms(text.replace("rd=20", "rd=2000"), "13800000000")  # length check fails
    assert not broken.location.valid and "长度校验失败" in broken.location.reason and broken.location.raw
    impossible = parse_sms(build_sms(123.0, LUODING_LON, 20, at), "13800000000")
    assert not impossible.location.valid and "纬度超出范围" in impossible.location.reason
    for bad, sender in [("hello", "1380"), (text, ""), ('A"ML=1;lt', "138")]:
        with pytest.raises(AmlFormatError):
            parse_sms(bad, sender)


def test_aml_https_form() -> None:
    form = ("v=3&emergency_number=120&device_number=%2B8613800000001&location_latitude=22.769"
            "&location_longitude=111.57&location_time=1795000000000&location_accuracy=12.5"
            "&location_source=gps&location_certainty=68")
    msg = parse_https(form)
    assert msg.number == "13800000001" and msg.location.valid and msg.location.radius_m == 12.5
    bad = parse_https(form.replace("location_latitude=22.769", "location_latitude=north"))
    assert not bad.location.valid and "纬度不是数字" in bad.location.reason
    for payload in ["", "a=1", "location_latitude=1&location_longitude=2", "%%%=&&"]:
        with pytest.raises(AmlFormatError):
            parse_https(payload)


def test_aml_matcher_by_number_and_time() -> None:
    m = AmlMatcher(window_s=60)
    early = parse_sms(build_sms(LUODING_LAT, LUODING_LON, 20, datetime.now(UTC)), "13800000002")
    call_id, pending = m.report(early, now=0.0)
    assert call_id is None and m.pending == [pending]
    assert m.call_started("c2", "+8613800000002", now=10.0) == [pending] and not m.pending
    late = parse_sms(build_sms(LUODING_LAT, LUODING_LON, 20, datetime.now(UTC)), "008613800000002")
    assert m.report(late, now=12.0)[0] == "c2"
    m.call_ended("c2")
    stale, _ = m.report(late, now=20.0)
    assert stale is None
    assert m.call_started("c3", "13800000002", now=100.0) == []  # expired after 60 s
    assert normalize_number("+86 138-0000-0002") == "13800000002"


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_pidf_never_raises(text: str) -> None:
    loc = parse_pidf_lo(text)
    assert loc.valid or loc.reason


@FUZZ
@given(st.binary(max_size=400), st.lists(st.text(max_size=40), max_size=2))
def test_fuzz_invite_bodies_never_raise(body: bytes, geo: list[str]) -> None:
    location_from_invite("multipart/mixed;boundary=b", b"--b\r\n" + body, geo)
    location_from_invite("application/pidf+xml", body, geo)


@FUZZ
@given(st.text(max_size=300), st.text(max_size=20))
def test_fuzz_aml_either_parses_or_format_error(text: str, sender: str) -> None:
    for fmt in ("sms", "https"):
        try:
            msg = parse_sms('A"ML=1;' + text, sender) if fmt == "sms" else parse_https(text)
        except AmlFormatError:
            continue
        assert msg.location.valid or msg.location.reason
