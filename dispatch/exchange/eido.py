"""NENA EIDO (NENA-STA-021, Emergency Incident Data Object) JSON export and import.

``export_incident`` writes one EIDO for an incident; ``import_incident`` reads one back and
raises ``EidoError`` listing *every* problem found (for a 422 body). Export → import is lossless
for our ``Incident`` fields.

Mapping (our field → EIDO):

=====================  ==================================================================
id                     incidentComponent.incidentTrackingIdentifier / internalIncidentId
category               incidentTypeInternalCode (our GB/T-35561-style code) and a
                       descriptive incidentTypeCommonRegistryText
subtype                incidentTypeInternalText ("fire/residential")
priority               incidentCommonPriorityNumber (1–5) / incidentPriorityInternalText
status                 incidentStatusCommonRegistryText / incidentStatusInternalText
location               locationComponent[0].locationByValue (PIDF-LO Point or Circle with
                       the uncertainty as radius, civic LOC = address), locationDescriptionText
caller                 callbackComponent (tel: URI) + personComponent (role Caller)
calls                  callComponent[] (callIdentifier = our call id)
agency components      agencyComponent[] (agencyType urn:emergency:service:responder.*) and
                       dispatchComponent[] (agency + emergencyResource references)
units                  emergencyResourceComponent[] (name, type, status when known)
description, notes     notesComponent[] ("note-description" holds the description)
related                linkComponent[] ; merged_into / merged_from → mergeComponent[]
disposition            incidentComponent.dispositionComponent[0].dispositionDescriptionText
=====================  ==================================================================

What EIDO has no element for (the structured timeline, component statuses, released units,
location source and county/township codes, the creation time, the training flag) travels in one
``additionalDataComponent`` whose ``urlPurpose`` is ``urn:commandcenter:eido-extension:1`` and
whose ``additionalDataByValue`` is a JSON object. A receiver that ignores it still gets a
meaningful EIDO. Registry texts (incident type, status, agency role) are our best reading of
the NENA/IANA registries; the internal codes are authoritative on import.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dispatch.exchange import pidf
from dispatch.model import (
    AGENCIES,
    CATEGORIES,
    INCIDENT_STATUS_NAMES,
    PRIORITY_NAMES,
    UNIT_TYPES,
    Caller,
    Component,
    DispatchError,
    Incident,
    IncidentStatus,
    Location,
    TimelineEntry,
    Unit,
    check_subtype,
)

EXTENSION_PURPOSE = "urn:commandcenter:eido-extension:1"
EIDO_VERSION = "1.0"

INCIDENT_TYPE_TEXT = {
    "police": "Law Enforcement",
    "fire": "Fire",
    "medical": "Medical",
    "flood_control": "Natural Disaster",
    "traffic": "Traffic Collision",
    "meteorology": "Natural Disaster",
    "earthquake": "Natural Disaster",
    "epidemic": "Public Health",
    "work_safety": "Industrial Accident",
    "other": "Other",
}
STATUS_TEXT = {
    IncidentStatus.NEW: "Received",
    IncidentStatus.DISPATCHED: "Dispatched",
    IncidentStatus.EN_ROUTE: "Enroute",
    IncidentStatus.ON_SCENE: "On Scene",
    IncidentStatus.UNDER_CONTROL: "Contained",
    IncidentStatus.CLOSED: "Closed",
}
AGENCY_TYPE = {
    "police": "urn:emergency:service:responder.police",
    "fire": "urn:emergency:service:responder.fire",
    "medical": "urn:emergency:service:responder.ems",
    "flood_control": "urn:emergency:service:responder.other.flood_control",
    "traffic": "urn:emergency:service:responder.police.traffic",
    "meteorology": "urn:emergency:service:responder.other.meteorology",
    "earthquake": "urn:emergency:service:responder.other.earthquake",
    "health": "urn:emergency:service:responder.other.health",
    "emergency_mgmt": "urn:emergency:service:responder.other.emergency_management",
}
RESOURCE_TYPE = {
    "police_car": "Patrol", "fire_engine": "Engine", "water_tender": "Tender", "ladder": "Ladder",
    "rescue": "Rescue", "ambulance_als": "ALS Ambulance", "ambulance_bls": "BLS Ambulance",
    "flood_team": "Crew", "pump": "Pump", "boat": "Boat", "weather_vehicle": "Support",
    "quake_survey_team": "Crew", "usar_team": "USAR", "epi_team": "Crew", "disinfection_team": "Crew",
    "hazmat_team": "Hazmat", "mine_rescue_team": "Rescue",
}


class EidoError(ValueError):
    """An EIDO document that failed validation; ``errors`` lists every problem (path: message)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("EIDO 校验失败:\n" + "\n".join(errors))


def _ts(dt: datetime) -> str:
    return dt.isoformat()


def export_incident(
    inc: Incident,
    units: Mapping[str, Unit] | None = None,
    system_id: str = "commandcenter",
    now: datetime | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """One EIDO (a JSON-ready dict) for an incident; ``units`` adds unit details when given."""
    now = now or datetime.now(UTC)
    msg_id = message_id or f"urn:emergency:uid:eido:{uuid.uuid4()}"
    units = units or {}
    loc = inc.location
    notes: list[dict[str, Any]] = []
    if inc.description:
        notes.append({"$id": "note-description", "noteDateTimeStamp": _ts(inc.created_at), "noteText": inc.description})
    notes += [{"$id": f"note-{i + 1}", "noteText": n} for i, n in enumerate(inc.notes)]
    status = inc.status
    incident: dict[str, Any] = {
        "$id": f"inc-{inc.id}",
        "lastUpdateTimeStamp": _ts(now),
        "incidentTrackingIdentifier": inc.id,
        "internalIncidentId": inc.id,
        "incidentTypeCommonRegistryText": INCIDENT_TYPE_TEXT[inc.category],
        "incidentTypeInternalCode": CATEGORIES[inc.category].code,
        "incidentTypeInternalText": f"{inc.category}/{inc.subtype}",
        "incidentStatusCommonRegistryText": [STATUS_TEXT[status]],
        "incidentStatusInternalText": [status.value, INCIDENT_STATUS_NAMES[status]],
        "incidentCommonPriorityNumber": inc.priority,
        "incidentPriorityInternalText": f"{inc.priority} {PRIORITY_NAMES[inc.priority]}",
        "locationReference": [{"$ref": "loc-incident"}],
        "notesReference": [{"$ref": n["$id"]} for n in notes],
    }
    if inc.disposition:
        incident["dispositionComponent"] = [
            {"dispositionCommonRegistryCode": "Closed", "dispositionPrimaryIndicator": True,
             "dispositionDescriptionText": inc.disposition}
        ]
    doc: dict[str, Any] = {
        "$id": msg_id,
        "eidoMessageIdentifier": msg_id,
        "eidoVersion": EIDO_VERSION,
        "lastUpdateTimeStamp": _ts(now),
        "sendingSystemIdentifier": system_id,
        "incidentComponent": incident,
        "locationComponent": [
            {
                "$id": "loc-incident",
                "locationTypeDescriptionRegistryText": "Incident",
                "locationByValue": pidf.build(loc.lon, loc.lat, loc.uncertainty_m, loc.address, f"pres:{inc.id}@{system_id}"),
                "locationDescriptionText": loc.address,
            }
        ],
        "agencyComponent": [
            {
                "$id": f"agency-{c.agency}",
                "agencyRoleDescriptionRegistryText": ["Incident Owning" if i == 0 else "Responding"],
                "agencyType": [AGENCY_TYPE[c.agency]],
                "incidentOwningAgencyIndicator": i == 0,
                "agencyJcard": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", AGENCIES[c.agency]]]],
            }
            for i, c in enumerate(inc.components)
        ],
        "dispatchComponent": [
            {
                "$id": f"dispatch-{c.agency}",
                "agencyReference": {"$ref": f"agency-{c.agency}"},
                "emergencyResourceReference": [{"$ref": f"unit-{u}"} for u in c.units],
            }
            for c in inc.components
        ],
        "emergencyResourceComponent": [_resource(uid, units.get(uid)) for c in inc.components for uid in c.units],
        "callComponent": [
            {
                "$id": f"call-{call}",
                "callIdentifier": call,
                "callStateRegistryText": "callEnd",
                "standardPrimaryCallType": "Emergency",
                "direction": "incoming",
                "callStartTimestamp": _ts(inc.created_at),
            }
            for call in inc.calls
        ],
        "notesComponent": notes,
        "linkComponent": [{"$id": f"link-{r}", "linkedIncidentTrackingIdentifier": r} for r in inc.related],
        "mergeComponent": (
            [{"$id": f"merge-into-{inc.merged_into}", "mergeRole": "Subsumed", "mergedIncidentTrackingIdentifier": inc.merged_into}]
            if inc.merged_into
            else []
        )
        + [{"$id": f"merge-from-{m}", "mergeRole": "Surviving", "mergedIncidentTrackingIdentifier": m} for m in inc.merged_from],
    }
    if inc.caller.number:
        doc["callbackComponent"] = [{"$id": "cb-caller", "callBackInformationUri": [f"tel:{inc.caller.number}"]}]
    if inc.caller.name or inc.caller.number:
        person: dict[str, Any] = {"$id": "person-caller", "personIncidentRoleRegistryText": ["Caller"]}
        if inc.caller.name:
            person["ncPersonComponent"] = {"nc:PersonName": {"nc:PersonFullName": inc.caller.name}}
        if inc.caller.number:
            person["callBackReference"] = {"$ref": "cb-caller"}
        doc["personComponent"] = [person]
    ext = {
        "createdAt": _ts(inc.created_at),
        "training": inc.training,
        "location": {"source": loc.source, "county": loc.county_code, "township": loc.township_code},
        "components": [
            {"agency": c.agency, "status": c.status.value, "released": list(c.released_units)} for c in inc.components
        ],
        "timeline": [
            {"seq": e.seq, "at": _ts(e.at), "actor": e.actor, "action": e.action, "detail": dict(e.detail)}
            for e in inc.timeline
        ],
    }
    doc["additionalDataComponent"] = [
        {"$id": "ext-commandcenter", "urlPurpose": EXTENSION_PURPOSE,
         "additionalDataByValue": json.dumps(ext, ensure_ascii=False, separators=(",", ":"))}
    ]
    return doc


def _resource(uid: str, unit: Unit | None) -> dict[str, Any]:
    r: dict[str, Any] = {"$id": f"unit-{uid}", "emergencyResourceName": unit.callsign if unit else uid}
    if unit is not None:
        r["emergencyResourceTypeCommonRegistryText"] = RESOURCE_TYPE[unit.type]
        r["emergencyResourceTypeInternalText"] = unit.type
        r["primaryUnitStatusRegistryText"] = unit.status.value
        r["resourceAttributeRegistryText"] = sorted(c.value for c in unit.capabilities)
        r["unitStatusInternal"] = [unit.status.value, UNIT_TYPES[unit.type].name]
    return r


# ---------------------------------------------------------------- import


class _V:
    """Collects validation errors with JSON paths."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}")

    def s(self, obj: Mapping[str, Any], key: str, path: str, required: bool = True) -> str | None:
        v = obj.get(key)
        if v is None:
            if required:
                self.err(f"{path}.{key}", "缺少必填字段")
            return None
        if not isinstance(v, str):
            self.err(f"{path}.{key}", f"应为字符串，得到 {type(v).__name__}")
            return None
        return v

    def ts(self, v: Any, path: str) -> datetime | None:
        if not isinstance(v, str):
            self.err(path, "缺少时间或不是字符串")
            return None
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith("Z") else v)
        except ValueError:
            self.err(path, f"不是 ISO 8601 时间: {v!r}")
            return None
        if t.tzinfo is None:
            self.err(path, f"时间缺少时区偏移: {v!r}")
            return None
        return t

    def arr(self, value: Any, path: str) -> list[Any]:
        """A JSON array (missing/null = empty); anything else is an error."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.err(path, f"应为数组，得到 {type(value).__name__}")
            return []
        return value

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        """A JSON object (missing/null = empty); anything else is an error."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, f"应为对象，得到 {type(value).__name__}")
            return {}
        return value

    def lst(self, doc: Mapping[str, Any], key: str) -> list[Any]:
        v = doc.get(key, [])
        if not isinstance(v, list):
            self.err(key, "应为数组")
            return []
        return v


def _collect_ids(doc: Any, out: dict[str, str], path: str = "") -> None:
    if isinstance(doc, dict):
        if isinstance(doc.get("$id"), str) and path:
            out[doc["$id"]] = path
        for k, v in doc.items():
            _collect_ids(v, out, f"{path}.{k}" if path else k)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            _collect_ids(v, out, f"{path}[{i}]")


def _collect_refs(doc: Any, out: list[tuple[str, str]], path: str = "") -> None:
    if isinstance(doc, dict):
        if "$ref" in doc:
            out.append((path, doc["$ref"]))
        for k, v in doc.items():
            _collect_refs(v, out, f"{path}.{k}" if path else k)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            _collect_refs(v, out, f"{path}[{i}]")


def _by_id(items: list[Any]) -> dict[str, dict[str, Any]]:
    return {x["$id"]: x for x in items if isinstance(x, dict) and isinstance(x.get("$id"), str)}


def import_incident(doc: Any) -> Incident:
    """An Incident from an EIDO dict (or JSON text); EidoError lists every problem."""
    v = _V()
    if isinstance(doc, str | bytes):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as e:
            raise EidoError([f"$: 不是有效 JSON: {e}"]) from None
    if not isinstance(doc, dict):
        raise EidoError(["$: EIDO 必须是 JSON 对象"])
    v.s(doc, "eidoMessageIdentifier", "$")
    v.ts(doc.get("lastUpdateTimeStamp"), "$.lastUpdateTimeStamp")
    ids: dict[str, str] = {}
    _collect_ids(doc, ids)
    refs: list[tuple[str, str]] = []
    _collect_refs(doc, refs)
    for path, ref in refs:
        if not isinstance(ref, str) or ref not in ids:
            v.err(path, f"引用 {ref!r} 指向不存在的组件")

    inc_c = doc.get("incidentComponent")
    if isinstance(inc_c, list):  # some producers wrap it in a one-item array
        inc_c = inc_c[0] if len(inc_c) == 1 else None
    if not isinstance(inc_c, dict):
        v.err("incidentComponent", "缺少 incidentComponent（对象）")
        raise EidoError(v.errors)
    p = "incidentComponent"
    inc_id = v.s(inc_c, "incidentTrackingIdentifier", p) or ""
    v.s(inc_c, "incidentTypeCommonRegistryText", p)
    code = v.s(inc_c, "incidentTypeInternalCode", p)
    cat_key = next((c.key for c in CATEGORIES.values() if c.code == code), None)
    if code is not None and cat_key is None:
        v.err(f"{p}.incidentTypeInternalCode", f"未知类别编码 {code!r}")
    internal = v.s(inc_c, "incidentTypeInternalText", p) or ""
    subtype = internal.split("/", 1)[1] if "/" in internal else "general"
    prio = inc_c.get("incidentCommonPriorityNumber")
    if not isinstance(prio, int) or isinstance(prio, bool) or not 1 <= prio <= 5:
        v.err(f"{p}.incidentCommonPriorityNumber", f"应为 1–5 的整数，得到 {prio!r}")
        prio = 5
    disposition = ""
    disp = inc_c.get("dispositionComponent") or []
    if isinstance(disp, list) and disp and isinstance(disp[0], dict):
        disposition = str(disp[0].get("dispositionDescriptionText", ""))

    # location
    locs = _by_id(v.lst(doc, "locationComponent"))
    loc_refs = inc_c.get("locationReference") or []
    first_ref = loc_refs[0].get("$ref") if isinstance(loc_refs, list) and loc_refs and isinstance(loc_refs[0], dict) else None
    loc_obj = locs.get(first_ref) if isinstance(first_ref, str) else None
    lon = lat = 0.0
    radius: float | None = None
    address = ""
    if loc_obj is None:
        v.err(f"{p}.locationReference", "必须引用一个 locationComponent")
    else:
        v.s(loc_obj, "locationTypeDescriptionRegistryText", "locationComponent[]")
        by_value = v.s(loc_obj, "locationByValue", "locationComponent[]")
        if by_value is not None:
            try:
                lon, lat, radius, address = pidf.parse(by_value)
            except pidf.PidfError as e:
                v.err("locationComponent[].locationByValue", str(e))

    # extension
    ext: dict[str, Any] = {}
    for i, a in enumerate(v.lst(doc, "additionalDataComponent")):
        if isinstance(a, dict) and a.get("urlPurpose") == EXTENSION_PURPOSE:
            try:
                ext = json.loads(a.get("additionalDataByValue", ""))
                if not isinstance(ext, dict):
                    raise ValueError("不是对象")
            except (ValueError, TypeError) as e:
                v.err(f"additionalDataComponent[{i}].additionalDataByValue", f"扩展数据无效: {e}")
                ext = {}
    created = v.ts(ext["createdAt"], "ext.createdAt") if "createdAt" in ext else None
    if created is None:
        calls_ = v.lst(doc, "callComponent")
        first = calls_[0].get("callStartTimestamp") if calls_ and isinstance(calls_[0], dict) else None
        created = v.ts(first, "callComponent[0].callStartTimestamp") if first else v.ts(doc.get("lastUpdateTimeStamp"), "$.lastUpdateTimeStamp")
    ext_loc = v.obj(ext.get("location"), "ext.location")
    codes: list[int | None] = []
    for key in ("county", "township"):
        c = ext_loc.get(key)
        if c is not None and (not isinstance(c, int) or isinstance(c, bool)):
            v.err(f"ext.location.{key}", f"应为整数区划编码，得到 {c!r}")
            c = None
        codes.append(c)

    # agencies and units
    agencies: list[str] = []
    for i, a in enumerate(v.lst(doc, "agencyComponent")):
        types = a.get("agencyType") if isinstance(a, dict) else None
        if not isinstance(types, list) or not types:
            v.err(f"agencyComponent[{i}].agencyType", "缺少必填字段")
            continue
        agency_key = next((k for k, t in AGENCY_TYPE.items() if t == types[0]), None)
        if agency_key is None:
            v.err(f"agencyComponent[{i}].agencyType", f"无法识别的部门类型 {types[0]!r}")
        else:
            agencies.append(agency_key)
    units_by_agency: dict[str, tuple[str, ...]] = {}
    for i, d in enumerate(v.lst(doc, "dispatchComponent")):
        if not isinstance(d, dict) or not isinstance(d.get("agencyReference"), dict):
            v.err(f"dispatchComponent[{i}].agencyReference", "缺少必填字段")
            continue
        ag = str(d["agencyReference"].get("$ref", "")).removeprefix("agency-")
        units_by_agency[ag] = tuple(
            str(r.get("$ref", "")).removeprefix("unit-")
            for r in v.arr(d.get("emergencyResourceReference"), f"dispatchComponent[{i}].emergencyResourceReference")
            if isinstance(r, dict)
        )
    ext_comps: dict[str, Any] = {
        c["agency"]: c
        for c in v.arr(ext.get("components"), "ext.components")
        if isinstance(c, dict) and isinstance(c.get("agency"), str)
    }
    components = []
    for ag in agencies:
        ec = ext_comps.get(ag, {})
        try:
            st = IncidentStatus(ec.get("status", "dispatched" if units_by_agency.get(ag) else "new"))
        except ValueError:
            v.err(f"ext.components[{ag}].status", f"未知状态 {ec.get('status')!r}")
            st = IncidentStatus.NEW
        released = tuple(str(x) for x in v.arr(ec.get("released"), f"ext.components[{ag}].released"))
        components.append(Component(ag, st, units_by_agency.get(ag, ()), released))

    # calls, caller, notes, links, merges
    calls = tuple(str(c.get("callIdentifier", "")) for c in v.lst(doc, "callComponent") if isinstance(c, dict))
    number = ""
    for cb in v.lst(doc, "callbackComponent"):
        uris = cb.get("callBackInformationUri", []) if isinstance(cb, dict) else []
        if uris and isinstance(uris[0], str):
            number = uris[0].removeprefix("tel:")
    name = ""
    for person in v.lst(doc, "personComponent"):
        if isinstance(person, dict) and "Caller" in (person.get("personIncidentRoleRegistryText") or []):
            name = str(((person.get("ncPersonComponent") or {}).get("nc:PersonName") or {}).get("nc:PersonFullName", ""))
    description = ""
    notes: list[str] = []
    for n in v.lst(doc, "notesComponent"):
        if not isinstance(n, dict) or not isinstance(n.get("noteText"), str):
            v.err("notesComponent[]", "noteText 缺失或不是字符串")
            continue
        if n.get("$id") == "note-description":
            description = n["noteText"]
        else:
            notes.append(n["noteText"])
    related = tuple(str(x.get("linkedIncidentTrackingIdentifier")) for x in v.lst(doc, "linkComponent") if isinstance(x, dict))
    merged_into = None
    merged_from: list[str] = []
    for m in v.lst(doc, "mergeComponent"):
        if not isinstance(m, dict):
            continue
        other = str(m.get("mergedIncidentTrackingIdentifier", ""))
        if m.get("mergeRole") == "Subsumed":
            merged_into = other
        elif m.get("mergeRole") == "Surviving":
            merged_from.append(other)
        else:
            v.err("mergeComponent[].mergeRole", f"应为 Subsumed 或 Surviving，得到 {m.get('mergeRole')!r}")
    timeline = []
    for i, item in enumerate(v.arr(ext.get("timeline"), "ext.timeline")):
        if not isinstance(item, dict):
            v.err(f"ext.timeline[{i}]", "时间线条目无效")
            continue
        at = v.ts(item.get("at"), f"ext.timeline[{i}].at")
        if at is None or not isinstance(item.get("seq"), int):
            v.err(f"ext.timeline[{i}]", "时间线条目无效")
            continue
        timeline.append(TimelineEntry(item["seq"], at, str(item.get("actor", "")), str(item.get("action", "")),
                                      {str(k): str(x) for k, x in v.obj(item.get("detail"), f"ext.timeline[{i}].detail").items()}))

    training = ext.get("training", False)
    if not isinstance(training, bool):
        v.err("ext.training", f"应为 true/false，得到 {training!r}")
    if v.errors or cat_key is None or created is None:
        raise EidoError(v.errors or ["incidentComponent: 缺少类别或时间"])
    try:
        check_subtype(cat_key, subtype)
        location = Location(lon, lat, radius, str(ext_loc.get("source", "eido")), address, codes[0], codes[1])
        return Incident(
            id=inc_id, category=cat_key, subtype=subtype, priority=prio, location=location, created_at=created,
            description=description, caller=Caller(number, name), components=tuple(components), calls=calls,
            notes=tuple(notes), related=related, merged_into=merged_into, merged_from=tuple(merged_from),
            disposition=disposition, training=bool(training), timeline=tuple(timeline),
        )
    except DispatchError as e:
        raise EidoError([f"incidentComponent: {e}"]) from None
