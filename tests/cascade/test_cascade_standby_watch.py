"""The pure rules of `StandbyWatch`: which counties a standby city node meets in their bridges."""
from __future__ import annotations

import pytest

from mcu.cascade.standby_watch import StandbyWatch, StandbyWatchConfig

CONFIG = StandbyWatchConfig("city", frozenset({"county-a", "county-b"}), dead_after=3.0, startup_grace=10.0)


def watch_with_city_dead_at(t: float) -> StandbyWatch:
    """Started at 0, the city answering every second until ``t``."""
    watch = StandbyWatch(CONFIG, 0.0)
    at = 0.0
    while at <= t:
        watch.city_answered(at)
        at += 1.0
    return watch


def test_a_county_arriving_is_armed_and_watched_once_the_city_is_gone() -> None:
    watch = watch_with_city_dead_at(20.0)
    assert watch.arrived("county-a", 21.0, "link")
    assert watch.armed == {"county-a"}
    assert watch.wanted(22.9) == frozenset(), "the city answered 2.9 s ago: not gone yet"
    assert watch.wanted(23.0) == {"county-a"}
    assert not watch.arrived("county-a", 24.0, "control"), "already armed: no second change"
    assert [(c.county, c.armed, c.reason) for c in watch.history] == [("county-a", True, "arrived (link)")]


def test_no_county_is_wanted_while_the_city_answers() -> None:
    """Never both city nodes in one bridge: the living city's own watcher meets the county there."""
    watch = watch_with_city_dead_at(20.0)
    watch.arrived("county-a", 21.0)
    assert watch.wanted(25.0) == {"county-a"}
    watch.city_answered(30.0)  # the city is back
    assert watch.wanted(30.0) == frozenset()
    assert watch.wanted(32.9) == frozenset()
    assert watch.armed == {"county-a"}, "the city answering is no sign the county went back to it"
    assert watch.wanted(33.0) == {"county-a"}, "gone again"


def test_the_citys_announcement_disarms_the_county() -> None:
    watch = watch_with_city_dead_at(20.0)
    watch.arrived("county-a", 21.0)
    watch.arrived("county-b", 21.5)
    assert watch.home("county-a", announced_at=60.0, now=60.2)
    assert watch.armed == {"county-b"}
    assert watch.wanted(61.0) == {"county-b"}
    assert not watch.home("county-a", 61.0, 61.0), "not armed any more: nothing changes"
    assert watch.history[-1].county == "county-a" and not watch.history[-1].armed
    assert watch.history[-1].reason == "back on city"


def test_an_announcement_older_than_the_arrival_is_stale() -> None:
    """The county went to the city, then came here again: the city's earlier word does not disarm."""
    watch = watch_with_city_dead_at(20.0)
    watch.arrived("county-a", 40.0)
    assert not watch.home("county-a", announced_at=39.0, now=41.0)
    assert watch.armed == {"county-a"}
    assert watch.home("county-a", announced_at=40.0, now=41.0)


def test_a_later_arrival_refreshes_the_arming_time() -> None:
    watch = watch_with_city_dead_at(20.0)
    watch.arrived("county-a", 21.0)
    watch.arrived("county-a", 50.0, "control")
    assert not watch.home("county-a", announced_at=45.0, now=51.0), "made before the latest arrival"
    assert watch.armed == {"county-a"}


def test_a_node_the_standby_does_not_serve_is_ignored() -> None:
    watch = watch_with_city_dead_at(0.0)
    assert not watch.arrived("township", 5.0)
    assert not watch.arrived("city", 5.0)
    assert watch.armed == frozenset() and watch.wanted(100.0) == frozenset()
    assert not watch.home("township", 6.0, 6.0)


def test_a_city_never_heard_is_gone_after_the_startup_grace() -> None:
    watch = StandbyWatch(CONFIG, 100.0)
    watch.arrived("county-a", 101.0)
    assert watch.wanted(109.9) == frozenset(), "nodes start in any order"
    assert watch.wanted(110.0) == {"county-a"}
    watch.city_answered(111.0)
    watch.city_answered(105.0)  # out of order: the latest answer counts
    assert not watch.city_gone(113.9) and watch.city_gone(114.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"city": ""}, "city must name"),
    ({"counties": frozenset({"city"})}, "cannot be one of its own counties"),
    ({"dead_after": 0.0}, "dead_after must be positive"),
    ({"startup_grace": -1.0}, "startup_grace must be positive"),
    ({"history_size": 0}, "history_size must be at least 1"),
])
def test_a_bad_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"city": "city", "counties": frozenset({"county-a"})}
    with pytest.raises(ValueError, match=message):
        StandbyWatchConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_history_is_bounded() -> None:
    watch = StandbyWatch(StandbyWatchConfig("city", frozenset({"c"}), history_size=3), 0.0)
    for i in range(5):
        watch.arrived("c", float(2 * i))
        watch.home("c", float(2 * i + 1), float(2 * i + 1))
    assert len(watch.history) == 3 and watch.history[-1].at == 9.0
