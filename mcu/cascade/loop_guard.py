"""The no-loop-back rule of a cascade, as pure functions over the site graph.

The cascade is a tree of MCU nodes (city <- county <- township-level MCU). In a node's room a
participant ("leg") is either one of its own sites or a cascade link to a neighbouring node (a
child, or its parent). A link carries every site *behind* it: a child link carries the child's
whole subtree, the parent link carries everything outside this node's subtree.

Rule (Poly RMX's AVOID_VIDEO_LOOP_BACK_IN_CASCADE): what a node sends on a leg may contain only
sites that are not behind that leg, so no site ever gets its own picture or voice back. For audio
this is the room's N-1 mix applied to the link as one participant (`downstream`). For video the
chair may broadcast a site that is behind the very link it would be sent to (the city broadcasts
a township of county A); `loop_free_panes` replaces such panes with a fallback (RMX shows the
previous speaker), or leaves them blank (None).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Leg:
    """A participant of one node's room: a local site (`kind="site"`) or a cascade link to the
    neighbouring node `name` (`kind="link"`)."""

    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ("site", "link"):
            raise ValueError(f"leg kind must be 'site' or 'link', not {self.kind!r}")


@dataclass(frozen=True)
class Topology:
    """`parent[node]` is the node it cascades into (None for the root); `sites[node]` its sites."""

    parent: Mapping[str, str | None]
    sites: Mapping[str, frozenset[str]]

    def __post_init__(self) -> None:
        roots = [n for n, p in self.parent.items() if p is None]
        if len(roots) != 1:
            raise ValueError(f"a cascade has exactly one root node, found {len(roots)}")
        for node, p in self.parent.items():
            if p is not None and p not in self.parent:
                raise ValueError(f"node {node!r} cascades into unknown node {p!r}")
            seen = {node}
            while p is not None:  # walk up: a cycle never reaches the root
                if p in seen:
                    raise ValueError(f"cascade loop through node {node!r}")
                seen.add(p)
                p = self.parent[p]
        owner: dict[str, str] = {}
        for node, node_sites in self.sites.items():
            if node not in self.parent:
                raise ValueError(f"sites given for unknown node {node!r}")
            for s in node_sites:
                if s in owner:
                    raise ValueError(f"site {s!r} is on two nodes ({owner[s]!r} and {node!r})")
                owner[s] = node

    @cached_property
    def all_sites(self) -> frozenset[str]:
        return frozenset().union(*self.sites.values()) if self.sites else frozenset()

    def children(self, node: str) -> list[str]:
        return sorted(n for n, p in self.parent.items() if p == node)

    def subtree_sites(self, node: str) -> frozenset[str]:
        """Sites on `node` and on every node cascaded below it."""
        out = set(self.sites.get(node, frozenset()))
        for child in self.children(node):
            out |= self.subtree_sites(child)
        return frozenset(out)

    def legs(self, node: str) -> list[Leg]:
        """The participants of `node`'s room: its sites, a link per child, and the parent link."""
        self._known(node)
        legs = [Leg("site", s) for s in sorted(self.sites.get(node, frozenset()))]
        legs += [Leg("link", c) for c in self.children(node)]
        up = self.parent[node]
        if up is not None:
            legs.append(Leg("link", up))
        return legs

    def behind(self, node: str, leg: Leg) -> frozenset[str]:
        """The sites whose media reaches `node` through `leg` (and must never go back on it)."""
        self._known(node)
        if leg.kind == "site":
            if leg.name not in self.sites.get(node, frozenset()):
                raise ValueError(f"site {leg.name!r} is not on node {node!r}")
            return frozenset({leg.name})
        if self.parent[node] == leg.name:
            return self.all_sites - self.subtree_sites(node)
        if self.parent.get(leg.name) == node:
            return self.subtree_sites(leg.name)
        raise ValueError(f"node {node!r} has no cascade link to {leg.name!r}")

    def _known(self, node: str) -> None:
        if node not in self.parent:
            raise ValueError(f"unknown node {node!r}")


def downstream(topology: Topology, node: str, to: Leg) -> frozenset[str]:
    """Every site whose picture or voice `node` may send on leg `to`: all that reach its room
    through its other legs (the room's N-1 with a link counted as one participant)."""
    return frozenset().union(*(topology.behind(node, leg) for leg in topology.legs(node) if leg != to))


def looped(topology: Topology, node: str, to: Leg, contents: Iterable[str]) -> frozenset[str]:
    """The sites in `contents` (what is about to be sent on `to`) that would loop back."""
    return frozenset(contents) & topology.behind(node, to)


def loop_free_panes(topology: Topology, node: str, to: Leg, panes: Sequence[str | None],
                    fallbacks: Sequence[str] = ()) -> list[str | None]:
    """The layout `panes` (site per pane, None = empty) as it may be sent on `to`: a pane showing
    a site behind `to` gets the first fallback (e.g. previous speakers, newest first) that is not
    behind `to` and not already shown, else None."""
    banned = topology.behind(node, to)
    shown = {p for p in panes if p is not None and p not in banned}
    spare = [f for f in fallbacks if f not in banned]
    out: list[str | None] = []
    for pane in panes:
        if pane is None or pane not in banned:
            out.append(pane)
            continue
        pick = next((f for f in spare if f not in shown), None)
        if pick is not None:
            shown.add(pick)
        out.append(pick)
    return out


def topology_from_parents(parents: Mapping[str, str | None],
                          sites: Mapping[str, Iterable[str]]) -> Topology:
    """Convenience constructor (site plans give lists)."""
    return Topology(dict(parents), {n: frozenset(s) for n, s in sites.items()})
