"""Content layouts: where the content picture and the speakers go in a single-stream view (pure geometry).

Receivers with one video stream (most SIP/H.323 room systems, the recording, a WebRTC page) see the
content composed into the broadcast view while a presenter holds the token. The chair chooses:

* ``content+speakers`` (the default): the content large on top, a strip of up to
  ``STRIP_PANES`` speaker panes (most recent speakers first, then the others in join order) below;
* ``content``: the content alone, full frame;
* ``people``: ignore the content in the composed view (the continuous-presence layout as before;
  receivers with a second stream still get the content there).

With no content live, every choice shows people: the room's own layout.
"""
from __future__ import annotations

from ..layout import Rect

CONTENT_LAYOUTS: tuple[str, ...] = ("content+speakers", "content", "people")
DEFAULT_CONTENT_LAYOUT = "content+speakers"
STRIP_PANES = 5
CONTENT_PANE_ID = "@content"  # the compositor's source id of the content picture (no site has it)


def check_content_layout(name: str) -> str:
    if name not in CONTENT_LAYOUTS:
        raise ValueError(f"unknown content layout {name!r}; expected one of {', '.join(CONTENT_LAYOUTS)}")
    return name


def content_rects(name: str, width: int, height: int, sites: int) -> tuple[Rect, list[Rect]]:
    """(content rectangle, speaker strip rectangles) of a content layout for ``sites`` sites.

    The strip holds ``min(sites, STRIP_PANES)`` panes of a 1/STRIP_PANES-wide 16:9-ish cell, centred
    under the content; with no site (or ``content``) the content takes the whole frame.
    """
    check_content_layout(name)
    count = min(max(sites, 0), STRIP_PANES)
    if name != "content+speakers" or count == 0:
        return Rect(0, 0, width, height), []
    cell_w = _even(width / STRIP_PANES)
    strip_h = min(_even(cell_w * 9 / 16), _even(height / 4))
    content = Rect(0, 0, width, height - strip_h)
    x0 = _even((width - count * cell_w) / 2)
    strip = [Rect(x0 + i * cell_w, height - strip_h, cell_w, strip_h) for i in range(count)]
    return content, strip


def _even(value: float) -> int:
    return int(value // 2) * 2


__all__ = ["CONTENT_LAYOUTS", "CONTENT_PANE_ID", "DEFAULT_CONTENT_LAYOUT", "STRIP_PANES", "Rect",
           "check_content_layout", "content_rects"]
