"""Content composed into the broadcast view: geometry, pixels, and back to people when it stops."""
from __future__ import annotations

import pytest
from mcu_helpers import identify, source_frame, yuv_at

from mcu.clock import FakeClock
from mcu.content.layout import STRIP_PANES, check_content_layout, content_rects
from mcu.content.source import ContentSource
from mcu.layout import Rect
from mcu.participant import VideoSample
from mcu.room import BROADCAST, CONTENT_SOURCE_ID, LOOP_FREE_PREFIX, Room


class Feed:
    """The room's ContentFeed as the content service gives it: a source and a chosen layout."""

    def __init__(self, layout: str = "content+speakers") -> None:
        self.source = ContentSource()
        self.layout = layout

    def content_sample(self) -> VideoSample | None:
        return self.source.sample()

    def content_rects(self, width: int, height: int, sites: int) -> tuple[Rect, list[Rect]] | None:
        return None if self.layout == "people" else content_rects(self.layout, width, height, sites)


def test_content_rects_geometry() -> None:
    content, strip = content_rects("content+speakers", 1280, 720, 3)
    assert content == Rect(0, 0, 1280, 576) and len(strip) == 3
    assert all(r.w == 256 and r.h == 144 and r.y == 576 for r in strip)
    assert strip[0].x == (1280 - 3 * 256) // 2 and strip[1].x == strip[0].x + 256  # centred, side by side
    assert len(content_rects("content+speakers", 1280, 720, 12)[1]) == STRIP_PANES
    assert content_rects("content+speakers", 1280, 720, 0) == (Rect(0, 0, 1280, 720), [])
    assert content_rects("content", 1280, 720, 5) == (Rect(0, 0, 1280, 720), [])
    with pytest.raises(ValueError):
        check_content_layout("content+everyone")


def test_content_and_speaker_strip_pixels_then_back_to_people(room: Room, clock: FakeClock) -> None:
    room.set_labels(False)
    for i in (1, 2):
        room.join(f"s{i}", f"会场{i}").push_video(source_frame(i, 640, 360))
    feed = Feed()
    room.content = feed
    room.set_layout("2")
    assert [p.participant_id for p in room.view_plan(BROADCAST).panes] == ["s1", "s2"]  # no presenter yet
    feed.source.switch("s1")
    assert feed.source.push("s1", source_frame(9, 1280, 720), clock.monotonic())
    assert not feed.source.push("s2", source_frame(5, 1280, 720), clock.monotonic())  # not the presenter
    plan = room.view_plan(BROADCAST)
    assert plan.layout == "content" and [p.participant_id for p in plan.panes] == [CONTENT_SOURCE_ID, "s1", "s2"]
    frame = room.render(BROADCAST).frame
    assert identify(yuv_at(frame, 640, 288)) == 9  # the content, large, on top
    assert [identify(yuv_at(frame, p.rect.centre[0], p.rect.centre[1])) for p in plan.panes[1:]] == [1, 2]
    # A broadcast site (roll call, an approved hand) leads the speaker strip.
    room.broadcast("s2")
    assert [p.participant_id for p in room.view_plan(BROADCAST).panes] == [CONTENT_SOURCE_ID, "s2", "s1"]
    room.broadcast(None)
    # A loop-free receiver (a cascade link) gets the content too, without its own pane.
    room.set_loop_free("s2")
    assert [p.participant_id for p in room.view_plan(LOOP_FREE_PREFIX + "s2").panes] == [CONTENT_SOURCE_ID, "s1"]
    # Content only.
    feed.layout = "content"
    assert [identify(yuv_at(room.render(BROADCAST).frame, x, 650)) for x in (100, 640, 1180)] == [9, 9, 9]
    # "people": the chair keeps the continuous presence in the composed view.
    feed.layout = "people"
    assert [p.participant_id for p in room.view_plan(BROADCAST).panes] == ["s1", "s2"]
    # The content stream stops: stale after video_stale_after, the view returns to people.
    feed.layout = "content+speakers"
    clock.advance(room.settings.video_stale_after + 0.1)
    for i in (1, 2):
        room.participants[f"s{i}"].push_video(source_frame(i, 640, 360))
    assert [p.participant_id for p in room.view_plan(BROADCAST).panes] == ["s1", "s2"]
    # Revoked: the picture is dropped at once.
    feed.source.push("s1", source_frame(9, 1280, 720), clock.monotonic())
    assert room.view_plan(BROADCAST).layout == "content"
    feed.source.switch(None)
    assert room.view_plan(BROADCAST).layout == "2"


def test_the_recording_encoder_of_the_broadcast_view_carries_the_content(room: Room, clock: FakeClock) -> None:
    """The conference recording subscribes to the broadcast view (mcu.recording_tap): its H.264
    carries the content composite, decoded here."""
    from mcu_helpers import decode_all

    room.set_labels(False)
    for i in (1, 2):
        room.join(f"s{i}", f"会场{i}").push_video(source_frame(i, 640, 360))
    feed = Feed()
    room.content = feed
    feed.source.switch("s2")
    packets: list[bytes] = []
    sub = room.subscribe_view(BROADCAST, lambda p: packets.append(p.data), codec="h264", width=640, height=360)
    for _ in range(3):
        feed.source.push("s2", source_frame(9, 1280, 720), clock.monotonic())
        room.video_tick()
        clock.advance(0.04)
    frame = decode_all(packets, "h264")[-1]
    assert identify(yuv_at(frame, 320, 144)) == 9
    assert {identify(yuv_at(frame, 256, 324)), identify(yuv_at(frame, 384, 324))} == {1, 2}
    sub.close()


def test_content_view_for_second_streams_and_people_for_their_main_stream(room: Room, clock: FakeClock) -> None:
    from mcu.room import CONTENT_EVERY, CONTENT_VIEW, PEOPLE_VIEW

    room.set_labels(False)
    for i in (1, 2):
        room.join(f"s{i}", f"会场{i}").push_video(source_frame(i, 640, 360))
    feed = Feed()
    room.content = feed
    room.content_receivers.add("s2")
    got: list[bytes] = []
    sub = room.subscribe_view(CONTENT_VIEW, lambda p: got.append(p.data), width=1920, height=1080)
    assert room.view_for("s2") == BROADCAST  # no content: everyone on the broadcast
    room.video_tick()
    assert got == []  # the content stream sends nothing while there is no content
    feed.source.switch("s1")
    feed.source.push("s1", source_frame(9, 1280, 720), clock.monotonic())
    assert room.view_for("s2") == PEOPLE_VIEW and room.view_for("s1") == BROADCAST
    plan = room.view_plan(CONTENT_VIEW)
    assert (plan.width, plan.height) == (1920, 1080) and [p.participant_id for p in plan.panes] == [CONTENT_SOURCE_ID]
    assert [p.participant_id for p in room.view_plan(PEOPLE_VIEW).panes] == ["s1", "s2"]
    encoded = 0
    for _ in range(4 * CONTENT_EVERY):
        before = len(got)
        room.video_tick()
        encoded += len(got) > before
    assert encoded == 4  # every CONTENT_EVERY-th tick
    from mcu_helpers import decode_all
    frame = decode_all(got, "h264")[-1]
    assert (frame.width, frame.height) == (1920, 1080) and identify(yuv_at(frame, 960, 540)) == 9
    sub.close()
