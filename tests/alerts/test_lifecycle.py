"""The pure warning lifecycle: transitions, refusals with a reason, references over many updates."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from alerts import lifecycle as lc
from alerts.lifecycle import Area, Content, MsgType, Refused, State

BJ = timezone(timedelta(hours=8))
T0 = datetime(2026, 6, 1, 8, 0, 0, tzinfo=BJ)
KNOWN = {"445302", "445381", "445381101"}
SQUARE = ((112.0, 22.9), (112.1, 22.9), (112.1, 23.0), (112.0, 23.0), (112.0, 22.9))


def content(**kw: object) -> Content:
    base = Content(event="暴雨", headline="云浮市气象台发布暴雨橙色预警", description="未来6小时将出现暴雨。",
                   instruction="注意防范。", severity="Severe", urgency="Expected", certainty="Likely",
                   areas=(Area("罗定市", polygons=(SQUARE,), adcodes=("445381",)),), expires=T0 + timedelta(hours=12))
    return replace(base, **kw)  # type: ignore[arg-type]


def active(at: datetime = T0) -> lc.Warning:
    w = lc.draft("w1", "445300000000000", content(), "disp", "dispatcher", at, KNOWN)
    w = lc.submit(w, "disp", "dispatcher", at)
    w = lc.approve(w, "lead", "leader", at + timedelta(minutes=1))
    w, msg = lc.send(w, "445300000000000_20260601080100_0", at + timedelta(minutes=1))
    assert msg.msg_type == MsgType.ALERT and msg.references == ""
    return w


def test_full_lifecycle_and_references_over_several_updates() -> None:
    w = active()
    assert w.state == State.ACTIVE
    sent_refs = [w.messages[0].reference]
    for n in range(1, 4):
        now = T0 + timedelta(minutes=10 * n)
        w = lc.propose_update(w, content(headline=f"更新 {n}"), "disp", "dispatcher", now, KNOWN)
        assert w.state == State.PENDING and w.content.headline != f"更新 {n}"  # not in force before sending
        w = lc.approve(w, "lead", "chair", now)
        w, msg = lc.send(w, f"445300000000000_2026060108{n}000_0", now)
        assert msg.msg_type == MsgType.UPDATE
        assert msg.references == " ".join(sent_refs)  # every earlier message, oldest first
        assert w.content.headline == f"更新 {n}"
        sent_refs.append(msg.reference)
    w = lc.propose_cancel(w, "disp", "dispatcher", T0 + timedelta(hours=1), "雨势减弱")
    w = lc.approve(w, "lead", "leader", T0 + timedelta(hours=1))
    w, msg = lc.send(w, "445300000000000_20260601090000_0", T0 + timedelta(hours=1))
    assert msg.msg_type == MsgType.CANCEL and msg.references == " ".join(sent_refs)
    assert len(msg.references.split(" ")) == 4
    assert w.state == State.CANCELLED
    assert w.messages[0].reference == "445300000000000,445300000000000_20260601080100_0,2026-06-01T08:01:00+08:00"
    with pytest.raises(Refused) as e:
        lc.propose_update(w, content(), "disp", "dispatcher", T0 + timedelta(hours=2), KNOWN)
    assert e.value.field == "state" and "cancelled" in e.value.reason


def test_nothing_sent_unapproved() -> None:
    w = lc.draft("w1", "S", content(), "disp", "dispatcher", T0, KNOWN)
    with pytest.raises(Refused, match="cannot send a warning that is draft"):
        lc.send(w, "id1", T0)
    w = lc.submit(w, "disp", "dispatcher", T0)
    with pytest.raises(Refused, match="cannot send a warning that is pending"):
        lc.send(w, "id1", T0)
    # a state forged to approved without a recorded approval step is refused too
    with pytest.raises(Refused, match="no recorded approval"):
        lc.send(replace(w, state=State.APPROVED), "id1", T0)


@pytest.mark.parametrize("role", ["dispatcher", "operator", "viewer", "admin", "calltaker"])
def test_only_leader_or_chair_approves(role: str) -> None:
    w = lc.submit(lc.draft("w1", "S", content(), "disp", "dispatcher", T0, KNOWN), "disp", "dispatcher", T0)
    with pytest.raises(Refused) as e:
        lc.approve(w, "x", role, T0)
    assert e.value.field == "role"
    with pytest.raises(Refused):
        lc.reject(w, "x", role, T0, "no")


def test_leader_drafting_still_records_approval() -> None:
    w = lc.draft("w1", "S", content(), "lead", "leader", T0, KNOWN)
    w = lc.submit(w, "lead", "leader", T0)
    w = lc.approve(w, "lead", "leader", T0)
    w, _ = lc.send(w, "id1", T0)
    assert [s.action for s in w.steps] == ["draft", "submit", "approve_alert", "send_alert"]


def test_reject_then_edit_then_approve() -> None:
    w = lc.submit(lc.draft("w1", "S", content(), "disp", "dispatcher", T0, KNOWN), "disp", "dispatcher", T0)
    with pytest.raises(Refused) as e:
        lc.reject(w, "lead", "leader", T0, "")
    assert e.value.field == "reason"
    w = lc.reject(w, "lead", "leader", T0, "范围太大")
    assert w.state == State.REJECTED and w.reject_reason == "范围太大"
    with pytest.raises(Refused, match="cannot submit a warning that is rejected"):
        lc.submit(w, "disp", "dispatcher", T0)
    w = lc.edit(w, content(headline="缩小范围"), "disp", "dispatcher", T0, KNOWN)
    assert w.state == State.DRAFT
    w = lc.approve(lc.submit(w, "disp", "dispatcher", T0), "lead", "leader", T0)
    assert w.state == State.APPROVED


def test_rejected_update_leaves_warning_active() -> None:
    w = active()
    w = lc.propose_update(w, content(headline="新"), "disp", "dispatcher", T0 + timedelta(minutes=5), KNOWN)
    w = lc.reject(w, "lead", "leader", T0 + timedelta(minutes=6), "不需要")
    assert w.state == State.ACTIVE and w.content.headline != "新" and w.proposed is None
    assert len(w.messages) == 1


def test_expire() -> None:
    w = active()
    with pytest.raises(Refused) as e:
        lc.expire(w, T0 + timedelta(hours=1))
    assert e.value.field == "expires"
    assert not lc.is_due_to_expire(w, T0 + timedelta(hours=1))
    assert lc.is_due_to_expire(w, T0 + timedelta(hours=12))
    w = lc.expire(w, T0 + timedelta(hours=12))
    assert w.state == State.EXPIRED
    with pytest.raises(Refused):
        lc.expire(lc.draft("w2", "S", content(), "d", "dispatcher", T0, KNOWN), T0 + timedelta(days=1))


def test_identifier_reuse_refused() -> None:
    w = active()
    w = lc.approve(lc.propose_update(w, content(), "d", "dispatcher", T0, KNOWN), "l", "leader", T0 + timedelta(minutes=2))
    with pytest.raises(Refused) as e:
        lc.send(w, w.messages[0].identifier, T0 + timedelta(minutes=2))
    assert e.value.field == "identifier"


@pytest.mark.parametrize(("change", "field"), [
    ({"headline": ""}, "headline"),
    ({"headline": "长" * 141}, "headline"),
    ({"description": "x" * 2001}, "description"),
    ({"severity": "Huge"}, "severity"),
    ({"urgency": "Now"}, "urgency"),
    ({"certainty": "Sure"}, "certainty"),
    ({"expires": T0 - timedelta(minutes=1)}, "expires"),
    ({"expires": T0 + timedelta(days=31)}, "expires"),
    ({"expires": datetime(2026, 6, 2)}, "expires"),
    ({"areas": ()}, "areas"),
    ({"areas": (Area("x"),)}, "areas[0]"),
    ({"areas": (Area("x", polygons=(SQUARE[:-1],)),)}, "areas[0].polygons[0]"),
    ({"areas": (Area("x", polygons=(SQUARE[:2] + (SQUARE[0],),)),)}, "areas[0].polygons[0]"),
    ({"areas": (Area("x", polygons=(((200.0, 1.0),) * 5,)),)}, "areas[0].polygons[0]"),
    ({"areas": (Area("x", circles=((112.0, 23.0, 0.0),)),)}, "areas[0].circles[0]"),
    ({"areas": (Area("x", circles=((112.0, float("nan"), 5.0),)),)}, "areas[0].circles[0]"),
    ({"areas": (Area("x", adcodes=("999999",)),)}, "areas[0].adcodes"),
])
def test_bad_content_refused_with_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(Refused) as e:
        lc.draft("w1", "S", content(**change), "d", "dispatcher", T0, KNOWN)
    assert e.value.field == field, e.value


def test_viewer_cannot_draft_and_bad_sender() -> None:
    with pytest.raises(Refused) as e:
        lc.draft("w1", "S", content(), "v", "viewer", T0, KNOWN)
    assert e.value.field == "role"
    with pytest.raises(Refused) as e:
        lc.draft("w1", "a,b", content(), "d", "dispatcher", T0, KNOWN)
    assert e.value.field == "sender"


def test_pending_alert_that_expired_cannot_be_approved() -> None:
    w = lc.submit(lc.draft("w1", "S", content(), "d", "dispatcher", T0, KNOWN), "d", "dispatcher", T0)
    with pytest.raises(Refused) as e:
        lc.approve(w, "l", "leader", T0 + timedelta(hours=13))
    assert e.value.field == "expires"


def test_text_xml_cannot_carry_is_refused() -> None:
    with pytest.raises(Refused) as e:
        lc.draft("w1", "S", content(headline="暴雨\x01预警"), "d", "dispatcher", T0, KNOWN)
    assert e.value.field == "headline" and "U+0001" in e.value.reason
    with pytest.raises(Refused) as e:
        lc.draft("w1", "S", content(areas=(Area("罗定\x0b", adcodes=("445381",)),)), "d", "dispatcher", T0, KNOWN)
    assert e.value.field == "areas[0].desc"
