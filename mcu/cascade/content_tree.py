"""One content token across a cascade tree (city ← county ← township), sans-I/O.

Each node runs a :class:`ContentToken` per conference for its own sites; a cascaded conference
must still show one presenter across the whole tree. :class:`TreeContent` is the per-node,
per-conference machine that makes the tree behave as one token. Inputs are method calls carrying
``now`` (seconds, any monotonic origin); each returns a list of outputs the adapter carries out
(:class:`Send` a message on a cascade control link, :class:`Decided` answer a local presenter,
:class:`HolderChanged` switch the local content source). Nothing reads a clock: the adapter calls
:meth:`TreeContent.tick` at :meth:`TreeContent.next_deadline`.

Rules:

* **The root owns the token.** The node without a parent (the city) holds the one authoritative
  :class:`ContentToken` (policy ``free``/``chair``, the media and start timeouts, the chair's
  grant/revoke/take). Every other node keeps only a *view* of who holds it.
* **Presenter ids are qualified** by the node the presenter sits on: ``<node>/<site>``
  (``township-1/site-3``), except on the root, whose own sites keep their plain site ids and whose
  chair holds ``chair:<user>``, as in the conference's own :class:`ContentToken` (so the root's
  token can be that token: its chair console, H.239 and BFCP keep working unchanged). Node names
  and site ids never contain ``/``.
* **Requests go up.** A lower node's local presenter request (:meth:`TreeContent.request`) is
  sent to its parent as :class:`Request` with ``route`` = the nodes it passed, starting at the
  presenter's node; a middle node appends its own name and forwards it. The root decides with its
  token and answers with :class:`Decision` routed back down the reversed route, one hop at a time.
  A request still unanswered after ``request_timeout`` is refused locally with ``timeout``; a
  late decision for it is then ignored (the root's ``holder`` state below still wins).
* **State comes down.** On every change of holder the root sends :class:`Holder`
  ``{presenter, path}`` (``path`` = root … presenter's node) to every child; each node stores it
  and forwards it to all its children. A node (re)connecting to a child sends the current state.
* **Where the picture comes from** (:meth:`TreeContent.source`): the holder's own node shows its
  local site's content; a node on the path above it takes the content from the child the path
  goes through; every other node takes it from its parent. Content flows away from the presenter
  along the tree: a node sends the content on every link except the one it comes from
  (:meth:`TreeContent.sends_to`). A loop is impossible because the tree has none.
* **Release.** A presenter stopping sends :class:`Release` up (like a request); the root releases
  only the holder (another id's release changes nothing).
* **Media liveness** is judged by the root only: :meth:`TreeContent.media` when frames of the
  holder arrive (locally or on the link from the child it sits behind). A stream that stops is
  released by the root's token timeout, and the new state flows down.
* **The chair** of the root grants, revokes or takes the token (:meth:`chair_take` etc.); on a
  lower node those calls raise :class:`TreeError` (its console shows the city's holder).
* **The chair's queue comes down too.** Under the root's ``chair`` policy a remote request is
  refused (``awaiting_chair``, or ``busy`` while someone holds it) and stays in the root's queue: its
  :class:`Decision` says ``queued``; :class:`Holder` carries that queue
  (``queue``: presenter ids, oldest first) whenever it or the holder changes. The presenter's node
  remembers its sites told ``queued`` (:attr:`TreeContent.queued`); once one is in neither
  the root's queue nor the holder's place (the chair dismissed it, switched to ``free``, the root
  lost the link it came over) — or this node lost its parent — it is :class:`Dequeued`. A room
  system's BFCP request stays Pending until then (a grant is the holder state naming it).
* **Lost links.** A child link lost at any node: a holder behind that child is released (at the
  root, reason ``left``; a middle node sends the root a :class:`Release` on the holder's behalf, so
  the whole tree drops the frozen picture at once instead of at the root's media timeout). A parent link lost at a lower node: its
  view becomes "nobody" unless the holder is inside its own subtree (then that picture stays), and
  its pending requests are refused with ``unreachable``. On reconnection the parent's
  :class:`Holder` message restores the view.
* **Bad input** (a message of a wrong shape, from a node that is not a neighbour, a decision for
  a presenter not behind that link) raises :class:`TreeError` from :func:`parse` or is ignored by
  the machine; it never changes state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mcu.content.token import CHAIR_PREFIX, ContentToken, Result, TokenError

PARENT = "parent"  # the ``to``/``source`` name of the parent link
MAX_PATH = 16
MAX_QUEUE = 64  # queued requests carried in a Holder message
SourceKind = Literal["local", "child", "parent"]


class TreeError(ValueError):
    """A call or message that does not fit; nothing changed."""


@dataclass(frozen=True)
class Request:
    presenter: str
    route: tuple[str, ...]  # the presenter's node first, then every node it passed


@dataclass(frozen=True)
class Release:
    presenter: str
    route: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    presenter: str
    granted: bool
    reason: str
    route: tuple[str, ...]  # as in the request: the decision follows it back down
    queued: bool = False  # refused for now, but waiting in the root's queue for its chair


@dataclass(frozen=True)
class Holder:
    presenter: str | None
    path: tuple[str, ...]  # root … the presenter's node (empty: nobody)
    queue: tuple[str, ...] = ()  # the root's queued requests (the chair policy), oldest first


Message = Request | Release | Decision | Holder


@dataclass(frozen=True)
class Send:
    to: str  # PARENT or a child's node name
    message: Message


@dataclass(frozen=True)
class Decided:
    """The answer for one of this node's own sites (``site`` unqualified)."""

    site: str
    granted: bool
    reason: str
    queued: bool = False  # refused for now, waiting in the root's queue (see Dequeued)


@dataclass(frozen=True)
class Dequeued:
    """One of this node's own sites told ``awaiting_chair`` left the root's queue without the token."""

    site: str


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    name: str  # the local presenter (qualified), the child's node name, or PARENT


@dataclass(frozen=True)
class HolderChanged:
    presenter: str | None
    source: Source | None


@dataclass(frozen=True)
class TokenApplied:
    """The root's token changed by a tree input (a remote request or release, a timeout): the
    conference's own content carries the token's events out (source, listeners, consoles)."""

    result: Result


Output = Send | Decided | Dequeued | HolderChanged | TokenApplied


def qualify(node: str, site: str) -> str:
    _check_name(node)
    if site.startswith(CHAIR_PREFIX):
        return site
    _check_name(site)
    return f"{node}/{site}"


def node_of(presenter: str) -> str | None:
    return presenter.split("/", 1)[0] if "/" in presenter else None


@dataclass
class TreeContent:
    """The content token of one conference on one node of the cascade (rules: module docstring)."""

    node: str
    parent: str | None  # None: this node is the root
    children: frozenset[str] = frozenset()
    token: ContentToken = field(default_factory=ContentToken)  # authoritative on the root only
    request_timeout: float = 10.0
    holder: str | None = None
    path: tuple[str, ...] = ()
    pending: dict[str, float] = field(default_factory=dict)  # own sites' requests: deadline
    parent_up: bool = True
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # root: presenter -> path from the root
    queue: tuple[str, ...] = ()  # the root's queue (on the root: as last sent down)
    queued: set[str] = field(default_factory=set)  # own presenters the root told awaiting_chair

    def __post_init__(self) -> None:
        _check_name(self.node)
        for name in self.children | ({self.parent} if self.parent else set()):
            _check_name(name)
        if self.node in self.children or self.parent in self.children:
            raise TreeError("a node cannot be its own child or its parent's parent")
        if self.request_timeout <= 0:
            raise TreeError("request_timeout must be positive")

    @property
    def is_root(self) -> bool:
        return self.parent is None

    # ---- queries -------------------------------------------------------------------------------
    def source(self) -> Source | None:
        """Where this node's content picture comes from (None: nobody presents)."""
        if self.holder is None:
            return None
        if self.node not in self.path:
            return Source("parent", PARENT)
        at = self.path.index(self.node)
        if at == len(self.path) - 1:
            return Source("local", self.holder)
        return Source("child", self.path[at + 1])

    def sends_to(self, link: str) -> bool:
        """Whether this node sends the content on ``link`` (PARENT or a child's name)."""
        src = self.source()
        if src is None:
            return False
        if link == PARENT:
            return self.parent is not None and self.parent_up and src.kind != "parent"
        return link in self.children and src.name != link

    def next_deadline(self) -> float | None:
        deadlines = list(self.pending.values())
        if self.is_root and (d := self.token.next_deadline()) is not None:
            deadlines.append(d)
        return min(deadlines) if deadlines else None

    # ---- local presenters ----------------------------------------------------------------------
    def request(self, site: str, now: float) -> list[Output]:
        """One of this node's own sites asks to present."""
        presenter = self._own(site)
        if self.is_root:
            return self._decide(presenter, (self.node,), self._token_call(lambda: self.token.request(presenter, now)),
                                now)
        if not self.parent_up:
            return [Decided(site, False, "unreachable")]
        if presenter == self.holder:
            return [Decided(site, True, "")]
        self.pending[presenter] = now + self.request_timeout
        return [Send(PARENT, Request(presenter, (self.node,)))]

    def release(self, site: str, now: float) -> list[Output]:
        """One of this node's own sites stops presenting (or withdraws its request)."""
        presenter = self._own(site)
        self.pending.pop(presenter, None)
        self.queued.discard(presenter)
        if self.is_root:
            return self._token_events(self._token_call(lambda: self.token.release(presenter, now)))
        if not self.parent_up:
            return []
        return [Send(PARENT, Release(presenter, (self.node,)))]

    def media(self, presenter: str, now: float) -> bool:
        """Content frames of ``presenter`` reached the root (True: it holds the token)."""
        return self.is_root and self.token.media(presenter, now)

    # ---- the root's chair ----------------------------------------------------------------------
    def chair_take(self, chair: str, now: float) -> list[Output]:
        self._root_only()
        return self._token_events(self._token_call(lambda: self.token.take(chair, now)))

    def chair_grant(self, presenter: str, now: float) -> list[Output]:
        """Give the token to a qualified presenter: a local site, or a remote one that asked."""
        self._root_only()
        if "/" in presenter and presenter not in self.routes:
            raise TreeError("a remote presenter must have asked for the token first")
        return self._token_events(self._token_call(lambda: self.token.grant(presenter, now)))

    def chair_revoke(self, now: float) -> list[Output]:
        self._root_only()
        return self._token_events(self.token.revoke(now))

    # ---- links ---------------------------------------------------------------------------------
    def from_child(self, child: str, message: Message, now: float) -> list[Output]:
        """A message from a child's control link (ignored when it does not fit)."""
        if child not in self.children or isinstance(message, (Decision, Holder)):
            return []
        if not message.route or message.route[-1] != child or self.node in message.route \
                or len(message.route) >= MAX_PATH or node_of(message.presenter) != message.route[0] \
                or set(message.route[:-1]) & (self.children | {self.parent}):
            return []  # a route that cannot be true of this tree
        route = (*message.route, self.node)
        if isinstance(message, Request):
            if self.is_root:
                self.routes[message.presenter] = tuple(reversed(route))
                result = self._token_call(lambda: self.token.request(message.presenter, now))
                return self._decide(message.presenter, route, result, now)
            return [Send(PARENT, Request(message.presenter, route))] if self.parent_up else \
                [Send(child, Decision(message.presenter, False, "unreachable", message.route))]
        if self.is_root:
            return self._token_events(self._token_call(lambda: self.token.release(message.presenter, now)))
        return [Send(PARENT, Release(message.presenter, route))] if self.parent_up else []

    def from_parent(self, message: Message, now: float) -> list[Output]:
        """A message from the parent's control link (ignored when it does not fit)."""
        if self.is_root or isinstance(message, (Request, Release)):
            return []
        if isinstance(message, Holder):
            if not self._fits(message):
                return []
            out = self._set_holder(message.presenter, message.path, message.queue)
            for presenter in sorted(self.queued):
                if presenter not in message.queue:
                    self.queued.discard(presenter)
                    if presenter != self.holder:
                        out.append(Dequeued(presenter.split("/", 1)[1]))
            return out
        if self.node not in message.route:
            return []
        at = message.route.index(self.node)
        if at == 0:
            if message.presenter not in self.pending:
                return []  # timed out or withdrawn: the Holder state still tells the truth
            del self.pending[message.presenter]
            if message.queued and not message.granted:
                self.queued.add(message.presenter)  # the Holder state that follows tells when it leaves
            site = message.presenter.split("/", 1)[1]
            return [Decided(site, message.granted, message.reason, message.queued and not message.granted)]
        child = message.route[at - 1]
        return [Send(child, message)] if child in self.children else []

    def child_up(self, child: str) -> list[Output]:
        """A child's link (re)connected: it gets the current state."""
        if child not in self.children:
            return []
        return [Send(child, Holder(self.holder, self.path, self.queue))]

    def child_lost(self, child: str, now: float) -> list[Output]:
        if child not in self.children:
            return []
        if not self.is_root:
            if not self.parent_up:
                return []
            # The child's own queued requests leave the root's queue (the chair cannot grant a site
            # it can no longer reach; the child itself ends them Denied when it loses us).
            out: list[Output] = [Send(PARENT, Release(p, (child, self.node))) for p in self.queue
                                 if node_of(p) == child and p != self.holder]
            # The holder sits behind the lost child: tell the root at once (a Release on the
            # holder's behalf), rather than leave the picture frozen until the media timeout.
            if self.holder is None or self.node not in self.path:
                return out
            at = self.path.index(self.node)
            if at + 1 >= len(self.path) or self.path[at + 1] != child:
                return out
            return [*out, Send(PARENT, Release(self.holder, tuple(reversed(self.path[at:]))))]
        for presenter in [p for p, r in self.routes.items() if child in r and p != self.token.holder]:
            self.token.dismiss(presenter)
            del self.routes[presenter]
        if self.holder is not None and child in self.path:
            return self._token_events(self.token.forget(self.holder, now))
        return []

    def parent_lost(self, now: float) -> list[Output]:
        if self.is_root:
            return []
        self.parent_up = False
        out: list[Output] = [Decided(p.split("/", 1)[1], False, "unreachable") for p in self.pending]
        out += [Dequeued(p.split("/", 1)[1]) for p in sorted(self.queued)]
        self.pending.clear()
        self.queued.clear()
        if self.holder is not None and self.node not in self.path:
            out += self._set_holder(None, (), ())
        elif self.queue:
            out += self._set_holder(self.holder, self.path, ())
        return out

    def parent_up_again(self) -> None:
        """The parent link is back (its Holder message follows and restores the view)."""
        if not self.is_root:
            self.parent_up = True

    # ---- timers --------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        for presenter, deadline in list(self.pending.items()):
            if now >= deadline:
                del self.pending[presenter]
                out.append(Decided(presenter.split("/", 1)[1], False, "timeout"))
        if self.is_root:
            out += self._token_events(self.token.tick(now))
        return out

    # ---- internals -----------------------------------------------------------------------------
    def _root_only(self) -> None:
        if not self.is_root:
            raise TreeError("only the root node's chair manages a cascaded conference's content token")

    @staticmethod
    def _token_call(call: Any) -> Result:
        try:
            result: Result = call()
        except TokenError as exc:
            raise TreeError(str(exc)) from None
        return result

    def _decide(self, presenter: str, route: tuple[str, ...], result: Result, now: float) -> list[Output]:
        out = self._token_events(result)
        queued = not result.granted and any(p == presenter for p, _ in self.token.requests)
        if route == (self.node,):
            out.insert(0, Decided(presenter, result.granted, result.reason, queued))
        else:
            out.insert(0, Send(route[-2], Decision(presenter, result.granted, result.reason, route[:-1], queued)))
        return out

    def sync(self, now: float) -> list[Output]:
        """The root's token changed outside the tree (a local presenter, the chair, a local timeout,
        through the conference's own content): tell the children the new holder."""
        if not self.is_root:
            return []
        return self._token_events(Result(True, ""))

    def _token_events(self, result: Result) -> list[Output]:
        applied: list[Output] = [TokenApplied(result)] if result.events else []
        holder = self.token.holder
        queue = tuple(p for p, _ in self.token.requests)[:MAX_QUEUE]
        if holder == self.holder and queue == self.queue:
            return applied
        if holder is None:
            return applied + self._set_holder(None, (), queue)
        # The root learnt the route with the request; a chair's or a local presenter's path is the root.
        path = self.routes.get(holder, (self.node,))
        wanted = {r for r, _ in self.token.requests} | {holder}
        self.routes = {p: r for p, r in self.routes.items() if p in wanted}
        return applied + self._set_holder(holder, path, queue)

    def _own(self, site: str) -> str:
        """The tree id of one of this node's own sites (plain on the root)."""
        if self.is_root:
            if not site.startswith(CHAIR_PREFIX):
                _check_name(site)
            return site
        return qualify(self.node, site)

    def _fits(self, message: Holder) -> bool:
        """A parent's Holder state that can be true of this tree."""
        presenter, path = message.presenter, message.path
        if presenter is None:
            return not path
        if not path or len(path) > MAX_PATH or path[0] in (self.node, *self.children) or len(set(path)) != len(path):
            return False
        if "/" not in presenter:  # the root's own site or its chair
            return len(path) == 1
        if node_of(presenter) != path[-1]:
            return False
        if self.node in path:
            at = path.index(self.node)
            return at == len(path) - 1 or path[at + 1] in self.children
        return not (set(path) & self.children)

    def _set_holder(self, presenter: str | None, path: tuple[str, ...], queue: tuple[str, ...]) -> list[Output]:
        if presenter == self.holder and path == self.path and queue == self.queue:
            return []
        changed = presenter != self.holder or path != self.path
        self.holder, self.path, self.queue = presenter, path if presenter is not None else (), queue
        out: list[Output] = [Send(child, Holder(self.holder, self.path, self.queue))
                             for child in sorted(self.children)]
        if changed:
            out.append(HolderChanged(self.holder, self.source()))
        return out


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 64 or "/" in name or not name.isprintable():
        raise TreeError("node and site names are 1–64 printable characters without '/'")


# ---- the wire form (a ``content`` message on the cascade control channel) ---------------------------
def to_json(message: Message) -> dict[str, Any]:
    """The JSON body of ``message`` (the control channel adds ``type``, ``v`` and ``conference``)."""
    if isinstance(message, Holder):
        return {"kind": "holder", "presenter": message.presenter, "path": list(message.path),
                "queue": list(message.queue)}
    body: dict[str, Any] = {"kind": type(message).__name__.lower(), "presenter": message.presenter,
                            "route": list(message.route)}
    if isinstance(message, Decision):
        body.update(granted=message.granted, reason=message.reason)
        if message.queued:
            body["queued"] = True
    return body


def parse(body: Any) -> Message:
    """A message from its JSON body (TreeError: not one of ours, nothing to act on)."""
    if not isinstance(body, dict):
        raise TreeError("a content message is a JSON object")
    kind = body.get("kind")
    presenter = body.get("presenter")
    if kind == "holder":
        path = _names(body.get("path"))
        queue = body.get("queue", [])  # absent from an older node's message
        if not isinstance(queue, list) or len(queue) > MAX_QUEUE:
            raise TreeError(f"a queue is a list of at most {MAX_QUEUE} presenter ids")
        queued = tuple(_presenter(p) for p in queue)
        if presenter is None:
            if path:
                raise TreeError("nobody holds the token: the path must be empty")
            return Holder(None, (), queued)
        return Holder(_presenter(presenter), path, queued)
    if kind not in ("request", "release", "decision"):
        raise TreeError("unknown content message kind")
    route = _names(body.get("route"))
    if not route:
        raise TreeError("a route names at least the presenter's node")
    who = _presenter(presenter)
    if kind == "request":
        return Request(who, route)
    if kind == "release":
        return Release(who, route)
    granted, reason, queued = body.get("granted"), body.get("reason", ""), body.get("queued", False)
    if not isinstance(granted, bool) or not isinstance(reason, str) or len(reason) > 32 \
            or not isinstance(queued, bool):
        raise TreeError("a decision carries granted (bool), a short reason and queued (bool)")
    return Decision(who, granted, reason, route, queued)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_PATH:
        raise TreeError(f"a route or path is a list of at most {MAX_PATH} node names")
    for name in value:
        _check_name(name)
    if len(set(value)) != len(value):
        raise TreeError("a route or path names each node once")
    return tuple(value)


def _presenter(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 128:
        raise TreeError("a presenter id is a string of at most 128 characters")
    if value.startswith(CHAIR_PREFIX) and len(value) > len(CHAIR_PREFIX):
        return value
    if "/" not in value:  # one of the root's own sites
        _check_name(value)
        return value
    node, _, site = value.partition("/")
    _check_name(node)
    _check_name(site)
    return value
