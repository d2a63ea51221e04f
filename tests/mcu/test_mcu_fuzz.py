"""Random sequences of chair operations (hypothesis, bounded): bad input is refused with
RoomError and changes nothing visible; good input keeps every view renderable and never
shows a site that is not in the room."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcu_helpers import source_frame

from mcu.clock import FakeClock
from mcu.layout import LAYOUTS
from mcu.room import BROADCAST, PREVIEW, Room, RoomError, select_view_id
from mcu.text import TextRenderer

SITE_IDS = [f"s{i}" for i in range(8)] + ["ghost", ""]
TEXT = TextRenderer()

ops = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(SITE_IDS), st.text(max_size=6)),
    st.tuples(st.just("leave"), st.sampled_from(SITE_IDS)),
    st.tuples(st.just("layout"), st.sampled_from([*LAYOUTS, "6x6", ""])),
    st.tuples(st.just("pane"), st.integers(-1, 26), st.sampled_from(["auto", "static", "voice", "bogus"]),
              st.sampled_from(SITE_IDS)),
    st.tuples(st.just("broadcast"), st.sampled_from([*SITE_IDS, None])),
    st.tuples(st.just("rollcall"), st.sampled_from(SITE_IDS), st.booleans()),
    st.tuples(st.just("select"), st.sampled_from(SITE_IDS), st.sampled_from([*SITE_IDS, None])),
    st.tuples(st.just("voice"), st.booleans()),
    st.tuples(st.just("poll"), st.lists(st.sampled_from(SITE_IDS), max_size=4), st.sampled_from([0, 0.5, 3]),
              st.sampled_from([None, 0, 3, 30])),
    st.tuples(st.just("stoppoll"),),
    st.tuples(st.just("mute"), st.sampled_from(SITE_IDS), st.booleans()),
    st.tuples(st.just("deaf"), st.sampled_from(SITE_IDS), st.booleans()),
    st.tuples(st.just("lock"), st.booleans()),
    st.tuples(st.just("banner"), st.text(max_size=8), st.sampled_from(["top", "bottom", "left"]), st.booleans()),
    st.tuples(st.just("tick"), st.floats(0, 20)),
)


def apply(room: Room, clock: FakeClock, op: tuple) -> None:  # type: ignore[type-arg]
    kind = op[0]
    if kind == "join":
        room.join(op[1], op[2]).push_video(source_frame(len(room.participants)))
    elif kind == "leave":
        room.leave(op[1])
    elif kind == "layout":
        room.set_layout(op[1])
    elif kind == "pane":
        room.assign_pane(op[1], op[2], op[3])
    elif kind == "broadcast":
        room.broadcast(op[1])
    elif kind == "rollcall":
        room.roll_call(op[1], mute_others=op[2])
    elif kind == "select":
        room.select_view(op[1], op[2])
    elif kind == "voice":
        room.set_voice_activated(op[1])
    elif kind == "poll":
        room.start_polling(op[1], op[2], op[3])
    elif kind == "stoppoll":
        room.stop_polling()
    elif kind == "mute":
        room.mute(op[1], op[2])
    elif kind == "deaf":
        room.deaf(op[1], op[2])
    elif kind == "lock":
        room.lock() if op[1] else room.unlock()
    elif kind == "banner":
        room.set_banner(op[1], op[2], op[3])
    elif kind == "tick":
        clock.advance(op[1])


def snapshot(room: Room) -> tuple:  # type: ignore[type-arg]
    return (list(room.participants), room.layout, list(room.panes), room.broadcast_id, room.voice_activated,
            room.polling, room.polling_pane, dict(room.selected), room.locked, room.banner,
            {p: (s.muted, s.deaf) for p, s in room.participants.items()})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=25))
def test_random_chair_operations(sequence: list[tuple]) -> None:  # type: ignore[type-arg]
    clock = FakeClock()
    events: list[object] = []
    room = Room("fuzz", clock=clock, on_event=events.append, text=TEXT)
    for op in sequence:
        before, count = snapshot(room), len(events)
        try:
            apply(room, clock, op)
        except RoomError:
            assert snapshot(room) == before, f"refused {op} but changed the room"
            assert len(events) == count, f"refused {op} but emitted events"
        views = [BROADCAST, PREVIEW] + [room.view_for(p) for p in room.participants]
        for view in set(views):
            plan = room.view_plan(view)
            for pane in plan.panes:
                assert pane.participant_id is None or pane.participant_id in room.participants
            if view.startswith("select:"):
                assert view == select_view_id(view[7:]) and view[7:] in room.participants
        room.set_labels(True)
        room.render(BROADCAST)  # labels and banner with whatever text got through
