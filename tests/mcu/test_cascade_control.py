"""Cascade control-channel protocol (mcu.cascade.control): handshake, site lists, commands, errors."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcu.cascade.control import (
    ActiveSpeaker,
    Authenticated,
    AuthFailed,
    CommandReceived,
    CommandResult,
    ControlConnection,
    ProtocolError,
    RemoteSite,
    SitesReplaced,
    SiteUpdated,
    State,
)

TOKEN = b"shared-cascade-token-0123456789"


def pump(a: ControlConnection, b: ControlConnection) -> tuple[list[Any], list[Any]]:
    """Deliver queued messages both ways until quiet; returns the events each side saw."""
    ev_a: list[Any] = []
    ev_b: list[Any] = []
    for _ in range(20):
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            break
        for m in out_a:
            ev_b += b.receive(m)
        for m in out_b:
            ev_a += a.receive(m)
    return ev_a, ev_b


def pair(token_b: bytes = TOKEN, **kw: Any) -> tuple[ControlConnection, ControlConnection, list[Any], list[Any]]:
    city = ControlConnection("city", TOKEN, expected_peer="county-a", **kw)
    county = ControlConnection("county-a", token_b, expected_peer="city")
    city.initiate()
    county.initiate()
    ev_city, ev_county = pump(city, county)
    return city, county, ev_city, ev_county


TOWNSHIPS = [RemoteSite("445381-01", "罗城街道", via=("county-a",)),
             RemoteSite("445381-02", "素龙街道", muted=True, via=("county-a",))]


def opened() -> tuple[ControlConnection, ControlConnection]:
    city, county, _, _ = pair()
    county.announce_sites(TOWNSHIPS)
    pump(city, county)
    return city, county


def error_codes(conn_out: list[str]) -> list[str]:
    return [json.loads(m)["code"] for m in conn_out if json.loads(m)["type"] == "error"]


def test_mutual_handshake_authenticates_both_sides() -> None:
    city, county, ev_city, ev_county = pair()
    assert ev_city == [Authenticated("county-a")]
    assert ev_county == [Authenticated("city")]
    assert city.state is State.OPEN and county.state is State.OPEN


def test_wrong_token_fails_and_closes() -> None:
    city, county, ev_city, ev_county = pair(token_b=b"another-token-of-enough-length!")
    assert any(isinstance(e, AuthFailed) for e in ev_city)
    assert city.state is State.CLOSED
    assert county.state is not State.OPEN
    with pytest.raises(ValueError):
        city.announce_sites(TOWNSHIPS)


def test_unexpected_node_name_is_refused() -> None:
    city = ControlConnection("city", TOKEN, expected_peer="county-b")
    county = ControlConnection("county-a", TOKEN)
    city.initiate(); county.initiate()  # noqa: E702
    ev_city, _ = pump(city, county)
    assert isinstance(ev_city[0], AuthFailed) and "county-a" in ev_city[0].reason
    assert city.state is State.CLOSED


def test_reflected_proof_is_rejected() -> None:
    # An attacker without the token replays our own auth back to us: the proof names us as the
    # prover, so it does not verify as the peer's.
    city = ControlConnection("city", TOKEN, nonce_factory=lambda: "n" * 32)
    city.initiate()
    city.data_to_send()
    city.receive(json.dumps({"v": 1, "type": "hello", "node": "county-a", "nonce": "n" * 32}))
    (our_auth,) = city.data_to_send()
    events = city.receive(our_auth)
    assert isinstance(events[0], AuthFailed)
    assert city.state is State.CLOSED


def test_messages_before_authentication_are_refused() -> None:
    city = ControlConnection("city", TOKEN)
    city.initiate()
    city.data_to_send()
    events = city.receive(json.dumps({"v": 1, "type": "sites", "sites": []}))
    assert events == [ProtocolError("not_authenticated", "控制通道尚未认证")]
    assert city.remote_sites == {}
    assert error_codes(city.data_to_send()) == ["not_authenticated"]
    assert city.receive(json.dumps({"v": 1, "type": "auth", "proof": "00"}))[0].code == "not_authenticated"  # type: ignore[union-attr]


def test_site_list_status_and_speaker_flow_to_the_parent() -> None:
    city, county = opened()
    assert set(city.remote_sites) == {"445381-01", "445381-02"}
    assert city.remote_sites["445381-02"].muted is True
    county.update_site(RemoteSite("445381-01", "罗城街道", speaking=True, via=("county-a",)))
    county.send_speaker("445381-01")
    ev_city, _ = pump(city, county)
    assert ev_city == [SiteUpdated(RemoteSite("445381-01", "罗城街道", speaking=True, via=("county-a",))),
                       ActiveSpeaker("445381-01")]
    county.send_speaker(None)
    assert pump(city, county)[0] == [ActiveSpeaker(None)]


def test_chair_command_round_trip() -> None:
    city, county = opened()
    cid = city.send_command("roll_call", "445381-01", at=0.0)
    _, ev_county = pump(city, county)
    assert ev_county == [CommandReceived(cid, "roll_call", "445381-01", {})]
    county.reply(cid)
    ev_city, _ = pump(city, county)
    assert ev_city == [CommandResult(cid, True)]


def test_refused_command_comes_back_with_a_clear_error() -> None:
    city, county = opened()
    cid = city.send_command("broadcast", "445381-02", at=0.0)
    pump(city, county)
    county.reply(cid, ok=False, code="site_left", message="该会场已离会")
    ev_city, _ = pump(city, county)
    assert ev_city == [CommandResult(cid, False, "site_left", "该会场已离会")]
    with pytest.raises(ValueError):
        county.reply(cid)  # answered already
    with pytest.raises(ValueError):
        county.reply(999, ok=False)


@pytest.mark.parametrize("command,site,args,code", [
    ("mute", "no-such-site", {}, "unknown_site"),
    ("reboot", "445381-01", {}, "unsupported_command"),
    ("banner", "445381-01", {"text": "长" * 65}, "bad_field"),
    ("select_view", "445381-01", {"source": "elsewhere"}, "unknown_site"),
    ("mute", "445381-01", {"extra": 1}, "bad_field"),
])
def test_commands_the_node_cannot_honour_are_answered_not_delivered(command: str, site: str,
                                                                    args: dict[str, Any], code: str) -> None:
    city, county = opened()
    # Forge the wire message (send_command itself refuses these locally).
    county.receive(json.dumps({"v": 1, "type": "command", "id": 7, "command": command, "site": site,
                               "args": args}))
    (out,) = county.data_to_send()
    msg = json.loads(out)
    assert msg["type"] == "result" and msg["id"] == 7 and msg["ok"] is False
    assert msg["error"]["code"] == code and msg["error"]["message"]


def test_sender_refuses_bad_commands_locally() -> None:
    city, _ = opened()
    with pytest.raises(ValueError, match="不支持"):
        city.send_command("reboot", "445381-01", at=0.0)
    with pytest.raises(ValueError, match="没有该会场"):
        city.send_command("mute", "nowhere", at=0.0)
    with pytest.raises(ValueError):
        city.send_command("banner", "445381-01", {"text": 5}, at=0.0)
    assert city.data_to_send() == []
    cid = city.send_command("select_view", "445381-01", {"source": "445381-02"}, at=0.0)
    cid2 = city.send_command("banner", "445381-01", {"text": "请各乡镇准备汇报"}, at=0.0)
    assert cid2 == cid + 1


def test_unknown_result_id_is_a_protocol_error() -> None:
    city, _ = opened()
    events = city.receive(json.dumps({"v": 1, "type": "result", "id": 42, "ok": True}))
    assert isinstance(events[0], ProtocolError) and events[0].code == "unknown_command_id"


def test_channel_loss_marks_remote_sites_unknown() -> None:
    city, _ = opened()
    events = city.connection_lost()
    assert {e.site.status for e in events if isinstance(e, SiteUpdated)} == {"unknown"}
    assert all(s.status == "unknown" for s in city.remote_sites.values())
    assert city.remote_sites["445381-02"].muted is True
    assert city.receive(json.dumps({"v": 1, "type": "speaker", "site": None})) == []


@pytest.mark.parametrize("raw,code", [
    ("not json", "not_json"),
    ("[1,2]", "not_json"),
    ('{"v": 2, "type": "sites"}', "bad_version"),
    ('{"type": "sites"}', "bad_version"),
    ('{"v": 1}', "unknown_type"),
    ('{"v": 1, "type": "shutdown"}', "unknown_type"),
    ('{"v": 1, "type": "sites", "sites": [{"id": 1, "name": "x"}]}', "bad_field"),
    ('{"v": 1, "type": "sites", "sites": [{"id": "a", "name": "x", "status": "dancing"}]}', "bad_field"),
    ('{"v": 1, "type": "sites", "sites": [{"id": "a", "name": "x"}, {"id": "a", "name": "y"}]}', "bad_field"),
    ('{"v": 1, "type": "site", "site": {"id": "a", "name": "x", "muted": "yes"}}', "bad_field"),
    ('{"v": 1, "type": "speaker", "site": 5}', "bad_field"),
    ('{"v": 1, "type": "command", "id": true, "command": "mute", "site": "a"}', "bad_field"),
    ('{"v": 1, "type": "result", "id": 1, "ok": "yes"}', "bad_field"),
    ('{"v": 1, "type": "hello", "node": "x", "nonce": "y"}', "bad_field"),
    ('{"v": 1, "type": "content", "content": {"kind": "grab", "presenter": "a"}}', "bad_field"),
    ('{"v": 1, "type": "content", "content": {"kind": "request", "presenter": "t/a", "route": []}}', "bad_field"),
    ('{"v": 1, "type": "content", "content": {"kind": "holder", "presenter": null, "path": ["city"]}}', "bad_field"),
    ('{"v": 1, "type": "content", "content": {"kind": "decision", "presenter": "t/a", "route": ["t"], '
     '"granted": "yes"}}', "bad_field"),
    ('{"v": 1, "type": "content", "content": [1]}', "bad_field"),
    ("x" * (300 * 1024), "too_large"),
])
def test_malformed_messages_get_an_error_and_change_nothing(raw: str, code: str) -> None:
    city, county = opened()
    before = dict(city.remote_sites)
    events = city.receive(raw)
    assert len(events) == 1 and isinstance(events[0], ProtocolError) and events[0].code == code
    assert error_codes(city.data_to_send()) == [code]
    assert city.remote_sites == before
    assert city.state is State.OPEN


def test_peer_error_is_reported_without_answering() -> None:
    city, _ = opened()
    events = city.receive(json.dumps({"v": 1, "type": "error", "code": "bad_field", "message": "x"}))
    assert events == [ProtocolError("bad_field", "x", from_peer=True)]
    assert city.data_to_send() == []


def test_constructor_refuses_weak_tokens() -> None:
    with pytest.raises(ValueError):
        ControlConnection("city", b"short")
    with pytest.raises(ValueError):
        ControlConnection("", TOKEN)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=12)
_messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    _json.map(json.dumps),
    st.fixed_dictionaries({"v": st.just(1), "type": st.sampled_from(
        ["hello", "auth", "sites", "site", "command", "result", "speaker", "error"])},
        optional={"id": _json, "site": _json, "sites": _json, "command": _json, "args": _json,
                  "ok": _json, "error": _json, "node": _json, "nonce": _json, "proof": _json}).map(json.dumps),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_messages, max_size=5))
def test_fuzz_parser_never_raises(messages: list[str | bytes]) -> None:
    city, county = opened()
    fresh = ControlConnection("city", TOKEN)
    fresh.initiate()
    for m in messages:
        for conn in (city, county, fresh):
            events = conn.receive(m)
            assert isinstance(events, list)
            for out in conn.data_to_send():
                assert json.loads(out)["v"] == 1
    assert all(isinstance(s, RemoteSite) for s in city.remote_sites.values())
    assert isinstance(SitesReplaced(()), SitesReplaced)


def test_unanswered_command_times_out_and_a_late_answer_is_not_a_second_result() -> None:
    city, county = opened()
    cid = city.send_command("mute", "445381-01", at=100.0)
    assert city.next_expiry() == 110.0
    assert city.expire(109.9) == []
    assert city.expire(110.0) == [CommandResult(cid, False, "timeout", "下级节点未在规定时间内答复该命令")]
    assert city.next_expiry() is None
    pump(city, county)
    county.reply(cid)
    ev_city, _ = pump(city, county)
    assert len(ev_city) == 1 and isinstance(ev_city[0], ProtocolError) and ev_city[0].code == "unknown_command_id"
