"""One cascaded conference's content across the tree, on this node: the glue between the tree's
driver (:mod:`mcu.cascade.content_driver`), the conference's own content
(:class:`mcu.content.service.ConferenceContent`) and the control channels.

* It is the conference content's :class:`~mcu.content.service.CascadeGate`: on the root the
  conference's own token *is* the tree's (its chair console, H.239 and BFCP keep working as on a
  single node) and every change is passed to the tree (``token_changed`` → ``Holder`` down to the
  children); on a lower node a local presenter's request is asked of the root (``ask`` waits for the
  tree's :class:`~mcu.cascade.content_tree.Decided`) and its stop is released through the tree.
* It is the driver's ``LocalContent``: the root carries out what the tree did to its token
  (``TokenApplied``); a lower node switches its content picture to whatever the tree says
  (``HolderChanged``: a local presenter's frames, or ``cascade:<node>`` — the slides stream of the
  link the content comes in on).
* It is the driver's ``ContentLinks``: messages go out on the control session of that link
  (``ControlLinks.send_content``, which flushes).
* ``sends_to(link)`` / ``source()``: what the link media (:mod:`mcu.cascade.link_content`) sends
  and accepts.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import av

from mcu.cascade.content_driver import TreeContentDriver
from mcu.cascade.content_tree import PARENT, Message, Source, TreeContent, TreeError
from mcu.content.service import CascadeGate
from mcu.content.token import ContentToken, Result

log = logging.getLogger(__name__)

LINK_FEED = "cascade:"  # the content feed id of a link's slides stream: cascade:<node on the other side>


def link_feed(node: str) -> str:
    return LINK_FEED + node


class ControlLinks(Protocol):
    """The node's control channels (``ControlService``): a content message on one of them."""

    def send_content(self, conference_id: str, to: str, message: Message) -> None: ...


class TreeConference(Protocol):
    """What the tree needs of the conference's own content (``ConferenceContent`` is one)."""

    cascade: CascadeGate | None

    @property
    def token(self) -> ContentToken: ...

    def apply_result(self, result: Result) -> None: ...

    def tree_changed(self, presenter: str | None, feed: str | None) -> None: ...

    def tree_awaiting(self, site: str) -> None: ...

    def tree_dequeued(self, site: str) -> None: ...

    def on_frame(self, who: str, frame: av.VideoFrame) -> None: ...


class CascadedContent:
    """The content token of one cascaded conference on this node (see the module docstring)."""

    def __init__(self, conference_id: str, node: str, parent: str | None, children: frozenset[str],
                 content: TreeConference, links: ControlLinks, *, request_timeout: float = 10.0) -> None:
        self.conference_id = conference_id
        self.content = content
        self.links = links
        token = content.token if parent is None else ContentToken()
        self.tree = TreeContent(node, parent, children, token=token, request_timeout=request_timeout)
        self.driver = TreeContentDriver(self.tree, self, self)
        self._asks: dict[str, asyncio.Future[tuple[bool, str]]] = {}

    def start(self) -> None:
        self.content.cascade = self
        self.driver.start()

    async def stop(self) -> None:
        if self.content.cascade is self:
            self.content.cascade = None
            if not self.is_root:
                self.content.tree_changed(None, None)
        for fut in self._asks.values():
            if not fut.done():
                fut.set_result((False, "unreachable"))
        await self.driver.stop()

    # ---- CascadeGate (the conference's content) ---------------------------------------------------
    @property
    def is_root(self) -> bool:
        return self.tree.is_root

    async def ask(self, site: str) -> tuple[bool, str]:
        old = self._asks.pop(site, None)
        if old is not None and not old.done():
            old.set_result((False, "busy"))
        fut: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._asks[site] = fut
        try:
            self.driver.request(site)
        except TreeError as exc:
            self._asks.pop(site, None)
            log.info("cascade content: request of %s refused: %s", site, exc)
            return False, "busy"
        try:  # the tree answers `timeout` itself after request_timeout; this is a backstop
            return await asyncio.wait_for(asyncio.shield(fut), self.tree.request_timeout + 5)
        except TimeoutError:
            return False, "timeout"
        finally:
            if self._asks.get(site) is fut:
                del self._asks[site]

    def release(self, site: str) -> None:
        fut = self._asks.pop(site, None)
        if fut is not None and not fut.done():
            fut.set_result((False, "busy"))
        try:
            self.driver.release(site)
        except TreeError as exc:
            log.info("cascade content: release of %s refused: %s", site, exc)

    def token_changed(self) -> None:
        self.driver.sync()

    # ---- the driver's LocalContent --------------------------------------------------------------
    def decided(self, site: str, granted: bool, reason: str, queued: bool = False) -> None:
        fut = self._asks.get(site)
        if fut is not None and not fut.done():
            if queued:
                self.content.tree_awaiting(site)  # now, before the queue state that follows can end it
            fut.set_result((granted, reason))

    def dequeued(self, site: str) -> None:
        self.content.tree_dequeued(site)

    def holder_changed(self, presenter: str | None, source: Source | None) -> None:
        if self.is_root:
            return  # the root's own content carried the token's events out (token_applied)
        feed: str | None = None
        if source is not None:
            feed = presenter.split("/", 1)[1] if source.kind == "local" and presenter else link_feed(
                self.tree.parent if source.kind == "parent" and self.tree.parent else source.name)
        self.content.tree_changed(presenter, feed)

    def token_applied(self, result: Result) -> None:
        self.content.apply_result(result)

    # ---- the driver's ContentLinks ----------------------------------------------------------------
    def send(self, to: str, message: Message) -> None:
        self.links.send_content(self.conference_id, to, message)

    # ---- link media -----------------------------------------------------------------------------
    def sends_to(self, node: str) -> bool:
        """Whether this node sends the content on its link to ``node`` (its parent or a child)."""
        return self.tree.sends_to(PARENT if node == self.tree.parent else node)

    def comes_from(self, node: str) -> bool:
        """Whether this node's content comes in on its link to ``node``."""
        source = self.tree.source()
        return source is not None and ((source.kind == "parent" and node == self.tree.parent)
                                       or (source.kind == "child" and source.name == node))

    def link_frame(self, node: str, frame: av.VideoFrame) -> None:
        """A decoded frame from the slides stream of the link to ``node``: the content here when the
        tree says the content comes in on that link (dropped otherwise)."""
        if self.comes_from(node):
            holder = self.tree.holder
            if self.is_root:
                if holder is not None:
                    self.content.on_frame(holder, frame)  # the root's token judges the stream's liveness
            else:
                self.content.on_frame(link_feed(node), frame)
