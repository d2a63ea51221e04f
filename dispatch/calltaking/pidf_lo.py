"""PIDF-LO (RFC 4119, shapes per RFC 5491/GML, civic per RFC 5139) carried by value in a SIP INVITE.

RFC 6442: the ``Geolocation`` header names the location, ``<cid:...>`` for a body part of the
(multipart/mixed) INVITE. We parse the geodetic shapes Point, Circle, Ellipse and Polygon and the
civic address; anything else or anything malformed gives an *invalid* ``CallerLocation`` with its
reason and the raw XML kept: a bad location never stops an emergency call.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.message import BodyPart, parse_multipart

from .location import CallerLocation, check_wgs84

NS_GP = "urn:ietf:params:xml:ns:pidf:geopriv10"
NS_GML = "http://www.opengis.net/gml"
NS_GS = "http://www.opengis.net/pidflo/1.0"
NS_CA = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"
PIDF_TYPE = "application/pidf+xml"
MAX_XML = 64 * 1024
SOURCE = "pidf-lo"
# Units of measure: RFC 5491 uses EPSG 9001 (metre) for distances, 9102 (degree) for angles.
_METRE_UOMS = {"urn:ogc:def:uom:EPSG::9001", ""}


class PidfError(ValueError):
    """Why a PIDF-LO document cannot be used (zh-CN text for the call-taker)."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(text: str) -> ET.Element:
    # A location body comes from outside: no DTD, no entities (billion laughs, external entities).
    if len(text) > MAX_XML:
        raise PidfError("位置数据过大")
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise PidfError("位置数据含有 DTD/实体声明，已拒绝")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise PidfError(f"XML 格式错误: {exc}") from None


def _floats(text: str | None, what: str) -> list[float]:
    try:
        values = [float(v) for v in (text or "").split()]
    except ValueError:
        raise PidfError(f"{what} 不是数字: {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise PidfError(f"{what} 含有非有限数值")
    return values


def _pos(el: ET.Element) -> tuple[float, float]:
    """(lat, lon) of the gml:pos child (EPSG:4326 order is latitude first)."""
    pos = el.find(f"{{{NS_GML}}}pos")
    if pos is None:
        raise PidfError(f"{_local(el.tag)} 缺少 gml:pos")
    values = _floats(pos.text, "gml:pos")
    if len(values) not in (2, 3):
        raise PidfError(f"gml:pos 应为 2 或 3 个数值，实际 {len(values)} 个")
    lat, lon = values[0], values[1]
    problem = check_wgs84(lat, lon)
    if problem:
        raise PidfError(problem)
    return lat, lon


def _distance(el: ET.Element, name: str) -> float:
    child = el.find(f"{{{NS_GS}}}{name}")
    if child is None:
        raise PidfError(f"{_local(el.tag)} 缺少 {name}")
    if child.get("uom", "") not in _METRE_UOMS:
        raise PidfError(f"{name} 的单位不受支持: {child.get('uom')}")
    values = _floats(child.text, name)
    if len(values) != 1 or values[0] < 0:
        raise PidfError(f"{name} 应为一个非负数值")
    return values[0]


def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(a)))


def _polygon(el: ET.Element) -> tuple[float, float, float]:
    """Centroid (lat, lon) of the exterior ring and the largest distance from it to a vertex."""
    ring = el.find(f"{{{NS_GML}}}exterior/{{{NS_GML}}}LinearRing")
    if ring is None:
        raise PidfError("Polygon 缺少 exterior/LinearRing")
    pos_list = ring.find(f"{{{NS_GML}}}posList")
    if pos_list is not None:
        flat = _floats(pos_list.text, "gml:posList")
        if len(flat) % 2:
            raise PidfError("gml:posList 数值个数应为偶数")
        points = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    else:
        points = [_pos_values(p) for p in ring.findall(f"{{{NS_GML}}}pos")]
    if len(points) < 4 or points[0] != points[-1]:
        raise PidfError("Polygon 外环至少 4 个点且首尾相同")
    for lat, lon in points:
        problem = check_wgs84(lat, lon)
        if problem:
            raise PidfError(problem)
    vertices = points[:-1]
    lat_c = sum(p[0] for p in vertices) / len(vertices)
    lon_c = sum(p[1] for p in vertices) / len(vertices)
    radius = max(_haversine_m(lat_c, lon_c, lat, lon) for lat, lon in vertices)
    return lat_c, lon_c, radius


def _pos_values(pos: ET.Element) -> tuple[float, float]:
    values = _floats(pos.text, "gml:pos")
    if len(values) not in (2, 3):
        raise PidfError("gml:pos 应为 2 或 3 个数值")
    return values[0], values[1]


def _civic(el: ET.Element) -> dict[str, str]:
    fields: dict[str, str] = {}
    for child in el:
        text = (child.text or "").strip()
        if text and len(text) <= 256:
            fields[_local(child.tag)] = text
    return fields


def _shape(info: ET.Element) -> tuple[str, float, float, float | None] | None:
    """(shape, lat, lon, radius) of the first geodetic shape in a location-info element."""
    for el in info:
        ns, name = (el.tag[1:].split("}", 1) + [""])[:2] if el.tag.startswith("{") else ("", el.tag)
        if ns == NS_GML and name == "Point":
            lat, lon = _pos(el)
            return "Point", lat, lon, None
        if ns == NS_GS and name == "Circle":
            lat, lon = _pos(el)
            return "Circle", lat, lon, _distance(el, "radius")
        if ns == NS_GS and name == "Ellipse":
            lat, lon = _pos(el)
            major = _distance(el, "semiMajorAxis")
            _distance(el, "semiMinorAxis")
            return "Ellipse", lat, lon, major  # the circle that covers the ellipse
        if ns == NS_GML and name == "Polygon":
            lat, lon, radius = _polygon(el)
            return "Polygon", lat, lon, radius
        if ns in (NS_GML, NS_GS):
            raise PidfError(f"不支持的位置形状: {name}")
    return None


def parse_pidf_lo(text: str) -> CallerLocation:
    """Parse a PIDF-LO document; never raises: a bad one is returned invalid with its reason."""
    try:
        root = _parse_xml(text)
        if _local(root.tag) != "presence":
            raise PidfError(f"根元素应为 presence，实际 {_local(root.tag)}")
        infos = list(root.iter(f"{{{NS_GP}}}location-info"))
        if not infos:
            raise PidfError("没有 gp:location-info")
        civic: dict[str, str] = {}
        for info in infos:
            for el in info.iter(f"{{{NS_CA}}}civicAddress"):
                civic.update(_civic(el))
        for info in infos:
            shape = _shape(info)
            if shape is not None:
                name, lat, lon, radius = shape
                return CallerLocation(SOURCE, lon=lon, lat=lat, radius_m=radius, shape=name, civic=civic, raw=text)
        if civic:
            return CallerLocation(SOURCE, shape="civic", civic=civic, raw=text)
        raise PidfError("location-info 中没有可用的位置")
    except PidfError as exc:
        return CallerLocation.invalid(SOURCE, str(exc), text)
    except (RecursionError, ValueError) as exc:  # pathological nesting or encodings
        return CallerLocation.invalid(SOURCE, f"位置数据无法解析: {type(exc).__name__}", text)


def _content_id(part: BodyPart) -> str:
    return (part.headers.get("Content-ID") or "").strip().strip("<>").strip()


def geolocation_cids(header_values: Iterable[str]) -> list[str]:
    """The ``cid:`` targets named by RFC 6442 Geolocation header values (by-value locations)."""
    cids = []
    for value in header_values:
        for uri in re.findall(r"<([^>]*)>", value):
            if uri.lower().startswith("cid:"):
                cids.append(uri[4:].strip())
    return cids


def location_from_invite(content_type: str, body: bytes, geolocation: list[str]) -> CallerLocation | None:
    """The caller's location from an INVITE's body and Geolocation headers, or None when none is sent.

    A ``Geolocation`` naming a missing part, a by-reference URI, or an unparsable body all give
    an invalid location (with reason and raw data) rather than an error.
    """
    raw_header = ", ".join(geolocation)
    parts: list[BodyPart] = []
    if content_type.lower().startswith("multipart/"):
        try:
            parts = parse_multipart(content_type, body)
        except SipParseError as exc:
            if geolocation:
                return CallerLocation.invalid(SOURCE, f"多部分消息体错误: {exc.reason}", body.decode("utf-8", "replace"))
            return None
    elif content_type.split(";")[0].strip().lower() == PIDF_TYPE:
        parts = [BodyPart(PIDF_TYPE, body)]
    pidf_parts = [p for p in parts if p.content_type == PIDF_TYPE]
    cids = geolocation_cids(geolocation)
    chosen: BodyPart | None = None
    if cids:
        chosen = next((p for p in pidf_parts if _content_id(p) in cids), None)
        if chosen is None:
            return CallerLocation.invalid(SOURCE, f"Geolocation 指向的部分不存在: {cids[0]}", raw_header)
    elif pidf_parts:
        chosen = pidf_parts[0]
    elif geolocation:
        return CallerLocation.invalid(SOURCE, "Geolocation 为引用方式（未取回）或格式错误", raw_header)
    if chosen is None:
        return None
    try:
        text = chosen.body.decode("utf-8")
    except UnicodeDecodeError:
        return CallerLocation.invalid(SOURCE, "位置数据不是 UTF-8", chosen.body.decode("utf-8", "replace"))
    return parse_pidf_lo(text)
