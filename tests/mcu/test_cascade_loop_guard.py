"""No loop-back in the cascade (mcu.cascade.loop_guard)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcu.cascade.loop_guard import (
    Leg,
    Topology,
    downstream,
    loop_free_panes,
    looped,
    topology_from_parents,
)

# city <- county A <- township MCU (three levels); city <- county B
YUNFU = topology_from_parents(
    {"city": None, "luoding": "city", "luoding-t1": "luoding", "xinxing": "city"},
    {"city": ["city-hall"], "luoding": ["ld-county-room", "ld-town-2"], "luoding-t1": ["ld-town-1a", "ld-town-1b"],
     "xinxing": ["xx-town-1"]},
)


def test_legs_of_each_room() -> None:
    assert YUNFU.legs("city") == [Leg("site", "city-hall"), Leg("link", "luoding"), Leg("link", "xinxing")]
    assert YUNFU.legs("luoding-t1")[-1] == Leg("link", "luoding")


def test_down_to_a_county_excludes_its_whole_subtree_through_two_levels() -> None:
    down = downstream(YUNFU, "city", Leg("link", "luoding"))
    assert down == {"city-hall", "xx-town-1"}
    # what the county passes on to its township MCU: the city side plus the county's own sites
    assert downstream(YUNFU, "luoding", Leg("link", "luoding-t1")) == {"city-hall", "xx-town-1", "ld-county-room",
                                                                       "ld-town-2"}


def test_up_from_a_county_is_its_subtree_only() -> None:
    assert downstream(YUNFU, "luoding", Leg("link", "city")) == {"ld-county-room", "ld-town-2", "ld-town-1a",
                                                                 "ld-town-1b"}
    assert downstream(YUNFU, "luoding-t1", Leg("link", "luoding")) == {"ld-town-1a", "ld-town-1b"}


def test_a_site_never_gets_itself_back() -> None:
    assert "ld-town-1a" not in downstream(YUNFU, "luoding-t1", Leg("site", "ld-town-1a"))
    assert "ld-town-1b" in downstream(YUNFU, "luoding-t1", Leg("site", "ld-town-1a"))


def test_looped_flags_a_township_sent_back_to_its_county() -> None:
    assert looped(YUNFU, "city", Leg("link", "luoding"), ["city-hall", "ld-town-1a"]) == {"ld-town-1a"}
    assert looped(YUNFU, "city", Leg("link", "xinxing"), ["city-hall", "ld-town-1a"]) == frozenset()


def test_broadcast_of_a_township_is_replaced_on_its_own_link() -> None:
    # The city broadcasts township 1a (full screen); county Luoding must not get it back.
    to_luoding = loop_free_panes(YUNFU, "city", Leg("link", "luoding"), ["ld-town-1a"],
                                 fallbacks=["ld-town-2", "city-hall"])
    assert to_luoding == ["city-hall"]
    assert loop_free_panes(YUNFU, "city", Leg("link", "xinxing"), ["ld-town-1a"]) == ["ld-town-1a"]
    # 2x2 with two looped panes and one fallback: no duplicates, the rest blank
    panes = loop_free_panes(YUNFU, "city", Leg("link", "luoding"), ["ld-town-1a", "xx-town-1", "ld-town-2", None],
                            fallbacks=["xx-town-1", "city-hall"])
    assert panes == ["city-hall", "xx-town-1", None, None]


@pytest.mark.parametrize("parents,sites,match", [
    ({"a": None, "b": None}, {}, "one root"),
    ({"a": None, "b": "c"}, {}, "unknown node"),
    ({"a": None, "b": "c", "c": "b"}, {}, "loop"),
    ({"a": None, "b": "a"}, {"a": ["s"], "b": ["s"]}, "two nodes"),
    ({"a": None}, {"z": ["s"]}, "unknown node"),
])
def test_bad_topologies_are_refused(parents: dict[str, str | None], sites: dict[str, list[str]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        topology_from_parents(parents, sites)


def test_bad_legs_are_refused() -> None:
    with pytest.raises(ValueError):
        YUNFU.behind("city", Leg("link", "luoding-t1"))  # not a neighbour
    with pytest.raises(ValueError):
        YUNFU.behind("city", Leg("site", "ld-town-2"))
    with pytest.raises(ValueError):
        Leg("bridge", "x")
    with pytest.raises(ValueError):
        YUNFU.legs("nowhere")


@st.composite
def trees(draw: st.DrawFn) -> Topology:
    n = draw(st.integers(1, 8))
    parents: dict[str, str | None] = {"n0": None}
    for i in range(1, n):
        parents[f"n{i}"] = f"n{draw(st.integers(0, i - 1))}"
    sites = {f"n{i}": [f"s{i}-{j}" for j in range(draw(st.integers(0, 3)))] for i in range(n)}
    return topology_from_parents(parents, sites)


@settings(max_examples=150, deadline=None)
@given(trees())
def test_every_leg_gets_everything_except_what_is_behind_it(topology: Topology) -> None:
    for node in topology.parent:
        legs = topology.legs(node)
        behind = [topology.behind(node, leg) for leg in legs]
        # legs partition all sites: each site reaches a room through exactly one leg
        assert sum(len(b) for b in behind) == len(topology.all_sites)
        for leg, b in zip(legs, behind, strict=True):
            down = downstream(topology, node, leg)
            assert not (down & b)
            assert down | b == topology.all_sites
