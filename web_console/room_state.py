"""The chair console's view of a running room (one JSON shape, read on the node that hosts the room)."""
from __future__ import annotations

from typing import Any

from mcu.conferences import RunningConference
from mcu.layout import LAYOUTS


def room_state(conf: RunningConference) -> dict[str, Any]:
    room = conf.room
    panes = []
    for pane in room.panes:
        kind = type(pane).__name__.replace("Pane", "").lower()
        panes.append({"mode": kind, "site": getattr(pane, "participant_id", None)})
    return {
        "conference": conf.record.to_json(), "running": True, "layout": room.layout, "panes": panes,
        "broadcast": room.broadcast_id, "voice_activated": room.voice_activated,
        "polling": {"sites": list(room.polling.participant_ids), "interval": room.polling.interval,
                    "pane": room.polling_pane} if room.polling else None,
        "banner": {"text": room.banner.text, "position": room.banner.position, "scroll": room.banner.scroll}
        if room.banner else None,
        "labels": room.labels, "locked": room.locked, "chair": room.chair_id, "selected": dict(room.selected),
        "speaker": room.active_speaker, "sites": conf.site_list(), "layouts": list(LAYOUTS),
        "encoders": [f"{k.view_id}/{k.codec}/{k.width}x{k.height}" for k in room.encoder_keys],
    }
