"""The life of one public warning (预警), from draft to cancelled or expired: a pure state machine.

Nothing here touches a clock, a database or the network: every transition takes the time
(``now``, timezone-aware) and the acting person as arguments and returns a new ``Warning`` (the
value is frozen), or raises ``Refused`` naming the field and the reason. The service
(``alerts.service``) stores the result, audits it and distributes the CAP messages it carries.

States and the only transitions allowed::

    draft --submit--> pending --approve--> approved --send--> active --expire--> expired
      ^                  |                                    |   ^
      +---edit-- rejected <--reject--                         |   | (update approved and sent,
                                                              |   |  or update rejected)
                                       propose_update / propose_cancel --> pending
                                                     approved Cancel --send--> cancelled

Rules:

* **Nothing is sent unapproved.** ``send`` needs state ``approved``; only ``approve`` leads there,
  and ``approve`` is recorded (who, role, when) in the warning's ``steps``. Update and Cancel go
  through the same approval as the first Alert.
* **Who approves.** ``approve`` and ``reject`` need a role in ``APPROVER_ROLES`` (the leader on
  duty: ``leader``, or the conference ``chair``). Drafting needs a role in ``DRAFTER_ROLES``. A
  leader may draft and also approve their own draft, but both steps are recorded separately.
* **Content.** Event/headline/description/instruction lengths are bounded (``LIMITS``) and carry
  only characters XML 1.0 allows (a CAP document must be well-formed); severity,
  urgency and certainty are CAP 1.2 values; at least one area; polygons are closed rings of 4..1000
  WGS 84 points; circles have 0 < radius <= 500 km; admin codes (GB/T 2260) must be ones the site
  plan knows (``known_adcodes``); ``expires`` is after ``now`` and at most ``MAX_VALIDITY`` ahead.
* **Messages and references** (CAP 1.2 §3.2.1 ``references``; GB/T 35965.1 keeps it): the first
  message is ``Alert``; each later message (``Update``, ``Cancel``) carries ``references`` = the
  space-separated ``sender,identifier,sent`` of *every* earlier message of this warning, oldest
  first. Identifiers are given by the caller and must not repeat within a warning.
* **Update** replaces the content (a new expiry is checked again); a rejected Update leaves the
  active warning as it was. **Cancel** ends the warning with a Cancel message. **Expire** needs
  ``now >= expires`` and sends nothing (CAP receivers expire on their own).
* Closed states (``rejected`` is not closed: it can be edited back into a draft; ``cancelled``
  and ``expired`` are) refuse everything.
"""
from __future__ import annotations

import enum
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from dispatch.exchange.cap import CERTAINTY, SEVERITY, URGENCY

APPROVER_ROLES = frozenset({"leader", "chair"})
DRAFTER_ROLES = frozenset({"dispatcher", "leader", "chair", "admin"})
LIMITS = {"event": 60, "headline": 140, "description": 2000, "instruction": 1000, "reason": 500}
MAX_AREAS = 50
MAX_POLYGON_POINTS = 1000
MAX_RADIUS_KM = 500.0
MAX_VALIDITY = timedelta(days=30)


class State(enum.StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


CLOSED = frozenset({State.CANCELLED, State.EXPIRED})


class MsgType(enum.StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"


class Refused(ValueError):
    """A transition or content the rules do not allow; ``field`` names what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class Area:
    """One warning area: a description plus polygons (rings of (lon, lat)), circles
    ((lon, lat, radius_km)) and GB/T 2260 administrative codes (county or township)."""

    desc: str
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    circles: tuple[tuple[float, float, float], ...] = ()
    adcodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Content:
    event: str
    headline: str
    description: str
    instruction: str
    severity: str
    urgency: str
    certainty: str
    areas: tuple[Area, ...]
    expires: datetime
    category: str = "Met"


@dataclass(frozen=True)
class MessageRef:
    """One sent CAP message of this warning."""

    msg_type: MsgType
    sender: str
    identifier: str
    sent: datetime
    references: str

    @property
    def reference(self) -> str:
        """``sender,identifier,sent`` as CAP 1.2 §3.2.1 wants it in a later message's references."""
        return f"{self.sender},{self.identifier},{self.sent.replace(microsecond=0).isoformat()}"


@dataclass(frozen=True)
class Step:
    at: datetime
    actor: str
    role: str
    action: str
    note: str = ""


@dataclass(frozen=True)
class Warning:
    id: str
    sender: str
    state: State
    content: Content
    drafted_by: str
    proposal: MsgType = MsgType.ALERT  # what the pending/approved step will send
    proposed: Content | None = None  # new content of a pending Update
    messages: tuple[MessageRef, ...] = ()
    steps: tuple[Step, ...] = field(default_factory=tuple)
    reject_reason: str = ""

    @property
    def sent_once(self) -> bool:
        return bool(self.messages)

    def references(self) -> str:
        return " ".join(m.reference for m in self.messages)


# ---------------------------------------------------------------- content checks


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Refused(name, "time must carry a timezone")


# What XML 1.0 cannot carry (control characters but tab/LF/CR, surrogates, U+FFFE/U+FFFF): a CAP
# document with one is not well-formed, so such text is refused at the draft, not at the send.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _check_chars(name: str, value: str) -> None:
    bad = _NOT_XML.search(value)
    if bad:
        raise Refused(name, f"contains a character CAP (XML 1.0) cannot carry: U+{ord(bad.group()):04X}")


def _check_text(name: str, value: str, required: bool = True) -> None:
    if required and not value.strip():
        raise Refused(name, "required")
    if len(value) > LIMITS[name]:
        raise Refused(name, f"longer than {LIMITS[name]} characters")
    _check_chars(name, value)


def _check_point(lon: float, lat: float, name: str) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)) or not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise Refused(name, f"point ({lon}, {lat}) outside WGS 84 ranges")


def check_content(c: Content, now: datetime, known_adcodes: Collection[str]) -> None:
    """Raise ``Refused`` (field named) unless ``c`` satisfies every content rule."""
    _aware(now, "now")
    for name in ("event", "headline", "description"):
        _check_text(name, getattr(c, name))
    _check_text("instruction", c.instruction, required=False)
    if c.severity not in SEVERITY:
        raise Refused("severity", f"one of {', '.join(SEVERITY)}")
    if c.urgency not in URGENCY:
        raise Refused("urgency", f"one of {', '.join(URGENCY)}")
    if c.certainty not in CERTAINTY:
        raise Refused("certainty", f"one of {', '.join(CERTAINTY)}")
    _aware(c.expires, "expires")
    if c.expires <= now:
        raise Refused("expires", "must be in the future")
    if c.expires - now > MAX_VALIDITY:
        raise Refused("expires", f"at most {MAX_VALIDITY.days} days ahead")
    if not c.areas:
        raise Refused("areas", "at least one area")
    if len(c.areas) > MAX_AREAS:
        raise Refused("areas", f"at most {MAX_AREAS} areas")
    for i, a in enumerate(c.areas):
        where = f"areas[{i}]"
        if not a.desc.strip() or len(a.desc) > 200:
            raise Refused(f"{where}.desc", "required, at most 200 characters")
        _check_chars(f"{where}.desc", a.desc)
        if not (a.polygons or a.circles or a.adcodes):
            raise Refused(where, "needs a polygon, a circle or an administrative code")
        for j, ring in enumerate(a.polygons):
            pname = f"{where}.polygons[{j}]"
            if not 4 <= len(ring) <= MAX_POLYGON_POINTS:
                raise Refused(pname, f"a closed ring of 4..{MAX_POLYGON_POINTS} points")
            if ring[0] != ring[-1]:
                raise Refused(pname, "first and last point must be equal (closed ring)")
            for lon, lat in ring:
                _check_point(lon, lat, pname)
        for j, (lon, lat, r) in enumerate(a.circles):
            cname = f"{where}.circles[{j}]"
            _check_point(lon, lat, cname)
            if not (math.isfinite(r) and 0 < r <= MAX_RADIUS_KM):
                raise Refused(cname, f"radius must be in (0, {MAX_RADIUS_KM:g}] km")
        for code in a.adcodes:
            if code not in known_adcodes:
                raise Refused(f"{where}.adcodes", f"unknown administrative code {code!r}")


# ---------------------------------------------------------------- transitions


def _need(w: Warning, *states: State, action: str) -> None:
    if w.state not in states:
        allowed = " or ".join(s.value for s in states)
        raise Refused("state", f"cannot {action} a warning that is {w.state.value} (needs {allowed})")


def _step(w: Warning, now: datetime, actor: str, role: str, action: str, note: str = "") -> tuple[Step, ...]:
    _aware(now, "now")
    return w.steps + (Step(now, actor, role, action, note),)


def draft(warning_id: str, sender: str, content: Content, actor: str, role: str, now: datetime,
          known_adcodes: Collection[str]) -> Warning:
    if role not in DRAFTER_ROLES:
        raise Refused("role", f"role {role!r} may not draft warnings")
    if not sender or any(ch in sender for ch in " ,<&"):
        raise Refused("sender", "required, without spaces, commas, '<' or '&'")
    check_content(content, now, known_adcodes)
    w = Warning(warning_id, sender, State.DRAFT, content, actor)
    return replace(w, steps=_step(w, now, actor, role, "draft"))


def edit(w: Warning, content: Content, actor: str, role: str, now: datetime,
         known_adcodes: Collection[str]) -> Warning:
    _need(w, State.DRAFT, State.REJECTED, action="edit")
    if role not in DRAFTER_ROLES:
        raise Refused("role", f"role {role!r} may not edit warnings")
    check_content(content, now, known_adcodes)
    return replace(w, state=State.DRAFT, content=content, reject_reason="",
                   steps=_step(w, now, actor, role, "edit"))


def submit(w: Warning, actor: str, role: str, now: datetime) -> Warning:
    _need(w, State.DRAFT, action="submit")
    if role not in DRAFTER_ROLES:
        raise Refused("role", f"role {role!r} may not submit warnings")
    if w.content.expires <= now:
        raise Refused("expires", "the draft has expired; edit it first")
    return replace(w, state=State.PENDING, proposal=MsgType.ALERT, steps=_step(w, now, actor, role, "submit"))


def propose_update(w: Warning, content: Content, actor: str, role: str, now: datetime,
                   known_adcodes: Collection[str]) -> Warning:
    _need(w, State.ACTIVE, action="update")
    if role not in DRAFTER_ROLES:
        raise Refused("role", f"role {role!r} may not propose updates")
    check_content(content, now, known_adcodes)
    return replace(w, state=State.PENDING, proposal=MsgType.UPDATE, proposed=content,
                   steps=_step(w, now, actor, role, "propose_update"))


def propose_cancel(w: Warning, actor: str, role: str, now: datetime, reason: str = "") -> Warning:
    _need(w, State.ACTIVE, action="cancel")
    if role not in DRAFTER_ROLES:
        raise Refused("role", f"role {role!r} may not propose a cancel")
    _check_text("reason", reason, required=False)
    return replace(w, state=State.PENDING, proposal=MsgType.CANCEL, proposed=None,
                   steps=_step(w, now, actor, role, "propose_cancel", reason))


def approve(w: Warning, actor: str, role: str, now: datetime) -> Warning:
    _need(w, State.PENDING, action="approve")
    if role not in APPROVER_ROLES:
        raise Refused("role", f"only the leader on duty ({', '.join(sorted(APPROVER_ROLES))}) approves; not {role!r}")
    expires = (w.proposed or w.content).expires
    if w.proposal != MsgType.CANCEL and expires <= now:
        raise Refused("expires", "expired while pending; it cannot be approved")
    return replace(w, state=State.APPROVED, steps=_step(w, now, actor, role, f"approve_{w.proposal.value.lower()}"))


def reject(w: Warning, actor: str, role: str, now: datetime, reason: str) -> Warning:
    _need(w, State.PENDING, action="reject")
    if role not in APPROVER_ROLES:
        raise Refused("role", f"only the leader on duty ({', '.join(sorted(APPROVER_ROLES))}) rejects; not {role!r}")
    _check_text("reason", reason)
    steps = _step(w, now, actor, role, f"reject_{w.proposal.value.lower()}", reason)
    if w.proposal == MsgType.ALERT:
        return replace(w, state=State.REJECTED, reject_reason=reason, steps=steps)
    # a rejected Update/Cancel leaves the warning active, as it was
    return replace(w, state=State.ACTIVE, proposal=MsgType.ALERT, proposed=None, reject_reason=reason, steps=steps)


def send(w: Warning, identifier: str, now: datetime) -> tuple[Warning, MessageRef]:
    """The approved message goes out: returns the warning after it and the message to build."""
    _need(w, State.APPROVED, action="send")
    if not w.steps or not w.steps[-1].action.startswith("approve_"):
        raise Refused("state", "no recorded approval for this message")
    _aware(now, "now")
    if not identifier or any(ch in identifier for ch in " ,<&"):
        raise Refused("identifier", "required, without spaces, commas, '<' or '&'")
    if any(m.identifier == identifier for m in w.messages):
        raise Refused("identifier", f"{identifier!r} was already used by this warning")
    if w.messages and now.replace(microsecond=0) < w.messages[-1].sent:
        raise Refused("now", "earlier than the previous message")
    msg = MessageRef(w.proposal, w.sender, identifier, now.replace(microsecond=0), w.references())
    steps = w.steps + (Step(now, "system", "system", f"send_{w.proposal.value.lower()}", identifier),)
    if w.proposal == MsgType.CANCEL:
        return replace(w, state=State.CANCELLED, messages=w.messages + (msg,), steps=steps), msg
    content = w.proposed or w.content
    return replace(w, state=State.ACTIVE, content=content, proposal=MsgType.ALERT, proposed=None,
                   messages=w.messages + (msg,), steps=steps), msg


def expire(w: Warning, now: datetime) -> Warning:
    """An active warning (or one with a pending/approved Update or Cancel) whose expiry passed."""
    if w.state in CLOSED or not w.sent_once:
        raise Refused("state", f"cannot expire a warning that is {w.state.value}")
    _aware(now, "now")
    if now < w.content.expires:
        raise Refused("expires", "not yet expired")
    return replace(w, state=State.EXPIRED, proposed=None,
                   steps=w.steps + (Step(now, "system", "system", "expire"),))


def is_due_to_expire(w: Warning, now: datetime) -> bool:
    return w.sent_once and w.state not in CLOSED and now >= w.content.expires
