"""Which node is alive and which node hosts a room, call or recording (pure: times are arguments).

Rules:

* A node heartbeats every ``heartbeat_s``. It is **alive** while ``now - last_seen <= dead_after_s``
  and it has not said it stopped; otherwise it is **dead**. ``dead_after_s`` bounds how long a
  crashed node is still believed alive (the default, 10 s, is five missed heartbeats).
* ``now`` and ``last_seen`` come from the same clock (the database's ``now()``), so clock skew
  between hosts does not move the bound.
* A pin maps (kind, key) to the node that hosts it. The owner of a key is its pinned node when that
  node is alive. A dead owner is reported as such (the caller answers 503, it does not guess):
  the room lives in that node's memory and is gone with it.
* A node may take a pin over only when the current owner is dead (or is itself): two live nodes
  never fight over one room.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

KINDS = ("room", "call", "recording")


@dataclass(frozen=True)
class LivenessRule:
    heartbeat_s: float = 2.0
    dead_after_s: float = 10.0

    def __post_init__(self) -> None:
        if self.heartbeat_s <= 0 or self.dead_after_s <= self.heartbeat_s:
            raise ValueError("dead_after_s must exceed heartbeat_s > 0")


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    role: str
    base_url: str
    last_seen: float  # seconds, same clock as `now`
    stopped: bool = False


def is_alive(node: NodeInfo, now: float, rule: LivenessRule) -> bool:
    """Alive: heard from within `dead_after_s` and not stopped."""
    return not node.stopped and now - node.last_seen <= rule.dead_after_s


class OwnerState(StrEnum):
    ALIVE = "alive"
    DEAD = "dead"          # pinned to a node that stopped heartbeating
    UNPINNED = "unpinned"  # no node hosts it


@dataclass(frozen=True)
class Owner:
    state: OwnerState
    node: NodeInfo | None = None


def owner_of(kind: str, key: str, pins: Mapping[tuple[str, str], str], nodes: Mapping[str, NodeInfo],
             now: float, rule: LivenessRule) -> Owner:
    """The node hosting (kind, key), and whether it is alive."""
    node_id = pins.get((kind, key))
    if node_id is None:
        return Owner(OwnerState.UNPINNED)
    node = nodes.get(node_id)
    if node is None:
        return Owner(OwnerState.DEAD)
    return Owner(OwnerState.ALIVE if is_alive(node, now, rule) else OwnerState.DEAD, node)


def may_take_over(current: NodeInfo | None, claimant: str, now: float, rule: LivenessRule) -> bool:
    """May `claimant` pin a key now held by `current` (None: nobody)?"""
    return current is None or current.node_id == claimant or not is_alive(current, now, rule)


def live_nodes(nodes: Iterable[NodeInfo], now: float, rule: LivenessRule, role: str | None = None) -> list[NodeInfo]:
    """The alive nodes (of `role`, or `role` "all"), most recently heard first."""
    found = [n for n in nodes if is_alive(n, now, rule) and (role is None or n.role in (role, "all"))]
    return sorted(found, key=lambda n: -n.last_seen)


def pin_changes(hosted: Iterable[str], pinned: Iterable[str]) -> tuple[set[str], set[str]]:
    """(keys to pin, keys to unpin) to make a node's pins match what it hosts."""
    have, want = set(pinned), set(hosted)
    return want - have, have - want
