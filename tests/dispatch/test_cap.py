from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.exchange.cap import (
    CapAlert,
    CapError,
    WarningDraft,
    WarningLevel,
    area_from_admin,
    area_from_polygon,
    build_cap,
    gbt_identifier,
    gbt_sender_code,
    validate_cap,
)
from gis.jurisdictions import load_areas_geojson

COUNTIES = Path(__file__).resolve().parents[2] / "config" / "demo" / "yunfu_counties.geojson"
ENTERED = datetime(2026, 11, 21, 1, 2, 3, tzinfo=UTC)  # 09:02:03 Beijing time
DRAWN = [(111.55, 22.75), (111.60, 22.75), (111.60, 22.80), (111.55, 22.80)]  # open ring from the map


def good_xml() -> str:
    luoding = next(a for a in load_areas_geojson(COUNTIES) if a.code == 445381)
    draft = WarningDraft(
        adcode=445381, org_code="061", sender_name="罗定市三防指挥部", event="暴雨内涝",
        gbt35561_code="11B01", level=WarningLevel.ORANGE, headline="罗定市发布暴雨橙色预警",
        description="预计未来 3 小时罗城、素龙一带降雨量将达 80 毫米以上。", instruction="低洼地带人员请立即转移。",
        areas=(area_from_admin(luoding), area_from_polygon("素龙街道低洼区", DRAWN)),
        categories=("Met", "Safety"), response_types=("Evacuate",),
    )
    return build_cap(draft.to_alert(ENTERED))


def rules(xml: str) -> set[str]:
    return {i.rule for i in validate_cap(xml)}


def test_good_alert_passes_and_follows_gbt_35965() -> None:
    xml = good_xml()
    assert validate_cap(xml) == []
    ident = re.search(r"<identifier>(.*)</identifier>", xml).group(1)  # type: ignore[union-attr]
    assert ident == "44538106100000_20261121090203_0" and len(ident) == 31
    assert "<sent>2026-11-21T09:02:03+08:00</sent>" in xml
    assert "<expires>2026-11-22T09:02:03+08:00</expires>" in xml
    assert "<severity>Severe</severity>" in xml and "<language>zh-CN</language>" in xml
    assert "<valueName>GB/T 2260</valueName>" in xml and "<value>445381</value>" in xml
    assert "<valueName>GB/T 35561</valueName>" in xml and "<value>橙色</value>" in xml
    polys = re.findall(r"<polygon>(.*)</polygon>", xml)
    assert len(polys) == 2
    for p in polys:
        pts = p.split()
        assert len(pts) >= 4 and pts[0] == pts[-1]
        lat, lon = map(float, pts[0].split(","))
        assert 21 < lat < 24 and 110 < lon < 113  # lat,lon order
    assert polys[1] == "22.75,111.55 22.75,111.6 22.8,111.6 22.8,111.55 22.75,111.55"


def test_gbt_helpers() -> None:
    assert gbt_sender_code(445300, "061") == "44530006100000"
    with pytest.raises(ValueError):
        gbt_sender_code(445300, "61")
    assert gbt_identifier("44530006100000", ENTERED, 3).endswith("_20261121090203_3")


BROKEN = [
    ("xml", lambda x: x.replace("</alert>", "")),
    ("xml", lambda x: x.replace("urn:oasis:names:tc:emergency:cap:1.2", "urn:oasis:names:tc:emergency:cap:1.1")),
    ("xml", lambda x: x.replace('<?xml version="1.0" encoding="UTF-8"?>', '<!DOCTYPE alert [<!ENTITY x "y">]>')),
    ("required", lambda x: re.sub(r"<sender>.*</sender>", "", x)),
    ("required", lambda x: re.sub(r"<event>.*</event>", "", x)),
    ("required", lambda x: re.sub(r"<areaDesc>素龙街道低洼区</areaDesc>", "<areaDesc> </areaDesc>", x)),
    ("required", lambda x: x.replace("<valueName>GB/T 2260</valueName>", "")),
    ("chars", lambda x: x.replace("_20261121090203_0", "_20261121 090203_0")),
    ("chars", lambda x: x.replace("<sender>44538106100000", "<sender>a,b")),
    ("enum", lambda x: x.replace("<status>Actual</status>", "<status>Real</status>")),
    ("enum", lambda x: x.replace("<msgType>Alert</msgType>", "<msgType>Warning</msgType>")),
    ("enum", lambda x: x.replace("<scope>Public</scope>", "<scope>Everyone</scope>")),
    ("enum", lambda x: x.replace("<category>Met</category>", "<category>Weather</category>")),
    ("enum", lambda x: x.replace("<urgency>Expected</urgency>", "<urgency>Now</urgency>")),
    ("enum", lambda x: x.replace("<severity>Severe</severity>", "<severity>Orange</severity>")),
    ("enum", lambda x: x.replace("<certainty>Likely</certainty>", "<certainty>Sure</certainty>")),
    ("enum", lambda x: x.replace("<responseType>Evacuate</responseType>", "<responseType>Run</responseType>")),
    ("datetime", lambda x: x.replace("2026-11-21T09:02:03+08:00</sent>", "2026-11-21T01:02:03Z</sent>")),
    ("datetime", lambda x: x.replace("2026-11-21T09:02:03+08:00</sent>", "2026-11-21T09:02:03</sent>")),
    ("datetime", lambda x: x.replace("2026-11-22T09:02:03+08:00", "2026-02-30T09:02:03+08:00")),
    ("datetime", lambda x: x.replace("<effective>2026-11-21T09:02:03+08:00", "<effective>21/11/2026 09:02")),
    ("conditional", lambda x: x.replace("<scope>Public</scope>", "<scope>Restricted</scope>")),
    ("conditional", lambda x: x.replace("<scope>Public</scope>", "<scope>Private</scope>")),
    ("conditional", lambda x: x.replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")),
    ("conditional", lambda x: x.replace("<areaDesc>素龙街道低洼区</areaDesc>", "<areaDesc>素龙街道低洼区</areaDesc><ceiling>30</ceiling>")),
    ("polygon", lambda x: x.replace("22.75,111.55 22.75,111.6 22.8,111.6 22.8,111.55 22.75,111.55", "22.75,111.55 22.75,111.6 22.75,111.55")),
    ("polygon", lambda x: x.replace("22.75,111.55 22.75,111.6 22.8,111.6 22.8,111.55 22.75,111.55", "22.75,111.55 22.75,111.6 22.8,111.6 22.8,111.55")),
    ("polygon", lambda x: x.replace("22.75,111.55 22.75,111.6 22.8,111.6 22.8,111.55 22.75,111.55", "122.75,111.55 22.75,111.6 22.8,111.6 122.75,111.55")),
    ("polygon", lambda x: x.replace("22.75,111.55 22.75,111.6 22.8,111.6 22.8,111.55 22.75,111.55", "22.75;111.55 22.75,111.6 22.8,111.6 22.75;111.55")),
    ("circle", lambda x: x.replace("<areaDesc>素龙街道低洼区</areaDesc>", "<areaDesc>素龙街道低洼区</areaDesc><circle>22.75,111.55</circle>")),
    ("circle", lambda x: x.replace("<areaDesc>素龙街道低洼区</areaDesc>", "<areaDesc>素龙街道低洼区</areaDesc><circle>22.75,111.55 -1</circle>")),
    ("schema", lambda x: x.replace("<headline>", "<colour>orange</colour><headline>")),
    ("schema", lambda x: re.sub(r"(<sender>.*</sender>)\s*(<sent>.*</sent>)", r"\2\1", x)),
]


@pytest.mark.parametrize(("rule", "mutate"), BROKEN)
def test_each_rule_catches_a_broken_document(rule: str, mutate) -> None:  # type: ignore[no-untyped-def]
    good = good_xml()
    bad = mutate(good)
    assert bad != good, "mutation did not apply"
    found = rules(bad)
    assert rule in found, (rule, validate_cap(bad))


def test_all_issues_listed_and_bytes_accepted() -> None:
    bad = good_xml().replace("<status>Actual</status>", "<status>Real</status>").replace(
        "<urgency>Expected</urgency>", "<urgency>Now</urgency>")
    issues = validate_cap(bad.encode("utf-8"))
    assert [(i.path, i.rule) for i in issues] == [("/alert/status", "enum"), ("/alert/info[0]/urgency", "enum")]
    assert "Real" in str(issues[0])


def test_builder_refuses_to_emit_invalid_cap() -> None:
    base = CapAlert("ID-1", "sender@example", datetime(2026, 1, 1, tzinfo=UTC), "x", "h", "d",
                    (area_from_polygon("a", DRAWN),))
    assert "<sent>2026-01-01T00:00:00+00:00</sent>" in build_cap(base)
    from dataclasses import replace

    for bad in (replace(base, status="Real"), replace(base, identifier="ID 1"),
                replace(base, areas=(area_from_polygon("a", DRAWN[:2]),)), replace(base, msg_type="Update")):
        with pytest.raises(CapError):
            build_cap(bad)
    with pytest.raises(CapError, match="时区"):
        build_cap(replace(base, sent=datetime(2026, 1, 1)))
    assert build_cap(replace(base, msg_type="Update", references="sender@example,ID-0,2025-12-31T23:00:00+00:00",
                             expires=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=2)))
