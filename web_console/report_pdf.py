"""Printing a self-contained HTML document to PDF with headless Chromium (Debian ``chromium``), so
Chinese text is set in the system's CJK font (fonts-wqy-microhei) and embedded in the file.

One bounded subprocess per document: ``chromium --headless --print-to-pdf=… file://…`` on a
private temporary directory (the HTML, a throw-away profile, the PDF), with every network request
sent to a dead proxy (the document references nothing outside itself, and its own
Content-Security-Policy allows no script and no fetch; Chromium's ``scriptEnabled=false`` switch
cannot be used: headless printing then writes no file). At
most ``concurrency`` run at once; a request that waits longer than ``slot_wait_s`` for a slot is
refused (busy); a run longer than ``timeout_s`` is killed with its whole process group. Every
refusal is a ``PdfError`` whose ``reason`` the web layer turns into a clear 503.

Why a subprocess and not Playwright: the product does not otherwise need a browser driver at run
time, and one short-lived process per PDF cannot leak pages or state between reports.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Reason = Literal["missing", "timeout", "busy", "failed"]


class PdfError(RuntimeError):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


@dataclass
class ChromiumPrinter:
    chromium: Path = Path("/usr/bin/chromium")
    timeout_s: float = 30.0
    concurrency: int = 2
    slot_wait_s: float = 10.0
    _slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)

    def available(self) -> bool:
        return self.chromium.is_file() and os.access(self.chromium, os.X_OK)

    async def print_pdf(self, html: str) -> bytes:
        """The PDF of ``html`` (A4 page size and margins come from the document's CSS)."""
        if not self.available():
            raise PdfError("missing", str(self.chromium))
        try:
            await asyncio.wait_for(self._slots.acquire(), self.slot_wait_s)
        except TimeoutError:
            raise PdfError("busy") from None
        try:
            return await self._run(html)
        finally:
            self._slots.release()

    def _args(self, work: Path, page: Path, out: Path) -> list[str]:
        return [str(self.chromium), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--disable-default-apps", "--mute-audio",
                "--proxy-server=http://127.0.0.1:9",
                f"--user-data-dir={work / 'profile'}", "--no-pdf-header-footer",
                f"--print-to-pdf={out}", page.as_uri()]

    async def _run(self, html: str) -> bytes:
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="cc-report-"))
        try:
            page, out = work / "report.html", work / "report.pdf"
            await asyncio.to_thread(page.write_text, html, encoding="utf-8")
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
                   "XDG_CONFIG_HOME": str(work / "config"), "XDG_CACHE_HOME": str(work / "cache"),
                   "LANG": "C.UTF-8"}
            proc = await asyncio.create_subprocess_exec(
                *self._args(work, page, out), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
            try:
                _, errors = await asyncio.wait_for(proc.communicate(), self.timeout_s)
            except TimeoutError:
                _kill_group(proc.pid)
                await proc.wait()
                raise PdfError("timeout", f"{self.timeout_s:g} s") from None
            except asyncio.CancelledError:  # the client went away: stop chromium too
                _kill_group(proc.pid)
                raise
            _kill_group(proc.pid)  # helpers chromium may have left behind
            data = await asyncio.to_thread(_read, out)
            if proc.returncode != 0 or not data.startswith(b"%PDF-"):
                log.error("report PDF: chromium exited %s without a PDF: %s", proc.returncode,
                          errors.decode(errors="replace")[-2000:])
                raise PdfError("failed", f"exit {proc.returncode}")
            return data
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
