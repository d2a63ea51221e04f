"""SIP dial-in asks the one admission policy (issue 13), with PJSIP (pjsua2) as the caller.

As before: a conference without guests challenges (401) and lets digest accounts in. New: the
room of an emergency call refuses every SIP caller (403), and the IVR (``sip:ivr@host``, keying the
conference id) no longer opens a conference without guests or an emergency-call room.
"""
from __future__ import annotations

import types
from pathlib import Path

from core.runtime import CoreServices
from mcu.call_rooms import CallRoom, CallRooms
from mcu.capability import McuCapability
from mcu.conferences import ConferenceService
from tests.sip_gateway.conference_helpers import joined, start_bridge
from tests.sip_gateway.test_sip_pjsua import run_peer

ACCOUNTS = {"zhangsan": "Zs-2024-secret!"}


async def test_sip_closed_and_emergency_rooms(services: CoreServices, conferences: ConferenceService,
                                              tmp_path: Path) -> None:
    bridge = await start_bridge(services, conferences, accounts=ACCOUNTS)
    port = bridge.endpoint.config.port
    closed = await conferences.create(name="闭门会商", actor="chair")  # no guests, no PIN
    conf = await conferences.start_conference(closed.id, "chair")
    caller = CallRoom(types.SimpleNamespace(send_audio=lambda pcm: None))
    room = await CallRooms(McuCapability(conferences)).open("call-110@trunk", caller, "报警人")
    emergency = room.conference
    account = {"user": "zhangsan", "password": ACCOUNTS["zhangsan"]}

    async def call(target: str, name: str, creds: dict[str, str] | None = None, digits: str = "") -> dict[str, object]:
        config: dict[str, object] = {"user": "visitor", "target": f"sip:{target}@127.0.0.1:{port}",
                                     "wav": str(tmp_path / f"{name}.wav"), "talk_seconds": 4.0,
                                     **(creds or {})}
        if digits:
            config.update(digits=[digits], digit_pause=3.0)
        return await run_peer(config)

    try:
        # As before: anonymous gets the digest challenge and nothing else; an account gets in.
        result = await call(closed.id, "anon")
        assert result["last_status"] == 401 and result["call_state"] == "DISCONNECTED", result
        result = await call(closed.id, "member", account)
        assert result["call_state"] == "CONFIRMED", result
        rows = await services.db.fetch("SELECT participant_id FROM conference_attendance WHERE conference_id = $1",
                                       closed.id)
        assert [r["participant_id"] for r in rows] == ["sip-zhangsan"]
        # The room of an emergency call: refused before it is answered, with or without an account.
        for creds in (None, account):
            result = await call(emergency.id, "emergency", creds)
            assert result["last_status"] == 403 and result["call_state"] == "DISCONNECTED", result
        # The IVR: keying the id of a closed conference or an emergency room opens neither.
        for target_id in (closed.id, emergency.id):
            result = await call("ivr", f"ivr-{target_id}", digits=f"{target_id}#")
            assert result["call_state"] == "CONFIRMED", result  # the IVR answers, then says "invalid"
            assert joined(conf) == [] and list(emergency.room.participants) == ["caller"]
        rows = await services.db.fetch("SELECT participant_id FROM conference_attendance WHERE conference_id = $1",
                                       closed.id)
        assert [r["participant_id"] for r in rows] == ["sip-zhangsan"]
        denied = await services.db.fetch("SELECT target FROM audit_log WHERE action = 'conference.join' "
                                         "AND outcome = 'denied'")
        assert sum(r["target"] == emergency.id for r in denied) == 3  # two INVITEs, one IVR entry
    finally:
        await bridge.stop()
