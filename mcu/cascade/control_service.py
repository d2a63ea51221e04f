"""Capability `cascade_control`: the control channel between this node and its cascade neighbours.

A node with children in the site plan listens on its `control` host:port (a plain `websockets`
server, so it works in `--role mcu` without the web console); a node with a parent connects to
the parent's `control` address and reconnects every 2 s. Both ends run `ControlSession`
(HMAC mutual authentication with `settings.cascade.token`; close code 4401 on failure, which
is audited). One connection per node pair carries every conference (the `conference` field).
With `settings.cascade.tls = "on"` the channel is `wss://` (server certificate checked for the
parent's control host; client certificates required when `tls_ca` is set — control_tls.py); a
child whose TLS handshake fails audits `cascade.control.tls` and retries slowly.

What travels:
* up: this node's own sites of each running conference (from `RunningConference`, live on the
  bus's `conference.*` events) plus its children's (`CascadeRelay`), and speaker changes;
* down: the chair's commands. A command for one of this node's sites is executed on its room as
  the chair operation it names (`mcu.chair`: mute → room mute, roll call / broadcast → its
  broadcast view, which is what the link sends up; select-view; banner → the text overlay); one
  for a site behind a child goes one hop down.
  When a child honours a roll call or broadcast, this node shows that child's link
  (`cascade-<child>`) the same way, so the picture climbs level by level to the city.

At the parent the remote sites appear in `RunningConference.site_list()` (this object is the
conference service's `RemoteSiteProvider`) with `via` and the link, status `unknown` when the
channel is lost; the console's commands on them go through `command()`, which waits for the
remote node's answer (or `timeout` / `unreachable`). The `cascade` capability (failover) is
told when a channel authenticates or is lost (`control_state(node, up)`).

A standby city node (issue 17) also serves the counties that list it among their
`standby_parents` (`standby_children`, when it has a control address). A county's channel follows
the parent its `cascade` capability chose (`follow_parent`): when its links are re-formed on the
standby, the up channel is closed and opened to the standby, and back to the city when the links
go back. The standby forgets a standby child's sites when its channel ends (it is normally back on
the city, which announces them), so the city never sees one county's sites by two ways.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidMessage

from core.runtime import CoreServices
from core.tasks import cancel_and_wait
from mcu.cascade.content_link import CascadedContent, TreeConference
from mcu.cascade.content_tree import PARENT, Message, TreeError
from mcu.cascade.control import (
    ActiveSpeaker,
    Authenticated,
    AuthFailed,
    CommandReceived,
    CommandResult,
    ContentReceived,
    ControlConnection,
    Event,
    ProtocolError,
    RemoteSite,
    SitesReplaced,
    SiteUpdated,
    State,
    check_command,
)
from mcu.cascade.control_tls import tls_failure
from mcu.cascade.control_ws import CLOSE_AUTH_FAILED, ControlSession
from mcu.cascade.naming import link_participant
from mcu.cascade.relay import UNREACHABLE, CascadeRelay, CommandRefused
from mcu.chair import apply_operation, operation_of_command
from mcu.conferences import ConferenceService, RemoteCommandError, RunningConference
from mcu.room import RoomError

if TYPE_CHECKING:
    from config.site_plan import Node, SitePlan

log = logging.getLogger(__name__)

LINK_PREFIX = "cascade-"  # a link participant's site id: cascade-<node on the other side>
NOT_RUNNING = ("not_running", "本节点未在进行该会议")


def link_id(node: str) -> str:
    """The site id of the cascade link to `node` in this node's room."""
    return LINK_PREFIX + node


def node_label(plan: SitePlan, name: str) -> str:
    """What people call a node: the name of the area it hosts (罗定市, a township), else its name."""
    node = plan.node(name)
    area = node.area if node is not None else ""
    if area == plan.city.adcode:
        return plan.city.name
    county = next((c.name for c in plan.counties if c.adcode == area), None)
    township = next((t.name for t in plan.townships if t.id == area), None)
    return county or township or name


def hosted_here(plan: SitePlan, node: str, site_id: str) -> bool:
    """Whether this node hosts a site: a meeting room of the plan belongs to the node of its area
    (the same conference runs on every node of the cascade with the whole plan list); anyone who
    joined here otherwise (browser guests, dial-ins) is this node's."""
    room = next((r for r in plan.meeting_rooms if r.id == site_id), None)
    if room is None:
        return True
    host = plan.node_of_area(room.area)
    return host is None or host.name == node


def local_sites(conf: RunningConference, node: str = "") -> list[RemoteSite]:
    """This node's own sites of a conference as announced upward: cascade links left out (a
    child's link is represented by the child's own sites, the parent's link is the parent), and
    plan meeting rooms hosted by another node left out (they are announced by that node)."""
    plan = conf.service.core.plan
    return [RemoteSite(s["site_id"], s["name"][:256], s["status"], bool(s["speaking"]), bool(s["muted"]))
            for s in conf.local_site_list()
            if not s["site_id"].startswith(LINK_PREFIX) and (not node or hosted_here(plan, node, s["site_id"]))]


def execute(conf: RunningConference, command: CommandReceived) -> None:
    """Run a parent's command on this node's room (RoomError: refused, nothing changed): the chair
    operation it names (mcu.chair), as the console would run it here."""
    apply_operation(conf.room, operation_of_command(command.command, command.site, command.args))


def show_link(conf: RunningConference, command: CommandReceived, child: str) -> None:
    """A child honoured a roll call / broadcast of a site behind it: show that child's link here
    too (what the child now sends up is that site) — on whichever path it runs now, primary or
    backup. No link in the room (media not up): nothing."""
    link = link_participant(conf.room, child)
    if link is None:
        return
    if command.command == "roll_call":
        conf.room.roll_call(link)
    elif command.command == "broadcast":
        conf.room.broadcast(link)


class ConferenceContents(Protocol):
    """The node's content service: a running conference's content (None: not running here)."""

    def get(self, conference_id: str) -> TreeConference | None: ...


class ControlStateListener(Protocol):
    """Who hears that a control channel came up or went down (the failover, ``CascadeService``)."""

    def control_state(self, node: str, up: bool) -> None: ...


@dataclass
class ControlService:
    """The control channels of one node (see the module docstring)."""

    core: CoreServices
    conferences: ConferenceService
    node: str
    token: bytes
    listen: str = ""                        # host:port for the children's channels ('' = no children)
    parent: Node | None = None
    children: frozenset[str] = frozenset()
    # children whose plan parent is another node and that list this one as a standby parent: served
    # while they cascade into this node, forgotten (not shown `unknown`) when they leave
    standby_children: frozenset[str] = frozenset()
    reconnect_interval: float = 2.0
    refused_interval: float = 30.0          # after our parent refused our credentials: no audit flood
    command_timeout: float = 10.0
    auth_timeout: float = 5.0
    # websocket keepalive: a channel whose route died silently is noticed within about twice this
    # (settings.cascade.control_timeout_seconds), so its remote sites turn "unknown" promptly
    keepalive: float = 3.0
    # TLS (settings.cascade.tls, mcu/cascade/control_tls.py): None = plain ws://
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None
    # the failover (the `cascade` capability, when it runs here): told when a channel comes and goes
    failover: ControlStateListener | None = None
    # the conferences' content (mcu.content): a cascaded conference's token runs across the tree
    contents: ConferenceContents | None = None
    content_request_timeout: float = 10.0
    relay: CascadeRelay = field(init=False)
    _server: Server | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _child_sessions: dict[str, ControlSession] = field(default_factory=dict)
    _up_session: ControlSession | None = None
    _up_task: asyncio.Task[None] | None = None
    _waiting: dict[tuple[str, int], asyncio.Future[CommandResult]] = field(default_factory=dict)
    _own_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _published: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)  # last persisted state
    _trees: dict[str, CascadedContent] = field(default_factory=dict)  # cascaded conferences' content token
    _flushing: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.relay = CascadeRelay(self.node)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        for conf in self.conferences.running_conferences():
            self.relay.set_local_sites(local_sites(conf, self.node), conf.id)
            await self._reconcile_tree(conf.id)
        self._tasks.append(asyncio.create_task(self._watch_conferences(), name="cascade-control-bus"))
        if self.children:
            host, _, port = self.listen.rpartition(":")
            self._server = await serve(self._serve_child, host, int(port), max_size=512 * 1024,
                                       ping_interval=self.keepalive, ping_timeout=self.keepalive,
                                       ssl=self.server_ssl, open_timeout=self.auth_timeout)
        if self.parent is not None:
            self._start_up(self.parent)
        self.conferences.register_remote_sites(self)

    def _start_up(self, parent: Node) -> None:
        self._up_task = asyncio.create_task(self._parent_loop(parent), name="cascade-control-up")
        self._tasks.append(self._up_task)

    async def follow_parent(self, name: str) -> None:
        """This node's cascade links were re-formed on parent ``name`` (a standby city node, or the
        plan's parent again): close the up channel and open it to that node, with the content trees
        of the cascaded conferences rebuilt under it. A parent without a control address leaves
        this node without an up channel (logged). Unknown names raise ValueError, nothing changed."""
        if self.parent is not None and self.parent.name == name:
            return
        new = self.core.plan.node(name)
        if new is None or new.kind != "mcu":
            raise ValueError(f"no MCU node {name!r} in the site plan")
        old = self.parent
        if self._up_task is not None:
            await cancel_and_wait([self._up_task], swallow_errors=True)
            self._tasks.remove(self._up_task)
            self._up_task = None
        was_up = self._up_session is not None and self._up_session.conn.state is State.OPEN
        self._up_session = None
        self.relay.up = None
        self.parent = new
        if old is not None and was_up:
            self._control_state(old.name, False)
        for conference_id, tree in list(self._trees.items()):  # the tree's parent link changes
            if old is not None and tree.tree.parent == old.name:
                await self._trees.pop(conference_id).stop()
                await self._reconcile_tree(conference_id)
        if new.control:
            self._start_up(new)
        else:
            log.warning("cascade control: parent %s has no control address; no up channel", new.name)
        log.info("cascade control: up channel follows the parent %s -> %s", old.name if old else None, new.name)
        await self.core.audit.record(f"node:{self.node}", "cascade.control.parent", new.name,
                                     detail={"previous": old.name if old else None, "parent": new.name,
                                             "control": new.control})

    async def stop(self) -> None:
        self.conferences.register_remote_sites(None)
        await cancel_and_wait(self._tasks, swallow_errors=True)
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_result(CommandResult(0, False, *UNREACHABLE))
        for tree in list(self._trees.values()):
            await tree.stop()
        self._trees.clear()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    # -- the content token across the tree (mcu.cascade.content_link) ----------------------------

    def content_tree(self, conference_id: str) -> CascadedContent | None:
        """The content token of a cascaded conference running here (None: not cascaded / not running)."""
        return self._trees.get(conference_id)

    def _tree_shape(self, conference_id: str) -> tuple[str | None, frozenset[str]] | None:
        """(parent, children) of this node in a conference the plan cascades over it (None: not cascaded)."""
        plan = next((c for c in self.core.plan.conferences if c.id == conference_id), None)
        if plan is None or self.node not in plan.nodes:
            return None
        parent = self.parent.name if self.parent is not None and self.parent.name in plan.nodes else None
        children = frozenset(c for c in self.children if c in plan.nodes)
        return (parent, children) if parent is not None or children else None

    async def _reconcile_tree(self, conference_id: str) -> None:
        """One content tree per running cascaded conference; dropped when it ends."""
        conf = self.conferences.running(conference_id)
        content = self.contents.get(conference_id) if self.contents is not None and conf is not None else None
        tree = self._trees.get(conference_id)
        if tree is not None and (content is None or tree.content is not content or conf is None or conf.room.ended):
            await self._trees.pop(conference_id).stop()
            tree = None
        shape = self._tree_shape(conference_id)
        if tree is not None or content is None or shape is None or conf is None or conf.room.ended:
            return
        parent, children = shape
        tree = CascadedContent(conference_id, self.node, parent, children, content, self,
                               request_timeout=self.content_request_timeout)
        self._trees[conference_id] = tree
        tree.start()
        for child in children:  # channels already up: they get the current state
            session = self._child_sessions.get(child)
            if session is not None and session.conn.state is State.OPEN:
                tree.driver.child_up(child)
        up = self._up_session
        if parent is not None and (up is None or up.conn.state is not State.OPEN):
            tree.driver.parent_lost()

    def send_content(self, conference_id: str, to: str, message: Message) -> None:
        """A content-tree message on the link ``to`` (PARENT or a child), flushed at once; dropped when
        that channel is down (the tree learns the loss from the channel itself)."""
        session = self._up_session if to == PARENT else self._child_sessions.get(to)
        if session is None or session.conn.state is not State.OPEN:
            return
        session.conn.send_content(message, conference_id)
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    def _trees_of(self, node: str) -> list[CascadedContent]:
        return [t for t in self._trees.values() if node in t.tree.children or node == t.tree.parent]

    def labels(self) -> dict[str, str]:
        """Display names of the neighbouring nodes (and of every node of the plan)."""
        return {n.name: node_label(self.core.plan, n.name) for n in self.core.plan.nodes}

    def channels(self) -> dict[str, bool]:
        """Whether each neighbour's channel is authenticated now (children and the parent). A standby
        child is a neighbour only while its channel is here (it is normally its own parent's)."""
        out = {name: name in self._child_sessions and self._child_sessions[name].conn.state is State.OPEN
               for name in sorted(self.children)
               if name not in self.standby_children or name in self._child_sessions}
        if self.parent is not None:
            up = self._up_session
            out[self.parent.name] = up is not None and up.conn.state is State.OPEN
        return out

    # -- the remote-site provider (RunningConference.site_list / remote_command) -----------------

    def sites(self, conference_id: str) -> list[dict[str, Any]]:
        out = []
        for child in sorted(self.relay.children):
            conn = self.relay.children[child]
            for s in conn.remote_of(conference_id).values():
                via = [child, *s.via]
                out.append({"site_id": s.id, "name": s.name, "protocol": "cascade", "status": s.status,
                            "detail": "", "stats": {}, "muted": s.muted, "deaf": False, "dial": False,
                            "chair": False, "speaking": s.speaking, "remote": True, "via": via,
                            "via_names": [node_label(self.core.plan, n) for n in via], "link": link_id(child)})
        return out

    async def command(self, conference_id: str, site_id: str, command: str, args: dict[str, Any]) -> None:
        """Send a chair command to a remote site and wait for the node that hosts it to answer."""
        try:
            args = check_command(command, args)
        except ValueError as exc:
            raise RemoteCommandError("bad_request", str(exc)) from None
        child = self.relay.child_of_site(site_id, conference_id)
        if child is None:
            raise RemoteCommandError("unknown_site", f"会场不在本会议中：{site_id}")
        loop = asyncio.get_running_loop()
        request = CommandReceived(-next(self._own_ids), command, site_id, args, conference_id)
        try:
            child_id = self.relay.forward(child, request, loop.time())
        except CommandRefused as refused:
            raise RemoteCommandError(refused.code, refused.message) from None
        future: asyncio.Future[CommandResult] = loop.create_future()
        self._waiting[(child, child_id)] = future
        try:
            await self._flush()
            # The session's own timer answers `timeout` after command_timeout; this is a backstop.
            result = await asyncio.wait_for(future, self.command_timeout + 5)
        except TimeoutError:
            result = CommandResult(child_id, False, "timeout", "下级节点未在规定时间内答复该命令")
        finally:
            self._waiting.pop((child, child_id), None)
        if not result.ok:
            raise RemoteCommandError(result.code, result.message)

    # -- children (this node is the parent) -------------------------------------------------

    async def _serve_child(self, ws: ServerConnection) -> None:
        conn = ControlConnection(self.node, self.token, allowed_peers=self.children,
                                 command_timeout=self.command_timeout)
        source = f"{ws.remote_address[0]}" if ws.remote_address else ""
        session: ControlSession

        async def on_event(event: Event) -> None:
            await self._on_child_event(session, event, source)

        session = ControlSession(ws, conn, on_event, auth_timeout=self.auth_timeout)
        await session.run()
        peer = conn.peer
        if peer is not None and self._child_sessions.get(peer) is session:
            await self._child_lost(peer, source)

    async def _on_child_event(self, session: ControlSession, event: Event, source: str) -> None:
        conn = session.conn
        if isinstance(event, AuthFailed):
            await self._audit_denied(conn.peer, event.reason, source)
            return
        if isinstance(event, Authenticated):
            await self._child_connected(event.peer, session, source)
            return
        peer = conn.peer
        if peer is None or self._child_sessions.get(peer) is not session:
            return  # a replaced or stale session
        if isinstance(event, ProtocolError):
            log.warning("cascade control from %s: %s %s", peer, event.code, event.message)
            return
        if isinstance(event, ContentReceived):
            tree = self._trees.get(event.conference)
            if tree is not None and peer in tree.tree.children:
                try:
                    tree.driver.from_child(peer, event.message)
                except TreeError as exc:  # refused by the tree: logged, nothing changed
                    log.warning("cascade content from %s refused: %s", peer, exc)
            else:
                log.info("cascade content from %s for conference %s ignored (not cascaded here)", peer,
                         event.conference)
            await self._flush()
            return
        if isinstance(event, CommandResult):
            future = self._waiting.get((peer, event.id))
            if future is not None and not future.done():
                future.set_result(event)
        honoured = self.relay.on_child_event(peer, event)
        if honoured is not None:
            conf = self.conferences.running(honoured.conference)
            if conf is not None:
                try:
                    show_link(conf, honoured, peer)
                except RoomError as exc:
                    log.info("cascade: showing link %s failed: %s", peer, exc)
        await self._flush()
        await self._publish_remote(event)

    async def _child_connected(self, peer: str, session: ControlSession, source: str) -> None:
        old = self._child_sessions.get(peer)
        self._child_sessions[peer] = session
        if old is not None and old is not session:  # the child reconnected before we noticed
            self._fail_waiting(peer)
            with contextlib.suppress(Exception):
                await old.ws.close(1000, "replaced")
        self.relay.children[peer] = session.conn
        await self.core.audit.record(f"node:{peer}", "cascade.control.connect", self.node, source=source,
                                     detail={"role": "child"})
        self._control_state(peer, True)
        for tree in self._trees_of(peer):
            tree.driver.child_up(peer)
        await self._flush()

    async def _child_lost(self, peer: str, source: str) -> None:
        del self._child_sessions[peer]
        self._fail_waiting(peer)
        self.relay.child_lost(peer)
        for tree in self._trees_of(peer):
            tree.driver.child_lost(peer)
        await self._flush()
        self._control_state(peer, False)
        await self.core.audit.record(f"node:{peer}", "cascade.control.lost", self.node, source=source,
                                     detail={"role": "child"})
        conferences = list(self.relay.children[peer].remote)
        if peer in self.standby_children:
            self.relay.forget_child(peer)  # it went back to its own parent, which shows its sites
            await self._flush()
        for conference in conferences:
            await self.core.bus.publish("conference.remote_sites", {"conference_id": conference, "node": peer,
                                                                     "channel": "lost"})

    def _fail_waiting(self, peer: str) -> None:
        for (child, child_id), future in list(self._waiting.items()):
            if child == peer and not future.done():
                future.set_result(CommandResult(child_id, False, *UNREACHABLE))

    # -- the parent (this node is a child) ---------------------------------------------------

    async def _parent_loop(self, parent: Node) -> None:
        while True:
            authenticated, refused = False, False
            try:
                authenticated, refused = await self._connect_up(parent)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, unreachable, reset: try again
                reason = tls_failure(exc)
                if reason is None and self.client_ssl is not None and isinstance(exc, InvalidMessage):
                    # TLS 1.3: a parent that rejects our certificate aborts after our side of the
                    # handshake finished; all we see is the connection closing before the HTTP reply
                    reason = "the parent closed the connection in the opening handshake (our certificate refused?)"
                if reason is None:
                    log.debug("cascade control to %s (%s): %s", parent.name, parent.control, exc)
                else:  # a certificate problem does not fix itself: audit it, retry slowly
                    refused = True
                    await self._audit_tls(parent, reason)
            if authenticated:
                for tree in self._trees_of(parent.name):
                    tree.driver.parent_lost()
                self._control_state(parent.name, False)
                await self.core.audit.record(f"node:{parent.name}", "cascade.control.lost", self.node,
                                             source=parent.control, detail={"role": "parent"})
            await asyncio.sleep(self.refused_interval if refused else self.reconnect_interval)

    async def _connect_up(self, parent: Node) -> tuple[bool, bool]:
        """One connection to the parent, served until it ends: (was authenticated, we were refused)."""
        scheme = "ws" if self.client_ssl is None else "wss"  # wss: the parent's certificate is checked
        async with connect(f"{scheme}://{parent.control}", open_timeout=self.auth_timeout, max_size=512 * 1024,
                           ping_interval=self.keepalive, ping_timeout=self.keepalive, ssl=self.client_ssl) as ws:
            conn = ControlConnection(self.node, self.token, expected_peer=parent.name,
                                     command_timeout=self.command_timeout)
            session: ControlSession

            async def on_event(event: Event) -> None:
                await self._on_parent_event(session, event)

            session = ControlSession(ws, conn, on_event, auth_timeout=self.auth_timeout)
            self._up_session = session
            self.relay.up = conn
            await session.run()
            authenticated = session.authenticated.is_set()
            return authenticated, not authenticated and ws.close_code == CLOSE_AUTH_FAILED

    async def _on_parent_event(self, session: ControlSession, event: Event) -> None:
        if isinstance(event, AuthFailed):
            await self._audit_denied(session.conn.peer, event.reason, self.parent.control if self.parent else "")
            return
        if isinstance(event, Authenticated):
            self.relay.parent_connected()
            for tree in self._trees_of(event.peer):
                tree.driver.parent_up()  # the parent's Holder follows and restores the view
            await self._flush()
            self._control_state(event.peer, True)
            await self.core.audit.record(f"node:{event.peer}", "cascade.control.connect", self.node,
                                         source=self.parent.control if self.parent else "",
                                         detail={"role": "parent"})
            return
        if isinstance(event, ProtocolError):
            log.warning("cascade control from the parent: %s %s", event.code, event.message)
            return
        if isinstance(event, ContentReceived):
            from_parent = self._trees.get(event.conference)
            if from_parent is not None and from_parent.tree.parent is not None:
                try:
                    from_parent.driver.from_parent(event.message)
                except TreeError as exc:
                    log.warning("cascade content from the parent refused: %s", exc)
            await self._flush()
            return
        own = self.relay.on_parent_event(event, session.now())
        if own is not None:
            conf = self.conferences.running(own.conference)
            if conf is None:
                self.relay.reply_local(own.id, False, *NOT_RUNNING)
            else:
                try:
                    execute(conf, own)
                except RoomError as exc:
                    self.relay.reply_local(own.id, False, "refused", str(exc))
                else:
                    self.relay.reply_local(own.id)
        await self._flush()

    # -- keeping the parent's view of our sites current ----------------------------------------

    async def _watch_conferences(self) -> None:
        with self.core.bus.subscribe("conference.*") as subscription:
            async for event in subscription:
                if event.topic in ("conference.audio_levels", "conference.remote_sites",
                                   "conference.remote_site"):
                    continue
                conference_id = event.payload.get("conference_id")
                if not isinstance(conference_id, str):
                    continue
                try:
                    await self._sync(conference_id, event.topic, event.payload)
                except Exception:  # noqa: BLE001 - one bad event must not stop the watcher
                    log.exception("cascade control: syncing conference %s", conference_id)

    async def _sync(self, conference_id: str, topic: str, payload: dict[str, Any]) -> None:
        await self._reconcile_tree(conference_id)
        conf = self.conferences.running(conference_id)
        sites = local_sites(conf, self.node) if conf is not None else []
        known = self.relay.locals.get(conference_id, {})
        if [s.id for s in sites] != list(known):
            self.relay.set_local_sites(sites, conference_id)
        else:
            for site in sites:
                if known[site.id] != site:
                    self.relay.update_local_site(site, conference_id)
        up = self.relay.up
        if topic == "conference.speaker_changed" and up is not None and up.state is State.OPEN:
            speaker = payload.get("participant_id")
            if speaker is None or speaker in self.relay.locals.get(conference_id, {}):
                up.send_speaker(speaker, conference_id)
        await self._flush()

    # -- helpers -------------------------------------------------------------------------------

    async def _flush(self) -> None:
        sessions = list(self._child_sessions.values())
        if self._up_session is not None:
            sessions.append(self._up_session)
        for session in sessions:
            with contextlib.suppress(Exception):  # a dying socket: its session reports the loss
                await session.flush()

    async def _publish_remote(self, event: Event) -> None:
        """Tell the consoles (over /ws/events) that a conference's remote sites changed."""
        if isinstance(event, SitesReplaced):
            await self.core.bus.publish("conference.remote_sites", {"conference_id": event.conference,
                                                                     "count": len(event.sites)})
        elif isinstance(event, SiteUpdated):
            payload = {"conference_id": event.conference, **event.site.to_json()}
            key, lasting = (event.conference, event.site.id), (event.site.status, event.site.muted)
            if self._published.get(key) == lasting:
                # only `speaking` changed: voice activity is too frequent to persist (as audio levels)
                self.core.bus.deliver_local("conference.remote_site", payload)
            else:
                self._published[key] = lasting
                await self.core.bus.publish("conference.remote_site", payload)
        elif isinstance(event, ActiveSpeaker):
            self.core.bus.deliver_local("conference.remote_speaker", {"conference_id": event.conference,
                                                                       "site": event.site})

    async def _audit_denied(self, peer: str | None, reason: str, source: str) -> None:
        log.warning("cascade control: authentication of %s from %s failed: %s", peer or "?", source, reason)
        await self.core.audit.record(f"node:{peer or '?'}", "cascade.control.auth", self.node, outcome="denied",
                                     source=source, detail={"reason": reason})

    async def _audit_tls(self, parent: Node, reason: str) -> None:
        log.warning("cascade control: TLS with the parent %s (%s) failed: %s", parent.name, parent.control, reason)
        with contextlib.suppress(Exception):  # the audit store being down must not stop the loop
            await self.core.audit.record(f"node:{parent.name}", "cascade.control.tls", self.node, outcome="failed",
                                         source=parent.control, detail={"role": "parent", "reason": reason[:200]})

    def _control_state(self, node: str, up: bool) -> None:
        """Tell the failover (capability `cascade`, when it runs here) about the channel."""
        if self.failover is None:
            return
        try:
            self.failover.control_state(node, up)
        except Exception:  # noqa: BLE001 - the channel keeps working whatever the failover does
            log.exception("cascade.control_state(%s, %s)", node, up)
