"""The chair's slide deck, checked and rendered to page images: a PDF by poppler, a PNG/JPEG by Pillow.

What a file is comes from its first bytes (:func:`sniff`), never from its name or the declared
media type: ``%PDF-`` (PDF), ``\\x89PNG\\r\\n\\x1a\\n`` (PNG), ``\\xff\\xd8\\xff`` (JPEG). Anything
else is refused.

A PDF is parsed and rasterised by poppler's command-line tools (Debian ``poppler-utils``):
``pdfinfo`` counts the pages (a deck over :attr:`DeckLimits.max_pages` is refused before any page
is drawn) and ``pdftoppm`` draws each page as a PNG whose longer side is 1920 pixels. Both run as
**separate processes under resource limits** set by util-linux ``prlimit`` (address space, CPU
seconds, size of a written file, open files) and a wall-clock limit, in their own session so that
a renderer that hangs or explodes on a hostile file is killed with its whole process group and
the MCU process is untouched. At most :attr:`DeckLimits.concurrency` renders run at once on a node;
more are refused (``busy``), not queued behind a hostile file.

A PNG/JPEG is one page: Pillow reads the header first and refuses a picture over
:data:`MAX_IMAGE_PIXELS` before it decodes a byte of it (decompression bombs), then writes it as
the deck's one page. It runs in a worker thread: Pillow releases the GIL while it decodes.

Every refusal is :class:`DeckError` with a stable ``code`` (the console turns it into zh-CN or
English text) and leaves nothing behind: the output directory is removed.

Why poppler and not PyMuPDF: poppler is Debian's own, security-maintained PDF library (the one
the desktop's PDF viewers use), its tools already isolate the work in a process we can limit and
kill, and it is GPL as a separate program we run; PyMuPDF would parse the hostile file inside the
MCU process (a crash or a hang there takes the conferences down) and is AGPL.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["pdf", "png", "jpeg"]
PAGE_LONG_SIDE = 1920  # pixels: the content stream is 1920x1080
MAX_IMAGE_PIXELS = 8192 * 8192  # a PNG/JPEG deck bigger than this is refused before decoding
PDFINFO = "pdfinfo"
PDFTOPPM = "pdftoppm"
PRLIMIT = "prlimit"
_PAGES = re.compile(rb"^Pages:\s+(\d+)\s*$", re.MULTILINE)


class DeckError(ValueError):
    """A deck refused, nothing kept: ``code`` is stable, ``values`` fill the user's message."""

    def __init__(self, code: str, detail: str = "", **values: object) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.values = values


@dataclass(frozen=True)
class DeckLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pages: int = 300
    render_seconds: float = 120.0  # wall clock for counting and drawing every page of one deck
    memory_bytes: int = 1024 * 1024 * 1024  # address space of one renderer process
    page_file_bytes: int = 64 * 1024 * 1024  # largest file a renderer may write
    concurrency: int = 2  # renders at once on one node

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pages < 1 or self.render_seconds <= 0 or self.concurrency < 1:
            raise ValueError("deck limits must be positive")


def sniff(head: bytes) -> Kind | None:
    """What a file is, by its first bytes (None: not a PDF, PNG or JPEG)."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


def missing_tools() -> list[str]:
    """The renderer's programs that are not installed (Debian poppler-utils, util-linux)."""
    return [tool for tool in (PDFINFO, PDFTOPPM, PRLIMIT) if shutil.which(tool) is None]


class DeckRenderer:
    """Renders decks into page PNGs under the limits (one instance per node: it owns the slots)."""

    def __init__(self, limits: DeckLimits | None = None) -> None:
        self.limits = limits or DeckLimits()
        self._slots = asyncio.Semaphore(self.limits.concurrency)

    async def render(self, source: Path, out_dir: Path) -> list[Path]:
        """Check ``source`` and draw its pages into ``out_dir`` (made here): the page files in order.

        DeckError (and ``out_dir`` removed) on anything wrong: ``not_supported``, ``too_big``,
        ``empty``, ``too_many_pages``, ``image_too_large``, ``render_timeout``, ``render_failed``,
        ``busy``, ``renderer_missing``.
        """
        size, head = await asyncio.to_thread(_head, source)
        if size == 0:
            raise DeckError("empty")
        if size > self.limits.max_bytes:
            raise DeckError("too_big", limit_mb=self.limits.max_bytes // (1024 * 1024))
        kind = sniff(head)
        if kind is None:
            raise DeckError("not_supported")
        if self._slots.locked():
            raise DeckError("busy")
        async with self._slots:
            await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=False)
            try:
                if kind == "pdf":
                    return await self._render_pdf(source, out_dir)
                return await asyncio.to_thread(_render_image, source, out_dir)
            except BaseException:
                shutil.rmtree(out_dir, ignore_errors=True)
                raise

    async def _render_pdf(self, source: Path, out_dir: Path) -> list[Path]:
        missing = missing_tools()
        if missing:
            raise DeckError("renderer_missing", f"install Debian poppler-utils/util-linux: {', '.join(missing)}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.render_seconds
        info = await self._run([PDFINFO, str(source)], deadline)
        match = _PAGES.search(info)
        if match is None:
            raise DeckError("render_failed", "pdfinfo printed no page count")
        pages = int(match.group(1))
        if pages < 1:
            raise DeckError("empty")
        if pages > self.limits.max_pages:
            raise DeckError("too_many_pages", pages=pages, limit=self.limits.max_pages)
        await self._run([PDFTOPPM, "-png", "-scale-to", str(PAGE_LONG_SIDE), "-f", "1", "-l", str(pages),
                         str(source), str(out_dir / "page")], deadline)
        files = await asyncio.to_thread(_pages_in, out_dir)
        if len(files) != pages:
            raise DeckError("render_failed", f"{len(files)} of {pages} pages drawn")
        return files

    async def _run(self, argv: list[str], deadline: float) -> bytes:
        """Run one poppler tool under prlimit, killed (whole session) at the deadline: its stdout."""
        limits = self.limits
        cpu = max(1, int(limits.render_seconds) + 1)
        command = [PRLIMIT, f"--as={limits.memory_bytes}", f"--cpu={cpu}", f"--fsize={limits.page_file_bytes}",
                   "--nofile=64", "--core=0", "--", *argv]
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise DeckError("render_timeout", seconds=limits.render_seconds)
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), left)
        except (TimeoutError, asyncio.CancelledError) as exc:
            _kill_session(proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise DeckError("render_timeout", seconds=limits.render_seconds) from None
        if proc.returncode != 0:
            raise DeckError("render_failed", f"{argv[0]} exit {proc.returncode}: "
                                             f"{err.decode(errors='replace').strip()[:200]}")
        return out


def _head(source: Path) -> tuple[int, bytes]:
    with source.open("rb") as f:
        return source.stat().st_size, f.read(16)


def _pages_in(out_dir: Path) -> list[Path]:
    """pdftoppm's page files (``page-7.png``, ``page-07.png``...) in page order."""
    return sorted(out_dir.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def _kill_session(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _render_image(source: Path, out_dir: Path) -> list[Path]:
    """A PNG/JPEG deck: one page, refused over MAX_IMAGE_PIXELS before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:  # reads the header only
            width, height = image.size
            if width < 2 or height < 2:
                raise DeckError("render_failed", f"picture of {width}x{height}")
            if width * height > MAX_IMAGE_PIXELS:
                raise DeckError("image_too_large", width=width, height=height)
            image.draft("RGB", (PAGE_LONG_SIDE, PAGE_LONG_SIDE))  # JPEG: decode at a reduced size
            picture = image.convert("RGB")
    except DeckError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DeckError("render_failed", str(exc)[:200]) from None
    scale = PAGE_LONG_SIDE / max(picture.size)
    if scale < 1:
        picture = picture.resize((max(2, round(picture.width * scale)), max(2, round(picture.height * scale))),
                                 Image.Resampling.LANCZOS)
    page = out_dir / "page-1.png"
    picture.save(page, "PNG")
    return [page]
