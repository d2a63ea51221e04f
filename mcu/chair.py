"""The chair-operation vocabulary: what a chairperson may do to a conference room, defined once.

A `ChairOperation` names an operation (`op`) and carries its arguments; `apply_operation` runs
it on a `Room`: layout, pane, broadcast, roll call, select-view, voice-activated switching,
polling, mute/deaf, mute all but the chair, chair, lock, remove, banner, labels. Two front ends
speak this vocabulary:

* the chair console (`POST /api/conferences/<id>/ops`, `web_console.conference_console`), whose
  request body has the same fields;
* the cascade control channel (`mcu.cascade.control_service`). An operation on a site behind a
  cascade link travels as a command (`remote_command`: mute/unmute, roll_call, broadcast,
  select_view, banner, the names on the wire); the node that hosts the site turns the command
  back into an operation (`operation_of_command`) and applies it to its own room.

`RoomError` means refused with nothing changed; its message is shown to the chair.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcu.room import Room, RoomError

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ChairOperation:
    """One chair operation and its arguments (which arguments matter depends on `op`)."""

    op: str
    site: str | None = None
    target: str | None = None
    layout: str | None = None
    index: int | None = None
    mode: str | None = None
    enabled: bool = True
    text: str = ""
    position: str = "top"
    scroll: bool = False
    sites: Sequence[str] = ()
    interval: float = 10.0
    pane: int | None = None
    mute_others: bool = False


def _need(value: Any, field: str) -> Any:
    if value is None:
        raise RoomError(f"缺少参数: {field}")
    return value


def apply_operation(room: Room, op: ChairOperation) -> None:
    """Run one chair operation on the room (RoomError: refused, nothing changed)."""
    match op.op:
        case "layout":
            room.set_layout(_need(op.layout, "layout"))
        case "pane":
            room.assign_pane(_need(op.index, "index"), _need(op.mode, "mode"), op.site)
        case "broadcast":
            room.broadcast(op.site)
        case "roll_call":
            room.roll_call(_need(op.site, "site"), mute_others=op.mute_others)
        case "select_view":
            room.select_view(_need(op.site, "site"), op.target)
        case "voice_activated":
            room.set_voice_activated(op.enabled)
        case "polling_start":
            room.start_polling(list(op.sites), op.interval, op.pane)
        case "polling_stop":
            room.stop_polling()
        case "mute":
            room.mute(_need(op.site, "site"), op.enabled)
        case "deaf":
            room.deaf(_need(op.site, "site"), op.enabled)
        case "mute_all_except_chair":
            room.mute_all_except_chair()
        case "chair":
            room.set_chair(op.site)
        case "lock":
            room.lock() if op.enabled else room.unlock()
        case "remove":
            room.remove(_need(op.site, "site"))
        case "banner":
            room.set_banner(op.text, op.position, op.scroll)
        case "labels":
            room.set_labels(op.enabled)
        case _:
            raise RoomError(f"未知操作: {op.op}")


def remote_command(op: ChairOperation) -> tuple[str, dict[str, Any]]:
    """The cascade command for a chair operation on a remote site (RoomError: not possible remotely)."""
    match op.op:
        case "mute":
            return ("mute" if op.enabled else "unmute"), {}
        case "roll_call" | "broadcast":
            return op.op, {}
        case "select_view" if op.target:
            return "select_view", {"source": op.target}
        case "select_view":
            raise RoomError("远端会场暂不支持取消选看，请选择一个会场")
        case "banner":
            return "banner", {"text": op.text}
    raise RoomError(f"远端会场不支持该操作：{op.op}")


def operation_of_command(command: str, site: str, args: dict[str, Any]) -> ChairOperation:
    """The chair operation a parent's command (already validated by the protocol) asks of this node's room."""
    match command:
        case "mute" | "unmute":
            return ChairOperation("mute", site=site, enabled=command == "mute")
        case "roll_call" | "broadcast":
            # roll call / broadcast -> the broadcast view, which is what the link sends up
            return ChairOperation(command, site=site)
        case "select_view":
            return ChairOperation("select_view", site=site, target=args["source"])
        case "banner":
            return ChairOperation("banner", text=args["text"])
    # validated by the protocol; kept for a future command this node lacks
    raise RoomError(f"本节点不支持该命令：{command}")
