"""Chair operations: each changes the picture/audio as documented and emits its events.

Pixel checks read the pane centres of the composed views, so they test what a site would
actually be sent, not just the room's bookkeeping.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from mcu_helpers import identify, source_frame, tone, yuv_at

from mcu import events as ev
from mcu.clock import FakeClock
from mcu.room import BROADCAST, Room, RoomError, select_view_id


def shown(room: Room, view: str) -> list[int | None]:
    for pid, site in room.participants.items():  # live sources keep sending frames
        site.push_video(source_frame(int(pid[1:])))
    composed = room.render(view)
    return [identify(yuv_at(composed.frame, *p.rect.centre)) for p in room.view_plan(view).panes]


def seen_by(room: Room, pid: str) -> list[int | None]:
    return shown(room, room.view_for(pid))


@pytest.fixture
def sites(room: Room) -> list[str]:
    room.set_labels(False)
    ids = []
    for i in range(6):
        pid = f"s{i}"
        room.join(pid, f"会场{i}", chair=(i == 0)).push_video(source_frame(i))
        ids.append(pid)
    return ids


def kinds(events: list[ev.RoomEvent]) -> list[str]:
    return [ev.event_kind(e) for e in events]


def test_join_emits_events_and_chair(room: Room, sites: list[str], events: list[ev.RoomEvent]) -> None:
    assert kinds(events)[:3] == ["labels_changed", "participant_joined", "chair_changed"]
    assert room.chair_id == "s0"
    assert ev.event_to_dict(events[1]) == {
        "room_id": room.id, "at": 1000.0, "participant_id": "s0", "name": "会场0", "is_chair": True,
        "kind": "participant_joined"}


def test_layout_and_pane_assignment(room: Room, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.set_layout("1+5")
    room.assign_pane(0, "static", "s4")
    assert shown(room, BROADCAST) == [4, 0, 1, 2, 3, 5]
    assert events[-2] == ev.LayoutChanged(room.id, 1000.0, BROADCAST, "1+5")
    assert events[-1] == ev.PaneAssigned(room.id, 1000.0, BROADCAST, 0, "static", "s4")
    before = list(events)
    bad_ops: list[Callable[[], None]] = [
        lambda: room.assign_pane(6, "static", "s1"), lambda: room.assign_pane(0, "static", "nobody"),
        lambda: room.assign_pane(0, "sideways"), lambda: room.set_layout("8x8")]
    for bad in bad_ops:
        with pytest.raises(RoomError):
            bad()
    assert events == before and shown(room, BROADCAST) == [4, 0, 1, 2, 3, 5]  # bad input changed nothing


def test_broadcast_everyone_sees_the_site_and_it_sees_the_chair(room: Room, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.broadcast("s3")
    assert events[-1] == ev.BroadcastChanged(room.id, 1000.0, "s3")
    for pid in ("s0", "s1", "s5"):
        assert seen_by(room, pid) == [3]
    assert room.view_for("s3") == select_view_id("s0")
    assert seen_by(room, "s3") == [0]
    room.broadcast(None)
    assert seen_by(room, "s3") == [0, 1, 2, 3, 4, 5, None, None, None]


def test_roll_call_broadcasts_unmutes_and_mutes_others(room: Room, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.mute_all_except_chair()
    assert [room.participants[p].muted for p in sites] == [False, True, True, True, True, True]
    room.roll_call("s2", mute_others=True)
    assert seen_by(room, "s1") == [2]
    assert not room.participants["s2"].muted and not room.participants["s0"].muted
    assert all(room.participants[p].muted for p in ("s1", "s3", "s4", "s5"))
    assert events[-1] == ev.RollCall(room.id, 1000.0, "s2", True)
    assert ev.MuteChanged(room.id, 1000.0, "s2", False) in events
    with pytest.raises(RoomError):
        room.roll_call("ghost")
    assert room.broadcast_id == "s2"


def test_select_view(room: Room, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.set_layout("3x3")
    room.select_view("s1", "s4")
    room.select_view("s2", "s4")
    assert seen_by(room, "s1") == [4] and seen_by(room, "s2") == [4]
    assert room.view_for("s1") == room.view_for("s2")  # one shared view (and encoder)
    assert seen_by(room, "s3")[:6] == [0, 1, 2, 3, 4, 5]
    assert events[-1] == ev.SelectViewChanged(room.id, 1000.0, "s2", "s4")
    with pytest.raises(RoomError):
        room.select_view("s1", "s1")
    room.leave("s4")  # the selected site leaves: viewers fall back to the broadcast view
    assert room.view_for("s1") == BROADCAST
    assert ev.SelectViewChanged(room.id, 1000.0, "s1", None) in events
    room.select_view("s2", "s5")
    room.select_view("s2", None)
    assert room.view_for("s2") == BROADCAST


def test_polling_full_screen_with_fake_clock(room: Room, clock: FakeClock, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.start_polling(["s1", "s3", "s5"], interval=10)
    seq = []
    for _ in range(7):
        seq.append(shown(room, BROADCAST)[0])
        clock.advance(5)
    assert seq == [1, 1, 3, 3, 5, 5, 1]
    assert events[-1] == ev.PollingChanged(room.id, 1000.0, True, ("s1", "s3", "s5"), 10.0, None)
    room.leave("s3")  # a site leaving the list is skipped
    assert shown(room, BROADCAST) == [1]
    clock.advance(10)
    assert shown(room, BROADCAST) == [5]
    room.stop_polling()
    assert isinstance(events[-1], ev.PollingChanged) and events[-1].active is False
    assert shown(room, BROADCAST)[:5] == [0, 1, 2, 4, 5]


def test_polling_in_one_pane(room: Room, clock: FakeClock, sites: list[str]) -> None:
    room.set_layout("2x2")
    room.assign_pane(0, "static", "s0")
    room.start_polling(["s4", "s5"], interval=3, pane=3)
    assert shown(room, BROADCAST) == [0, 1, 2, 4]
    clock.advance(3)
    assert shown(room, BROADCAST) == [0, 1, 2, 5]
    bad_ops: list[Callable[[], None]] = [
        lambda: room.start_polling([], 3), lambda: room.start_polling(["s1", "zz"], 3),
        lambda: room.start_polling(["s1"], 0), lambda: room.start_polling(["s1"], 3, pane=4),
        lambda: room.start_polling(["s1", "s1"], 3)]
    for bad in bad_ops:
        with pytest.raises(RoomError):
            bad()
    assert room.polling is not None and room.polling.participant_ids == ("s4", "s5")


def talk(room: Room, clock: FakeClock, speaker: str, seconds: float) -> None:
    for k in range(int(seconds / 0.02)):
        for i, pid in enumerate(room.present):
            room.participants[pid].push_audio(tone(300 + 100 * i, 3000 if pid == speaker else 20, k))
        room.audio_tick()
        clock.advance(0.02)


def test_voice_activated_switching(room: Room, clock: FakeClock, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.set_voice_activated(True)
    assert events[-1] == ev.VoiceActivatedChanged(room.id, 1000.0, True)
    talk(room, clock, "s2", 1.5)
    assert seen_by(room, "s1") == [2]
    talk(room, clock, "s4", 0.5)  # shorter than the hold: no switch
    assert seen_by(room, "s1") == [2]
    talk(room, clock, "s4", 1.5)
    assert seen_by(room, "s1") == [4]
    assert seen_by(room, "s4") == [2]  # the speaker sees the previous speaker
    room.set_voice_activated(False)
    assert seen_by(room, "s1")[:6] == [0, 1, 2, 3, 4, 5]


def test_voice_pane_in_a_layout(room: Room, clock: FakeClock, sites: list[str]) -> None:
    room.set_layout("1+5")
    room.assign_pane(0, "voice")
    talk(room, clock, "s5", 1.5)
    assert shown(room, BROADCAST) == [5, 0, 1, 2, 3, 4]


def test_newest_picture_operation_wins(room: Room, sites: list[str]) -> None:
    room.broadcast("s1")
    room.set_voice_activated(True)
    assert room.broadcast_id is None
    room.start_polling(["s2"], 5)
    assert not room.voice_activated
    room.set_layout("2x2")
    assert room.polling is None and shown(room, BROADCAST) == [0, 1, 2, 3]


def test_lock_remove_end(room: Room, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.lock()
    with pytest.raises(RoomError, match="锁定"):
        room.join("intruder")
    assert "intruder" not in room.participants
    room.unlock()
    room.join("guest")
    room.remove("s5")
    assert events[-1] == ev.ParticipantLeft(room.id, 1000.0, "s5", "removed")
    assert "s5" not in room.participants
    with pytest.raises(RoomError):
        room.remove("s5")
    room.end()
    assert kinds(events)[-1] == "room_ended" and not room.participants
    for op in (lambda: room.join("x"), lambda: room.mute("s1"), lambda: room.set_layout("1")):
        with pytest.raises(RoomError, match="结束"):
            op()


def test_chair_leaving_and_banner_labels_events(room: Room, sites: list[str], events: list[ev.RoomEvent]) -> None:
    room.broadcast("s2")
    room.leave("s0")
    assert ev.ChairChanged(room.id, 1000.0, None) in events
    assert room.view_for("s2") == BROADCAST  # no chair to look at: sees the broadcast
    room.set_banner("云浮市三防视频会议", "bottom", scroll=True)
    room.set_labels(True)
    assert events[-2:] == [ev.BannerChanged(room.id, 1000.0, "云浮市三防视频会议", "bottom", True),
                           ev.LabelsChanged(room.id, 1000.0, True)]
    with pytest.raises(RoomError):
        room.set_banner("x", "middle")
    assert room.banner is not None and room.banner.position == "bottom"


def test_duplicate_and_bad_joins(room: Room, sites: list[str]) -> None:
    with pytest.raises(RoomError):
        room.join("s1")
    with pytest.raises(RoomError):
        room.join("")
    assert len(room.participants) == 6


def test_event_listener_failure_does_not_break_the_room(clock: FakeClock, text) -> None:  # type: ignore[no-untyped-def]
    def boom(event: ev.RoomEvent) -> None:
        raise RuntimeError("listener bug")

    room = Room("r", clock=clock, on_event=boom, text=text)
    room.join("a")
    room.mute("a")
    assert room.participants["a"].muted


def test_wanted_video_size_follows_the_picture(room: Room, sites: list[str]) -> None:
    room.set_layout("1+5")
    room.assign_pane(0, "static", "s3")
    assert room.wanted_video_size("s3") == (854, 480)
    assert room.wanted_video_size("s1") == (426, 240)
    room.broadcast("s1")
    assert room.wanted_video_size("s1") == (1280, 720)
    assert room.wanted_video_size("s4") is None  # not on anyone's screen
    room.subscribe_view("preview", lambda p: None)  # the chair's monitor shows everyone
    assert room.wanted_video_size("s4") == (428, 240)  # middle column of the 3x3 grid
    with pytest.raises(RoomError):
        room.wanted_video_size("ghost")
