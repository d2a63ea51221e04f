"""The parent a child cascades into: primary city node, standby city node (pure rules, no network)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from config.site_plan import SitePlan, load_site_plan
from mcu.cascade.parent_choice import ParentChoice, ParentChoiceConfig

CFG = ParentChoiceConfig(("city", "city-standby"), dead_after=3.0, probe_gap=3.0, hold=10.0)


def probe_all(choice: ParentChoice, start: float, end: float, *parents: str, step: float = 1.0) -> list[str]:
    """Every parent named answers once a second in [start, end); the switches seen, in order."""
    out = []
    t = start
    while t < end:
        for p in parents:
            switch = choice.answered(p, t)
            if switch is not None:
                out.append(switch.parent)
        switch = choice.tick(t)
        if switch is not None:
            out.append(switch.parent)
        t += step
    return out


def test_a_healthy_primary_is_kept_even_when_the_standby_answers() -> None:
    choice = ParentChoice(CFG, 0.0)
    assert probe_all(choice, 0.0, 60.0, "city", "city-standby") == []
    assert choice.current == "city"


def test_a_dead_primary_moves_the_link_to_the_standby_after_dead_after() -> None:
    choice = ParentChoice(CFG, 0.0)
    probe_all(choice, 0.0, 10.0, "city", "city-standby")      # last city answer at 9.0
    assert choice.tick(11.9) is None                          # 2.9 s of silence: not yet
    assert choice.answered("city-standby", 11.95) is None
    switch = choice.tick(12.0)
    assert switch is not None and (switch.parent, switch.previous, switch.at) == ("city-standby", "city", 12.0)
    assert choice.current == "city-standby" and list(choice.history) == [switch]
    # the city's answers from before it went quiet do not count towards switching back
    assert choice.answered("city-standby", 12.1) is None and choice.tick(12.5) is None
    assert choice.current == "city-standby" and choice.switches_total == 1


def test_nowhere_to_go_keeps_the_choice() -> None:
    choice = ParentChoice(CFG, 0.0)
    probe_all(choice, 0.0, 5.0, "city", "city-standby")
    assert choice.tick(30.0) is None                          # the standby is silent too
    assert choice.current == "city"
    assert choice.answered("city-standby", 31.0) is not None  # it comes back first: take it
    assert choice.current == "city-standby"


def test_the_primary_wins_back_only_after_the_hold_without_gaps() -> None:
    choice = ParentChoice(CFG, 0.0)
    probe_all(choice, 0.0, 5.0, "city", "city-standby")
    assert probe_all(choice, 5.0, 20.0, "city-standby") == ["city-standby"]
    # the city restarts: healthy from 20, with a gap (25 -> 29.5) that restarts the hold
    assert probe_all(choice, 20.0, 26.0, "city", "city-standby") == []
    assert probe_all(choice, 26.0, 29.5, "city-standby") == []
    assert choice.answered("city", 29.5) is None
    assert probe_all(choice, 29.5, 39.0, "city", "city-standby", step=0.5) == []
    assert choice.next_deadline() == pytest.approx(39.5)
    assert choice.tick(39.5) is not None and choice.current == "city"


def test_a_primary_that_never_answered_gives_way_after_the_startup_grace() -> None:
    choice = ParentChoice(CFG, 100.0)    # startup_grace 10 s: nodes start in any order
    choice.answered("city-standby", 100.5)
    assert choice.tick(103.0) is None
    assert choice.next_deadline() == 110.0
    choice.answered("city-standby", 109.0)
    assert choice.tick(110.0) is not None and choice.current == "city-standby"


@pytest.mark.parametrize("kwargs, message", [
    ({"parents": ()}, "at least one"), ({"parents": ("a", "a")}, "repeat"),
    ({"parents": ("a",), "dead_after": 0}, "dead_after"), ({"parents": ("a",), "hold": -1}, "hold"),
])
def test_bad_configurations_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ParentChoiceConfig(**kwargs)  # type: ignore[arg-type]


def test_time_never_goes_backwards() -> None:
    choice = ParentChoice(CFG, 5.0)
    with pytest.raises(ValueError, match="backwards"):
        choice.tick(4.0)
    with pytest.raises(KeyError):
        choice.answered("telecom", 6.0)


NODES = """
[[nodes]]
name = "city"
area = "445300"
sip = "10.0.0.1:5060"
control = "10.0.0.1:7443"

[[nodes]]
name = "city-standby"
parent = "city"
area = "445300"
sip = "10.0.0.7:5060"
control = "10.0.0.7:7443"

[[nodes]]
name = "county-a"
parent = "city"
standby_parents = {standby}
area = "445381"
sip = "10.0.0.2:5060"
"""


def plan_with(standby: str) -> SitePlan:
    from tests.cascade.cluster import DEMO_PLAN

    text = DEMO_PLAN.read_text(encoding="utf-8").replace(
        'boundaries = "yunfu_counties.geojson"', f'boundaries = "{DEMO_PLAN.parent / "yunfu_counties.geojson"}"')
    path = Path(tempfile.mkdtemp()) / "plan.toml"
    path.write_text(text + NODES.replace("{standby}", standby), encoding="utf-8")
    return load_site_plan(path)


def test_the_plan_lists_standby_parents_and_admits_their_children() -> None:
    plan = plan_with('["city-standby"]')
    assert [n.name for n in plan.link_children("city-standby")] == ["county-a"]
    assert [n.name for n in plan.link_children("city")] == ["city-standby", "county-a"]


@pytest.mark.parametrize("standby, message", [
    ('["telecom-x"]', "standby parent 'telecom-x' is not an MCU node"),
    ('["city"]', "is itself or its parent"),
    ('["city-standby", "city-standby"]', "repeat a node"),
])
def test_bad_standby_parents_are_named(standby: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_with(standby)
