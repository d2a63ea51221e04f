"""The content token and the request-to-speak queue: pure machines on explicit times."""
from __future__ import annotations

import pytest

from mcu.content.hands import DtmfSequences, HandError, HandQueue, check_sequences
from mcu.content.token import ContentToken, TokenError


def kinds(result: object) -> list[tuple[str, str | None, str]]:
    return [(e.kind, e.subject, e.reason) for e in result.events]  # type: ignore[attr-defined]


def test_first_come_gets_the_free_token_and_a_second_presenter_is_refused() -> None:
    token = ContentToken(policy="free")
    first = token.request("a", 0.0)
    assert first.granted and kinds(first) == [("granted", "a", "")] and token.holder == "a"
    second = token.request("b", 1.0)
    assert not second.granted and second.reason == "busy"
    assert kinds(second) == [("refused", "b", "busy")]
    assert token.holder == "a" and token.requests == []  # nothing changed
    again = token.request("a", 2.0)  # a re-sent request from the holder
    assert again.granted and again.events == ()
    # b cannot release a's token; a can, then b gets it.
    assert token.release("b", 3.0).reason == "not_holder" and token.holder == "a"
    assert kinds(token.release("a", 4.0)) == [("released", "a", "released")]
    assert token.request("b", 5.0).granted and token.holder == "b"


def test_chair_must_grant_queues_requests_and_grant_revokes_the_previous_holder() -> None:
    token = ContentToken(policy="chair")
    waiting = token.request("a", 0.0)
    assert not waiting.granted and waiting.reason == "awaiting_chair" and waiting.queued
    assert token.holder is None and [r[0] for r in token.requests] == ["a"]
    token.request("a", 1.0)  # asking twice keeps one place, the first time
    token.request("b", 2.0)
    assert token.requests == [("a", 0.0), ("b", 2.0)]
    assert kinds(token.grant("a", 3.0)) == [("granted", "a", "")]
    assert token.requests == [("b", 2.0)]
    busy = token.request("c", 4.0)
    assert busy.reason == "busy" and busy.queued and token.holder == "a"
    assert kinds(token.grant("b", 5.0)) == [("revoked", "a", "chair"), ("granted", "b", "")]
    assert kinds(token.revoke(6.0)) == [("revoked", "b", "chair")] and token.holder is None
    assert token.revoke(7.0).reason == "nobody"
    assert token.dismiss("c") and not token.dismiss("c")


def test_chair_take_and_policy_switch() -> None:
    token = ContentToken(policy="free")
    token.request("a", 0.0)
    taken = token.take("chair:li", 1.0)
    assert kinds(taken) == [("revoked", "a", "chair"), ("granted", "chair:li", "")]
    assert token.held_by_chair and token.next_deadline() is None  # the chair's hold never times out
    assert token.tick(1e6).events == () and token.holder == "chair:li"
    assert token.request("a", 2.0).reason == "busy"
    assert kinds(token.set_policy("chair", 3.0)) == [("policy", None, "")]
    assert token.holder == "chair:li"  # a policy change does not disturb the holder
    with pytest.raises(TokenError):
        token.set_policy("anyone", 4.0)
    with pytest.raises(TokenError):
        token.request("", 4.0)
    with pytest.raises(TokenError):
        ContentToken(policy="lottery")  # type: ignore[arg-type]
    assert token.policy == "chair"


def test_a_stopped_content_stream_releases_the_token_after_the_timeout() -> None:
    token = ContentToken(media_timeout=5.0, start_timeout=20.0)
    token.request("a", 0.0)
    assert token.next_deadline() == 20.0  # the content must start within 20 s of the grant
    assert token.tick(19.9).events == ()
    assert token.media("a", 10.0) and not token.media("b", 10.0)  # only the holder's frames count
    assert token.next_deadline() == 15.0
    token.media("a", 12.0)
    assert token.tick(16.9).events == () and token.holder == "a"
    assert kinds(token.tick(17.0)) == [("released", "a", "timeout")] and token.holder is None
    # A grant whose content never starts is released too.
    token.request("b", 30.0)
    assert kinds(token.tick(50.0)) == [("released", "b", "timeout")]


def test_a_holder_that_leaves_releases_and_its_request_is_dropped() -> None:
    token = ContentToken(policy="chair")
    token.grant("a", 0.0)
    token.request("b", 1.0)
    assert kinds(token.forget("a", 2.0)) == [("released", "a", "left")]
    token.forget("b", 3.0)
    assert token.holder is None and token.requests == []


def test_hand_queue_orders_by_time_and_refuses_unknown_sites() -> None:
    queue = HandQueue(max_entries=2)
    assert queue.raise_hand("b", 5.0)
    assert queue.raise_hand("a", 7.0, via="dtmf")
    assert not queue.raise_hand("b", 9.0)  # raising again keeps the first time
    assert [(h.participant_id, h.raised_at, h.via) for h in queue.entries] == [("b", 5.0, "web"), ("a", 7.0, "dtmf")]
    with pytest.raises(HandError):
        queue.raise_hand("c", 10.0)  # full
    assert queue.approve("b").raised_at == 5.0 and "b" not in queue
    with pytest.raises(HandError):
        queue.approve("b")
    with pytest.raises(HandError):
        queue.dismiss("nobody")
    assert queue.lower("a") and not queue.lower("a") and queue.entries == []


def test_dtmf_sequences_match_star_one_with_gaps_and_noise() -> None:
    keys = DtmfSequences(inter_digit=3.0)
    assert keys.feed("s", "*", 0.0) is None
    assert keys.feed("s", "1", 1.0) == "raise"
    assert keys.feed("s", "*", 2.0) is None and keys.feed("s", "2", 2.5) == "lower"
    # Too slow: the * is forgotten.
    keys.feed("s", "*", 10.0)
    assert keys.feed("s", "1", 14.0) is None
    # Noise before and between: "5**1" still raises (restart from the later *).
    assert [keys.feed("t", d, 20.0 + i * 0.1) for i, d in enumerate("5**1")] == [None, None, None, "raise"]
    # Sites do not share buffers; garbage digits are ignored.
    keys.feed("u", "*", 30.0)
    assert keys.feed("v", "1", 30.1) is None and keys.feed("u", "x", 30.2) is None
    assert keys.feed("u", "1", 30.3) == "raise"
    custom = DtmfSequences({"#9": "raise"})
    assert custom.feed("s", "#", 0) is None and custom.feed("s", "9", 0) == "raise"
    for bad in ({"*": "raise", "*1": "lower"}, {"*x": "raise"}, {}, {"*1": "jump"}, {"123456789": "raise"}):
        with pytest.raises(ValueError):
            check_sequences(bad)  # type: ignore[arg-type]
