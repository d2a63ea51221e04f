"""The H.323 IVR's habits over real calls: the time for an entry, the one budget of attempts for
ids and PINs, the empty PIN, and the release cause of each way of giving up.

(The happy path and the wrong PIN are in test_h323_conference_dialing.py.)
"""
from __future__ import annotations

import asyncio

import numpy as np

from core.runtime import CoreServices
from sip_gateway.h323.events import CallConnected, CallReleased
from sip_gateway.h323.q931 import Cause
from tests.sip_gateway.h323.h323_conference_kit import (
    Mcu,
    Terminal,
    amplitude_at,
    free_port,
    start_mcu,
    stop_mcu,
)


async def hears(terminal: Terminal, freq: float, seconds: float = 8.0) -> None:
    """The terminal received a tone of ``freq`` within the last half second (IVR prompts)."""
    def tone_now() -> bool:
        recent = terminal.audio[-25:]
        return len(recent) == 25 and amplitude_at(np.concatenate(recent), freq) > 50
    await terminal.until(tone_now, seconds)
    terminal.audio.clear()  # the next prompt must be a new one


async def released(terminal: Terminal, seconds: float = 15.0) -> CallReleased:
    await terminal.until(lambda: bool(terminal.of(CallReleased)), seconds)
    event = terminal.of(CallReleased)[0]
    assert isinstance(event, CallReleased)
    return event


async def by_ip(mcu: Mcu, alias: str) -> Terminal:
    """A terminal that called the MCU's IP (no number) and heard "enter the conference id"."""
    terminal = Terminal(alias=alias)
    await terminal.dial(mcu.address, None)
    await terminal.until(lambda: bool(terminal.of(CallConnected)))
    await hears(terminal, 660)
    return terminal


async def test_an_entry_not_complete_in_time_releases_the_call(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port(), ivr_digit_timeout=4.0)
    terminal = await by_ip(mcu, "slow")
    try:
        assert terminal.handle is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        for key in "123":  # keys without "#" do not buy more time: the time is for the whole entry
            await asyncio.sleep(1.0)
            terminal.handle.send_user_input(key)
        event = await released(terminal)
        assert event.by_remote and event.cause == Cause.RECOVERY_ON_TIMER_EXPIRY
        assert loop.time() - started < 4.0 + 2.0, loop.time() - started
    finally:
        await terminal.close()
        await stop_mcu(mcu)


async def test_wrong_ids_and_pins_share_the_attempts(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    record = await mcu.conferences.create(name="防汛会商", actor="chair", pin="2468")
    await mcu.conferences.start_conference(record.id, actor="chair")
    terminal = await by_ip(mcu, "guesser")
    try:
        assert terminal.handle is not None
        terminal.handle.send_user_input("12345678#")  # attempt 1: no such conference
        await hears(terminal, 400)
        await hears(terminal, 660)
        terminal.handle.send_user_input(f"{record.id}#")
        await hears(terminal, 880)
        terminal.handle.send_user_input("#")  # attempt 2: an empty PIN is a wrong PIN
        await hears(terminal, 400)
        await hears(terminal, 880)
        terminal.handle.send_user_input("1111#")  # attempt 3: goodbye (falling G-C)
        await hears(terminal, 523)
        event = await released(terminal)
        assert event.by_remote and event.cause == Cause.CALL_REJECTED and event.h225_reason == "securityDenied"
        rows = await services.db.fetch("SELECT target, outcome, detail FROM audit_log WHERE action = "
                                       "'conference.join' ORDER BY id")
        assert [(r["target"], r["outcome"]) for r in rows] == [(record.id, "denied")] * 2
        conf = mcu.conferences.running(record.id)
        assert conf is not None and "h323-guesser" not in conf.room.participants
    finally:
        await terminal.close()
        await stop_mcu(mcu)


async def test_too_many_unknown_ids_release_with_no_route(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port(), ivr_attempts=2)
    terminal = await by_ip(mcu, "lost")
    try:
        assert terminal.handle is not None
        terminal.handle.send_user_input("1#")
        await hears(terminal, 400)
        await hears(terminal, 660)
        terminal.handle.send_user_input("2#")
        await hears(terminal, 523)  # goodbye
        event = await released(terminal)
        assert event.by_remote and event.cause == Cause.NO_ROUTE_TO_DESTINATION
    finally:
        await terminal.close()
        await stop_mcu(mcu)
