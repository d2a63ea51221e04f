"""A roll call of a site behind a link follows the link across path switches (no network).

At a parent, the link to a child is the primary call ``cascade-<child>`` or, while the child is
on backup, the bridge call ``cascade-<child>-backup``. `naming.link_participant` names the call
that carries the link now; the `BackupWatcher` keeps a broadcast of the link on that call when
the path switches (the old call leaving cancels a room's broadcast), and leaves a broadcast the
chair cancelled or moved alone. The end-to-end version is `test_cascade_roll_call.py`.
"""
from __future__ import annotations

from typing import Any

from mcu.cascade.backup_watch import BackupWatcher
from mcu.cascade.naming import link_participant
from mcu.room import Room, RoomSettings

PRIMARY, BACKUP = "cascade-county-a", "cascade-county-a-backup"


def room_with(*pids: str) -> Room:
    room = Room("81000001", settings=RoomSettings(width=320, height=180))
    for pid in ("city-ep", *pids):
        room.join(pid, pid)
    return room


def watcher() -> BackupWatcher:
    sip: Any = None  # _keep_broadcast only looks at the room
    return BackupWatcher(sip, "81000001", PRIMARY, BACKUP, "sip:9181000001@10.0.0.9:5060", "罗定市级联（电信备份）",
                         "city")


def test_link_participant_is_the_call_that_carries_the_link() -> None:
    both = room_with(PRIMARY, BACKUP)
    assert link_participant(both, "county-a") == PRIMARY
    both.set_link_active(PRIMARY, BACKUP)
    assert link_participant(both, "county-a") == BACKUP
    backup_only = room_with(BACKUP)
    backup_only.set_link_active(PRIMARY, PRIMARY)   # stale: the primary call has left
    assert link_participant(backup_only, "county-a") == BACKUP
    assert link_participant(room_with(), "county-a") is None
    assert link_participant(room_with(PRIMARY, BACKUP), "county-b") is None


def test_broadcast_moves_to_the_backup_call_while_both_are_in_the_room() -> None:
    room, w = room_with(PRIMARY, BACKUP), watcher()
    room.roll_call(PRIMARY)
    w._keep_broadcast(room, PRIMARY)
    assert room.broadcast_id == PRIMARY
    w._keep_broadcast(room, BACKUP)
    assert room.broadcast_id == BACKUP
    w._keep_broadcast(room, PRIMARY)     # switch back (make before break)
    assert room.broadcast_id == PRIMARY


def test_broadcast_survives_the_primary_leaving_before_the_backup_joins() -> None:
    room, w = room_with(PRIMARY), watcher()
    room.roll_call(PRIMARY)
    w._keep_broadcast(room, PRIMARY)
    room.leave(PRIMARY)
    assert room.broadcast_id is None     # what the room does by itself
    w._keep_broadcast(room, BACKUP)      # the bridge call is not up yet: nothing to show
    assert room.broadcast_id is None
    room.join(BACKUP, BACKUP)
    w._keep_broadcast(room, BACKUP)
    assert room.broadcast_id == BACKUP


def test_a_broadcast_the_chair_cancelled_or_moved_is_left_alone() -> None:
    room, w = room_with(PRIMARY, BACKUP, "local"), watcher()
    room.roll_call(PRIMARY)
    w._keep_broadcast(room, PRIMARY)
    room.broadcast(None)                 # the chair cancels while the primary is still there
    w._keep_broadcast(room, PRIMARY)
    room.leave(PRIMARY)
    w._keep_broadcast(room, BACKUP)
    assert room.broadcast_id is None

    room.broadcast(BACKUP)
    w._keep_broadcast(room, BACKUP)
    room.broadcast("local")              # the chair moved it to another site
    room.join(PRIMARY, PRIMARY)
    w._keep_broadcast(room, PRIMARY)
    assert room.broadcast_id == "local"


def test_select_view_of_the_link_follows_it_and_a_changed_selection_is_left_alone() -> None:
    room, w = room_with(PRIMARY, "viewer", "other"), watcher()
    room.select_view("viewer", PRIMARY)
    room.select_view("other", PRIMARY)
    w._keep_selections(room, PRIMARY)
    room.select_view("other", None)           # this site stops watching the county
    w._keep_selections(room, PRIMARY)
    room.leave(PRIMARY)                       # the line dies: the room drops the selection
    assert room.selected.get("viewer") is None
    w._keep_selections(room, BACKUP)          # the bridge call is not up yet
    room.join(BACKUP, BACKUP)
    w._keep_selections(room, BACKUP)
    assert room.selected.get("viewer") == BACKUP and room.selected.get("other") is None
    room.join(PRIMARY, PRIMARY)               # switch back, make before break
    w._keep_selections(room, PRIMARY)
    assert room.selected.get("viewer") == PRIMARY
    room.select_view("viewer", "other")       # moved elsewhere by the chair: left alone
    w._keep_selections(room, BACKUP)
    assert room.selected.get("viewer") == "other"


def test_a_link_on_two_calls_fills_one_pane_not_two() -> None:
    room = room_with(PRIMARY, BACKUP, "local")
    room.set_loop_free(PRIMARY, group=PRIMARY)
    room.set_loop_free(BACKUP, group=PRIMARY)

    def shown() -> set[str]:
        plan = room.view_plan("broadcast")
        return {p.participant_id for p in plan.panes if p.participant_id is not None}

    assert shown() == {"city-ep", PRIMARY, BACKUP, "local"}   # no active call chosen: both (and heard)
    room.set_link_active(PRIMARY, BACKUP)                     # failover: the bridge call carries it
    assert shown() == {"city-ep", BACKUP, "local"}
    room.set_link_active(PRIMARY, PRIMARY)                    # back on the private line
    assert shown() == {"city-ep", PRIMARY, "local"}
