from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.exchange.eido import EidoError, export_incident, import_incident
from dispatch.model import (
    Caller,
    Incident,
    Location,
    Unit,
    add_note,
    assign_units,
    link_incidents,
    merge_incidents,
    new_incident,
    set_component_status,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 21, 16, 5, 7, 123000, tzinfo=CST)
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def rich() -> tuple[Incident, Incident, dict[str, Unit]]:
    loc = Location(111.56981234567, 22.768512345, 35.5, "pidf-lo", "罗定市罗城街道兴华路 12 号", 445381, 445381001)
    a = new_incident("INC-20261121-0001", "traffic", "entrapment", 1, loc, T0, "接警员甲", "两车相撞，一人被困 <车内>",
                     Caller("13800000000", "张三"), "CALL-1", agencies=["fire"])
    a = add_note(a, "现场有漏油 & 冒烟", T0 + timedelta(minutes=1), "接警员甲")
    units = {u.id: u for u in (Unit("P1", "罗定巡1", "police_car", "ST-P"), Unit("E1", "罗定水罐1", "fire_engine", "ST-F"),
                               Unit("A1", "罗定120-1", "ambulance_als", "ST-H"))}
    a, assigned = assign_units(a, list(units.values()), T0 + timedelta(minutes=2), "调度员乙")
    units = {u.id: u for u in assigned}
    a = set_component_status(a, "medical", "on_scene", T0 + timedelta(minutes=9), "geofence")  # type: ignore[arg-type]
    d = new_incident("INC-20261121-0002", "traffic", "collision", 2, loc, T0 + timedelta(minutes=3), "接警员丙",
                     call_id="CALL-2")
    a, d = merge_incidents(a, d, T0 + timedelta(minutes=4), "调度员乙")
    b = new_incident("INC-20261121-0003", "fire", "vehicle", 2, loc, T0, "x")
    a, b = link_incidents(a, b, T0 + timedelta(minutes=5), "调度员乙")
    return a, d, units


def roundtrip(inc: Incident, units: dict[str, Unit] | None = None) -> Incident:
    doc = export_incident(inc, units, now=NOW)
    text = json.dumps(doc, ensure_ascii=False)
    return import_incident(json.loads(text))


def test_lossless_round_trip_joint_incident() -> None:
    a, d, units = rich()
    assert a.joint and a.merged_from and a.related and a.notes and a.caller.name
    assert roundtrip(a, units) == a
    assert roundtrip(d) == d  # the merged, closed duplicate with its merged_into
    doc = export_incident(a, units, now=NOW)
    inc = doc["incidentComponent"]
    assert inc["incidentTypeInternalCode"] == "21" and inc["incidentCommonPriorityNumber"] == 1
    assert {x["$id"] for x in doc["agencyComponent"]} == {"agency-police", "agency-fire", "agency-medical"}
    assert doc["locationComponent"][0]["locationByValue"].startswith("<presence")
    assert "gs:Circle" in doc["locationComponent"][0]["locationByValue"] or "Circle" in doc["locationComponent"][0]["locationByValue"]
    res = {r["$id"]: r for r in doc["emergencyResourceComponent"]}
    assert res["unit-E1"]["emergencyResourceTypeCommonRegistryText"] == "Engine"
    assert res["unit-A1"]["resourceAttributeRegistryText"] == ["als", "bls"]
    assert doc["callbackComponent"][0]["callBackInformationUri"] == ["tel:13800000000"]


def test_import_accepts_json_text_and_wrapped_incident_component() -> None:
    a, _, units = rich()
    doc = export_incident(a, units, now=NOW)
    doc["incidentComponent"] = [doc["incidentComponent"]]
    assert import_incident(json.dumps(doc)) == a


@settings(max_examples=40, deadline=None)
@given(
    desc=st.text(max_size=40),
    notes=st.lists(st.text(min_size=1, max_size=20).filter(str.strip), max_size=3),
    lon=st.floats(-180, 180), lat=st.floats(-90, 90),
    radius=st.one_of(st.none(), st.floats(0, 1e5)),
    prio=st.integers(1, 5),
    address=st.text(max_size=30),
    cat=st.sampled_from(["police", "fire", "medical", "flood_control", "traffic", "other"]),
)
def test_round_trip_property(desc: str, notes: list[str], lon: float, lat: float, radius: float | None,
                             prio: int, address: str, cat: str) -> None:
    # XML 1.0 cannot carry most control characters; PIDF-LO addresses are XML text
    address = "".join(ch for ch in address if ch in "\t\n" or ord(ch) >= 0x20 and not 0xD800 <= ord(ch) <= 0xDFFF)
    address = address.replace("\r", "")
    inc = new_incident("X-1", cat, "general", prio, Location(lon, lat, radius, "aml", address.strip()), T0, "a", desc)
    for n in notes:
        inc = add_note(inc, n, T0, "a")
    assert roundtrip(inc) == inc


def _mut(doc: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    cur: Any = d
    for k in path[:-1]:
        cur = cur[k]
    if value is _DEL:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return d


_DEL = object()


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        (["incidentComponent"], _DEL, "incidentComponent"),
        (["incidentComponent", "incidentCommonPriorityNumber"], 9, "incidentCommonPriorityNumber"),
        (["incidentComponent", "incidentTypeInternalCode"], "77", "未知类别编码"),
        (["incidentComponent", "incidentTypeCommonRegistryText"], _DEL, "incidentTypeCommonRegistryText: 缺少必填字段"),
        (["lastUpdateTimeStamp"], "2026-11-21T09:00:00", "时区偏移"),
        (["eidoMessageIdentifier"], _DEL, "eidoMessageIdentifier"),
        (["incidentComponent", "locationReference"], [{"$ref": "loc-nowhere"}], "不存在的组件"),
        (["locationComponent", 0, "locationByValue"], "<presence><unclosed>", "不是有效 XML"),
        (["locationComponent", 0, "locationByValue"], '<!DOCTYPE x [<!ENTITY a "b">]><presence/>', "DOCTYPE"),
        (["agencyComponent", 0, "agencyType"], ["urn:emergency:service:responder.army"], "无法识别"),
        (["incidentComponent", "incidentTypeInternalText"], "traffic/volcano", "没有子类"),
        (["mergeComponent", 0, "mergeRole"], "Absorbed", "mergeRole"),
    ],
)
def test_each_validation_error_is_reported(path: list[Any], value: Any, expect: str) -> None:
    a, _, units = rich()
    doc = export_incident(a, units, now=NOW)
    with pytest.raises(EidoError) as ei:
        import_incident(_mut(doc, path, value))
    assert any(expect in e for e in ei.value.errors), ei.value.errors


def test_all_errors_listed_at_once() -> None:
    a, _, units = rich()
    doc = export_incident(a, units, now=NOW)
    doc["incidentComponent"]["incidentCommonPriorityNumber"] = "high"
    doc["lastUpdateTimeStamp"] = "yesterday"
    doc["dispatchComponent"][0]["emergencyResourceReference"].append({"$ref": "unit-GHOST"})
    with pytest.raises(EidoError) as ei:
        import_incident(doc)
    assert len(ei.value.errors) >= 3
    joined = "\n".join(ei.value.errors)
    assert "incidentCommonPriorityNumber" in joined and "lastUpdateTimeStamp" in joined and "unit-GHOST" in joined
    for bad in ("not json", "[]", json.dumps({"eidoMessageIdentifier": 1})):
        with pytest.raises(EidoError):
            import_incident(bad)


def test_pidf_namespaces_independent_of_cap_writer() -> None:
    """ElementTree's prefix registry is global: writing CAP first must not change the PIDF-LO."""
    from dispatch.exchange.cap import CapAlert, area_from_polygon, build_cap

    build_cap(CapAlert("ID-1", "s", NOW, "e", "h", "d", (area_from_polygon("a", [(1, 1), (2, 1), (2, 2)]),)))
    a, _, units = rich()
    loc = export_incident(a, units, now=NOW)["locationComponent"][0]["locationByValue"]
    assert loc.startswith("<presence") and "ns0" not in loc and 'xmlns="urn:ietf:params:xml:ns:pidf"' in loc
