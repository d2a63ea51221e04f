"""Reading the situation report in tests: the HTML elements that carry a ``data-testid``, with
their attributes and their text (the standard library's HTML parser; no scraping library), and a
PDF's text and embedded fonts (pypdf)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from pypdf import PdfReader

VOID = {"br", "img", "input", "meta", "link", "hr", "col", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[Element] = []
        self.open: list[tuple[str, Element | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        el = Element(tag, a) if "data-testid" in a else None
        if el is not None:
            self.found.append(el)
        if tag not in VOID:
            self.open.append((tag, el))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i][0] == tag:
                del self.open[i:]
                return

    def handle_data(self, data: str) -> None:
        for _, el in self.open:
            if el is not None:
                el.parts.append(data)


def elements(html: str, testid: str) -> list[Element]:
    """Every element with ``data-testid=testid``, in document order."""
    p = _Collector()
    p.feed(html)
    return [e for e in p.found if e.attrs["data-testid"] == testid]


def pdf_text_and_fonts(data: bytes) -> tuple[str, set[str]]:
    """The PDF's text and the base names of the fonts embedded in it (with a font file)."""
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(p.extract_text() or "" for p in reader.pages)
    fonts: set[str] = set()
    for page in reader.pages:
        resources: Any = page.get("/Resources")
        for ref in (resources.get_object().get("/Font") or {}).values() if resources is not None else ():
            font: Any = ref.get_object()
            for d in [font, *[x.get_object() for x in font.get("/DescendantFonts", [])]]:
                desc: Any = d.get("/FontDescriptor")
                desc = desc.get_object() if desc is not None else None
                if desc is not None and any(k in desc for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                    fonts.add(str(d.get("/BaseFont", desc.get("/FontName", ""))))
    return text, fonts
