"""The chair's slide deck: file checks by magic bytes, poppler rendering under limits, paging.

Real poppler (`pdfinfo`, `pdftoppm`, Debian poppler-utils) renders PDFs made here with Pillow's PDF
writer; a PDF whose one page draws 300 000 filled paths keeps pdftoppm busy for minutes and must be
killed at the time limit.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mcu.content.deck import DeckPager, page_frame
from mcu.content.deck_render import DeckError, DeckLimits, DeckRenderer, missing_tools, sniff

RED, BLUE = (220, 30, 30), (30, 30, 220)


def pdf_of(path: Path, colours: list[tuple[int, int, int]], size: tuple[int, int] = (800, 450)) -> Path:
    pages = [Image.new("RGB", size, c) for c in colours]
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:])
    return path


def slow_pdf(path: Path, paths: int = 300_000) -> Path:
    """One page of many filled triangles (written by hand: a minimal valid PDF with an xref)."""
    ops = b"".join(b"%d %d m %d %d l %d %d l h f\n" % (i % 600, i % 400, (i * 7) % 600, (i * 13) % 400,
                                                      (i * 3) % 600, (i * 11) % 400) for i in range(paths))
    stream = zlib.compress(ops, 9)
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 400] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(out)
    return path


def near(rgb: object, want: tuple[int, int, int], tolerance: int = 30) -> bool:
    assert isinstance(rgb, tuple), rgb
    return all(abs(int(a) - b) <= tolerance for a, b in zip(rgb, want, strict=False))


@pytest.fixture(autouse=True)
def _poppler() -> None:
    if missing_tools():
        pytest.fail(f"missing {missing_tools()}: install Debian poppler-utils (make test does it as root)")


def render(renderer: DeckRenderer, source: Path, out: Path) -> list[Path]:
    return asyncio.run(renderer.render(source, out))


def test_sniff_by_magic_bytes_not_name() -> None:
    assert sniff(b"%PDF-1.7\n") == "pdf"
    assert sniff(b"\x89PNG\r\n\x1a\n\0\0") == "png"
    assert sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    for junk in (b"", b"PK\x03\x04", b"GIF89a", b"<html>", b"%PDF", os.urandom(16).replace(b"%", b"x")):
        assert sniff(junk) is None, junk


def test_two_page_pdf_rendered_in_colour_and_in_order(tmp_path: Path) -> None:
    pages = render(DeckRenderer(), pdf_of(tmp_path / "d.pdf", [RED, BLUE]), tmp_path / "out")
    assert [p.name for p in pages] == ["page-1.png", "page-2.png"]
    for page, colour in zip(pages, (RED, BLUE), strict=True):
        with Image.open(page) as image:
            assert max(image.size) == 1920
            assert near(image.convert("RGB").getpixel((image.width // 2, image.height // 2)), colour)
    frame = page_frame(pages[1])
    assert (frame.width, frame.height, frame.format.name) == (1920, 1080, "yuv420p")
    assert near(frame.to_image().getpixel((960, 540)), BLUE)  # type: ignore[no-untyped-call]


def test_png_and_jpeg_are_one_page(tmp_path: Path) -> None:
    Image.new("RGB", (4000, 1000), RED).save(tmp_path / "a.png")
    Image.new("RGB", (640, 480), BLUE).save(tmp_path / "b.jpg", quality=95)
    (png,) = render(DeckRenderer(), tmp_path / "a.png", tmp_path / "o1")
    (jpg,) = render(DeckRenderer(), tmp_path / "b.jpg", tmp_path / "o2")
    with Image.open(png) as image:
        assert image.size == (1920, 480)
    with Image.open(jpg) as image:
        assert near(image.getpixel((320, 240)), BLUE)


@pytest.mark.parametrize("name,data,code", [
    ("renamed.pdf", None, "not_supported"),  # a GIF named .pdf
    ("random.pdf", b"random" + bytes(range(256)) * 4, "not_supported"),
    ("empty.pdf", b"", "empty"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", "render_failed"),
])
def test_bad_files_refused_and_nothing_left(tmp_path: Path, name: str, data: bytes | None, code: str) -> None:
    source = tmp_path / name
    if data is None:
        source.write_bytes(b"GIF89a" + bytes(100))  # a GIF named .pdf
    else:
        source.write_bytes(data)
    with pytest.raises(DeckError) as err:
        render(DeckRenderer(), source, tmp_path / "out")
    assert err.value.code == code
    assert not (tmp_path / "out").exists()


def test_limits_size_pages_and_pixels(tmp_path: Path) -> None:
    small = DeckRenderer(DeckLimits(max_bytes=1000, max_pages=3))
    with pytest.raises(DeckError) as err:
        render(small, pdf_of(tmp_path / "big.pdf", [RED]), tmp_path / "o1")
    assert err.value.code == "too_big" and err.value.values == {"limit_mb": 0}
    many = pdf_of(tmp_path / "many.pdf", [RED] * 4, size=(20, 20))
    with pytest.raises(DeckError) as err:
        render(DeckRenderer(DeckLimits(max_pages=3)), many, tmp_path / "o2")
    assert err.value.code == "too_many_pages" and err.value.values == {"pages": 4, "limit": 3}
    assert not (tmp_path / "o2").exists()
    default = pdf_of(tmp_path / "301.pdf", [RED] * 301, size=(10, 10))
    with pytest.raises(DeckError) as err:
        render(DeckRenderer(), default, tmp_path / "o3")
    assert err.value.code == "too_many_pages" and err.value.values["limit"] == 300
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # ~10 kB on disk, 81 Mpixel decoded
    with pytest.raises(DeckError) as err:
        render(DeckRenderer(), bomb, tmp_path / "o4")
    assert err.value.code == "image_too_large"


def test_a_pdf_that_hangs_the_renderer_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    source = slow_pdf(tmp_path / "slow.pdf")
    renderer = DeckRenderer(DeckLimits(render_seconds=3.0))

    async def scenario() -> None:
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeckError) as err:
            await renderer.render(source, tmp_path / "out")
        assert err.value.code == "render_timeout"
        assert asyncio.get_running_loop().time() - started < 15
        # The renderer was killed (its whole session), not left running.
        await asyncio.sleep(0.5)
        pgrep = await asyncio.to_thread(subprocess.run, ["pgrep", "-f", str(source)], capture_output=True, text=True)
        left = pgrep.stdout.split()
        assert left == [], left

    asyncio.run(scenario())
    assert not (tmp_path / "out").exists()


def test_only_so_many_renders_at_once(tmp_path: Path) -> None:
    source = slow_pdf(tmp_path / "slow.pdf")
    renderer = DeckRenderer(DeckLimits(render_seconds=3.0, concurrency=1))

    async def scenario() -> None:
        first = asyncio.ensure_future(renderer.render(source, tmp_path / "a"))
        await asyncio.sleep(0.3)
        with pytest.raises(DeckError) as err:
            await renderer.render(pdf_of(tmp_path / "ok.pdf", [RED]), tmp_path / "b")
        assert err.value.code == "busy"
        with pytest.raises(DeckError):
            await first

    asyncio.run(scenario())


def test_pager_moves_and_refuses_out_of_range() -> None:
    pager = DeckPager(3)
    assert pager.move("prev") is False and pager.index == 0
    assert pager.move("next") and pager.move("next") and pager.index == 2
    assert pager.move("next") is False and pager.index == 2
    assert pager.move("first") and pager.index == 0
    assert pager.move("last") and pager.index == 2
    assert pager.move("goto", 2) and pager.index == 1
    for bad in (0, 4, None):
        with pytest.raises(ValueError):
            pager.move("goto", bad)
    assert pager.index == 1
    with pytest.raises(ValueError):
        DeckPager(0)
