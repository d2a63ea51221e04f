"""The pure rules of node liveness and room ownership (noderpc.pinning)."""
from __future__ import annotations

import pytest

from noderpc.pinning import (
    LivenessRule,
    NodeInfo,
    OwnerState,
    is_alive,
    live_nodes,
    may_take_over,
    owner_of,
    pin_changes,
)

RULE = LivenessRule(heartbeat_s=2.0, dead_after_s=10.0)


def node(node_id: str, last_seen: float, role: str = "mcu", stopped: bool = False) -> NodeInfo:
    return NodeInfo(node_id, role, "", last_seen, stopped)


def test_alive_until_dead_after_then_dead() -> None:
    n = node("a", 100.0)
    assert is_alive(n, 110.0, RULE)
    assert not is_alive(n, 110.001, RULE)
    assert not is_alive(node("a", 100.0, stopped=True), 100.0, RULE), "a clean stop is dead at once"


def test_rule_rejects_a_bound_shorter_than_the_heartbeat() -> None:
    with pytest.raises(ValueError):
        LivenessRule(heartbeat_s=5.0, dead_after_s=5.0)


def test_owner_alive_dead_unpinned() -> None:
    nodes = {"a": node("a", 100.0), "b": node("b", 50.0)}
    pins = {("room", "1"): "a", ("room", "2"): "b", ("room", "3"): "gone"}
    assert owner_of("room", "1", pins, nodes, 105.0, RULE).state is OwnerState.ALIVE
    assert owner_of("room", "1", pins, nodes, 105.0, RULE).node == nodes["a"]
    assert owner_of("room", "2", pins, nodes, 105.0, RULE).state is OwnerState.DEAD
    assert owner_of("room", "3", pins, nodes, 105.0, RULE).state is OwnerState.DEAD
    assert owner_of("room", "4", pins, nodes, 105.0, RULE).state is OwnerState.UNPINNED
    assert owner_of("call", "1", pins, nodes, 105.0, RULE).state is OwnerState.UNPINNED


def test_take_over_only_from_a_dead_owner() -> None:
    assert may_take_over(None, "b", 0.0, RULE)
    assert may_take_over(node("b", 0.0), "b", 100.0, RULE)
    assert not may_take_over(node("a", 95.0), "b", 100.0, RULE)
    assert may_take_over(node("a", 80.0), "b", 100.0, RULE)


def test_live_nodes_by_role_newest_first() -> None:
    nodes = [node("m1", 99.0), node("w", 100.0, role="web"), node("all", 98.0, role="all"), node("m2", 10.0)]
    assert [n.node_id for n in live_nodes(nodes, 100.0, RULE, "mcu")] == ["m1", "all"]
    assert [n.node_id for n in live_nodes(nodes, 100.0, RULE)] == ["w", "m1", "all"]


def test_pin_changes() -> None:
    assert pin_changes(["1", "2"], ["2", "3"]) == ({"1"}, {"3"})
