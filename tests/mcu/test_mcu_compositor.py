"""Pixel checks of composed frames: every pane of every layout, letterbox, text, placeholders."""
from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import pytest
from mcu_helpers import PALETTE, colour, identify, is_black, source_frame, yuv_at

from mcu.clock import FakeClock
from mcu.compositor import frame_planes
from mcu.layout import pane_count, resolve_auto
from mcu.room import BROADCAST, PREVIEW, Room
from mcu.text import FontError, TextRenderer

FIXED = ["1", "2", "1+5", "1+7", "2x2", "3x3", "4x4", "5x5", "6x6", "7x7"]


def colours(indices: Iterable[int]) -> list[int]:
    """The palette index each site shows as (the palette wraps: site 25 looks like site 0)."""
    return [i % len(PALETTE) for i in indices]


def fill(room: Room, n: int, sizes: list[tuple[int, int]] | None = None) -> list[str]:
    ids = []
    for i in range(n):
        pid = f"site{i:02d}"
        site = room.join(pid, f"会场{i}")
        w, h = (sizes or [(640, 360)])[i % len(sizes or [(640, 360)])]
        site.push_video(source_frame(i, w, h))
        ids.append(pid)
    return ids


def pane_ids(room: Room, view: str = BROADCAST) -> list[int | None]:
    composed = room.render(view)
    plan = room.view_plan(view)
    return [identify(yuv_at(composed.frame, *p.rect.centre)) for p in plan.panes]


@pytest.mark.parametrize("layout", FIXED)
def test_every_pane_of_every_layout_shows_its_site(room: Room, layout: str) -> None:
    room.set_labels(False)
    ids = fill(room, pane_count(layout), sizes=[(640, 360), (320, 240), (352, 288), (1280, 720)])
    room.set_layout(layout)
    assert pane_ids(room) == colours(range(len(ids)))
    # static assignment reverses the order
    for index, pid in enumerate(reversed(ids)):
        room.assign_pane(index, "static", pid)
    assert pane_ids(room) == colours(reversed(range(len(ids))))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9, 12, 20, 30, 49])
def test_auto_layout_grows_and_shows_everyone(room: Room, n: int) -> None:
    fill(room, n)
    plan = room.view_plan(BROADCAST)
    assert plan.layout == resolve_auto("auto", n)
    shown = pane_ids(room)
    assert len(shown) >= n and shown[:n] == colours(range(n))  # N = 49: a 7x7, all 49 shown
    assert all(s is None for s in shown[n:])  # spare panes are empty


def test_letterbox_keeps_aspect_ratio(room: Room) -> None:
    room.join("a").push_video(source_frame(3, 640, 480))  # 4:3 into a 16:9 canvas
    composed = room.render(BROADCAST)
    assert identify(yuv_at(composed.frame, 640, 360)) == 3
    assert is_black(yuv_at(composed.frame, 60, 360))  # pillar bars left and right
    assert is_black(yuv_at(composed.frame, 1220, 360))
    assert identify(yuv_at(composed.frame, 180, 360)) == 3  # the 960-wide picture starts at x=160


def test_placeholder_with_name_for_site_without_video(room: Room, clock: FakeClock) -> None:
    room.set_labels(False)
    room.join("a", "云城区").push_video(source_frame(0))
    room.join("b", "罗定市")  # audio-only site
    composed = room.render(BROADCAST)
    left, right = (p.rect for p in room.view_plan(BROADCAST).panes)
    assert identify(yuv_at(composed.frame, *left.centre)) == 0
    y, _, _ = frame_planes(composed.frame)
    tile = y[right.y : right.y + right.h, right.x : right.x + right.w]
    background = np.median(tile)
    assert 45 < background < 70  # the slate placeholder, not black and not a source colour
    assert (tile > 180).sum() > 200  # the name is drawn in light text
    # a frozen source turns into the placeholder once its video is stale
    clock.advance(room.settings.video_stale_after + 0.1)
    composed = room.render(BROADCAST)
    assert identify(yuv_at(composed.frame, *left.centre)) is None


def test_newest_frame_wins_and_no_waiting(room: Room) -> None:
    site = room.join("a")
    site.push_video(source_frame(1))
    site.push_video(source_frame(2))
    composed = room.render(BROADCAST)
    assert identify(yuv_at(composed.frame, 640, 360)) == 2
    assert composed.sources == {"a": (2, room.clock.monotonic())}


def test_labels_on_and_off(room: Room) -> None:
    fill(room, 4)
    plan = room.view_plan(BROADCAST)
    r = plan.panes[0].rect
    region = (slice(r.y + r.h - 40, r.y + r.h), slice(r.x, r.x + 120))
    y_on = frame_planes(room.render(BROADCAST).frame)[0][region].copy()
    room.set_labels(False)
    y_off = frame_planes(room.render(BROADCAST).frame)[0][region].copy()
    assert np.all(np.abs(y_off.astype(int) - colour(0)[0]) <= 1)
    assert (y_on > 200).sum() > 30 and (y_on < 80).sum() > 100  # white text on a dark box


def banner_rows(room: Room, top: bool) -> np.ndarray:
    y = frame_planes(room.render(BROADCAST).frame)[0]
    h = room.compositor.banner_height(720)
    return (y[:h] if top else y[-h:]).copy()


def test_banner_top_bottom_and_scroll(room: Room, clock: FakeClock) -> None:
    fill(room, 1)
    room.set_banner("云浮市防汛视频会商会议", "top")
    bar = banner_rows(room, top=True)
    assert (bar > 200).sum() > 500  # white CJK text on the bar
    _, u, v = yuv_at(room.render(BROADCAST).frame, 8, 30)
    assert v > 160 and u < 120  # a red bar under the text (source 0 has V=48)
    room.set_banner("云浮市防汛视频会商会议", "bottom")
    assert (banner_rows(room, top=False) > 200).sum() > 500
    assert identify(yuv_at(room.render(BROADCAST).frame, 640, 40)) == 0  # top is picture again
    room.set_banner("云浮市防汛视频会商会议", "top", scroll=True, speed=200)
    clock.advance(2.0)
    first = banner_rows(room, top=True)
    assert np.array_equal(first, banner_rows(room, top=True))  # same time, same picture
    clock.advance(0.5)
    second = banner_rows(room, top=True)
    ink1 = np.nonzero((first > 200).any(axis=0))[0]
    ink2 = np.nonzero((second > 200).any(axis=0))[0]
    assert ink1.size and ink2.size and ink2.min() == pytest.approx(ink1.min() - 100, abs=4)
    room.set_banner("")
    assert room.banner is None


def test_cjk_font_and_bad_font_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FontError, match="font file not found"):
        TextRenderer(tmp_path / "missing.ttc")
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    with pytest.raises(FontError, match="cannot load font"):
        TextRenderer(junk)
    text = TextRenderer()
    # Real CJK glyphs: different characters give different ink (no tofu boxes).
    a, b = text.label("云浮", 24), text.label("罗定", 24)
    assert (a.y > 200).sum() > 20 and (b.y > 200).sum() > 20
    assert a.y.shape != b.y.shape or not np.array_equal(a.y, b.y)


def test_preview_shows_every_site_with_labels(room: Room) -> None:
    ids = fill(room, 6)
    room.broadcast(ids[2])  # preview is unaffected by chair operations on the broadcast view
    assert pane_ids(room, PREVIEW)[:6] == list(range(6))
    assert room.view_plan(PREVIEW).labels


def test_join_leave_churn_while_composing(room: Room) -> None:
    room.set_labels(False)
    rng = np.random.default_rng(7)
    stop = threading.Event()
    errors: list[BaseException] = []
    plans = []
    lock = threading.Lock()

    def composer() -> None:
        try:
            while not stop.is_set():
                with lock:
                    plan = room.view_plan(BROADCAST)
                room.compositor.render(plan)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=composer)
    thread.start()
    try:
        present: set[int] = set()
        for step in range(300):
            i = int(rng.integers(0, 25))
            with lock:
                if i in present and rng.random() < 0.6:
                    room.leave(f"s{i}")
                    present.discard(i)
                    # the very next composed frame no longer contains the departed source
                    composed = room.render(BROADCAST)
                    shown = {identify(yuv_at(composed.frame, *p.rect.centre)) for p in room.view_plan(BROADCAST).panes}
                    assert i not in shown
                    assert f"s{i}" not in composed.sources
                elif i not in present:
                    room.join(f"s{i}").push_video(source_frame(i, 320 + 32 * (step % 5), 240))
                    present.add(i)
                else:
                    room.participants[f"s{i}"].push_video(source_frame(i))
                plans.append(len(present))
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not errors
    assert len(plans) == 300
