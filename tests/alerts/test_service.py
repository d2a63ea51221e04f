"""The warning service on a real PostgreSQL: stored versions, CAP XML, audit, bus, refusals change nothing."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from alerts import capability
from alerts.channels import rooms_for_areas
from alerts.lifecycle import Area, Content, Refused
from core.runtime import CoreServices
from dispatch.exchange.cap import BEIJING, validate_cap

SQUARE = ((111.5, 22.6), (111.7, 22.6), (111.7, 22.8), (111.5, 22.8), (111.5, 22.6))


def content(**kw: object) -> Content:
    c = Content(event="暴雨", headline="罗定市暴雨橙色预警", description="未来6小时罗定市将出现暴雨。", instruction="注意防范。",
                severity="Severe", urgency="Expected", certainty="Likely",
                areas=(Area("罗定市", polygons=(SQUARE,), adcodes=("445381",)),),
                expires=datetime.now(UTC) + timedelta(hours=6))
    return Content(**{**c.__dict__, **kw})


async def counts(core: CoreServices) -> tuple[int, int, int]:
    return (await core.db.fetchval("SELECT count(*) FROM warnings"),
            await core.db.fetchval("SELECT count(*) FROM warning_messages"),
            await core.db.fetchval("SELECT count(*) FROM warning_deliveries"))


async def test_alert_update_cancel_stored_with_references(services: CoreServices) -> None:
    cap = await capability.start(services, sweep_every=0)
    svc = cap.service
    try:
        with services.bus.subscribe("warning.*") as sub:
            w = await svc.draft(content(), "dispatcher", "dispatcher", "127.0.0.1")
            assert w["state"] == "draft"
            await svc.submit(w["id"], "dispatcher", "dispatcher")
            assert await counts(services) == (1, 0, 0)  # nothing sent before approval
            with pytest.raises(Refused) as e:
                await svc.approve(w["id"], "dispatcher", "dispatcher")
            assert e.value.field == "role"
            assert (await svc.get(w["id"])).state == "pending"
            assert await counts(services) == (1, 0, 0)
            a = await svc.approve(w["id"], "leader", "leader")
            assert a["state"] == "active"
            await svc.propose_update(w["id"], content(headline="罗定市暴雨红色预警", severity="Extreme"),
                                     "dispatcher", "dispatcher")
            await svc.approve(w["id"], "leader", "chair")
            await svc.propose_cancel(w["id"], "dispatcher", "dispatcher", "雨势减弱")
            c = await svc.approve(w["id"], "leader", "leader")
            assert c["state"] == "cancelled"
            await svc.drain()
            topics = []
            while True:
                try:
                    topics.append((await asyncio.wait_for(sub.get(), 0.5)).topic)
                except TimeoutError:
                    break
        assert "warning.approve_alert" in topics and "warning.send_cancel" in topics
        msgs = await svc.messages(w["id"])
        assert [m["msg_type"] for m in msgs] == ["Alert", "Update", "Cancel"]
        refs = [f"{svc.sender},{m['identifier']},{datetime.fromisoformat(m['sent']).astimezone(BEIJING).isoformat()}"
                for m in msgs]
        assert msgs[0]["references"] == ""
        assert msgs[1]["references"] == refs[0]
        assert msgs[2]["references"] == " ".join(refs[:2])
        for m in msgs:
            xml = await svc.xml(m["identifier"])
            assert xml is not None and validate_cap(xml) == []
            assert f"<msgType>{m['msg_type']}</msgType>" in xml
        assert "<severity>Extreme</severity>" in (await svc.xml(msgs[1]["identifier"]) or "")
        deliveries = await svc.deliveries(w["id"])
        assert [(d["channel"], d["status"]) for d in deliveries] == [("log_only", "logged")] * 3
        audit = await services.db.fetch("SELECT actor, action, outcome FROM audit_log WHERE target = $1 ORDER BY id",
                                        w["id"])
        actions = [(r["actor"], r["action"], r["outcome"]) for r in audit]
        assert ("dispatcher", "warning.approve", "denied") in actions
        assert ("leader", "warning.approve_alert", "ok") in actions
        assert actions.index(("leader", "warning.approve_alert", "ok")) < actions.index(("leader", "warning.send_alert", "ok"))
    finally:
        await cap.stop()


@pytest.mark.parametrize(("change", "field"), [
    ({"areas": (Area("x", adcodes=("999999",)),)}, "areas[0].adcodes"),
    ({"expires": datetime.now(UTC) - timedelta(minutes=5)}, "expires"),
    ({"description": "雨" * 5000}, "description"),
])
async def test_bad_draft_refused_and_nothing_stored(services: CoreServices, change: dict[str, object], field: str) -> None:
    cap = await capability.start(services, sweep_every=0)
    try:
        with pytest.raises(Refused) as e:
            await cap.service.draft(content(**change), "dispatcher", "dispatcher")
        assert e.value.field == field
        assert await counts(services) == (0, 0, 0)
        row = await services.db.fetchrow("SELECT outcome, detail FROM audit_log WHERE action = 'warning.draft'")
        assert row is not None and row["outcome"] == "denied" and row["detail"]["field"] == field
    finally:
        await cap.stop()


async def test_expiry_sweep(services: CoreServices) -> None:
    now = [datetime.now(UTC)]
    cap = await capability.start(services, sweep_every=0)
    svc = cap.service
    svc.clock = lambda: now[0]
    try:
        w = await svc.draft(content(expires=now[0] + timedelta(hours=1)), "d", "dispatcher")
        await svc.submit(w["id"], "d", "dispatcher")
        await svc.approve(w["id"], "l", "leader")
        assert await svc.expire_due() == []
        assert [a["id"] for a in await svc.active()] == [w["id"]]
        now[0] += timedelta(hours=1, seconds=1)
        assert await svc.expire_due() == [w["id"]]
        assert await svc.active() == []
        assert (await svc.get(w["id"])).state == "expired"
        await svc.drain()
        assert await services.db.fetchval("SELECT count(*) FROM warning_messages") == 1  # expiry sends no CAP
        audit = await services.db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'warning.expire'")
        assert audit == 1
    finally:
        await cap.stop()


def test_rooms_for_areas() -> None:
    rooms = {"city": "445300", "luoding": "445381", "luoding-t1": "445381-01", "yuncheng": "445302"}
    tc = {"445381-01": "445381"}
    assert rooms_for_areas(["445381"], rooms, tc, "445300") == ["luoding", "luoding-t1"]
    assert rooms_for_areas(["445381-01"], rooms, tc, "445300") == ["luoding-t1"]
    assert rooms_for_areas(["445300"], rooms, tc, "445300") == sorted(rooms)
    assert rooms_for_areas([], rooms, tc, "445300") == []
