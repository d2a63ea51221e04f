"""A chair operation on a site behind a cascade link: sent down the link as a command.

The vocabulary (`ChairOperation`, which operations travel and as which command) is in
:mod:`mcu.chair`; this module adds the one step that needs the cascade: waiting for the hosting
node's answer and, for a roll call that mutes the others, finding the link's participant here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mcu.cascade.naming import link_participant
from mcu.chair import ChairOperation, remote_command

if TYPE_CHECKING:
    from mcu.conferences import RunningConference


async def apply_remotely(conf: RunningConference, op: ChairOperation) -> None:
    """Run a chair operation on a site behind a cascade link and wait for the hosting node's answer.

    RoomError: not possible remotely; `RemoteCommandError`: refused, unreachable or timed out
    (its `status` is 409, 503 or 504). A roll call that mutes the others also mutes everyone
    here, as a local roll call would: the link to that node now carries the called site.
    """
    command, args = remote_command(op)
    assert op.site is not None
    await conf.remote_command(op.site, command, args)
    if op.op == "roll_call" and op.mute_others:
        via: list[str] = next((s["via"] for s in conf.remote_site_list() if s["site_id"] == op.site), [])
        link = link_participant(conf.room, via[0]) if via else None  # primary or backup call
        if link is not None:
            conf.room.roll_call(link, mute_others=True)


__all__ = ["apply_remotely"]
