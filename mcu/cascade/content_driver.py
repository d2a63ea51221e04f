"""Asyncio adapter for :class:`mcu.cascade.content_tree.TreeContent`: the loop's clock, the timer,
and the outputs carried out.

The owner (the node's control service, per cascaded conference) feeds it: local presenters'
``request``/``release``, the root's chair calls, ``ContentReceived`` messages from a child's or the
parent's control session (``from_child``/``from_parent``), and the channels coming and going
(``child_up``/``child_lost``/``parent_lost``/``parent_up``). Each input is stamped with the loop's
monotonic time; the driver runs :meth:`TreeContent.tick` at :meth:`TreeContent.next_deadline`
(request timeouts; on the root the token's media and start timeouts) and carries out every output:
:class:`Send` through :class:`ContentLinks` (the control service queues it on that link's session
and flushes), :class:`Decided` and :class:`HolderChanged` through :class:`LocalContent` (the
conference's content: answer the presenter, switch the content source), :class:`TokenApplied` (the root:
the conference's content carries out what the tree did to its token). A failing collaborator is
logged, never stops the driver.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from core.tasks import cancel_and_wait
from mcu.cascade.content_tree import (
    Decided,
    Dequeued,
    HolderChanged,
    Message,
    Output,
    Send,
    Source,
    TokenApplied,
    TreeContent,
)
from mcu.content.token import Result

log = logging.getLogger(__name__)


class ContentLinks(Protocol):
    def send(self, to: str, message: Message) -> None:
        """Queue ``message`` on the control link ``to`` (``PARENT`` or a child's node name)."""


class LocalContent(Protocol):
    def decided(self, site: str, granted: bool, reason: str, queued: bool = False) -> None:
        """The tree's answer to one of this node's own sites' requests (``queued``: refused for now,
        waiting in the root's queue until :meth:`dequeued` or the holder state names it)."""

    def holder_changed(self, presenter: str | None, source: Source | None) -> None:
        """Who presents now, and where this node's content picture comes from."""

    def dequeued(self, site: str) -> None:
        """A site told ``awaiting_chair`` left the root's queue without the token."""

    def token_applied(self, result: Result) -> None:
        """The root: the tree changed the conference's token (carry its events out)."""


class TreeContentDriver:
    def __init__(self, tree: TreeContent, links: ContentLinks, local: LocalContent) -> None:
        self.tree = tree
        self.links = links
        self.local = local
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._timers(), name=f"cascade-content-{self.tree.node}")]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    # ---- inputs (synchronous: safe from any callback on the loop) ------------------------------
    def request(self, site: str) -> None:
        self._apply(self.tree.request(site, self.now()))

    def release(self, site: str) -> None:
        self._apply(self.tree.release(site, self.now()))

    def media(self, presenter: str) -> bool:
        return self.tree.media(presenter, self.now())

    def chair_take(self, chair: str) -> None:
        self._apply(self.tree.chair_take(chair, self.now()))

    def chair_grant(self, presenter: str) -> None:
        self._apply(self.tree.chair_grant(presenter, self.now()))

    def chair_revoke(self) -> None:
        self._apply(self.tree.chair_revoke(self.now()))

    def from_child(self, child: str, message: Message) -> None:
        self._apply(self.tree.from_child(child, message, self.now()))

    def from_parent(self, message: Message) -> None:
        self._apply(self.tree.from_parent(message, self.now()))

    def child_up(self, child: str) -> None:
        self._apply(self.tree.child_up(child))

    def child_lost(self, child: str) -> None:
        self._apply(self.tree.child_lost(child, self.now()))

    def parent_lost(self) -> None:
        self._apply(self.tree.parent_lost(self.now()))

    def parent_up(self) -> None:
        self.tree.parent_up_again()

    def sync(self) -> None:
        """The root's token changed outside the tree: tell the children."""
        self._apply(self.tree.sync(self.now()))

    # ---- outputs -------------------------------------------------------------------------------
    def _apply(self, outputs: list[Output]) -> None:
        for out in outputs:
            try:
                if isinstance(out, Send):
                    self.links.send(out.to, out.message)
                elif isinstance(out, Decided):
                    self.local.decided(out.site, out.granted, out.reason, out.queued)
                elif isinstance(out, Dequeued):
                    self.local.dequeued(out.site)
                elif isinstance(out, HolderChanged):
                    self.local.holder_changed(out.presenter, out.source)
                elif isinstance(out, TokenApplied):
                    self.local.token_applied(out.result)
            except Exception:
                log.exception("cascade content: carrying out %s failed", type(out).__name__)
        self._wake.set()

    async def _timers(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self.tree.next_deadline()
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            due = self.tree.next_deadline()
            if due is not None and loop.time() >= due:
                try:
                    self._apply(self.tree.tick(loop.time()))
                except Exception:  # the timer must outlive one bad tick
                    log.exception("cascade content tick failed")
                    await asyncio.sleep(0.1)
