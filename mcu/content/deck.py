"""The chair's slide deck as the conference's content source: uploaded, rendered, paged, shown.

* :class:`DeckPager` - which page is shown (first/prev/next/last/goto), pure;
* :class:`ConferenceDeck` - one conference's rendered deck: it takes the content token for the
  chair (``chair:<user>``) and feeds the current page to the content picture
  (:class:`mcu.content.source.ContentSource`) - so receivers with a content channel get it on the
  second stream (the room's one shared ``content`` encoder) and single-stream receivers see it in
  the content layout - and stops showing it as soon as the token goes elsewhere (the chair grants
  it to a presenter, or revokes it);
* :class:`DeckManager` - the node's decks: stores uploads under ``<var_dir>/decks/<conference>/``,
  renders them (:mod:`mcu.content.deck_render`, in limited subprocesses) and deletes them when
  the conference ends (its :class:`mcu.content.service.ConferenceContent` closes) or the node
  starts (nothing survives a restart).

A deck is still: the page is pushed once when it changes, with a key frame asked of the encoders
that show the content, and then again only every :data:`FEED_INTERVAL` seconds so the picture
stays fresh (the room treats a content picture older than 5 s as gone); the shared encoder's own
periodic key frame (every 10 s) is the only other one.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import av

from core.tasks import cancel_and_wait
from mcu.compositor import fit_frame
from mcu.room import BROADCAST, CONTENT_SIZE, CONTENT_VIEW, LOOP_FREE_PREFIX

from .deck_render import DeckError, DeckRenderer

if TYPE_CHECKING:
    from .service import ConferenceContent, ContentService

log = logging.getLogger(__name__)

PageAction = Literal["first", "prev", "next", "last", "goto"]
PAGE_ACTIONS: tuple[PageAction, ...] = ("first", "prev", "next", "last", "goto")
FEED_INTERVAL = 1.0  # seconds between two pushes of an unchanged page (keeps the picture fresh)
MAX_NAME = 120


@dataclass
class DeckPager:
    """The shown page of a deck of ``pages`` pages (0-based ``index``); moves stop at the ends.

    ``move`` returns whether the page changed; ``goto`` takes a 1-based page number and refuses
    one outside 1..pages with ValueError (nothing changes).
    """

    pages: int
    index: int = 0

    def __post_init__(self) -> None:
        if self.pages < 1:
            raise ValueError("a deck has at least one page")

    def move(self, action: PageAction, number: int | None = None) -> bool:
        before = self.index
        if action == "first":
            self.index = 0
        elif action == "prev":
            self.index = max(0, self.index - 1)
        elif action == "next":
            self.index = min(self.pages - 1, self.index + 1)
        elif action == "last":
            self.index = self.pages - 1
        elif action == "goto":
            if number is None or not 1 <= number <= self.pages:
                raise ValueError(f"page {number} is not in 1..{self.pages}")
            self.index = number - 1
        else:
            raise ValueError(f"unknown page action {action!r}")
        return self.index != before


def page_frame(path: Path) -> av.VideoFrame:
    """A rendered page as a 1920x1080 yuv420p frame (letterboxed; worker thread)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    frame = av.VideoFrame.from_image(rgb)  # type: ignore[no-untyped-call]
    return fit_frame(frame, *CONTENT_SIZE)


class ConferenceDeck:
    """One conference's rendered deck (see the module docstring)."""

    def __init__(self, content: ConferenceContent, directory: Path, name: str, pages: list[Path],
                 uploaded_by: str) -> None:
        self.content = content
        self.directory = directory
        self.name = name
        self.pages = pages
        self.uploaded_by = uploaded_by
        self.pager = DeckPager(len(pages))
        self.holder: str | None = None  # the token id the deck is shown under (None: not shown)
        self._frame: av.VideoFrame | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def showing(self) -> bool:
        return self.holder is not None and self.content.token.holder == self.holder

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "pages": len(self.pages), "page": self.pager.index + 1,
                "showing": self.showing, "uploaded_by": self.uploaded_by}

    async def show(self, user: str) -> None:
        """Take the content token for the chair ``user`` and show the current page."""
        self.content.take(user)
        self.holder = self.content.token.holder
        await self._load()
        self._push(keyframe=True)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._feed(), name=f"deck-{self.content.conf.id}")
        self.content.deck_changed("deck_shown")

    async def page(self, action: PageAction, number: int | None = None) -> None:
        """Turn the page (ValueError for a page out of range: nothing changes)."""
        if not self.pager.move(action, number):
            return
        await self._load()
        if self.showing:
            self._push(keyframe=True)
        self.content.deck_changed("deck_page")

    def stop(self) -> None:
        """Stop showing the deck (the chair's token is given back; the deck stays loaded)."""
        if self.showing:
            with contextlib.suppress(Exception):
                self.content.revoke()
        self.holder = None
        self._stop_feed()
        self.content.deck_changed("deck_stopped")

    async def close(self) -> None:
        """Forget the deck: stop the feed and delete its files (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.holder = None
        if self._task is not None:
            await cancel_and_wait([self._task], swallow_errors=True)
        await asyncio.to_thread(shutil.rmtree, self.directory, True)

    async def _load(self) -> None:
        index = self.pager.index
        frame = await asyncio.to_thread(page_frame, self.pages[index])
        if index == self.pager.index:
            self._frame = frame

    def _push(self, keyframe: bool) -> None:
        if self._frame is None or self.holder is None:
            return
        self.content.on_frame(self.holder, self._frame)
        if keyframe:
            room = self.content.conf.room
            for key in room.encoder_keys:
                if key.view_id in (CONTENT_VIEW, BROADCAST) or key.view_id.startswith(LOOP_FREE_PREFIX):
                    encoder = room.encoder(key)
                    if encoder is not None:
                        encoder.request_keyframe()

    def _stop_feed(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _feed(self) -> None:
        try:
            while True:
                await asyncio.sleep(FEED_INTERVAL)
                if not self.showing:  # the token went to a presenter, or was revoked
                    self.holder = None
                    self.content.deck_changed("deck_stopped")
                    return
                self._push(keyframe=False)
        finally:
            if self._task is asyncio.current_task():
                self._task = None


class DeckManager:
    """The decks of this node's running conferences (upload, page, stop, remove)."""

    def __init__(self, content: ContentService, root: Path, renderer: DeckRenderer) -> None:
        self.content = content
        self.root = root
        self.renderer = renderer

    @property
    def max_bytes(self) -> int:
        return self.renderer.limits.max_bytes

    async def start(self) -> None:
        """Delete what an earlier run left (decks live only as long as their conference here)."""
        await asyncio.to_thread(shutil.rmtree, self.root, True)
        self.root.mkdir(parents=True, exist_ok=True)

    def of(self, conference_id: str) -> ConferenceContent | None:
        return self.content.get(conference_id)

    async def upload(self, content: ConferenceContent, chunks: AsyncIterator[bytes], name: str,
                     user: str, declared: int | None = None) -> ConferenceDeck:
        """Store, check and render an upload, then show it as the conference's content.

        DeckError on a refused file: the conference's current deck and content are unchanged.
        """
        limit = self.max_bytes
        if declared is not None and declared > limit:
            raise DeckError("too_big", limit_mb=limit // (1024 * 1024))
        conf_dir = self.root / _safe(content.conf.id)
        deck_id = uuid.uuid4().hex
        incoming = conf_dir / f"{deck_id}.upload"
        await asyncio.to_thread(conf_dir.mkdir, parents=True, exist_ok=True)
        f = await asyncio.to_thread(incoming.open, "wb")
        try:
            size = 0
            with f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise DeckError("too_big", limit_mb=limit // (1024 * 1024))
                    await asyncio.to_thread(f.write, chunk)
            pages = await self.renderer.render(incoming, conf_dir / deck_id)
        finally:
            await asyncio.to_thread(incoming.unlink, missing_ok=True)
        if content.conf.room.ended:  # the conference ended while the deck was rendered
            await asyncio.to_thread(shutil.rmtree, conf_dir / deck_id, True)
            raise DeckError("not_running", id=content.conf.id)
        deck = ConferenceDeck(content, conf_dir / deck_id, _display_name(name), pages, user)
        old = content.deck
        content.deck = deck
        if old is not None:
            await old.close()
        await deck.show(user)
        return deck


def _safe(conference_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in conference_id)[:64] or "_"


def _display_name(name: str) -> str:
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:MAX_NAME] or "deck"


DeckAction = Literal["first", "prev", "next", "last", "goto", "show", "stop", "remove"]
DECK_ACTIONS: tuple[DeckAction, ...] = ("first", "prev", "next", "last", "goto", "show", "stop", "remove")


async def apply_action(content: ConferenceContent, action: DeckAction, page: int | None, user: str) -> ConferenceDeck:
    """Page the conference's deck, show it again (``user`` takes the token), stop showing it, or remove it.

    DeckError (nothing changed): ``none`` (no deck), ``bad_page`` or the content token's refusal code,
    with ``pages`` among its values. The deck acted on is returned (closed after ``remove``).
    """
    from .service import ContentError

    deck = content.deck
    if not isinstance(deck, ConferenceDeck) or deck.closed:
        raise DeckError("none")
    try:
        match action:
            case "show":
                await deck.show(user)
            case "stop":
                deck.stop()
            case "remove":
                deck.stop()
                content.deck = None
                await deck.close()
            case "goto":
                await deck.page("goto", page)
            case "first" | "prev" | "next" | "last":
                await deck.page(action)
    except DeckError:
        raise
    except ValueError as exc:  # a page out of range, a refusal of the token
        code = exc.code if isinstance(exc, ContentError) else "bad_page"
        raise DeckError(code, str(exc), pages=len(deck.pages)) from None
    return deck
