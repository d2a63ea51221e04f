"""OASIS CAP 1.2 public warnings: build the XML and check it against the CAP 1.2 rules.

``build_cap`` turns a ``CapAlert`` into CAP 1.2 XML and refuses to return a document that fails
``validate_cap``. ``validate_cap`` checks any CAP text (ours or received) and returns every issue:

* ``xml``        well-formed, no DOCTYPE/ENTITY, root ``alert`` in the CAP 1.2 namespace
* ``required``   alert: identifier sender sent status msgType scope; info: category event urgency
                 severity certainty; area: areaDesc; resource: resourceDesc mimeType;
                 parameter/eventCode/geocode: valueName value
* ``chars``      identifier/sender/references contain no spaces, commas, ``<`` or ``&``
* ``enum``       status msgType scope category responseType urgency severity certainty
* ``datetime``   sent effective onset expires as ``YYYY-MM-DDThh:mm:ss±hh:mm`` (an offset, never
                 ``Z``), and a real date
* ``conditional`` scope Restricted needs restriction; Private needs addresses; Update/Cancel/
                 Ack/Error need references; ceiling needs altitude
* ``polygon``    at least 4 ``lat,lon`` pairs in WGS 84 ranges, first = last (closed)
* ``circle``     ``lat,lon radius`` with radius ≥ 0 (km)
* ``schema``     no unknown elements, elements in the order of the CAP 1.2 schema

Chinese warnings follow GB/T 35965.1-2018 (应急信息交互协议 第1部分：预警信息) where it differs
from plain CAP; see ``docs/gisdispatch.md`` for the table. In short: the identifier is
``<14-digit sender code>_<YYYYMMDDhhmmss>_<n>``, the sender code is the 6-digit GB/T 2260 area
code + 3-digit GB/T 4657 organisation code + ``000`` + ``00``, times are Beijing time (+08:00),
the language is zh-CN, the four warning colours map to CAP severity (红 Extreme, 橙 Severe,
黄 Moderate, 蓝 Minor), the event is coded with GB/T 35561 in ``eventCode``, and administrative
areas carry their GB/T 2260 code in ``geocode``.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from shapely.geometry import MultiPolygon, Polygon

from gis.jurisdictions import Area

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
BEIJING = timezone(timedelta(hours=8))

STATUS = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPE = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPE = ("Public", "Restricted", "Private")
CATEGORY = ("Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other")
RESPONSE_TYPE = ("Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None")
URGENCY = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITY = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTY = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")

# CAP 1.2 schema sequences (element order) for the containers we check
ORDER = {
    "alert": ["identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction", "addresses",
              "code", "note", "references", "incidents", "info", "Signature"],
    "info": ["language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience",
             "eventCode", "effective", "onset", "expires", "senderName", "headline", "description", "instruction",
             "web", "contact", "parameter", "resource", "area"],
    "area": ["areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"],
    "resource": ["resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"],
    "eventCode": ["valueName", "value"],
    "parameter": ["valueName", "value"],
    "geocode": ["valueName", "value"],
}
REQUIRED = {
    "alert": ["identifier", "sender", "sent", "status", "msgType", "scope"],
    "info": ["category", "event", "urgency", "severity", "certainty"],
    "area": ["areaDesc"],
    "resource": ["resourceDesc", "mimeType"],
    "eventCode": ["valueName", "value"],
    "parameter": ["valueName", "value"],
    "geocode": ["valueName", "value"],
}
ENUMS = {
    ("alert", "status"): STATUS, ("alert", "msgType"): MSG_TYPE, ("alert", "scope"): SCOPE,
    ("info", "category"): CATEGORY, ("info", "responseType"): RESPONSE_TYPE, ("info", "urgency"): URGENCY,
    ("info", "severity"): SEVERITY, ("info", "certainty"): CERTAINTY,
}
_DT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
_BAD_CHARS = re.compile(r"[\s,<&]")


class WarningLevel(StrEnum):
    """The four Chinese warning colours (预警级别)."""

    RED = "red"  # I 级 特别严重
    ORANGE = "orange"  # II 级 严重
    YELLOW = "yellow"  # III 级 较重
    BLUE = "blue"  # IV 级 一般


LEVEL_SEVERITY = {WarningLevel.RED: "Extreme", WarningLevel.ORANGE: "Severe",
                  WarningLevel.YELLOW: "Moderate", WarningLevel.BLUE: "Minor"}
LEVEL_NAMES = {WarningLevel.RED: "红色", WarningLevel.ORANGE: "橙色", WarningLevel.YELLOW: "黄色", WarningLevel.BLUE: "蓝色"}


@dataclass(frozen=True)
class CapIssue:
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: [{self.rule}] {self.message}"


class CapError(ValueError):
    def __init__(self, issues: Sequence[CapIssue]) -> None:
        self.issues = list(issues)
        super().__init__("CAP 校验失败:\n" + "\n".join(map(str, self.issues)))


@dataclass(frozen=True)
class CapArea:
    desc: str
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()  # rings of (lon, lat), closed
    circles: tuple[tuple[float, float, float], ...] = ()  # (lon, lat, radius_km)
    geocodes: tuple[tuple[str, str], ...] = ()  # (valueName, value)


@dataclass(frozen=True)
class CapAlert:
    identifier: str
    sender: str
    sent: datetime
    event: str
    headline: str
    description: str
    areas: tuple[CapArea, ...]
    categories: tuple[str, ...] = ("Safety",)
    urgency: str = "Expected"
    severity: str = "Moderate"
    certainty: str = "Likely"
    status: str = "Actual"
    msg_type: str = "Alert"
    scope: str = "Public"
    restriction: str = ""
    addresses: str = ""
    references: str = ""
    instruction: str = ""
    response_types: tuple[str, ...] = ()
    sender_name: str = ""
    language: str = "zh-CN"
    effective: datetime | None = None
    expires: datetime | None = None
    event_codes: tuple[tuple[str, str], ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    note: str = ""
    incidents: str = ""
    contact: str = ""


# ---------------------------------------------------------------- GB/T 35965.1 helpers


def gbt_sender_code(adcode: int, org_code: str = "000", internal: str = "000", ext: str = "00") -> str:
    """14-digit sender code: 6-digit area (GB/T 2260) + 3-digit organisation (GB/T 4657) + 3 + 2."""
    code = f"{adcode:06d}{org_code}{internal}{ext}"
    if not re.fullmatch(r"\d{14}", code):
        raise ValueError(f"发布单位代码必须是 14 位数字: {code!r}")
    return code


def gbt_identifier(sender_code: str, entered: datetime, seq: int = 0) -> str:
    """``<sender code>_<YYYYMMDDhhmmss Beijing time>_<n>`` (31 characters)."""
    if not 0 <= seq <= 9:
        raise ValueError("序号必须是 0–9")
    return f"{sender_code}_{entered.astimezone(BEIJING):%Y%m%d%H%M%S}_{seq}"


def severity_for(level: WarningLevel) -> str:
    return LEVEL_SEVERITY[WarningLevel(level)]


# ---------------------------------------------------------------- areas


def close_ring(points: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Close a drawn ring (append the first point when the UI left it open)."""
    pts = tuple((float(x), float(y)) for x, y in points)
    if pts and pts[0] != pts[-1]:
        pts = pts + (pts[0],)
    return pts


def area_from_polygon(desc: str, points: Sequence[tuple[float, float]]) -> CapArea:
    """An area from a polygon drawn on the map ((lon, lat) vertices, open or closed)."""
    return CapArea(desc, (close_ring(points),))


def area_from_admin(area: Area, tolerance_deg: float = 0.002, max_points: int = 400) -> CapArea:
    """An area for an administrative division: its name, GB/T 2260 geocode and simplified outline."""
    geom = area.geometry
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom] if isinstance(geom, Polygon) else []
    rings = []
    for p in polys:
        tol = tolerance_deg
        s = p.simplify(tol, preserve_topology=True)
        while len(s.exterior.coords) > max_points:  # CAP receivers choke on huge polygons
            tol *= 2
            s = p.simplify(tol, preserve_topology=True)
        rings.append(close_ring([(x, y) for x, y, *_ in s.exterior.coords]))
    return CapArea(area.name, tuple(rings), geocodes=(("GB/T 2260", f"{area.code}"),))


# ---------------------------------------------------------------- build


def _dt(d: datetime) -> str:
    if d.tzinfo is None or d.utcoffset() is None:
        raise CapError([CapIssue("sent", "datetime", "时间必须带时区")])
    return d.replace(microsecond=0).isoformat()  # "+00:00" for UTC, never "Z"


def _fmt(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".")


def build_cap(a: CapAlert) -> str:
    """CAP 1.2 XML text for an alert; CapError if the result would break a rule."""
    def sub(parent: ET.Element, tag: str, text: str | None) -> None:
        if text:
            ET.SubElement(parent, f"{{{CAP_NS}}}{tag}").text = text

    root = ET.Element(f"{{{CAP_NS}}}alert")
    sub(root, "identifier", a.identifier)
    sub(root, "sender", a.sender)
    sub(root, "sent", _dt(a.sent))
    sub(root, "status", a.status)
    sub(root, "msgType", a.msg_type)
    sub(root, "scope", a.scope)
    sub(root, "restriction", a.restriction)
    sub(root, "addresses", a.addresses)
    sub(root, "note", a.note)
    sub(root, "references", a.references)
    sub(root, "incidents", a.incidents)
    info = ET.SubElement(root, f"{{{CAP_NS}}}info")
    sub(info, "language", a.language)
    for c in a.categories:
        sub(info, "category", c)
    sub(info, "event", a.event)
    for rt in a.response_types:
        sub(info, "responseType", rt)
    sub(info, "urgency", a.urgency)
    sub(info, "severity", a.severity)
    sub(info, "certainty", a.certainty)
    for name, value in a.event_codes:
        ec = ET.SubElement(info, f"{{{CAP_NS}}}eventCode")
        sub(ec, "valueName", name)
        sub(ec, "value", value)
    if a.effective:
        sub(info, "effective", _dt(a.effective))
    if a.expires:
        sub(info, "expires", _dt(a.expires))
    sub(info, "senderName", a.sender_name)
    sub(info, "headline", a.headline)
    sub(info, "description", a.description)
    sub(info, "instruction", a.instruction)
    sub(info, "contact", a.contact)
    for name, value in a.parameters:
        p = ET.SubElement(info, f"{{{CAP_NS}}}parameter")
        sub(p, "valueName", name)
        sub(p, "value", value)
    for ar in a.areas:
        el = ET.SubElement(info, f"{{{CAP_NS}}}area")
        sub(el, "areaDesc", ar.desc)
        for ring in ar.polygons:
            sub(el, "polygon", " ".join(f"{_fmt(lat)},{_fmt(lon)}" for lon, lat in ring))
        for lon, lat, r in ar.circles:
            sub(el, "circle", f"{_fmt(lat)},{_fmt(lon)} {_fmt(r)}")
        for name, value in ar.geocodes:
            g = ET.SubElement(el, f"{{{CAP_NS}}}geocode")
            sub(g, "valueName", name)
            sub(g, "value", value)
    ET.indent(root)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode", default_namespace=CAP_NS)
    issues = validate_cap(text)
    if issues:
        raise CapError(issues)
    return text


# ---------------------------------------------------------------- validate


def _local(tag: str) -> str:
    return tag.split("}", 1)[1] if tag.startswith("{") else tag


def _check_dt(text: str, path: str, out: list[CapIssue]) -> None:
    if not _DT.match(text):
        out.append(CapIssue(path, "datetime", f"应为 YYYY-MM-DDThh:mm:ss±hh:mm（带时区偏移，不用 Z）: {text!r}"))
        return
    try:
        datetime.fromisoformat(text)
    except ValueError:
        out.append(CapIssue(path, "datetime", f"不是有效日期时间: {text!r}"))


def _check_polygon(text: str, path: str, out: list[CapIssue]) -> None:
    pairs = text.split()
    pts: list[tuple[float, float]] = []
    for p in pairs:
        try:
            lat_s, lon_s = p.split(",")
            lat, lon = float(lat_s), float(lon_s)
        except ValueError:
            out.append(CapIssue(path, "polygon", f"坐标对必须是「纬度,经度」: {p!r}"))
            return
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            out.append(CapIssue(path, "polygon", f"坐标超出 WGS 84 范围: {p!r}"))
            return
        pts.append((lat, lon))
    if len(pts) < 4:
        out.append(CapIssue(path, "polygon", f"多边形至少需要 4 个坐标对，得到 {len(pts)}"))
    elif pts[0] != pts[-1]:
        out.append(CapIssue(path, "polygon", "多边形未闭合（首尾坐标必须相同）"))


def _check_circle(text: str, path: str, out: list[CapIssue]) -> None:
    m = re.fullmatch(r"\s*(\S+),(\S+)\s+(\S+)\s*", text)
    try:
        if not m:
            raise ValueError
        lat, lon, r = float(m.group(1)), float(m.group(2)), float(m.group(3))
    except ValueError:
        out.append(CapIssue(path, "circle", f"应为「纬度,经度 半径(km)」: {text!r}"))
        return
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or r < 0:
        out.append(CapIssue(path, "circle", f"中心超出 WGS 84 范围或半径为负: {text!r}"))


def _check_children(el: ET.Element, name: str, path: str, out: list[CapIssue]) -> None:
    order = ORDER.get(name)
    kids = [_local(c.tag) for c in el]
    if order is not None:
        last = -1
        for k in kids:
            if k not in order:
                out.append(CapIssue(f"{path}/{k}", "schema", f"{name} 中不允许的元素 <{k}>"))
                continue
            i = order.index(k)
            if i < last:
                out.append(CapIssue(f"{path}/{k}", "schema", f"<{k}> 顺序错误（应在 <{order[last]}> 之前）"))
            last = max(last, i)
    for req in REQUIRED.get(name, []):
        found = el.find(f"{{{CAP_NS}}}{req}")
        if found is None or not (found.text or "").strip():
            out.append(CapIssue(f"{path}/{req}", "required", f"{name} 缺少必填元素 <{req}>"))
    for c in el:
        k = _local(c.tag)
        allowed = ENUMS.get((name, k))
        if allowed is not None and (c.text or "") not in allowed:
            out.append(CapIssue(f"{path}/{k}", "enum", f"<{k}> 的值 {c.text!r} 不在 {'/'.join(allowed)} 之中"))


def validate_cap(xml_text: str | bytes) -> list[CapIssue]:
    """Every CAP 1.2 rule violation in a document (empty list = valid)."""
    text = xml_text.decode("utf-8", "replace") if isinstance(xml_text, bytes) else xml_text
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return [CapIssue("/", "xml", "不允许 DOCTYPE/ENTITY")]
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        return [CapIssue("/", "xml", f"不是有效 XML: {e}")]
    out: list[CapIssue] = []
    if root.tag != f"{{{CAP_NS}}}alert":
        return [CapIssue("/", "xml", f"根元素必须是 CAP 1.2 命名空间 {CAP_NS} 的 <alert>，得到 {root.tag}")]
    for el in root.iter():
        if not el.tag.startswith(f"{{{CAP_NS}}}"):
            out.append(CapIssue(f"/{_local(el.tag)}", "schema", f"元素不在 CAP 1.2 命名空间: {el.tag}"))
    _check_children(root, "alert", "/alert", out)

    def text_of(parent: ET.Element, tag: str) -> str | None:
        e = parent.find(f"{{{CAP_NS}}}{tag}")
        return e.text.strip() if e is not None and e.text else None

    for tag in ("identifier", "sender"):
        v = text_of(root, tag)
        if v and _BAD_CHARS.search(v):
            out.append(CapIssue(f"/alert/{tag}", "chars", f"<{tag}> 不能含空格、逗号、< 或 &: {v!r}"))
    refs = text_of(root, "references")
    if refs:
        for ref in refs.split():
            if len(ref.split(",")) != 3:
                out.append(CapIssue("/alert/references", "chars", f"引用应为 sender,identifier,sent: {ref!r}"))
    sent = text_of(root, "sent")
    if sent:
        _check_dt(sent, "/alert/sent", out)
    scope, msg_type = text_of(root, "scope"), text_of(root, "msgType")
    if scope == "Restricted" and not text_of(root, "restriction"):
        out.append(CapIssue("/alert/restriction", "conditional", "scope=Restricted 时必须有 <restriction>"))
    if scope == "Private" and not text_of(root, "addresses"):
        out.append(CapIssue("/alert/addresses", "conditional", "scope=Private 时必须有 <addresses>"))
    if msg_type in ("Update", "Cancel", "Ack", "Error") and not refs:
        out.append(CapIssue("/alert/references", "conditional", f"msgType={msg_type} 时必须有 <references>"))
    for i, info in enumerate(root.findall(f"{{{CAP_NS}}}info")):
        ip = f"/alert/info[{i}]"
        _check_children(info, "info", ip, out)
        for tag in ("effective", "onset", "expires"):
            v = text_of(info, tag)
            if v:
                _check_dt(v, f"{ip}/{tag}", out)
        for sub_tag in ("eventCode", "parameter", "resource"):
            for j, sub_el in enumerate(info.findall(f"{{{CAP_NS}}}{sub_tag}")):
                _check_children(sub_el, sub_tag, f"{ip}/{sub_tag}[{j}]", out)
        for j, area in enumerate(info.findall(f"{{{CAP_NS}}}area")):
            ap = f"{ip}/area[{j}]"
            _check_children(area, "area", ap, out)
            for k, poly in enumerate(area.findall(f"{{{CAP_NS}}}polygon")):
                _check_polygon(poly.text or "", f"{ap}/polygon[{k}]", out)
            for k, circ in enumerate(area.findall(f"{{{CAP_NS}}}circle")):
                _check_circle(circ.text or "", f"{ap}/circle[{k}]", out)
            for k, g in enumerate(area.findall(f"{{{CAP_NS}}}geocode")):
                _check_children(g, "geocode", f"{ap}/geocode[{k}]", out)
            if text_of(area, "ceiling") and not text_of(area, "altitude"):
                out.append(CapIssue(f"{ap}/ceiling", "conditional", "有 <ceiling> 时必须有 <altitude>"))
    return out


@dataclass
class WarningDraft:
    """What the console's "issue warning" form collects; ``to_alert`` applies GB/T 35965.1."""

    adcode: int
    org_code: str
    sender_name: str
    event: str
    gbt35561_code: str
    level: WarningLevel
    headline: str
    description: str
    instruction: str
    areas: tuple[CapArea, ...]
    categories: tuple[str, ...] = ("Safety",)
    urgency: str = "Expected"
    certainty: str = "Likely"
    response_types: tuple[str, ...] = ("Prepare",)
    status: str = "Actual"
    expires_after: timedelta | None = timedelta(hours=24)
    extra_parameters: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_alert(self, entered: datetime, seq: int = 0) -> CapAlert:
        sender_code = gbt_sender_code(self.adcode, self.org_code)
        sent = entered.astimezone(BEIJING).replace(microsecond=0)
        return CapAlert(
            identifier=gbt_identifier(sender_code, sent, seq),
            sender=sender_code,
            sent=sent,
            event=self.event,
            headline=self.headline,
            description=self.description,
            instruction=self.instruction,
            areas=self.areas,
            categories=self.categories,
            urgency=self.urgency,
            severity=severity_for(self.level),
            certainty=self.certainty,
            status=self.status,
            response_types=self.response_types,
            sender_name=self.sender_name,
            effective=sent,
            expires=sent + self.expires_after if self.expires_after else None,
            event_codes=(("GB/T 35561", self.gbt35561_code),),
            parameters=(("预警级别", LEVEL_NAMES[self.level]),) + self.extra_parameters,
        )
