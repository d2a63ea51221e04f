"""What the SMS console relies on, with real Kannel + fakesmsc: a recipient that failed while the
gateway was down is retried by hand and delivered once it is back (attempts start over, the retry is
audited); the times it was handed to Kannel and reported are kept; the gateway's state follows Kannel
(down, then up) and counts what waits; the filters by status and source."""
from __future__ import annotations

from pathlib import Path

from core.runtime import CoreServices
from tests.conftest import make_settings
from tests.sms.conftest import FixedDuty, require_kannel, wait_for


async def test_failed_then_retried_by_hand_and_delivered(fresh_db_url: str, tmp_path: Path) -> None:
    require_kannel()
    from sms import capability

    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path, sms={
        "enabled": True, "retry_max": 0}), seed=False)
    cap = await capability.start(core, FixedDuty({}))
    assert cap is not None
    try:
        up = await cap.gateway()
        assert up["up"] is True and str(up["smsc"]).startswith("online"), up
        await cap.kannel.stop()
        down = await cap.gateway()
        assert down["up"] is False, down
        view = await cap.service.send("重发演练", actor="dispatcher", numbers=["13800007101"])

        async def failed() -> bool:
            return (await cap.service.statuses(view["id"])) == {"13800007101": "failed"}

        await wait_for(failed, 15, "the recipient failed (no retries allowed, Kannel down)")
        r = (await cap.service.message(view["id"]))["recipients"][0]
        assert "unreachable" in r["error"] and r["submitted_at"] is None and r["reported_at"] is None
        assert [m["id"] for m in await cap.service.messages(status="failed")] == [view["id"]]
        assert await cap.service.messages(status="delivered") == []
        assert [m["source"] for m in await cap.service.messages(source="manual")] == ["manual"]
        assert await cap.service.messages(source="plan") == []

        await cap.kannel.start()
        assert await cap.service.retry(view["id"], "dispatcher", "127.0.0.1") == 1

        async def delivered() -> bool:
            return (await cap.service.statuses(view["id"])) == {"13800007101": "delivered"}

        await wait_for(delivered, 30, "delivery after the retry")
        r = (await cap.service.message(view["id"]))["recipients"][0]
        assert r["attempts"] == 1 and r["error"] == "" and r["submitted_at"] and r["reported_at"]
        # no order between the two: Kannel may report delivery before its answer to our submission arrives
        assert await cap.service.retry(view["id"], "dispatcher") == 0  # nothing left to retry
        audit = await core.db.fetch("SELECT detail FROM audit_log WHERE action = 'sms.retry' ORDER BY id")
        assert len(audit) == 2
        back = await cap.gateway()
        assert back["up"] is True and back["waiting"] == 0, back
    finally:
        await cap.stop()
        await core.stop()
