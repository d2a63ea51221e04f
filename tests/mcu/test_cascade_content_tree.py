"""One content token across city ← county ← township (and city ← county B): the pure tree machine
on explicit times, every message carried through its JSON wire form."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcu.cascade.content_tree import (
    PARENT,
    Decided,
    Decision,
    Dequeued,
    Holder,
    HolderChanged,
    Output,
    Release,
    Request,
    Send,
    Source,
    TokenApplied,
    TreeContent,
    TreeError,
    parse,
    to_json,
)
from mcu.content.token import ContentToken


class Tree:
    """The Yunfu tree: city ← county ← township, city ← county-b. Messages go through JSON."""

    def __init__(self, policy: str = "free") -> None:
        self.nodes = {
            "city": TreeContent("city", None, frozenset({"county", "county-b"}),
                                ContentToken(policy=policy)),  # type: ignore[arg-type]
            "county": TreeContent("county", "city", frozenset({"township"})),
            "county-b": TreeContent("county-b", "city"),
            "township": TreeContent("township", "county"),
        }
        self.decided: list[tuple[str, Decided]] = []
        self.dequeued: list[tuple[str, str]] = []  # (node, site)
        self.changes: dict[str, list[HolderChanged]] = {n: [] for n in self.nodes}
        self.wire: list[tuple[str, str, str]] = []  # (from, to, json)
        self.cut: set[frozenset[str]] = set()  # links that drop messages

    def run(self, origin: str, outputs: list[Output], now: float) -> None:
        queue = [(origin, o) for o in outputs]
        while queue:
            at, out = queue.pop(0)
            node = self.nodes[at]
            if isinstance(out, Decided):
                self.decided.append((at, out))
            elif isinstance(out, Dequeued):
                self.dequeued.append((at, out.site))
            elif isinstance(out, HolderChanged):
                self.changes[at].append(out)
            elif isinstance(out, TokenApplied):
                assert node.is_root and out.result.events  # only the root's token changes
            else:
                target = node.parent if out.to == PARENT else out.to
                assert target is not None
                if frozenset({at, target}) in self.cut:
                    continue
                text = json.dumps(to_json(out.message))
                self.wire.append((at, target, text))
                message = parse(json.loads(text))
                dest = self.nodes[target]
                got = dest.from_parent(message, now) if out.to != PARENT else dest.from_child(at, message, now)
                queue += [(target, o) for o in got]

    def holders(self) -> dict[str, str | None]:
        return {n: t.holder for n, t in self.nodes.items()}


def test_a_township_presents_through_two_levels_and_every_node_knows_where_the_picture_comes_from() -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    assert tree.decided == [("township", Decided("site-7", True, ""))]
    assert set(tree.holders().values()) == {"township/site-7"}
    assert tree.nodes["city"].path == ("city", "county", "township")
    assert tree.nodes["city"].source() == Source("child", "county")
    assert tree.nodes["county"].source() == Source("child", "township")
    assert tree.nodes["township"].source() == Source("local", "township/site-7")
    assert tree.nodes["county-b"].source() == Source("parent", PARENT)
    # The picture flows away from the township: up to the county and the city, down to county B.
    assert tree.nodes["township"].sends_to(PARENT)
    assert tree.nodes["county"].sends_to(PARENT) and not tree.nodes["county"].sends_to("township")
    assert tree.nodes["city"].sends_to("county-b") and not tree.nodes["city"].sends_to("county")
    assert not tree.nodes["county-b"].sends_to(PARENT)
    # The request went up hop by hop with its route, the decision came back down the same way.
    kinds = [(a, b, json.loads(t)["kind"]) for a, b, t in tree.wire]
    assert [k for k in kinds if k[2] != "holder"] == [("township", "county", "request"), ("county", "city", "request"),
                         ("city", "county", "decision"), ("county", "township", "decision")]


def test_a_second_presenter_elsewhere_in_the_tree_is_refused_busy_and_nothing_changes() -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    tree.run("county-b", tree.nodes["county-b"].request("room-1", 1.0), 1.0)
    tree.run("city", tree.nodes["city"].request("hall", 1.5), 1.5)
    assert tree.decided[1:] == [("county-b", Decided("room-1", False, "busy")), ("city", Decided("hall", False, "busy"))]
    assert set(tree.holders().values()) == {"township/site-7"}


def test_the_city_chair_takes_the_token_and_the_township_presentation_stops_everywhere() -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    tree.run("city", tree.nodes["city"].chair_take("zhang", 2.0), 2.0)
    assert set(tree.holders().values()) == {"chair:zhang"}
    assert tree.changes["township"][-1] == HolderChanged("chair:zhang", Source("parent", PARENT))
    assert not tree.nodes["township"].sends_to(PARENT)
    assert tree.nodes["city"].source() == Source("local", "chair:zhang")
    with pytest.raises(TreeError):
        tree.nodes["county"].chair_take("li", 3.0)  # only the root's chair
    tree.run("city", tree.nodes["city"].chair_revoke(4.0), 4.0)
    assert set(tree.holders().values()) == {None} and tree.nodes["county"].source() is None
    # The city's own site keeps its plain id (the conference's token is the tree's token there).
    tree.run("city", tree.nodes["city"].request("hall", 5.0), 5.0)
    assert tree.decided[-1] == ("city", Decided("hall", True, ""))
    assert set(tree.holders().values()) == {"hall"} and tree.nodes["city"].token.holder == "hall"
    assert tree.nodes["township"].source() == Source("parent", PARENT)
    tree.run("city", tree.nodes["city"].chair_grant("hall", 6.0), 6.0)  # a local site needs no request


def test_chair_policy_queues_a_remote_request_and_the_city_chair_grants_it_later() -> None:
    tree = Tree(policy="chair")
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    assert tree.decided == [("township", Decided("site-7", False, "awaiting_chair", queued=True))]
    assert [r for r, _ in tree.nodes["city"].token.requests] == ["township/site-7"]
    with pytest.raises(TreeError):
        tree.nodes["city"].chair_grant("county-b/nobody-asked", 1.0)
    tree.run("city", tree.nodes["city"].chair_grant("township/site-7", 5.0), 5.0)
    assert set(tree.holders().values()) == {"township/site-7"}
    assert tree.nodes["city"].path == ("city", "county", "township")


def test_the_city_sends_its_queue_down_and_a_request_that_leaves_it_ungranted_is_dequeued() -> None:
    """Under the chair policy a lower node's request waits in the city's queue: every node learns
    the queue with the holder state; the presenter's node is told when its request leaves it without
    the token (dismissed, policy switched to free, the parent link lost), not when it is granted."""
    tree = Tree(policy="chair")
    city, county, township = tree.nodes["city"], tree.nodes["county"], tree.nodes["township"]
    tree.run("township", township.request("site-7", 0.0), 0.0)
    tree.run("county", county.request("room-1", 0.5), 0.5)
    assert tree.decided == [("township", Decided("site-7", False, "awaiting_chair", queued=True)),
                            ("county", Decided("room-1", False, "awaiting_chair", queued=True))]
    assert {n: t.queue for n, t in tree.nodes.items()} == {n: ("township/site-7", "county/room-1") for n in tree.nodes}
    assert township.queued == {"township/site-7"} and county.queued == {"county/room-1"}
    assert tree.dequeued == [] and tree.changes["township"] == []  # the holder did not change

    # 1. The chair dismisses the township's request (the conference's content tells the tree: sync)
    assert city.token.dismiss("township/site-7")
    tree.run("city", city.sync(1.0), 1.0)
    assert tree.dequeued == [("township", "site-7")] and township.queue == ("county/room-1",)
    assert county.queued == {"county/room-1"}  # still waiting

    # 2. The chair grants the county's: the holder state names it, nothing is dequeued
    tree.run("city", city.chair_grant("county/room-1", 2.0), 2.0)
    assert tree.dequeued == [("township", "site-7")] and county.queued == set()
    assert set(tree.holders().values()) == {"county/room-1"}

    # 3. While someone holds it, a request under the chair policy is refused busy, and queued too
    tree.run("township", township.request("site-7", 3.0), 3.0)
    assert tree.decided[-1] == ("township", Decided("site-7", False, "busy", queued=True))
    # the policy switches to free: the queue is emptied, the township's request ends
    city.token.set_policy("free", 4.0)  # through the conference's content, which tells the tree (sync)
    tree.run("city", city.sync(4.0), 4.0)
    assert tree.dequeued[-1] == ("township", "site-7") and township.queued == set() and not township.queue

    # 4. A queued request whose node loses its parent ends there; the withdrawn one is not told again
    city.token.set_policy("chair", 5.0)
    tree.run("county", county.release("room-1", 5.0), 5.0)
    tree.run("township", township.request("site-7", 6.0), 6.0)
    assert township.queued == {"township/site-7"}
    tree.run("township", township.parent_lost(7.0), 7.0)
    assert tree.dequeued[-1] == ("township", "site-7") and township.queued == set()
    tree.run("county", county.child_lost("township", 7.0), 7.0)
    assert city.token.requests == []  # the city dropped it with the lost link
    assert len(tree.dequeued) == 3

    # 5. A site that withdraws its own queued request is not told it was dequeued
    township.parent_up_again()
    tree.run("county", county.child_up("township"), 8.0)
    tree.run("township", township.request("site-7", 9.0), 9.0)
    tree.run("township", township.release("site-7", 10.0), 10.0)
    assert city.token.requests == [] and len(tree.dequeued) == 3


def test_release_from_the_holder_only_and_the_root_times_out_a_silent_stream() -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    # Another site's release at the county changes nothing.
    tree.run("county", tree.nodes["county"].release("site-1", 1.0), 1.0)
    assert tree.nodes["city"].holder == "township/site-7"
    assert tree.nodes["city"].media("township/site-7", 2.0)
    assert not tree.nodes["city"].media("county/site-1", 2.0)
    assert not tree.nodes["county"].media("township/site-7", 2.0)  # only the root judges liveness
    city = tree.nodes["city"]
    assert city.next_deadline() == 2.0 + city.token.media_timeout
    tree.run("city", city.tick(6.9), 6.9)
    assert city.holder == "township/site-7"
    tree.run("city", city.tick(7.0), 7.0)
    assert set(tree.holders().values()) == {None}
    tree.run("county-b", tree.nodes["county-b"].request("room-1", 8.0), 8.0)
    tree.run("county-b", tree.nodes["county-b"].release("room-1", 9.0), 9.0)
    assert set(tree.holders().values()) == {None}


def test_an_unanswered_request_times_out_and_a_late_decision_is_ignored() -> None:
    tree = Tree()
    tree.cut.add(frozenset({"county", "city"}))
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    township = tree.nodes["township"]
    assert tree.decided == [] and township.next_deadline() == 10.0
    tree.run("township", township.tick(10.0), 10.0)
    assert tree.decided == [("township", Decided("site-7", False, "timeout"))]
    late = township.from_parent(Decision("township/site-7", True, "", ("township", "county")), 11.0)
    assert late == [] and township.holder is None


def test_losing_links_releases_or_forgets_and_reconnection_restores_the_view() -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    # The county loses the city: it keeps its township's picture (inside its subtree).
    county = tree.nodes["county"]
    tree.run("county", county.parent_lost(1.0), 1.0)
    assert county.holder == "township/site-7" and not county.sends_to(PARENT)
    tree.run("township", tree.nodes["township"].request("site-8", 1.5), 1.5)
    assert tree.decided[-1] == ("township", Decided("site-8", False, "unreachable"))
    # The city loses the county: the township's token is released for everyone the city reaches.
    tree.run("city", tree.nodes["city"].child_lost("county", 2.0), 2.0)
    assert tree.nodes["city"].holder is None and tree.nodes["county-b"].holder is None
    # County B presents; the county's link comes back and it learns the truth.
    tree.run("county-b", tree.nodes["county-b"].request("room-1", 3.0), 3.0)
    county.parent_up_again()
    tree.run("city", tree.nodes["city"].child_up("county"), 4.0)
    assert set(tree.holders().values()) == {"county-b/room-1"}
    assert county.source() == Source("parent", PARENT)
    # The township's own parent link lost: nobody presents there (the picture came from above).
    tree.run("township", tree.nodes["township"].parent_lost(5.0), 5.0)
    assert tree.nodes["township"].holder is None


def test_messages_that_do_not_fit_change_nothing() -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    before = tree.holders()
    county, city = tree.nodes["county"], tree.nodes["city"]
    bad: list[tuple[TreeContent, str | None, Any]] = [
        (city, "stranger", Request("stranger/x", ("stranger",))),  # not a child
        (city, "county", Request("county-b/x", ("county-b", "county"))),  # route not from county-b
        (city, "county", Request("county/x", ("county", "city"))),  # a loop through the root
        (city, "county", Holder("county/x", ("county",))),  # state never goes up
        (county, None, Holder("city/x", ("county", "city"))),  # a path that starts at the county
        (county, None, Holder("county-b/x", ("city", "township", "county-b"))),  # our child under another
        (county, None, Holder("chair:li", ("city", "county"))),  # a chair sits on the root
        (county, None, Holder("hall", ("city", "county"))),  # so do the root's own sites
        (county, None, Holder(None, ("city",))),
        (county, None, Request("city/x", ("city",))),  # requests never come down
        (county, None, Decision("county-b/x", True, "", ("county-b", "city"))),  # not through us
    ]
    for node, child, message in bad:
        out = node.from_child(child, message, 1.0) if child is not None else node.from_parent(message, 1.0)
        assert out == [], message
    assert tree.holders() == before
    bodies: list[object] = [None, [], {"kind": "holder", "presenter": None, "path": ["city"]},
                 {"kind": "request", "presenter": "a/b/c", "route": ["a"]},
                 {"kind": "request", "presenter": "a/b", "route": []},
                 {"kind": "request", "presenter": "a/b", "route": ["a", "a"]},
                 {"kind": "decision", "presenter": "a/b", "route": ["a"], "granted": "yes"},
                 {"kind": "grant", "presenter": "a/b", "route": ["a"]},
                 {"kind": "release", "presenter": "a/", "route": ["a"]},
                 {"kind": "release", "presenter": 7, "route": ["a"]},
                 {"kind": "holder", "presenter": "a/b", "path": ["x"] * 17}]
    for body in bodies:
        with pytest.raises(TreeError):
            parse(body)
    with pytest.raises(TreeError):
        TreeContent("city/x", None)
    with pytest.raises(TreeError):
        TreeContent("county", "city", frozenset({"city"}))


def test_the_wire_form_round_trips() -> None:
    messages: list[Request | Release | Decision | Holder] = [Request("t/s", ("t", "c")), Release("t/s", ("t",)), Decision("t/s", False, "busy", ("t", "c")),
                    Holder("chair:zhang", ("city",)), Holder(None, ()), Holder("t/s", ("city", "c", "t")),
                    Decision("t/s", False, "awaiting_chair", ("t",), queued=True),
                    Holder(None, (), ("t/s", "c/r", "hall")), Holder("hall", ("city",), ("t/s",))]
    for message in messages:
        assert parse(json.loads(json.dumps(to_json(message)))) == message
    # an older node's holder message has no queue; a bad queue or queued flag is refused
    assert parse({"kind": "holder", "presenter": None, "path": []}) == Holder(None, ())
    bad: dict[str, Any]
    for bad in ({"kind": "holder", "presenter": None, "path": [], "queue": "t/s"},
                {"kind": "holder", "presenter": None, "path": [], "queue": ["a/b/c"]},
                {"kind": "holder", "presenter": None, "path": [], "queue": ["t/s"] * 65},
                {"kind": "decision", "presenter": "t/s", "route": ["t"], "granted": False, "queued": "yes"}):
        with pytest.raises(TreeError):
            parse(bad)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=5), max_leaves=20)
_near = st.fixed_dictionaries({"kind": st.sampled_from(["request", "release", "decision", "holder", "x"]),
                               "presenter": st.one_of(st.none(), st.sampled_from(["township/s", "chair:z", "a/b/c",
                                                                                 "county-b/r", ""])),
                               "route": st.lists(st.sampled_from(["city", "county", "township", "county-b", "x"]),
                                                 max_size=4),
                               "path": st.lists(st.sampled_from(["city", "county", "township", "county-b"]),
                                                max_size=4),
                               "granted": st.booleans()})


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, _near), st.sampled_from(["city", "county", "township", "county-b"]),
       st.sampled_from(["parent", "county", "township", "county-b"]))
def test_fuzzed_messages_never_raise_anything_but_tree_error_and_keep_one_holder(body: Any, at: str, side: str) -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    try:
        message = parse(body)
    except TreeError:
        return
    node = tree.nodes[at]
    out = node.from_parent(message, 1.0) if side == "parent" else node.from_child(side, message, 1.0)
    for o in out:
        assert isinstance(o, (Send, Decided, HolderChanged, TokenApplied))
    assert tree.nodes["city"].holder == "township/site-7"  # only the root decides


def test_content_messages_ride_the_control_channel_per_conference_and_bad_ones_change_nothing() -> None:
    from mcu.cascade.control import ContentReceived, ControlConnection, ProtocolError

    token = b"k" * 32
    city = ControlConnection("city", token, expected_peer="county")
    county = ControlConnection("county", token, expected_peer="city")
    city.initiate()
    county.initiate()

    def pump() -> tuple[list[Any], list[Any]]:
        got_city: list[Any] = []
        got_county: list[Any] = []
        for _ in range(10):
            a, b = city.data_to_send(), county.data_to_send()
            if not a and not b:
                break
            for m in a:
                got_county += county.receive(m)
            for m in b:
                got_city += city.receive(m)
        return got_city, got_county

    pump()
    county.send_content(Request("township/site-7", ("township", "county")), conference="80000001")
    city.send_content(Holder("township/site-7", ("city", "county", "township")), conference="80000001")
    got_city, got_county = pump()
    assert got_city == [ContentReceived(Request("township/site-7", ("township", "county")), "80000001")]
    assert got_county == [ContentReceived(Holder("township/site-7", ("city", "county", "township")), "80000001")]
    bad = json.dumps({"v": 1, "type": "content", "content": {"kind": "holder", "presenter": "a/b/c", "path": ["a"]}})
    events = city.receive(bad)
    assert len(events) == 1 and isinstance(events[0], ProtocolError) and events[0].code == "bad_field"
    assert json.loads(city.data_to_send()[0])["type"] == "error"  # the peer is told, nothing else happens


def test_a_middle_node_losing_the_holders_link_releases_it_at_once_for_the_whole_tree() -> None:
    tree = Tree()
    tree.run("township", tree.nodes["township"].request("site-7", 0.0), 0.0)
    tree.run("county", tree.nodes["county"].child_lost("county-b", 0.5), 0.5)  # not its child: nothing
    assert tree.nodes["city"].holder == "township/site-7"
    tree.run("county", tree.nodes["county"].child_lost("township", 1.0), 1.0)
    assert tree.nodes["city"].holder is None and tree.nodes["county"].holder is None
    assert tree.nodes["county-b"].holder is None
    assert tree.nodes["city"].token.holder is None  # released at once, not at the media timeout
    # A presenter elsewhere is not touched by the loss of a link it is not behind.
    tree.run("county-b", tree.nodes["county-b"].request("room-1", 2.0), 2.0)
    tree.run("county", tree.nodes["county"].child_lost("township", 2.5), 2.5)
    assert set(tree.holders().values()) - {None} == {"county-b/room-1"}
    # The city's own token judged by the root: a TokenApplied is carried out there only.
    out = tree.nodes["city"].chair_revoke(3.0)
    assert any(isinstance(o, TokenApplied) and o.result.events for o in out)
