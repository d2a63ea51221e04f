"""The headless-Chromium PDF printer (web_console/report_pdf.py) with Debian's real chromium: a
CJK document prints with its font embedded; a missing chromium, a run over its time and a full
queue are refused with the reason the web layer turns into a 503; nothing is left running and
no temporary directory is left behind."""
from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.browser import CHROMIUM
from tests.dispatch.report_html import pdf_text_and_fonts
from web_console.report_pdf import ChromiumPrinter, PdfError

DOC = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<style>body { font-family: "WenQuanYi Micro Hei", sans-serif; }</style></head>
<body><h1>态势报告</h1><p>各部门任务清单：组织危险区域人员转移</p>
<img src="http://203.0.113.1/leak.png" alt=""></body></html>"""


def chromium_runs() -> list[psutil.Process]:
    """The printer's Chromium processes: their profile is in a cc-report- directory of this test's
    temporary directory (see _own_temp_dir)."""
    out = []
    ours = str(Path(tempfile.gettempdir()) / "cc-report-")
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if "--print-to-pdf=" in cmd and ours in cmd:
            out.append(p)
    return out


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("cc-report-*")}


@pytest.fixture(autouse=True)
def _own_temp_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The printer's temporary directories go into a directory of this test's own: the checks above
    then see only this printer's, not those of a report printed at the same time elsewhere (another
    pytest worker, another run)."""
    own = tempfile.mkdtemp(prefix="cc-pdf-test-")
    monkeypatch.setattr(tempfile, "tempdir", own)
    yield
    monkeypatch.undo()
    shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian package 'chromium'")


async def test_prints_cjk_with_the_font_embedded() -> None:
    before = leftovers()
    data = await ChromiumPrinter(timeout_s=60).print_pdf(DOC)
    text, fonts = pdf_text_and_fonts(data)
    squashed = "".join(text.split())
    assert "态势报告" in squashed and "组织危险区域人员转移" in squashed
    assert any("WenQuanYi" in f for f in fonts), fonts
    assert leftovers() <= before and not chromium_runs()


async def test_missing_chromium_is_refused() -> None:
    with pytest.raises(PdfError) as e:
        await ChromiumPrinter(chromium=Path("/nonexistent/chromium")).print_pdf(DOC)
    assert e.value.reason == "missing"


async def test_a_run_over_time_is_killed_with_its_children() -> None:
    before = leftovers()
    with pytest.raises(PdfError) as e:
        await ChromiumPrinter(timeout_s=0.05).print_pdf(DOC)  # chromium cannot even start in 50 ms
    assert e.value.reason == "timeout"
    await asyncio.sleep(0.5)
    assert not chromium_runs() and leftovers() <= before


async def test_more_than_the_limit_at_once_is_busy() -> None:
    printer = ChromiumPrinter(timeout_s=60, concurrency=1, slot_wait_s=0.05)
    first = asyncio.create_task(printer.print_pdf(DOC))
    await asyncio.sleep(0.01)  # the first holds the only slot for about a second
    with pytest.raises(PdfError) as e:
        await printer.print_pdf(DOC)
    assert e.value.reason == "busy"
    assert (await first).startswith(b"%PDF-")
    assert (await printer.print_pdf(DOC)).startswith(b"%PDF-")  # the slot came back
