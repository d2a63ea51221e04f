"""Advanced Mobile Location (ETSI TS 103 625): the SMS text format and the HTTPS form format.

A handset that dials an emergency number sends its position, either as an SMS
(``A"ML=1;lt=+22.76900;lg=+111.57000;rd=50;top=20261121130000;lc=68;pm=G;...;ml=123``)
or as an HTTPS POST of form fields (``location_latitude=...&device_number=...``).

``parse_sms`` / ``parse_https`` raise :class:`AmlFormatError` only when the payload is not AML at
all or names no caller (the API answers 400). Impossible values or a failed ``ml`` length check
give an :class:`AmlMessage` whose location is *invalid* with the reason and raw text: it is still
matched to the call so the call-taker sees that a location came and why it is not used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from .location import CallerLocation, check_wgs84

MAX_PAYLOAD = 4096
POSITIONING_METHODS = {"G": "GNSS", "W": "Wi-Fi", "C": "基站", "N": "无", "H": "混合"}
_HTTPS_SOURCES = {"gps": "GNSS", "wifi": "Wi-Fi", "cell": "基站", "fused": "混合", "network": "网络"}


class AmlFormatError(ValueError):
    """The payload is not AML (the API answers 400)."""


@dataclass(frozen=True)
class AmlMessage:
    """One AML report: who sent it, when the handset fixed its position, and the location."""

    number: str
    location: CallerLocation
    fmt: str  # "sms" | "https"
    positioned_at: datetime | None = None
    method: str = ""
    confidence: int | None = None
    fields: dict[str, str] = field(default_factory=dict)


def normalize_number(number: str) -> str:
    """Digits only, without the China country prefix, so ANI and AML numbers compare equal."""
    digits = re.sub(r"[^\d]", "", number)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix):]
    return digits


def _float(fields: dict[str, str], key: str, problems: list[str], what: str) -> float | None:
    text = fields.get(key)
    if text is None or text == "":
        problems.append(f"缺少{what} ({key})")
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{what}不是数字: {text!r}")
        return None
    if value != value or value in (float("inf"), float("-inf")):
        problems.append(f"{what}不是有限数值")
        return None
    return value


def _location(lat: float | None, lon: float | None, radius: float | None, source: str, raw: str,
              problems: list[str]) -> CallerLocation:
    if lat is not None and lon is not None:
        problem = check_wgs84(lat, lon)
        if problem:
            problems.append(problem)
    if radius is not None and not (0 <= radius <= 100_000):
        problems.append(f"半径不合理: {radius}")
    if problems:
        return CallerLocation(source, lon=lon, lat=lat, radius_m=radius, valid=False, reason="；".join(problems),
                              raw=raw, shape="Circle")
    return CallerLocation(source, lon=lon, lat=lat, radius_m=radius, shape="Circle", raw=raw)


def _sms_time(text: str, problems: list[str]) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        problems.append(f"定位时间格式错误: {text!r}")
        return None


def parse_sms(text: str, sender: str) -> AmlMessage:
    """Parse the SMS text format; ``sender`` is the SMS originator (the caller's number)."""
    if len(text) > MAX_PAYLOAD:
        raise AmlFormatError("AML 短信过长")
    body = text.strip()
    if not body.startswith('A"ML='):
        raise AmlFormatError('不是 AML 短信（应以 A"ML= 开头）')
    number = normalize_number(sender)
    if not number:
        raise AmlFormatError("缺少主叫号码")
    fields: dict[str, str] = {}
    for item in body.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise AmlFormatError(f"AML 字段格式错误: {item[:40]!r}")
        fields[key.strip()] = value.strip()
    problems: list[str] = []
    if fields.get('A"ML') != "1":
        problems.append(f"不支持的 AML 版本: {fields.get(chr(65) + chr(34) + 'ML')!r}")
    # ml = length of the whole message including the ml field itself: the only integrity check.
    ml = fields.get("ml")
    if ml is None:
        problems.append("缺少长度校验字段 ml")
    elif not ml.isdigit() or int(ml) != len(body):
        problems.append(f"长度校验失败: ml={ml}，实际 {len(body)}")
    lat = _float(fields, "lt", problems, "纬度")
    lon = _float(fields, "lg", problems, "经度")
    radius = _float(fields, "rd", problems, "半径")
    when = _sms_time(fields["top"], problems) if "top" in fields else None
    confidence = int(fields["lc"]) if fields.get("lc", "").isdigit() else None
    if confidence is not None and not 0 <= confidence <= 100:
        problems.append(f"置信度不合理: {confidence}")
    method = POSITIONING_METHODS.get(fields.get("pm", ""), fields.get("pm", ""))
    location = _location(lat, lon, radius, "aml-sms", text, problems)
    return AmlMessage(number, location, "sms", when, method, confidence, fields)


def parse_https(payload: str) -> AmlMessage:
    """Parse the HTTPS POST form format (application/x-www-form-urlencoded)."""
    if len(payload) > MAX_PAYLOAD:
        raise AmlFormatError("AML 数据过长")
    try:
        pairs = parse_qsl(payload, keep_blank_values=True, strict_parsing=True, max_num_fields=100)
    except ValueError as exc:
        raise AmlFormatError(f"表单格式错误: {exc}") from None
    fields = dict(pairs)
    if "location_latitude" not in fields and "location_longitude" not in fields:
        raise AmlFormatError("不是 AML 表单（缺少 location_latitude/location_longitude）")
    number = normalize_number(fields.get("device_number", ""))
    if not number:
        raise AmlFormatError("缺少主叫号码 device_number")
    problems: list[str] = []
    lat = _float(fields, "location_latitude", problems, "纬度")
    lon = _float(fields, "location_longitude", problems, "经度")
    radius = _float(fields, "location_accuracy", problems, "精度半径")
    when = None
    if fields.get("location_time"):
        try:
            when = datetime.fromtimestamp(int(fields["location_time"]) / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            problems.append(f"定位时间格式错误: {fields['location_time']!r}")
    confidence = None
    if fields.get("location_certainty", "").isdigit():
        confidence = int(fields["location_certainty"])
        if not 0 <= confidence <= 100:
            problems.append(f"置信度不合理: {confidence}")
    method = _HTTPS_SOURCES.get(fields.get("location_source", "").lower(), fields.get("location_source", ""))
    location = _location(lat, lon, radius, "aml-https", payload, problems)
    return AmlMessage(number, location, "https", when, method, confidence, fields)


def build_sms(lat: float, lon: float, radius: float, at: datetime, method: str = "G", confidence: int = 68) -> str:
    """An SMS text as a handset would send it (with a correct ``ml``); used by tests and the demo."""
    head = (f'A"ML=1;lt={lat:+.5f};lg={lon:+.5f};rd={radius:.0f};top={at:%Y%m%d%H%M%S};lc={confidence};'
            f"pm={method};si=460001234567890;ei=860000000000000;mcc=460;mnc=00;ml=")
    length = len(head) + 3
    return f"{head}{length}"
