"""Layout geometry and pane-selection rules (pure functions)."""
from __future__ import annotations

import pytest

from mcu.layout import (
    LAYOUTS,
    AutoPane,
    Pane,
    PollingPane,
    Rect,
    StaticPane,
    VoicePane,
    assign_panes,
    check_layout,
    fit_rect,
    pane_count,
    pane_rects,
    resolve_auto,
)

EXPECTED_PANES = {"1": 1, "2": 2, "1+5": 6, "1+7": 8, "2x2": 4, "3x3": 9, "4x4": 16, "5x5": 25, "6x6": 36, "7x7": 49}


@pytest.mark.parametrize("name", list(EXPECTED_PANES))
def test_panes_tile_the_canvas_without_overlap(name: str) -> None:
    rects = pane_rects(name, 1280, 720)
    assert len(rects) == pane_count(name) == EXPECTED_PANES[name]
    covered: set[tuple[int, int]] = set()
    for r in rects:
        assert r.x % 2 == 0 and r.y % 2 == 0 and r.w % 2 == 0 and r.h % 2 == 0
        assert 0 <= r.x and r.x + r.w <= 1280 and 0 <= r.y and r.y + r.h <= 720
        cells = {(x, y) for x in range(r.x, r.x + r.w, 2) for y in range(r.y, r.y + r.h, 2)}
        assert not cells & covered, "panes overlap"
        covered |= cells
    assert len(covered) == 640 * 360, "panes leave a gap"


def test_big_pane_layouts_have_one_large_pane() -> None:
    big, *small = pane_rects("1+5", 1200, 720)
    assert big.w == 800 and big.h == 480 and all(r.w == 400 for r in small)
    big, *small = pane_rects("1+7", 1280, 720)
    assert big.w == 960 and len(small) == 7


def test_auto_grows_with_sites() -> None:
    assert [resolve_auto("auto", n) for n in (0, 1, 2, 3, 4, 5, 9, 10, 16, 17, 25, 26, 36, 37, 49, 60)] == [
        "1", "1", "2", "2x2", "2x2", "3x3", "3x3", "4x4", "4x4", "5x5", "5x5", "6x6", "6x6", "7x7", "7x7", "7x7"]
    assert resolve_auto("1+5", 20) == "1+5"


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown layout"):
        check_layout("8x8")
    assert set(LAYOUTS) == set(EXPECTED_PANES) | {"auto"}


def test_fit_rect_letterboxes_and_pillarboxes() -> None:
    box = Rect(100, 50, 640, 360)
    assert fit_rect(1280, 720, box) == box
    pillar = fit_rect(640, 480, box)  # 4:3 in 16:9: bars left and right
    assert pillar.h == 360 and pillar.w == 480 and pillar.x == 180 and pillar.y == 50
    letter = fit_rect(1280, 720, Rect(0, 0, 352, 288))  # 16:9 in CIF: bars top and bottom
    assert letter.w == 352 and letter.h == 198 and letter.y == 44


def test_assign_static_voice_polling_and_auto() -> None:
    present = ["a", "b", "c", "d", "e"]
    panes: list[Pane] = [StaticPane("c"), VoicePane(0), AutoPane(), PollingPane(("a", "e"), 10.0, 0.0)]
    # static and polling panes are placed first; the auto pane takes the first free site
    assert assign_panes(panes, 4, present, ["b"], now=5.0) == ["c", "b", "d", "a"]
    assert assign_panes(panes, 4, present, ["b"], now=15.0) == ["c", "b", "a", "e"]
    assert assign_panes(panes, 4, present, ["b"], now=25.0) == ["c", "b", "d", "a"]
    # no speaker yet: the voice pane is filled like an auto pane
    assert assign_panes([VoicePane(0)], 1, present, [], now=0.0) == ["a"]
    # a static site that left leaves its pane empty; extra panes stay empty
    assert assign_panes([StaticPane("zz")], 2, ["a"], [], 0.0) == [None, "a"]


def test_polling_skips_absent_sites_and_keeps_rotation() -> None:
    poll = PollingPane(("a", "b", "c"), 2.0, 100.0)
    assert [poll.current(100.0 + 2 * k, ["a", "b", "c"]) for k in range(4)] == ["a", "b", "c", "a"]
    assert poll.current(102.0, ["a", "c"]) == "c"
    assert poll.current(102.0, []) is None
