"""Several conferences over one control connection per node pair (the `conference` field)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcu.cascade.control import (
    ActiveSpeaker,
    Authenticated,
    CommandReceived,
    CommandResult,
    ControlConnection,
    ProtocolError,
    RemoteSite,
    SitesReplaced,
    SiteUpdated,
)
from mcu.cascade.relay import CascadeRelay, CommandRefused
from tests.mcu.test_cascade_control import TOKEN, pair, pump

A, B = "80000001", "80000002"


def two_conferences() -> tuple[ControlConnection, ControlConnection]:
    city, county, _, _ = pair()
    county.announce_sites([RemoteSite("ld-1", "罗城街道"), RemoteSite("ld-2", "素龙街道")], A)
    county.announce_sites([RemoteSite("ld-3", "附城街道")], B)
    pump(city, county)
    return city, county


def test_site_lists_are_kept_per_conference() -> None:
    city, county = two_conferences()
    assert set(city.remote_of(A)) == {"ld-1", "ld-2"}
    assert set(city.remote_of(B)) == {"ld-3"}
    assert city.remote_sites == {}  # the default conference has nothing
    county.update_site(RemoteSite("ld-3", "附城街道", speaking=True), B)
    county.send_speaker("ld-3", B)
    ev_city, _ = pump(city, county)
    assert ev_city == [SiteUpdated(RemoteSite("ld-3", "附城街道", speaking=True), B), ActiveSpeaker("ld-3", B)]
    assert city.remote_of(A)["ld-1"].speaking is False
    # a new full list of one conference leaves the other alone
    county.announce_sites([], A)
    ev_city, _ = pump(city, county)
    assert ev_city == [SitesReplaced((), A)] and city.remote_of(A) == {} and set(city.remote_of(B)) == {"ld-3"}


def test_default_conference_frames_carry_no_conference_field() -> None:
    city, county, _, _ = pair()
    county.announce_sites([RemoteSite("ld-1", "罗城街道")])
    assert "conference" not in json.loads(county.data_to_send()[0])
    county.announce_sites([RemoteSite("ld-1", "罗城街道")], A)
    assert json.loads(county.data_to_send()[0])["conference"] == A


def test_a_command_names_a_site_of_its_own_conference() -> None:
    city, county = two_conferences()
    with pytest.raises(ValueError, match="下级节点上没有该会场"):
        city.send_command("mute", "ld-1", at=0.0, conference=B)
    cid = city.send_command("roll_call", "ld-3", at=0.0, conference=B)
    _, ev_county = pump(city, county)
    assert ev_county == [CommandReceived(cid, "roll_call", "ld-3", {}, B)]
    county.reply(cid)
    ev_city, _ = pump(city, county)
    assert ev_city == [CommandResult(cid, True)]
    # forged on the wire: a site of conference A named under B is refused with a result
    county.receive(json.dumps({"v": 1, "type": "command", "id": 9, "command": "mute", "site": "ld-1",
                               "conference": B}))
    answer = json.loads(county.data_to_send()[0])
    assert answer["type"] == "result" and answer["id"] == 9 and answer["error"]["code"] == "unknown_site"


@pytest.mark.parametrize("bad", ["abc", 5, "123", "1" * 13, "８０００", None, ["80000001"], "8000 001"])
def test_bad_conference_field_is_an_error_and_changes_nothing(bad: Any) -> None:
    city, county = two_conferences()
    before = {c: dict(s) for c, s in city.remote.items()}
    for msg in ({"v": 1, "type": "sites", "sites": [], "conference": bad},
                {"v": 1, "type": "site", "site": {"id": "x", "name": "x"}, "conference": bad},
                {"v": 1, "type": "speaker", "site": None, "conference": bad}):
        events = city.receive(json.dumps(msg))
        assert [type(e) for e in events] == [ProtocolError] and events[0].code == "bad_conference"  # type: ignore[union-attr]
    assert {c: dict(s) for c, s in city.remote.items()} == before
    # a command with a bad conference is still answered (never left to time out)
    county.receive(json.dumps({"v": 1, "type": "command", "id": 4, "command": "mute", "site": "ld-1",
                               "conference": bad}))
    answer = json.loads(county.data_to_send()[0])
    assert answer["id"] == 4 and answer["ok"] is False and answer["error"]["code"] == "bad_conference"
    with pytest.raises(ValueError, match="会议号无效"):
        county.announce_sites([], bad)


def test_channel_loss_makes_every_conference_unknown() -> None:
    city, _ = two_conferences()
    events = city.connection_lost()
    assert {(e.conference, e.site.id, e.site.status) for e in events} == {  # type: ignore[union-attr]
        (A, "ld-1", "unknown"), (A, "ld-2", "unknown"), (B, "ld-3", "unknown")}


def test_a_parent_serving_several_children_accepts_only_those() -> None:
    city = ControlConnection("city", TOKEN, allowed_peers=frozenset({"luoding", "xinxing"}))
    stranger = ControlConnection("yunan", TOKEN)
    city.initiate()
    stranger.initiate()
    ev_city, _ = pump(city, stranger)
    assert not any(isinstance(e, Authenticated) for e in ev_city)
    county = ControlConnection("xinxing", TOKEN)
    city = ControlConnection("city", TOKEN, allowed_peers=frozenset({"luoding", "xinxing"}))
    city.initiate()
    county.initiate()
    ev_city, _ = pump(city, county)
    assert ev_city == [Authenticated("xinxing")]


class Chain:
    """city <- county <- town relays with two conferences on each link."""

    def __init__(self) -> None:
        self.city_down = ControlConnection("city", TOKEN, expected_peer="luoding")
        county_up = ControlConnection("luoding", TOKEN, expected_peer="city")
        county_down = ControlConnection("luoding", TOKEN, expected_peer="luoding-t1")
        town_up = ControlConnection("luoding-t1", TOKEN, expected_peer="luoding")
        self.city = CascadeRelay("city", children={"luoding": self.city_down})
        self.county = CascadeRelay("luoding", up=county_up, children={"luoding-t1": county_down})
        self.town = CascadeRelay("luoding-t1", up=town_up)
        self.local: dict[str, list[CommandReceived]] = {"luoding": [], "luoding-t1": []}
        self.done: dict[str, list[CommandReceived]] = {"city": [], "luoding": []}
        self.results: list[CommandResult] = []
        self.links = [(self.city_down, county_up, self.city, self.county, "luoding"),
                      (county_down, town_up, self.county, self.town, "luoding-t1")]
        for upper, lower, *_ in self.links:
            upper.initiate()
            lower.initiate()
        self.pump()

    def pump(self) -> None:
        for _ in range(30):
            moved = False
            for upper, lower, upper_relay, lower_relay, child in self.links:
                for msg in upper.data_to_send():
                    moved = True
                    for ev in lower.receive(msg):
                        if isinstance(ev, Authenticated):
                            lower_relay.parent_connected()
                        cmd = lower_relay.on_parent_event(ev, 0.0)
                        if cmd is not None:
                            self.local[child].append(cmd)
                for msg in lower.data_to_send():
                    moved = True
                    for ev in upper.receive(msg):
                        if isinstance(ev, CommandResult) and upper_relay is self.city:
                            self.results.append(ev)
                        if not isinstance(ev, Authenticated):
                            honoured = upper_relay.on_child_event(child, ev)
                            if honoured is not None:
                                self.done[upper_relay.node].append(honoured)
            if not moved:
                return
        raise AssertionError("messages kept flowing")


def test_two_level_relay_keeps_conferences_apart() -> None:
    chain = Chain()
    chain.town.set_local_sites([RemoteSite("t-a", "罗城街道")], A)
    chain.town.set_local_sites([RemoteSite("t-b", "素龙街道")], B)
    chain.county.set_local_sites([RemoteSite("c-a", "罗定市会议室")], A)
    chain.pump()
    assert {s.id: s.via for s in chain.city_down.remote_of(A).values()} == {"c-a": (), "t-a": ("luoding-t1",)}
    assert {s.id: s.via for s in chain.city_down.remote_of(B).values()} == {"t-b": ("luoding-t1",)}
    # the root's own chair issues a command (id < 0: not replied upward) through two levels
    child_id = chain.city.forward("luoding", CommandReceived(-1, "roll_call", "t-b", {}, B), 0.0)
    chain.pump()
    assert [(c.command, c.site, c.conference) for c in chain.local["luoding-t1"]] == [("roll_call", "t-b", B)]
    chain.town.reply_local(chain.local["luoding-t1"][0].id)
    chain.pump()
    assert chain.results == [CommandResult(child_id, True)]
    # each node on the way learns that the command was honoured (to show that child's link)
    assert [(c.command, c.site) for c in chain.done["luoding"]] == [("roll_call", "t-b")]
    assert [(c.id, c.site) for c in chain.done["city"]] == [(-1, "t-b")]
    with pytest.raises(CommandRefused, match="下级节点上没有该会场"):
        chain.city.forward("luoding", CommandReceived(-2, "mute", "t-b", {}, A), 0.0)
    with pytest.raises(CommandRefused, match="控制通道中断"):
        chain.city.forward("xinxing", CommandReceived(-3, "mute", "t-b", {}, B), 0.0)
    # a refusal does not count as honoured
    chain.city.forward("luoding", CommandReceived(-4, "mute", "t-a", {}, A), 0.0)
    chain.pump()
    chain.town.reply_local(chain.local["luoding-t1"][1].id, False, "refused", "会场不存在")
    chain.pump()
    assert chain.results[-1].ok is False and chain.results[-1].message == "会场不存在"
    assert len(chain.done["city"]) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"v": st.just(1), "type": st.sampled_from(["sites", "site", "speaker", "command"]),
                              "conference": st.one_of(st.text(max_size=14), st.integers(), st.none(),
                                                      st.from_regex(r"\A[0-9]{4,12}\Z"))},
                             optional={"id": st.integers(), "site": st.one_of(st.none(), st.text(max_size=5)),
                                       "sites": st.lists(st.fixed_dictionaries({"id": st.text(min_size=1, max_size=4),
                                                                                "name": st.text(max_size=4)}),
                                                         max_size=3),
                                       "command": st.sampled_from(["mute", "roll_call", "x"])}))
def test_fuzz_conference_field(msg: dict[str, Any]) -> None:
    city, county = two_conferences()
    for conn in (city, county):
        for event in conn.receive(json.dumps(msg)):
            assert isinstance(event, (ProtocolError, SitesReplaced, SiteUpdated, ActiveSpeaker, CommandReceived))
            if isinstance(event, (SitesReplaced, SiteUpdated, ActiveSpeaker, CommandReceived)):
                assert event.conference == msg["conference"]
        for out in conn.data_to_send():
            assert json.loads(out)["v"] == 1
