"""Request to speak from an H.323 room system: H.245 userInput "*1" in a conference raises its hand.

The terminal is our H.323 stack's other end (a real H.225/H.245 call over TCP, RTP media); the
digits travel the H.323 leg's user-input path, the site's SiteMedia and the conference's DTMF
listeners into the content service's queue; the chair approves and the site is unmuted.
"""
from __future__ import annotations

import asyncio
import itertools

from aiortc import RTCConfiguration

from core.runtime import CoreServices
from mcu.content.service import ContentService
from tests.sip_gateway.h323.h323_conference_kit import Terminal, free_port, start_mcu, stop_mcu

CONFERENCE = "80000001"


async def eventually(predicate: object, seconds: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(seconds):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(0.05)


async def test_h245_user_input_star_one_raises_a_hand(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    content = ContentService(mcu.conferences, RTCConfiguration())
    await content.start()
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    terminal = Terminal(alias="luoding", name="罗定市会议室")
    port = free_port()
    await terminal.listen(port)
    try:
        await mcu.bridge.invite(CONFERENCE, "luoding-room", f"127.0.0.1:{port}", alias="8001")
        await eventually(lambda: "luoding-room" in conf.room.participants, 15)
        await terminal.until(lambda: len(terminal.frames) > 1, 15)  # media flows: the call is set up
        conf.room.mute("luoding-room", True)
        state = content.of(conf)
        assert terminal.handle is not None
        terminal.handle.send_user_input("*")
        await asyncio.sleep(0.5)
        assert "luoding-room" not in state.hands  # half a sequence does nothing
        terminal.handle.send_user_input("1")
        await eventually(lambda: "luoding-room" in state.hands, 10)
        assert state.hands.entries[0].via == "dtmf"
        state.configure_hands(approve="unmute")
        state.approve("luoding-room")
        assert not conf.room.participants["luoding-room"].muted and conf.room.broadcast_id is None
        terminal.handle.send_user_input("*2")  # lowering a hand that is no longer up: nothing happens
        await asyncio.sleep(0.5)
        assert state.hands.entries == []
    finally:
        await terminal.close()
        await content.stop()
        await stop_mcu(mcu)
