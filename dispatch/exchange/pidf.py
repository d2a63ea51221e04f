"""Minimal PIDF-LO (RFC 4119/5491) for EIDO ``locationByValue``: a Point or Circle plus a civic
LOC line. Only what our incidents carry; the call-taking desk has the full parser."""
from __future__ import annotations

import xml.etree.ElementTree as ET

NS = {
    "pidf": "urn:ietf:params:xml:ns:pidf",
    "gp": "urn:ietf:params:xml:ns:pidf:geopriv10",
    "gml": "http://www.opengis.net/gml",
    "gs": "http://www.opengis.net/pidflo/1.0",
    "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr",
}
SRS = "urn:ogc:def:crs:EPSG::4326"
UOM_M = "urn:ogc:def:uom:EPSG::9001"

# prefixes for the non-default namespaces (the registry is global; these names are unambiguous)
for _p, _u in NS.items():
    if _p != "pidf":
        ET.register_namespace(_p, _u)


class PidfError(ValueError):
    pass


def _q(prefix: str, tag: str) -> str:
    return f"{{{NS[prefix]}}}{tag}"


def build(lon: float, lat: float, radius_m: float | None, loc_text: str, entity: str) -> str:
    """PIDF-LO document text with a gml:Point (or gs:Circle when a radius is known)."""
    # PIDF elements are written unqualified under an explicit default xmlns: ElementTree's
    # default_namespace option refuses unqualified attributes, and the global prefix registry
    # would be shared with the CAP writer.
    pres = ET.Element("presence", {"xmlns": NS["pidf"], "entity": entity})
    tup = ET.SubElement(pres, "tuple", {"id": "loc"})
    status = ET.SubElement(tup, "status")
    geopriv = ET.SubElement(status, _q("gp", "geopriv"))
    info = ET.SubElement(geopriv, _q("gp", "location-info"))
    shape = ET.SubElement(info, _q("gs", "Circle") if radius_m is not None else _q("gml", "Point"), {"srsName": SRS})
    ET.SubElement(shape, _q("gml", "pos")).text = f"{lat!r} {lon!r}"  # GML order for EPSG:4326 is lat lon
    if radius_m is not None:
        ET.SubElement(shape, _q("gs", "radius"), {"uom": UOM_M}).text = repr(float(radius_m))
    if loc_text:
        civic = ET.SubElement(info, _q("ca", "civicAddress"))
        ET.SubElement(civic, _q("ca", "country")).text = "CN"
        ET.SubElement(civic, _q("ca", "LOC")).text = loc_text
    ET.SubElement(geopriv, _q("gp", "usage-rules"))
    return ET.tostring(pres, encoding="unicode")


def parse(text: str) -> tuple[float, float, float | None, str]:
    """(lon, lat, radius_m or None, LOC text) from a PIDF-LO document; PidfError if unusable."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise PidfError("PIDF-LO 不允许 DOCTYPE/ENTITY")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise PidfError(f"PIDF-LO 不是有效 XML: {e}") from None
    shape = root.find(".//gs:Circle", NS)
    if shape is None:
        shape = root.find(".//gml:Point", NS)
    if shape is None:
        raise PidfError("PIDF-LO 中没有 Point 或 Circle")
    pos = shape.find("gml:pos", NS)
    try:
        lat_s, lon_s = (pos.text or "").split() if pos is not None else ("", "")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise PidfError("gml:pos 必须是「纬度 经度」两个数") from None
    radius = None
    if shape.tag == _q("gs", "Circle"):
        r = shape.find("gs:radius", NS)
        try:
            radius = float(r.text or "") if r is not None else None
        except ValueError:
            raise PidfError("gs:radius 不是数字") from None
        if radius is None:
            raise PidfError("gs:Circle 缺少 gs:radius")
    loc = root.find(".//ca:civicAddress/ca:LOC", NS)
    return lon, lat, radius, (loc.text or "") if loc is not None else ""
