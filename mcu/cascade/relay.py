"""Relaying the control channel through a node (city <- county <- township-level MCU), sans-I/O.

A node has at most one link up (to its parent) and any number of links down (its children),
each a `ControlConnection`. `CascadeRelay` keeps what the parent sees consistent:
* the list announced upward = this node's own sites + every child's announced sites, each with
  `via` extended by that child's name (so the city knows a township sits behind Luoding and then
  behind Luoding's township MCU);
* a parent command for one of this node's own sites is handed to the application (returned from
  `on_parent_event`; answer it with `reply_local`); a command for a site behind a child is
  forwarded one hop down and the child's `CommandResult` goes back up under the parent's id;
* a child that is not connected makes its sites `unknown` upward, and commands for them are
  refused at once with a clear error (never left unanswered).
The caller flushes every connection's `data_to_send()` after each call (the adapter's job).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mcu.cascade.control import (
    ActiveSpeaker,
    CommandReceived,
    CommandResult,
    ControlConnection,
    Event,
    RemoteSite,
    SitesReplaced,
    SiteUpdated,
    State,
)

UNREACHABLE = ("unreachable", "下级节点控制通道中断，无法执行该命令")


@dataclass
class CascadeRelay:
    node: str
    up: ControlConnection | None = None
    children: dict[str, ControlConnection] = field(default_factory=dict)
    local: dict[str, RemoteSite] = field(default_factory=dict)
    _forwarded: dict[tuple[str, int], int] = field(default_factory=dict)  # (child, child id) -> parent id
    _local_pending: set[int] = field(default_factory=set)

    # --- what goes up ----------------------------------------------------------------------

    def exposed_sites(self) -> list[RemoteSite]:
        """This node's sites plus every child's, as the parent should see them."""
        sites = list(self.local.values())
        for name, conn in sorted(self.children.items()):
            for s in conn.remote_sites.values():
                sites.append(RemoteSite(s.id, s.name, s.status, s.speaking, s.muted, (name, *s.via)))
        return sites

    def set_local_sites(self, sites: list[RemoteSite]) -> None:
        self.local = {s.id: s for s in sites}
        self._announce()

    def update_local_site(self, site: RemoteSite) -> None:
        self.local[site.id] = site
        if self._up_open():
            assert self.up is not None
            self.up.update_site(site)

    def parent_connected(self) -> None:
        """Call when the up link authenticates: send the whole list."""
        self._announce()

    # --- events from the links --------------------------------------------------------------

    def on_child_event(self, child: str, event: Event) -> None:
        if child not in self.children:
            raise ValueError(f"unknown child node {child!r}")
        if isinstance(event, SitesReplaced):
            self._announce()
        elif isinstance(event, SiteUpdated):
            s = event.site
            if self._up_open():
                assert self.up is not None
                self.up.update_site(RemoteSite(s.id, s.name, s.status, s.speaking, s.muted, (child, *s.via)))
        elif isinstance(event, CommandResult):
            parent_id = self._forwarded.pop((child, event.id), None)
            if parent_id is not None and self._up_open():
                assert self.up is not None
                self.up.reply(parent_id, event.ok, event.code, event.message)
        elif isinstance(event, ActiveSpeaker) and event.site is not None and self._up_open():
            assert self.up is not None
            self.up.send_speaker(event.site)

    def child_lost(self, child: str) -> None:
        """The child's channel ended: its sites go `unknown` upward, its commands are refused."""
        conn = self.children[child]
        updates = conn.connection_lost() if conn.state is not State.CLOSED else []
        for (name, child_id), parent_id in list(self._forwarded.items()):
            if name == child:
                del self._forwarded[(name, child_id)]
                if self._up_open():
                    assert self.up is not None
                    self.up.reply(parent_id, False, *UNREACHABLE)
        for update in updates:
            self.on_child_event(child, update)

    def on_parent_event(self, event: Event, now: float) -> CommandReceived | None:
        """Route a parent command (at monotonic time `now`, which starts the forwarded command's
        timeout); returns it when it is for one of this node's own sites."""
        if not isinstance(event, CommandReceived):
            return None
        if event.site in self.local:
            self._local_pending.add(event.id)
            return event
        for name, conn in self.children.items():
            if event.site in conn.remote_sites:
                if conn.state is not State.OPEN:
                    self._reply_up(event.id, False, *UNREACHABLE)
                    return None
                try:
                    child_id = conn.send_command(event.command, event.site, event.args, at=now)
                except ValueError as exc:
                    self._reply_up(event.id, False, "refused", str(exc))
                    return None
                self._forwarded[(name, child_id)] = event.id
                return None
        self._reply_up(event.id, False, "unknown_site", "该会场已不在本节点")
        return None

    def reply_local(self, parent_id: int, ok: bool = True, code: str = "", message: str = "") -> None:
        """Answer a command the application executed on one of this node's own sites."""
        if parent_id not in self._local_pending:
            raise ValueError(f"no local command {parent_id} awaiting a reply")
        self._local_pending.discard(parent_id)
        self._reply_up(parent_id, ok, code, message)

    # --- helpers ----------------------------------------------------------------------------

    def _up_open(self) -> bool:
        return self.up is not None and self.up.state is State.OPEN

    def _announce(self) -> None:
        if self._up_open():
            assert self.up is not None
            self.up.announce_sites(self.exposed_sites())

    def _reply_up(self, parent_id: int, ok: bool, code: str, message: str) -> None:
        if self._up_open():
            assert self.up is not None
            self.up.reply(parent_id, ok, code, message)
