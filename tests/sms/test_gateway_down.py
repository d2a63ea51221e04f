"""Kannel down: the message stays queued (pending, with the error) and is retried with backoff;
once Kannel is back it is delivered. Nothing is lost."""
from __future__ import annotations

from pathlib import Path

from core.runtime import CoreServices
from tests.conftest import make_settings
from tests.sms.conftest import FixedDuty, operator_lines, received_parts, require_kannel, wait_for


async def test_queued_while_kannel_is_down_then_delivered(fresh_db_url: str, tmp_path: Path) -> None:
    require_kannel()
    from sms import capability

    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path, sms={
        "enabled": True, "retry_base_seconds": 0.5, "retry_max": 50}), seed=False)
    cap = await capability.start(core, FixedDuty({}))
    assert cap is not None
    try:
        await cap.kannel.stop()
        view = await cap.service.send("Gateway drill", actor="dispatcher", numbers=["13800007001"])

        async def retried() -> bool:
            m = await cap.service.message(view["id"])
            r = m["recipients"][0]
            return r["status"] == "queued" and r["attempts"] >= 2 and "unreachable" in r["error"]

        await wait_for(retried, 15, "a queued, retried recipient with the error")
        await cap.kannel.start()

        async def delivered() -> bool:
            return (await cap.service.statuses(view["id"])) == {"13800007001": "delivered"}

        await wait_for(delivered, 30, "delivery once Kannel is back")
        assert "13800007001" in {p[1] for p in received_parts(operator_lines(cap.kannel))}
    finally:
        await cap.stop()
        await core.stop()
