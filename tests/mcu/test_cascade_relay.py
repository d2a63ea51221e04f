"""Control through two cascade levels: city <- Luoding county <- Luoding township MCU (mcu.cascade.relay)."""
from __future__ import annotations

from typing import Any

import pytest

from mcu.cascade.control import (
    ActiveSpeaker,
    Authenticated,
    CommandReceived,
    CommandResult,
    ControlConnection,
    RemoteSite,
)
from mcu.cascade.relay import CascadeRelay

TOKEN = b"shared-cascade-token-0123456789"


class Chain:
    """city <- county <- town, each link a pair of ControlConnections, delivered by `pump`."""

    def __init__(self) -> None:
        self.city_down = ControlConnection("city", TOKEN, expected_peer="luoding")
        self.county_up = ControlConnection("luoding", TOKEN, expected_peer="city")
        self.county_down = ControlConnection("luoding", TOKEN, expected_peer="luoding-t1")
        self.town_up = ControlConnection("luoding-t1", TOKEN, expected_peer="luoding")
        self.city = CascadeRelay("city", children={"luoding": self.city_down})
        self.county = CascadeRelay("luoding", up=self.county_up, children={"luoding-t1": self.county_down})
        self.town = CascadeRelay("luoding-t1", up=self.town_up)
        self.city_events: list[Any] = []
        self.county_local: list[CommandReceived] = []
        self.town_local: list[CommandReceived] = []
        self.links: list[tuple[ControlConnection, ControlConnection, CascadeRelay, CascadeRelay, str,
                               list[CommandReceived]]] = [
            (self.city_down, self.county_up, self.city, self.county, "luoding", self.county_local),
            (self.county_down, self.town_up, self.county, self.town, "luoding-t1", self.town_local),
        ]
        for upper, lower, *_ in self.links:
            upper.initiate()
            lower.initiate()
        self.pump()
        self.town.set_local_sites([RemoteSite("ld-town-1a", "罗城街道"), RemoteSite("ld-town-1b", "素龙街道")])
        self.county.set_local_sites([RemoteSite("ld-county-room", "罗定市会议室")])
        self.pump()

    def pump(self) -> None:
        for _ in range(30):
            moved = False
            for upper, lower, upper_relay, lower_relay, child, local in self.links:
                for msg in upper.data_to_send():
                    moved = True
                    for ev in lower.receive(msg):
                        if lower_relay.up is lower:
                            if isinstance(ev, Authenticated):
                                lower_relay.parent_connected()
                            cmd = lower_relay.on_parent_event(ev, 0.0)
                            if cmd is not None:
                                local.append(cmd)
                for msg in lower.data_to_send():
                    moved = True
                    for ev in upper.receive(msg):
                        if upper is self.city_down:
                            self.city_events.append(ev)
                        if not isinstance(ev, Authenticated):
                            upper_relay.on_child_event(child, ev)
            if not moved:
                return
        raise AssertionError("messages kept flowing")


def test_city_sees_sites_through_two_levels_with_their_path() -> None:
    chain = Chain()
    seen = chain.city_down.remote_sites
    assert set(seen) == {"ld-county-room", "ld-town-1a", "ld-town-1b"}
    assert seen["ld-county-room"].via == ()
    assert seen["ld-town-1a"].via == ("luoding-t1",)
    chain.town.update_local_site(RemoteSite("ld-town-1a", "罗城街道", speaking=True, muted=False))
    chain.town_up.send_speaker("ld-town-1a")
    chain.pump()
    assert chain.city_down.remote_sites["ld-town-1a"].speaking is True
    assert ActiveSpeaker("ld-town-1a") in chain.city_events


def test_roll_call_of_a_township_two_levels_down() -> None:
    chain = Chain()
    cid = chain.city_down.send_command("roll_call", "ld-town-1a", at=0.0)
    chain.pump()
    (cmd,) = chain.town_local
    assert (cmd.command, cmd.site) == ("roll_call", "ld-town-1a")
    assert chain.county_local == []
    chain.town.reply_local(cmd.id)
    chain.pump()
    assert [e for e in chain.city_events if isinstance(e, CommandResult)] == [CommandResult(cid, True)]


def test_refusal_two_levels_down_reaches_the_city_with_its_reason() -> None:
    chain = Chain()
    cid = chain.city_down.send_command("banner", "ld-town-1b", {"text": "请准备汇报"}, at=0.0)
    chain.pump()
    (cmd,) = chain.town_local
    chain.town.reply_local(cmd.id, ok=False, code="no_banner", message="该会场终端不支持字幕")
    chain.pump()
    results = [e for e in chain.city_events if isinstance(e, CommandResult)]
    assert results == [CommandResult(cid, False, "no_banner", "该会场终端不支持字幕")]


def test_command_for_a_county_site_is_executed_by_the_county() -> None:
    chain = Chain()
    cid = chain.city_down.send_command("mute", "ld-county-room", at=0.0)
    chain.pump()
    (cmd,) = chain.county_local
    assert chain.town_local == []
    chain.county.reply_local(cmd.id)
    chain.pump()
    assert CommandResult(cid, True) in chain.city_events
    with pytest.raises(ValueError):
        chain.county.reply_local(cmd.id)


def test_lost_township_mcu_shows_unknown_and_refuses_commands() -> None:
    chain = Chain()
    cid_pending = chain.city_down.send_command("mute", "ld-town-1a", at=0.0)
    chain.pump()  # forwarded, not answered yet
    chain.county.child_lost("luoding-t1")
    chain.pump()
    seen = chain.city_down.remote_sites
    assert seen["ld-town-1a"].status == "unknown" and seen["ld-town-1b"].status == "unknown"
    assert seen["ld-county-room"].status == "joined"
    results = {e.id: e for e in chain.city_events if isinstance(e, CommandResult)}
    assert results[cid_pending].ok is False and results[cid_pending].code == "unreachable"
    cid = chain.city_down.send_command("roll_call", "ld-town-1b", at=0.0)
    chain.pump()
    results = {e.id: e for e in chain.city_events if isinstance(e, CommandResult)}
    assert results[cid] == CommandResult(cid, False, "unreachable", "下级节点控制通道中断，无法执行该命令")


def test_unknown_child_is_refused() -> None:
    chain = Chain()
    with pytest.raises(ValueError):
        chain.county.on_child_event("xinxing", ActiveSpeaker(None))


def test_township_mcu_not_answering_times_out_up_to_the_city() -> None:
    chain = Chain()
    cid = chain.city_down.send_command("broadcast", "ld-town-1a", at=0.0)
    chain.pump()
    assert len(chain.town_local) == 1  # delivered, but the township MCU never answers
    for event in chain.county_down.expire(60.0):
        chain.county.on_child_event("luoding-t1", event)
    chain.pump()
    results = [e for e in chain.city_events if isinstance(e, CommandResult)]
    assert results == [CommandResult(cid, False, "timeout", "下级节点未在规定时间内答复该命令")]
