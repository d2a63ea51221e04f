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
Everything is per conference (one connection per node pair carries them all): site lists,
commands and speakers keep the conference id they came with.
The caller flushes every connection's `data_to_send()` after each call (the adapter's job).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mcu.cascade.control import (
    DEFAULT_CONFERENCE,
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


class CommandRefused(Exception):
    """A command that could not be sent on (`code`, zh-CN `message`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class CascadeRelay:
    node: str
    up: ControlConnection | None = None
    children: dict[str, ControlConnection] = field(default_factory=dict)
    locals: dict[str, dict[str, RemoteSite]] = field(default_factory=dict)  # conference -> own sites
    # (child, child's command id) -> the parent's command as received (its id, conference...)
    _forwarded: dict[tuple[str, int], CommandReceived] = field(default_factory=dict)
    _local_pending: set[int] = field(default_factory=set)

    @property
    def local(self) -> dict[str, RemoteSite]:
        """This node's own sites in the default conference."""
        return self.locals.get(DEFAULT_CONFERENCE, {})

    # --- what goes up ----------------------------------------------------------------------

    def conferences(self) -> list[str]:
        """Every conference this node has sites for, its own or its children's."""
        names = set(self.locals)
        for conn in self.children.values():
            names |= set(conn.remote)
        return sorted(names)

    def exposed_sites(self, conference: str = DEFAULT_CONFERENCE) -> list[RemoteSite]:
        """This node's sites plus every child's, as the parent should see them."""
        sites = list(self.locals.get(conference, {}).values())
        for name, conn in sorted(self.children.items()):
            for s in conn.remote_of(conference).values():
                sites.append(RemoteSite(s.id, s.name, s.status, s.speaking, s.muted, (name, *s.via)))
        return sites

    def child_of_site(self, site: str, conference: str = DEFAULT_CONFERENCE) -> str | None:
        """The child node a remote site is behind (None: not a child's site)."""
        return next((name for name, conn in sorted(self.children.items()) if site in conn.remote_of(conference)),
                    None)

    def set_local_sites(self, sites: list[RemoteSite], conference: str = DEFAULT_CONFERENCE) -> None:
        self.locals[conference] = {s.id: s for s in sites}
        self._announce(conference)

    def update_local_site(self, site: RemoteSite, conference: str = DEFAULT_CONFERENCE) -> None:
        self.locals.setdefault(conference, {})[site.id] = site
        if self._up_open():
            assert self.up is not None
            self.up.update_site(site, conference)

    def parent_connected(self) -> None:
        """Call when the up link authenticates: send the whole list of every conference."""
        for conference in self.conferences():
            self._announce(conference)

    # --- events from the links --------------------------------------------------------------

    def on_child_event(self, child: str, event: Event) -> CommandReceived | None:
        """Pass a child's event up. Returns the parent's command when the child has just honoured
        a forwarded one (the node may then act on its own room: show that child's link)."""
        if child not in self.children:
            raise ValueError(f"unknown child node {child!r}")
        if isinstance(event, SitesReplaced):
            self._announce(event.conference)
        elif isinstance(event, SiteUpdated):
            s = event.site
            if self._up_open():
                assert self.up is not None
                self.up.update_site(RemoteSite(s.id, s.name, s.status, s.speaking, s.muted, (child, *s.via)),
                                    event.conference)
        elif isinstance(event, CommandResult):
            original = self._forwarded.pop((child, event.id), None)
            if original is not None and original.id >= 0:
                self._reply_up(original.id, event.ok, event.code, event.message)
            if original is not None and event.ok:
                return original
        elif isinstance(event, ActiveSpeaker) and event.site is not None and self._up_open():
            assert self.up is not None
            self.up.send_speaker(event.site, event.conference)
        return None

    def child_lost(self, child: str) -> None:
        """The child's channel ended: its sites go `unknown` upward, its commands are refused."""
        conn = self.children[child]
        updates = conn.connection_lost() if conn.state is not State.CLOSED else []
        for (name, child_id), original in list(self._forwarded.items()):
            if name == child:
                del self._forwarded[(name, child_id)]
                if original.id >= 0:
                    self._reply_up(original.id, False, *UNREACHABLE)
        for update in updates:
            self.on_child_event(child, update)

    def forget_child(self, child: str) -> None:
        """Drop a child whose channel ended and whose sites are reachable another way (a county that
        left this standby city node for its own parent): its sites leave the list announced upward
        instead of staying there `unknown`. Call after `child_lost`."""
        conn = self.children.pop(child, None)
        if conn is None:
            return
        for conference in sorted(conn.remote):
            self._announce(conference)

    def on_parent_event(self, event: Event, now: float) -> CommandReceived | None:
        """Route a parent command (at monotonic time `now`, which starts the forwarded command's
        timeout); returns it when it is for one of this node's own sites."""
        if not isinstance(event, CommandReceived):
            return None
        if event.site in self.locals.get(event.conference, {}):
            self._local_pending.add(event.id)
            return event
        name = self.child_of_site(event.site, event.conference)
        if name is None:
            self._reply_up(event.id, False, "unknown_site", "该会场已不在本节点")
            return None
        try:
            self.forward(name, event, now)
        except CommandRefused as refused:
            self._reply_up(event.id, False, refused.code, refused.message)
        return None

    def forward(self, child: str, command: CommandReceived, now: float) -> int:
        """Send `command` one hop down to `child` at time `now`; returns the child connection's
        command id (its result comes back through `on_child_event`). A command this node issues
        itself (its own chair, at the root) uses an id < 0, so its result is not replied upward.
        Raises `CommandRefused` (nothing sent) when the child is not connected or the command
        cannot be sent."""
        conn = self.children.get(child)
        if conn is None or conn.state is not State.OPEN:
            raise CommandRefused(*UNREACHABLE)
        try:
            child_id = conn.send_command(command.command, command.site, command.args, at=now,
                                         conference=command.conference)
        except ValueError as exc:
            raise CommandRefused("refused", str(exc)) from None
        self._forwarded[(child, child_id)] = command
        return child_id

    def reply_local(self, parent_id: int, ok: bool = True, code: str = "", message: str = "") -> None:
        """Answer a command the application executed on one of this node's own sites."""
        if parent_id not in self._local_pending:
            raise ValueError(f"no local command {parent_id} awaiting a reply")
        self._local_pending.discard(parent_id)
        self._reply_up(parent_id, ok, code, message)

    # --- helpers ----------------------------------------------------------------------------

    def _up_open(self) -> bool:
        return self.up is not None and self.up.state is State.OPEN

    def _announce(self, conference: str) -> None:
        if self._up_open():
            assert self.up is not None
            self.up.announce_sites(self.exposed_sites(conference), conference)

    def _reply_up(self, parent_id: int, ok: bool, code: str, message: str) -> None:
        if self._up_open():
            assert self.up is not None
            self.up.reply(parent_id, ok, code, message)
