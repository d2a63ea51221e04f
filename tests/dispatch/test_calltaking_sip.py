"""Emergency calls from SIPp through our SIP endpoint into the desk queue (real PostgreSQL, real SIPp).

* A multipart INVITE (SDP + PIDF-LO circle inside Luoding) to 120 is queued, offered to the position,
  answered, and the incident created from it has county Luoding (445381) and the PIDF coordinates.
* 5 concurrent callers and 2 positions: offered in arrival order to the longest-idle position,
  and the caller who hangs up while queued is logged on the callback list with its number.
"""
from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from dispatch.calltaking.trunk import EmergencyTrunk, TrunkConfig
from mcu.call_rooms import CallRooms
from sip_gateway.sip.invite_router import with_route
from tests.dispatch.calltaking_samples import finish, free_port, sipp
from tests.dispatch.desk_kit import Desk, running_desk, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def desk(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    async with running_desk(fresh_db_url, tmp_path) as running:
        yield running


async def test_pidf_lo_call_is_queued_offered_and_becomes_a_luoding_incident(desk: Desk) -> None:
    with desk.core.bus.subscribe("call.*") as events:
        proc = await sipp("emergency_pidf.xml", desk.endpoint.config.port)
        await wait_until(lambda: len(desk.desk.live) == 1)
        call_id = next(iter(desk.desk.live))
        queued = await asyncio.wait_for(events.get(), 5)
        assert queued.topic == "call.queued" and queued.payload["call"]["state"] == "queued"
        assert queued.payload["call"]["number"] == "13800000001" and queued.payload["call"]["category"] == "medical"
        await desk.desk.login("calltaker1")
        offer = await asyncio.wait_for(events.get(), 5)
        while offer.topic != "call.offer":
            offer = await asyncio.wait_for(events.get(), 5)
        assert offer.payload == {**offer.payload, "call_id": call_id, "position": "calltaker1"}
        view = await desk.desk.answer("calltaker1", call_id)
        assert view["name"] == "Zhang San" and view["dialled"] == "120"
        loc = view["location"]
        assert loc["source"] == "pidf-lo" and loc["shape"] == "Circle" and loc["radius_m"] == 35
        assert loc["county_code"] == 445381 and loc["county"] == "罗定市", loc
        await asyncio.sleep(1.0)  # a second of queue tone and caller audio in the recording
        incident = await desk.desk.create_incident(call_id, "calltaker1", priority=2, description="胸痛")
        inc = await desk.dispatch.incident(incident["id"])
        assert inc.location.county_code == 445381 and inc.category == "medical"
        assert inc.location.lat == pytest.approx(22.7690) and inc.location.lon == pytest.approx(111.5700)
        assert inc.location.uncertainty_m == 35 and inc.location.source == "pidf-lo"
        assert inc.caller.number == "13800000001" and call_id in inc.calls
        await desk.desk.end_call(call_id, "calltaker1", "incident")
        await finish(proc)
    row = await desk.core.db.fetchrow("SELECT * FROM emergency_calls WHERE id = $1", call_id)
    assert row is not None and row["state"] == "ended" and row["incident_id"] == inc.id
    assert row["offered_at"] <= row["answered_at"] <= row["incident_created_at"] <= row["ended_at"]
    with wave.open(row["recording_path"]) as wav:  # the call is recorded from the first frame
        assert wav.getframerate() == 48000 and wav.getnframes() > 48000 * 0.5
        pcm = np.frombuffer(wav.readframes(48000), dtype=np.int16).astype(np.float64)
    # While queued the caller heard the 450 Hz queue tone (the first second of the recording).
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    assert abs(float(np.fft.rfftfreq(len(pcm), 1 / 48000)[int(np.argmax(spectrum))]) - 450) < 5
    dash = await desk.desk.dashboard()
    assert dash["answered"] == 1 and dash["within"]["10"] == 100.0


async def test_no_free_media_ports_refuses_the_call_with_503_and_queues_nothing(desk: Desk) -> None:
    import socket
    port = free_port() & ~1
    held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for offset, sock in enumerate(held):  # the whole (one-pair) range is taken
            sock.bind(("127.0.0.1", port + offset))
        trunk = EmergencyTrunk(desk.endpoint, desk.desk, TrunkConfig(recordings_dir=desk.core.settings.var_dir / "c2",
                                                                     port_range=(port, port + 1)),
                              media=CallRooms())
        desk.endpoint.router = with_route(desk.endpoint.router, trunk.route)  # replaces the kit's trunk
        trunk.start()
        proc = await sipp("emergency_503.xml", desk.endpoint.config.port)
        await finish(proc)
        assert desk.desk.live == {} and trunk.calls == {}
        await trunk.close()
    finally:
        for sock in held:
            sock.close()


async def test_five_callers_two_positions_order_and_abandon(desk: Desk) -> None:
    port = desk.endpoint.config.port
    await desk.desk.login("p1")
    await asyncio.sleep(0.05)
    await desk.desk.login("p2")
    waiting = await sipp("emergency_wait.xml", port, calls=4, rate=20)
    await wait_until(lambda: len(desk.desk.acd.calls) == 4)  # queued (``live`` is filled before the ACD)
    abandon = await sipp("emergency_abandon.xml", port)
    await wait_until(lambda: len(desk.desk.acd.calls) == 5)
    by_number = {c.number: c.id for c in desk.desk.live.values()}
    first = [by_number[f"1390000000{i}"] for i in (1, 2, 3, 4)]
    assert desk.desk.acd.calls[first[0]].position_id == "p1"  # longest idle first
    assert desk.desk.acd.calls[first[1]].position_id == "p2"
    assert [c.id for c in desk.desk.acd.queue()][2:] == [first[2], first[3], by_number["13700000009"]]
    answered = []
    for pos, call_id in (("p1", first[0]), ("p2", first[1])):
        await desk.desk.answer(pos, call_id)
        answered.append(call_id)
    await finish(abandon)  # hangs up after 1.5 s in the queue
    await wait_until(lambda: "13700000009" not in {c.number for c in desk.desk.live.values()})
    callbacks = await desk.desk.callbacks()
    assert [c["number"] for c in callbacks] == ["13700000009"] and callbacks[0]["waited_s"] >= 1.0
    for call_id in list(answered):
        await desk.desk.end_call(call_id, "calltaker", "advice")
        await wait_until(lambda: any(q.state == "offered" for q in desk.desk.acd.calls.values()))
        for q in list(desk.desk.acd.calls.values()):
            if q.state == "offered" and q.position_id:
                await desk.desk.answer(q.position_id, q.id)
                answered.append(q.id)
    assert answered == first
    for call_id in first[2:]:
        await desk.desk.end_call(call_id, "calltaker", "advice")
    await finish(waiting)
    rows = await desk.core.db.fetch("SELECT number, state FROM emergency_calls ORDER BY offered_at")
    assert [r["state"] for r in rows].count("abandoned") == 1 and len(rows) == 5
    dash = await desk.desk.dashboard()
    assert dash["abandoned"] == 1 and dash["answered"] == 4 and dash["within"]["10"] == 80.0
